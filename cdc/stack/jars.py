"""Resolve the Kafka and Debezium jars from Maven Central with the pom in this package."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable

from cdc.errors import StackError
from cdc.stack import tools
from cdc.stack.state import Layout

_STAMP = ".pom-sha256"


def ensure(lay: Layout, *, say: Callable[[str], None]) -> None:
    """Download the jars unless the ones present were resolved from this exact pom."""
    digest = hashlib.sha256(tools.POM.read_bytes()).hexdigest()
    stamp = lay.root / "lib" / _STAMP
    if stamp.exists() and stamp.read_text().strip() == digest:
        return
    mvn = tools.maven()
    shutil.rmtree(lay.root / "lib", ignore_errors=True)
    lay.kafka_libs.mkdir(parents=True)
    lay.plugins.mkdir(parents=True)
    say("resolving Kafka and Debezium jars from Maven Central (first run only)...")
    proc = subprocess.run(
        [
            str(mvn),
            "-B",
            "-q",
            "-f",
            str(tools.POM),
            "dependency:copy-dependencies@kafka-libs",
            "dependency:unpack@debezium-plugins",
            f"-Dcdc.lib.dir={lay.kafka_libs}",
            f"-Dcdc.plugin.dir={lay.plugins}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise StackError(
            f"Maven could not resolve the stack's jars:\n{tail}",
            "check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml), then "
            "run `cdc stack up` again",
        )
    stamp.write_text(digest + "\n")
