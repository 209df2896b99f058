"""A stack PostgreSQL that cannot start says why at once, instead of a minute of waiting."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from cdc.errors import StackError
from cdc.settings import Settings
from cdc.stack import postgres, tools

pytestmark = [pytest.mark.stack]


def test_a_postmaster_whose_port_is_taken_fails_fast_naming_the_port(stack: Settings) -> None:
    root = Path(tempfile.mkdtemp(prefix="cdc-port-", dir="/var/tmp"))
    root.chmod(0o755)  # the postgres OS user runs it when the tests run as root
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = postgres.Cluster("source", root, port, tools.postgres_bin(stack.stack_pg_bin), logical=True)
        try:
            postgres.init(cluster)
            began = time.monotonic()
            with pytest.raises(StackError) as raised:
                postgres.wait_ready(cluster, started=postgres.start(cluster))
            assert time.monotonic() - began < 15
        finally:
            postgres.stop(cluster)
            shutil.rmtree(root, ignore_errors=True)
    assert raised.value.problem.startswith("the source PostgreSQL exited as it started: "), raised.value.problem
    assert (
        raised.value.fix == f"another program holds port {port}: stop it, or set CDC_STACK_SOURCE_PORT to a free port"
    )
