"""Files that ship beside the package in the repository: connector configs and SQL."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from cdc.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


def repo_file(*parts: str) -> Path:
    path = REPO_ROOT.joinpath(*parts)
    if not path.exists():
        raise ConfigError(
            f"{'/'.join(parts)} was not found beside the cdc package (looked in {REPO_ROOT}).",
            "run cdc from a clone of its repository installed with `pip install -e .`",
        )
    return path


def sql_file(name: str) -> str:
    return repo_file("sql", name).read_text()


def cdc_command() -> list[str]:
    """How to run this very cdc in a subprocess: the console script beside this Python (the
    virtualenv's), not whichever `cdc` comes first on PATH."""
    script = Path(sys.executable).parent / "cdc"
    if script.exists():
        return [str(script)]
    found = shutil.which("cdc")
    return [found] if found else [sys.executable, "-c", "from cdc.cli import main; main()"]
