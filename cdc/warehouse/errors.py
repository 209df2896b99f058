"""Warehouse errors: cdc.pgerrors decides, for the warehouse database."""

from __future__ import annotations

from cdc.errors import CdcError
from cdc.pgerrors import describe, is_row_level, sqlstate
from cdc.pgerrors import translate as _translate

__all__ = ["describe", "is_row_level", "sqlstate", "translate"]


def translate(exc: BaseException, what: str) -> CdcError:
    """A driver error raised while doing `what` in the warehouse."""
    return _translate(exc, what, "warehouse")
