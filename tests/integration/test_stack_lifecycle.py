"""A second, throwaway native stack (own directory and ports): `up` is idempotent, `status` tells
the truth, `down` leaves no process behind."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from cdc.resources import cdc_command

pytestmark = pytest.mark.stack

PORTS = {
    "CDC_STACK_SOURCE_PORT": 54421,
    "CDC_STACK_WAREHOUSE_PORT": 54422,
    "CDC_STACK_KAFKA_PORT": 19192,
    "CDC_STACK_CONTROLLER_PORT": 19193,
    "CDC_STACK_CONNECT_PORT": 18183,
}


def cdc(stack_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    env |= {key: str(port) for key, port in PORTS.items()}
    env["CDC_STACK_DIR"] = str(stack_dir)
    env["COLUMNS"] = "200"
    return subprocess.run([*cdc_command(), *args], env=env, capture_output=True, text=True, timeout=600, check=False)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def test_up_is_idempotent_and_down_stops_everything(tmp_path: Path) -> None:
    stack_dir = tmp_path / "stack"
    first = cdc(stack_dir, "stack", "up")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "connector cdc-source: RUNNING" in first.stdout
    assert all(listening(port) for port in PORTS.values())
    status = cdc(stack_dir, "stack", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    pids_before = [line for line in status.stdout.splitlines() if "running" in line]
    assert len(pids_before) == 4

    second = cdc(stack_dir, "stack", "up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("already running") == 4
    assert "connector cdc-source: already RUNNING" in second.stdout
    again = cdc(stack_dir, "stack", "status")
    assert [line for line in again.stdout.splitlines() if "running" in line] == pids_before

    env = cdc(stack_dir, "stack", "env")
    assert f"CDC_KAFKA_BOOTSTRAP_SERVERS='127.0.0.1:{PORTS['CDC_STACK_KAFKA_PORT']}'" in env.stdout
    assert "export CDC_SOURCE_URL='postgresql://cdc:" in env.stdout

    down = cdc(stack_dir, "stack", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.count(": stopped") == 4
    assert not any(listening(port) for port in PORTS.values())
    assert processes_mentioning(str(stack_dir)) == []
    stopped = cdc(stack_dir, "stack", "status")
    assert stopped.returncode == 1
    assert stopped.stdout.count("stopped") == 4

    wiped = cdc(stack_dir, "stack", "down", "--wipe")
    assert "data wiped" in wiped.stdout
    assert not (stack_dir / "stack.json").exists()
