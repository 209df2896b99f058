"""The second native stack the suite runs on (`make test`: pytest-xdist, two workers, a stack per
worker): its own directory and ports, so that no test shares a Connect worker, a slot or a broker
with a test running at the same time. Tests of one module stay on one worker (--dist loadfile).

    python -m tests.second_stack up|down|status    # `cdc stack ...` of the second stack
                                                   # (up: also cdc schema install, connector apply)

The first worker (and a plain `pytest`, without xdist) uses the default stack (.cdc-stack).
"""

from __future__ import annotations

import os
import subprocess
import sys

from cdc.resources import cdc_command

# Apart from the default stack's ports and from the throwaway stack of test_stack_lifecycle.py.
ENV = {
    "CDC_STACK_DIR": ".cdc-stack-2",
    "CDC_STACK_SOURCE_PORT": "25431",
    "CDC_STACK_WAREHOUSE_PORT": "25432",
    "CDC_STACK_KAFKA_PORT": "19292",
    "CDC_STACK_CONTROLLER_PORT": "19293",
    "CDC_STACK_CONNECT_PORT": "18283",
}


def use_for_worker(worker: str | None) -> None:
    """Point this process (and the `cdc` processes its tests start) at the worker's stack."""
    if worker not in (None, "gw0", "master"):
        os.environ.update(ENV)


def main(argv: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")} | ENV
    status = subprocess.run([*cdc_command(), "stack", *argv], env=env, check=False).returncode
    if status == 0 and argv == ["up"]:
        # As `make test` sets up the first stack: the source's DDL capture installed and captured.
        for command in (["schema", "install", "--local-stack"], ["connector", "apply"]):
            status = status or subprocess.run([*cdc_command(), *command], env=env, check=False).returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
