"""COPY ... TO STDOUT of the source straight into COPY ... FROM STDIN of the warehouse.

Two threads and a small bounded queue of ~1 MiB chunks: the source side's writer gets one call
per row from psycopg2 (it only appends), the warehouse side reads whole chunks; the databases do
the parsing and printing. Memory is bounded by the queue, whatever the size of the table.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

CHUNK = 1 << 20
_DEPTH = 8  # chunks in flight: at most ~8 MiB between the two databases
_POLL = 0.5


class PipeClosed(Exception):
    """The other side of the pipe failed; this side stops."""


class _Pipe:
    def __init__(self, on_rows: Callable[[int], None] | None) -> None:
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(_DEPTH)
        self._parts: list[bytes] = []
        self._size = 0
        self._pending_rows = 0
        self.rows = 0
        self.closed = threading.Event()  # set by the reading side when it stops early
        self._on_rows = on_rows

    # -- the source's side (COPY TO calls write once per row) ---------------------------------
    def write(self, data: bytes) -> int:
        self._parts.append(data)
        self._size += len(data)
        self._pending_rows += 1
        if self._size >= CHUNK:
            self._push()
        return len(data)

    def _push(self) -> None:
        if self._parts:
            self._put(b"".join(self._parts))
            self._parts.clear()
            self._size = 0
        if self._pending_rows:
            self.rows += self._pending_rows
            if self._on_rows is not None:
                self._on_rows(self._pending_rows)
            self._pending_rows = 0

    def _put(self, item: bytes | BaseException | None) -> None:
        while True:
            if self.closed.is_set():
                raise PipeClosed("the warehouse side stopped")
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=_POLL)
                return

    def finish(self, error: BaseException | None) -> None:
        if error is None:
            self._push()
        self._put(error)

    # -- the warehouse's side (COPY FROM calls read) -------------------------------------------
    def read(self, size: int = -1) -> bytes:
        item = self._queue.get()
        if item is None:
            self._queue.put(None)  # read again after the end: still the end
            return b""
        if isinstance(item, BaseException):
            raise PipeClosed("the source side failed") from item
        return item


def copy_between(
    read: Callable[[Any], None],
    write: Callable[[Any], None],
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Run `read(file)` (a COPY TO writing into file) in a thread and `write(file)` (a COPY FROM
    reading from it) here; returns the COPY messages that went through (one per row, plus the
    binary format's header and trailer: for progress; the warehouse's count is the cursor's).
    An error of either side stops both and is raised (the source's first: it is the cause)."""
    pipe = _Pipe(on_rows)
    failure: list[BaseException] = []

    def source() -> None:
        error: BaseException | None = None
        try:
            read(pipe)
        except PipeClosed:
            return
        except BaseException as exc:  # handed to the other thread, raised there
            error = exc
            failure.append(exc)
        try:
            pipe.finish(error)
        except PipeClosed:
            return

    thread = threading.Thread(target=source, name="cdc-backfill-read", daemon=True)
    thread.start()
    try:
        write(pipe)
    except BaseException:
        pipe.closed.set()
        thread.join()
        if failure:
            raise failure[0] from None
        raise
    thread.join()
    if failure:
        raise failure[0]
    return pipe.rows
