"""Which staging tables the flush COPYs in PostgreSQL's binary format, column by column.

Reading COPY text, PostgreSQL spends about half of the COPY's CPU in the types' text input
functions (timestamptz_in above all): `python -m benchmarks.warehouse_cost` measured the same
staging rows at 2.94 µs/row as text against 1.59 as binary. So where the extension is built, the
staging text is turned into the binary format (rust/cdc_fastpath/src/binary.rs) for the column
types below, each sent as its type's binary receive function reads it (which applies the
column's typmod, as text input does). Any other type in a table, or a value whose text the
conversion does not read exactly (BC dates, an exponent in a numeric, a float beyond its range,
an unchanged-TOAST list...), and that flush of that table is COPYed as text, as before.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from cdc.events import Column
from cdc.warehouse.statements import STAGING_META

_EXACT = {
    "smallint": "int2",
    "integer": "int4",
    "bigint": "int8",
    "real": "float4",
    "double precision": "float8",
    "boolean": "bool",
    "text": "text",
    "json": "text",  # json's binary form is its text
    "jsonb": "jsonb",
    "numeric": "numeric",
    "date": "date",
    "uuid": "uuid",
}
_PATTERNS = (
    (re.compile(r"(?:varchar|char)\(\d+\)"), "text"),
    (re.compile(r"numeric\(\d+,-?\d+\)"), "numeric"),
    (re.compile(r"timestamp(?:\(\d\))? without time zone"), "timestamp"),
    (re.compile(r"timestamp(?:\(\d\))? with time zone"), "timestamptz"),
)


def code_of(pg_type: str) -> str | None:
    """The extension's binary code for a column type (copy_binary), or None: sent as text."""
    code = _EXACT.get(pg_type)
    if code is not None:
        return code
    return next((code for pattern, code in _PATTERNS if pattern.fullmatch(pg_type)), None)


# The staging metadata's codes. Its unchanged-TOAST list (text[]) is NULL in every kept row: only
# that NULL is sent in binary, and a list makes the flush go as text. A table's own array columns
# have no code at all.
_META_CODES = tuple("null" if name == "_cdc_unchanged" else code_of(pg_type) for name, pg_type in STAGING_META)


def binary_codes(columns: Sequence[Column]) -> tuple[str, ...] | None:
    """One code per staging column (the table's, then STAGING_META), or None if one of the
    table's types has none."""
    return _codes(tuple(c.pg_type for c in columns))


@functools.lru_cache(maxsize=1024)
def _codes(pg_types: tuple[str, ...]) -> tuple[str, ...] | None:
    codes = [*map(code_of, pg_types), *_META_CODES]
    return None if None in codes else tuple(c for c in codes if c is not None)
