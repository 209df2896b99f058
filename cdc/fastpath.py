"""The compiled hot path (Rust, PyO3: rust/cdc_fastpath), and which columns it can write.

First slice of issue 11: `cdc_fastpath.staging_lines(prefix, columns, key, values)` turns whole
Debezium message values of one table (sharing one schema prefix) into the COPY text lines that
cdc.warehouse.copy.StagingWriter.line writes for the same messages, byte for byte, and returns
the indexes of the messages it leaves to the Python path (anything outside its subset: an op it
does not write, a malformed or unusual message, a value of another JSON type than its column's).
It releases the GIL while it works. `cdc sync` does not call it yet: compaction, leftovers merged
back in order and the Kafka side come next. The Python path stays the reference, and
tests/unit/test_fastpath.py holds the two byte-identical.

CDC_FASTPATH=off, or an extension that is not built (no Rust toolchain at install), means the
Python path only.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Protocol, cast

from cdc.decode import structured as s
from cdc.decode import temporal as t
from cdc.events import Column


class Extension(Protocol):
    def staging_lines(
        self, prefix: bytes, columns: list[tuple[str, str]], key: list[str], values: list[bytes], /
    ) -> tuple[str, list[int]]: ...


def load() -> Extension | None:
    """The extension, or None when CDC_FASTPATH=off or it is not built."""
    if os.environ.get("CDC_FASTPATH", "").lower() in ("off", "0", "false"):
        return None
    try:
        module: Any = importlib.import_module("cdc_fastpath")
    except ImportError:
        return None
    return cast(Extension, module)


_INTEGER_TYPES = frozenset({"smallint", "integer", "bigint", "oid"})
# Encoder -> kind, by identity: the extension reproduces exactly these functions.
_KINDS = {
    s.encode_float: "float",
    s.encode_bool: "bool",
    t.encode_micro_timestamp: "ts_us",
    t.encode_milli_timestamp: "ts_ms",
    t.encode_zoned_timestamp: "tstz",
    t.encode_date: "date",
    t.encode_micro_time: "time_us",
    t.encode_milli_time: "time_ms",
}


def kind_of(column: Column) -> str | None:
    """The extension's kind for a column, or None when it does not write that column's type."""
    encode = column.encode
    if encode is str:
        if column.pg_type in _INTEGER_TYPES:
            return "int"
        return "text" if column.varlena else "str"
    kind = _KINDS.get(encode)
    if kind == "bool" and column.varlena:
        return None
    return kind
