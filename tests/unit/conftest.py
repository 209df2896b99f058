"""Fixtures of the unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdc.fastpath import Extension, load, turned_off


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CDC_* variable, cdc.toml or stack of this machine leaks in: the working directory is empty."""
    for key in [k for k in os.environ if k.startswith("CDC_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDC_STACK_DIR", str(tmp_path / "no-stack"))
    return tmp_path


@pytest.fixture(scope="module")
def fast() -> Extension:
    """The compiled fast path. In CI it must be built (make install builds it where cargo is);
    elsewhere its tests are skipped without it, as they are under CDC_FASTPATH=off."""
    if turned_off():
        pytest.skip("CDC_FASTPATH=off: the Python path only")
    extension = load()
    if extension is None:
        if os.environ.get("CI"):
            pytest.fail("the fast path extension is not built: make install builds it (needs cargo)")
        pytest.skip("the fast path extension is not built (make install, with cargo)")
    return extension
