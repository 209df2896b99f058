"""Find the binaries the native stack runs, or say exactly which one is missing and how to get it."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cdc.errors import MissingToolError, StackError

POM = Path(__file__).with_name("pom.xml")
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


@dataclass(frozen=True)
class Versions:
    debezium: str
    kafka: str
    postgres_major: int


@cache
def versions() -> Versions:
    """The pinned versions, read from the pom that resolves the jars (the single source of truth)."""
    root = ET.parse(POM).getroot()

    def prop(name: str) -> str:
        node = root.find(f"m:properties/m:{name}", _POM_NS)
        if node is None or not node.text:
            raise StackError(f"{POM} lacks <{name}>; the package is damaged.", "reinstall cdc")
        return node.text.strip()

    return Versions(
        debezium=prop("debezium.version"),
        kafka=prop("kafka.version"),
        postgres_major=int(prop("postgres.major")),
    )


def java() -> Path:
    path = shutil.which("java")
    if path is None:
        raise MissingToolError(
            "java was not found on PATH; Kafka 4 and Debezium 3 need Java 17 or newer.",
            "install it: apt-get install -y openjdk-17-jre-headless (or put a JDK 17+ on PATH)",
        )
    out = subprocess.run([path, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    if match is None or int(match.group(1)) < 17:
        raise MissingToolError(
            f"{path} is not Java 17 or newer ({(out.stderr or out.stdout).splitlines()[:1]}).",
            "install it: apt-get install -y openjdk-17-jre-headless, and put it first on PATH",
        )
    return Path(path)


def maven() -> Path:
    path = shutil.which("mvn")
    if path is None:
        raise MissingToolError(
            "mvn (Apache Maven) was not found on PATH; it fetches the Kafka and Debezium jars from Maven Central.",
            "install it: apt-get install -y maven",
        )
    return Path(path)


def postgres_bin(configured: Path | None) -> Path:
    """The directory holding initdb and postgres of the pinned major version."""
    major = versions().postgres_major
    candidates = [configured] if configured else [Path(f"/usr/lib/postgresql/{major}/bin")]
    if configured is None and (found := shutil.which("initdb")):
        candidates.append(Path(found).resolve().parent)
    for directory in candidates:
        if directory and (directory / "initdb").exists() and (directory / "postgres").exists():
            out = subprocess.run(
                [str(directory / "postgres"), "--version"],
                capture_output=True,
                text=True,
                check=False,
            )
            match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
            if match and int(match.group(1)) == major:
                return directory
    where = f"in {configured}" if configured else f"in /usr/lib/postgresql/{major}/bin or on PATH"
    raise MissingToolError(
        f"PostgreSQL {major} server binaries (initdb, postgres) were not found {where}.",
        f"install them: apt-get install -y postgresql-{major} "
        f"(or set CDC_STACK_PG_BIN to the directory that holds them)",
    )
