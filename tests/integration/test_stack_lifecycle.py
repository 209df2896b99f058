"""A second, throwaway native stack (own directory and ports): `up` is idempotent, `status` tells
the truth, `down` leaves no process behind. And the stack's role, on the shared stack and on a new
one or one set up before `up` set its search path, creates a table without a schema name in
`public`, not in cdc's internal schema `cdc`."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from cdc.resources import cdc_command
from cdc.settings import Settings
from cdc.stack import postgres, state
from tests.db import execute, query

pytestmark = [pytest.mark.stack, pytest.mark.serial]

# Below the kernel's ephemeral range (32768-60999 here): a port in it may be taken, at any moment,
# by the local end of some client's connection, and a server then fails to bind it (seen once).
PORTS = {
    "CDC_STACK_SOURCE_PORT": 25421,
    "CDC_STACK_WAREHOUSE_PORT": 25422,
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


def schema_of_unqualified_table(url: str) -> str:
    """Where a table created without a schema name lands, connected as the stack's role."""
    # Only meaningful where the role's own schema exists: that is what "$user" would pick.
    assert query(url, "SELECT current_user, to_regnamespace(current_user) IS NOT NULL") == [("cdc", True)]
    name = f"unqualified_{uuid.uuid4().hex[:8]}"
    try:
        execute(url, f"CREATE TABLE {name} (id integer PRIMARY KEY)")
        rows = query(
            url,
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = %s",
            (name,),
        )
    finally:
        execute(url, f"DROP TABLE IF EXISTS public.{name}; DROP TABLE IF EXISTS cdc.{name}")
    assert len(rows) == 1, rows
    return str(rows[0][0])


@pytest.mark.parametrize("database", ["source", "warehouse"])
def test_the_stacks_role_creates_unqualified_tables_in_public(stack: Settings, database: str) -> None:
    url = stack.require_source_url() if database == "source" else stack.require_warehouse_url()
    assert schema_of_unqualified_table(url) == "public"


def unqualified_tables_land_in(stack_dir: Path) -> dict[str, str]:
    env = cdc(stack_dir, "stack", "env")
    assert env.returncode == 0, env.stdout + env.stderr
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in env.stdout.splitlines())
    return {name: schema_of_unqualified_table(exported[name]) for name in ("CDC_SOURCE_URL", "CDC_WAREHOUSE_URL")}


def forget_search_path(stack_dir: Path) -> None:
    """The role as a stack set up before `up` set its search path has it: with the default."""
    st = state.load_state(state.Layout(stack_dir))
    assert st is not None
    for name, port in (("source", "CDC_STACK_SOURCE_PORT"), ("warehouse", "CDC_STACK_WAREHOUSE_PORT")):
        cluster = postgres.Cluster(name, Path(st.postgres_root), PORTS[port], Path(), logical=name == "source")
        conn = postgres.admin_connect(cluster)
        try:
            with conn.cursor() as cur:
                cur.execute("ALTER ROLE cdc RESET search_path")
        finally:
            conn.close()


def test_up_is_idempotent_and_down_stops_everything(tmp_path: Path) -> None:
    stack_dir = tmp_path / "stack"
    try:
        up_status_down(stack_dir)
    finally:
        cdc(stack_dir, "stack", "down", "--wipe")  # whatever failed, nothing of this stack outlives the test


def up_status_down(stack_dir: Path) -> None:
    first = cdc(stack_dir, "stack", "up")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "connector cdc-source: RUNNING" in first.stdout
    assert all(listening(port) for port in PORTS.values())
    status = cdc(stack_dir, "stack", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    pids_before = [line for line in status.stdout.splitlines() if "running" in line]
    assert len(pids_before) == 4
    assert unqualified_tables_land_in(stack_dir) == {"CDC_SOURCE_URL": "public", "CDC_WAREHOUSE_URL": "public"}
    forget_search_path(stack_dir)
    assert unqualified_tables_land_in(stack_dir) == {"CDC_SOURCE_URL": "cdc", "CDC_WAREHOUSE_URL": "cdc"}

    second = cdc(stack_dir, "stack", "up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("already running") == 4
    assert "connector cdc-source: already RUNNING" in second.stdout
    again = cdc(stack_dir, "stack", "status")
    assert [line for line in again.stdout.splitlines() if "running" in line] == pids_before
    assert unqualified_tables_land_in(stack_dir) == {"CDC_SOURCE_URL": "public", "CDC_WAREHOUSE_URL": "public"}

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
