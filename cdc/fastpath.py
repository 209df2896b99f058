"""The compiled hot path (Rust, PyO3: rust/cdc_fastpath), and which columns it can write.

`decode_events` (what cdc sync calls, through cdc/decode/fast.py) decodes a run of one topic's
messages of one known table shape (with the GIL released) and keeps them (FastRun): their staging
columns, versions, ops and keys, no Python object each; `FastRows` compacts a table batch's kept
messages by key and writes their COPY text (cdc/buffer.py), and makes them ChangeEvents only when
a stage needs events; `staged_text` joins a flush of such events staged whole into COPY text;
`staging_lines` writes whole staging lines (what tests and benchmarks compare with the Python
path's StagingWriter, byte for byte). Both leave whatever is outside their subset to the
Python path, by index. The Python path stays the reference; docs/fastpath.md says what is where.

CDC_FASTPATH=off, or an extension that is not built (no Rust toolchain at install), means the
Python path only.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Protocol, cast

from cdc.decode import structured as s
from cdc.decode import temporal as t
from cdc.events import ChangeEvent, Column, TableId, TableSchema

Kinds = list[tuple[str, str, bool]]  # (column name, kind, varlena) per staging column


class FastRun(Protocol):
    """The messages of one run the extension decoded and keeps (no Python object per message)."""

    @property
    def table(self) -> TableId: ...
    @property
    def schema(self) -> TableSchema: ...
    def pick(self, taken: list[int], /) -> list[int]: ...
    def events(self, picked: list[int], /) -> list[ChangeEvent]: ...
    def __len__(self) -> int: ...


class FastRows(Protocol):
    """One table batch's kept messages, compacted by key in the extension (cdc/buffer.py)."""

    def add(self, run: FastRun, picked: list[int], /) -> tuple[int, int, list[int]]: ...
    def staging_text(self) -> str: ...
    def staging_bytes(self) -> bytes: ...
    def staging_binary(self, codes: tuple[str, ...], /) -> bytes | None: ...
    def newest(self) -> tuple[tuple[int, int], int | None] | None: ...
    def oldest(self) -> tuple[int, int] | None: ...
    def events(self) -> list[tuple[tuple[Any, ...], ChangeEvent, ChangeEvent | None]]: ...
    def __len__(self) -> int: ...


def new_rows() -> FastRows:
    """An empty FastRows (only called for a run the extension made, so it is loaded)."""
    return cast(FastRows, importlib.import_module("cdc_fastpath").FastRows())


class Extension(Protocol):
    def staging_lines(
        self, prefix: bytes, columns: Kinds, key: list[str], values: list[bytes], /
    ) -> tuple[str, list[int]]: ...

    def decode_events(  # noqa: PLR0917 - the extension's signature
        self,
        prefix: bytes,
        key_prefix: bytes,
        columns: Kinds,
        key: list[str],
        schema: str,
        table: str,
        records: list[Any],
        indexes: list[int],
        ready: list[Any],
        make: tuple[Any, ...],
        /,
    ) -> tuple[int, FastRun | None]: ...

    def staged_text(self, events: list[Any], columns: tuple[Column, ...], /) -> str | None: ...

    def copy_binary(self, codes: tuple[str, ...], text: str, /) -> bytes | None: ...


def load() -> Extension | None:
    """The extension, or None when CDC_FASTPATH=off or it is not built."""
    return chosen()[0]


def turned_off() -> bool:
    """CDC_FASTPATH=off (or 0, false): the Python path only, even with the extension built."""
    return os.environ.get("CDC_FASTPATH", "").lower() in ("off", "0", "false")


def chosen() -> tuple[Extension | None, str]:
    """The extension (None: the Python path), and a sentence saying which path runs and why."""
    if turned_off():
        return None, "decoding on the Python path (CDC_FASTPATH=off)"
    try:
        module: Any = importlib.import_module("cdc_fastpath")
    except ImportError:
        return None, (
            "decoding on the Python path: the compiled fast path is not built "
            "(make install builds it where cargo is present)"
        )
    return cast(Extension, module), (
        "decoding on the compiled fast path (cdc_fastpath; CDC_FASTPATH=off selects the Python path)"
    )


_MAX_DECIMAL_SCALE = 1000  # PostgreSQL's own limit; the extension refuses more
_INTEGER_TYPES = frozenset({"smallint", "integer", "bigint", "oid"})
# Encoder -> kind, by identity: the extension reproduces exactly these functions.
_KINDS = {
    s.encode_float: "float",
    s.encode_numeric_text: "numeric_text",
    s.encode_money_text: "money_text",
    s.encode_variable_scale_decimal: "variable_decimal",
    s.encode_bool: "bool",
    s.encode_single_bit: "bit1",
    s.encode_varying_bits: "varbits",
    s.encode_bytea: "bytea",
    s.encode_utf8_bytes: "utf8_bytes",
    s.encode_point: "point",
    s.encode_ewkb: "ewkb",
    s.encode_json_map: "json_map",
    t.encode_micro_timestamp: "ts_us",
    t.encode_milli_timestamp: "ts_ms",
    t.encode_nano_timestamp: "ts_ns",
    t.encode_zoned_timestamp: "tstz",
    t.encode_date: "date",
    t.encode_micro_time: "time_us",
    t.encode_milli_time: "time_ms",
    t.encode_nano_time: "time_ns",
    t.encode_micro_duration: "micro_duration",
    t.encode_nano_duration: "nano_duration",
}


def kind_of(column: Column) -> str | None:
    """The extension's kind for a column, or None when it does not write that column's type."""
    encode = column.encode
    if encode is str:
        if column.pg_type in _INTEGER_TYPES:
            return "int"
        return "text" if column.varlena else "str"
    if encode is s.encode_bool and column.varlena:
        return None
    return _encoder_kind(encode)


def _encoder_kind(encode: s.Encoder) -> str | None:
    kind = _KINDS.get(encode)
    if kind is not None:
        return kind
    if encode in t.INTERVAL_ENCODERS:
        return "interval"
    scale = s.DECIMAL_SCALES.get(encode)
    if scale is not None:
        return None if abs(scale) > _MAX_DECIMAL_SCALE else f"decimal:{scale}"
    length = s.BIT_LENGTHS.get(encode)
    return f"bits:{length}" if length is not None else _array_kind(encode)


def _array_kind(encode: s.Encoder) -> str | None:
    array = s.ARRAY_ELEMENTS.get(encode)
    if array is None:
        return None
    element, bare = array
    # str as the element: bare, the integers' str(x) (_integer); quoted, strings
    inner = ("int" if bare else "str") if element is str else _encoder_kind(element)
    if inner is None or inner.startswith("array:"):
        return None
    return f"array:{'bare' if bare else 'quoted'}:{inner}"


def kinds_of(columns: tuple[Column, ...]) -> Kinds | None:
    """The extension's column list for a table shape, or None when it cannot write one of them."""
    kinds: Kinds = []
    for column in columns:
        kind = kind_of(column)
        if kind is None:
            return None
        kinds.append((column.name, kind, column.varlena))
    return kinds
