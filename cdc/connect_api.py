"""A small client for Kafka Connect's REST API: validate, create/update, restart, status."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from cdc.errors import ConnectorError, TransientError


@dataclass(frozen=True)
class ConnectorState:
    name: str
    state: str  # RUNNING, PAUSED, FAILED, UNASSIGNED, RESTARTING, or MISSING when not created
    tasks: tuple[tuple[int, str], ...]
    trace: str | None

    @property
    def running(self) -> bool:
        return self.state == "RUNNING" and bool(self.tasks) and all(state == "RUNNING" for _, state in self.tasks)

    @property
    def failed(self) -> bool:
        return self.state == "FAILED" or any(state == "FAILED" for _, state in self.tasks)


class ConnectClient:
    def __init__(self, base_url: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransientError(
                f"Kafka Connect at {self.base_url} did not answer ({exc.__class__.__name__}).",
                "start it (cdc stack up) or set CDC_CONNECT_URL to its REST address",
            ) from exc

    def validate(self, config: dict[str, str]) -> list[str]:
        """Connect's own validation of a config (Debezium also tries the database): its errors."""
        plugin = config["connector.class"].rsplit(".", 1)[-1]
        resp = self._request("PUT", f"/connector-plugins/{plugin}/config/validate", json=config)
        if resp.status_code >= 400:
            raise ConnectorError(
                f"Kafka Connect rejected the config of plugin {plugin}: {_message(resp)}",
                "check connector.class and that the plugin is installed (GET /connector-plugins)",
            )
        errors: list[str] = []
        for item in resp.json().get("configs", []):
            value = item.get("value", {})
            errors.extend(f"{value.get('name')}: {error}" for error in value.get("errors", []))
        return errors

    def put_config(self, name: str, config: dict[str, str]) -> None:
        resp = self._request("PUT", f"/connectors/{name}/config", json=config)
        if resp.status_code >= 400:
            raise ConnectorError(f"Kafka Connect refused connector {name}: {_message(resp)}")

    def restart(self, name: str) -> None:
        resp = self._request("POST", f"/connectors/{name}/restart?includeTasks=true")
        if resp.status_code >= 400 and resp.status_code != 409:  # 409: a rebalance is under way
            raise ConnectorError(f"restarting connector {name} failed: {_message(resp)}")

    def delete(self, name: str) -> None:
        resp = self._request("DELETE", f"/connectors/{name}")
        if resp.status_code >= 400 and resp.status_code != 404:
            raise ConnectorError(f"deleting connector {name} failed: {_message(resp)}")

    def config(self, name: str) -> dict[str, str] | None:
        resp = self._request("GET", f"/connectors/{name}/config")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        result: dict[str, str] = resp.json()
        return result

    def stop(self, name: str) -> None:
        """Stop the connector and its tasks (Kafka Connect 3.5+): its slot is released."""
        resp = self._request("PUT", f"/connectors/{name}/stop")
        if resp.status_code >= 400:
            raise ConnectorError(f"stopping connector {name} failed: {_message(resp)}")

    def resume(self, name: str) -> None:
        resp = self._request("PUT", f"/connectors/{name}/resume")
        if resp.status_code >= 400:
            raise ConnectorError(f"resuming connector {name} failed: {_message(resp)}")

    def reset_offsets(self, name: str) -> None:
        """Forget the (stopped) connector's committed offsets (Kafka Connect 3.6+)."""
        resp = self._request("DELETE", f"/connectors/{name}/offsets")
        if resp.status_code >= 400:
            raise ConnectorError(f"resetting the offsets of connector {name} failed: {_message(resp)}")

    def offsets(self, name: str) -> dict[str, Any] | None:
        """The connector's committed source offsets (Kafka Connect 3.6+), None if it does not exist."""
        resp = self._request("GET", f"/connectors/{name}/offsets")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def status(self, name: str) -> ConnectorState:
        resp = self._request("GET", f"/connectors/{name}/status")
        if resp.status_code == 404:
            return ConnectorState(name, "MISSING", (), None)
        resp.raise_for_status()
        body = resp.json()
        tasks = tuple((int(t["id"]), str(t["state"])) for t in body.get("tasks", []))
        traces = [body["connector"].get("trace")] + [t.get("trace") for t in body.get("tasks", [])]
        trace = next((t for t in traces if t), None)
        return ConnectorState(name, str(body["connector"]["state"]), tasks, trace)

    def wait_running(self, name: str, timeout: float = 120) -> ConnectorState:
        deadline = time.monotonic() + timeout
        while True:
            state = self.status(name)
            if state.running:
                return state
            if state.failed:
                raise ConnectorError(
                    f"connector {name} FAILED:\n{_trace_head(state.trace)}",
                    f"fix the cause above, then `cdc connector apply` again "
                    f"(full trace: GET {self.base_url}/connectors/{name}/status)",
                )
            if time.monotonic() > deadline:
                raise ConnectorError(
                    f"connector {name} is {state.state} (tasks {list(state.tasks)}) after {timeout:.0f}s, not RUNNING.",
                    "read the Connect worker's log (cdc stack status shows where it is)",
                )
            time.sleep(0.5)


def _message(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("message", resp.text))
    except ValueError:
        return resp.text


def _trace_head(trace: str | None, lines: int = 12) -> str:
    if not trace:
        return "(no trace)"
    # The "Caused by" lines say why; the stack frames between them rarely do.
    kept = [line for line in trace.splitlines() if not line.lstrip().startswith("at ")]
    return "\n".join(kept[:lines])
