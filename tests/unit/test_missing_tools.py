"""A missing binary is named with the command that installs it, before anything is started."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdc.cli import run
from cdc.errors import EXIT_CONFIG, MissingToolError
from cdc.stack import tools


@pytest.fixture
def empty_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PATH holding only an empty directory: no java, mvn or initdb can be found."""
    for key in [k for k in os.environ if k.startswith("CDC_")]:
        monkeypatch.delenv(key)
    bin_dir = tmp_path / "empty-bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_java_missing(empty_path: Path) -> None:
    with pytest.raises(MissingToolError) as caught:
        tools.java()
    assert "java" in caught.value.problem
    assert caught.value.fix is not None
    assert "apt-get install -y openjdk-17-jre-headless" in caught.value.fix


def test_maven_missing(empty_path: Path) -> None:
    with pytest.raises(MissingToolError) as caught:
        tools.maven()
    assert "mvn" in caught.value.problem
    assert caught.value.fix is not None
    assert "apt-get install -y maven" in caught.value.fix


def test_postgres_binaries_missing_from_the_configured_directory(empty_path: Path, tmp_path: Path) -> None:
    pg_bin = tmp_path / "pg-bin"
    pg_bin.mkdir()
    major = tools.versions().postgres_major

    with pytest.raises(MissingToolError) as caught:
        tools.postgres_bin(pg_bin)

    assert f"PostgreSQL {major}" in caught.value.problem
    assert str(pg_bin) in caught.value.problem
    assert caught.value.fix is not None
    assert f"apt-get install -y postgresql-{major}" in caught.value.fix
    assert "CDC_STACK_PG_BIN" in caught.value.fix


def test_postgres_binaries_of_another_major_are_refused(empty_path: Path, tmp_path: Path) -> None:
    pg_bin = tmp_path / "pg-bin-old"
    pg_bin.mkdir()
    for name in ("initdb", "postgres"):
        script = pg_bin / name
        script.write_text("#!/bin/sh\necho 'postgres (PostgreSQL) 13.9'\n")
        script.chmod(0o755)

    with pytest.raises(MissingToolError, match=f"PostgreSQL {tools.versions().postgres_major}"):
        tools.postgres_bin(pg_bin)


def test_stack_up_names_the_missing_tool_and_starts_nothing(
    empty_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_dir = tmp_path / "stack"
    monkeypatch.setenv("CDC_STACK_DIR", str(stack_dir))
    monkeypatch.chdir(tmp_path)  # no cdc.toml

    status = run(["stack", "up"])

    err = capsys.readouterr().err
    assert status == EXIT_CONFIG, err
    assert "error: java was not found on PATH" in err
    assert "fix: " in err
    assert "openjdk-17" in err
    assert "Traceback" not in err
    assert not stack_dir.exists()  # failed before creating (let alone starting) anything
