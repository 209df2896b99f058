"""A webhook endpoint on loopback for tests: records every request; can answer 200, answer 500,
hang, or be closed and reopened on the same port."""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass
from typing import Any

HOOK_PATH = "/services/T000/B000/SECRETTOKEN"


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None  # what the endpoint answered; None: it hung up without answering

    @property
    def key(self) -> str:
        return self.headers.get("Idempotency-Key", "")


class Endpoint:
    """A webhook on 127.0.0.1 that records every request it gets. `mode`: "ok" (200), "fail" (500,
    with a body that echoes the path, as a careless endpoint might), "hang" (answers nothing for
    `hang_for` seconds). close() makes it refuse connections; reopen() listens on the same port."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hang_for = 30.0
        self.delay = 0.0  # seconds before each answer, so that two senders' rounds overlap
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._release = threading.Event()  # ends every hang at once, when the test is over
        self._server: http.server.ThreadingHTTPServer | None = None
        self.port = 0
        self.reopen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HOOK_PATH}"

    def reopen(self) -> None:
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                mode = endpoint.mode
                status = {"ok": 200, "fail": 500}.get(mode)
                endpoint.record(Request(self.path, dict(self.headers.items()), body, status))
                if mode == "hang":
                    endpoint._release.wait(endpoint.hang_for)
                    return
                time.sleep(endpoint.delay)
                answer = b"ok" if status == 200 else f"internal error while posting to {self.path}".encode()
                self.send_response(status or 500)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def answered(self, status: int) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.status == status]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def release(self) -> None:
        self._release.set()
