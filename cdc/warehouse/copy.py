"""Rows -> PostgreSQL COPY text format. Pure and on the hot path: every applied value passes here."""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

from cdc.decode.envelope import materialize
from cdc.decode.toast import PLACEHOLDER_LENGTHS as _PLACEHOLDER_LENGTHS
from cdc.decode.toast import is_unavailable
from cdc.events import ChangeEvent, Column, Op
from cdc.fastpath import load

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


def staging_line(event: ChangeEvent, columns: tuple[Column, ...]) -> str:
    """One staging row: the columns, then version, op, commit time and the unchanged-TOAST list."""
    return StagingWriter(columns).line(event)


def staging_text(events: list[ChangeEvent], columns: tuple[Column, ...]) -> tuple[str, list[tuple[ChangeEvent, str]]]:
    """The staging rows of the events, and the events that have a value their column's encoder
    cannot read (only a forged or corrupt message has one), each with the reason."""
    extension = load()
    if extension is not None:
        # A flush the fast path staged whole: its rows are joined without a Python call per event.
        text = extension.staged_text(events, columns)
        if text is not None:
            return text, []
    writer = StagingWriter(columns)
    line = writer.line
    try:
        return "".join([line(event) + "\n" for event in events]), []
    except Exception:  # any encoder failure: find the events, keep the others
        good: list[str] = []
        bad: list[tuple[ChangeEvent, str]] = []
        for event in events:
            try:
                good.append(line(event) + "\n")
            except Exception as exc:
                bad.append((event, writer.explain(event, exc)))
        return "".join(good), bad


class StagingWriter:
    """Staging rows for one column list, built once per flush and table: every value of a flush
    passes here, so the per-column decisions (encoder, TOAST check) are taken once, not per value.

    Of a delete only the key is written: with REPLICA IDENTITY DEFAULT, Debezium fills the other
    columns of the old image with type defaults ("" for a uuid, 0...), which are not the row's
    values and may not even be valid input for the column's type."""

    __slots__ = ("_columns", "_encoders", "_get", "_key", "_names", "_older", "_varlena")

    def __init__(self, columns: tuple[Column, ...]) -> None:
        self._columns = columns
        self._names = tuple(c.name for c in columns)
        # Debezium's images hold every column: one C call takes them all (KeyError: the slow way).
        self._get = itemgetter(*self._names) if len(self._names) > 1 else None
        self._encoders = tuple(c.encode for c in columns)
        self._varlena = tuple(i for i, c in enumerate(columns) if c.varlena)
        self._key: dict[tuple[str, ...], tuple[bool, ...]] = {}
        # Encoders for events of another schema than the batch's (written before a column changed
        # type, or before the connector's decimal mode did): each value is read as its own event
        # says, by column name. Keyed by id, the columns kept alive beside their encoders.
        self._older: dict[int, tuple[tuple[Column, ...], tuple[Callable[[Any], str], ...]]] = {}

    def _encoders_of(self, columns: tuple[Column, ...]) -> tuple[Callable[[Any], str], ...]:
        if columns is self._columns:
            return self._encoders
        known = self._older.get(id(columns))
        if known is None:
            own = {c.name: c.encode for c in columns}
            known = self._older[id(columns)] = (
                columns,
                tuple(own.get(name, encode) for name, encode in zip(self._names, self._encoders, strict=True)),
            )
        return known[1]

    def line(self, event: ChangeEvent) -> str:
        staged = event.staged
        if staged is not None:
            if event.schema.columns is self._columns:
                # The fast path wrote the columns for exactly these; the rest is written here, as
                # a flush may still raise the version (cdc/backfill/handover.py).
                version = event.version
                ts = event.commit_ts_ms
                tail = f"{version.commit_lsn}\t{version.lsn}\t{event.op.value}\t{NULL if ts is None else ts}\t{NULL}"
                return f"{staged}\t{tail}" if self._names else tail
            materialize(event)  # staged for another column list (schema drift): encode it here
        names = self._names
        if event.op is Op.DELETE:
            key = event.schema.key
            keep = self._key.get(key)
            if keep is None:
                keep = self._key[key] = tuple(n in key for n in names)
            before = event.before or {}
            values = [before.get(n) if k else None for n, k in zip(names, keep, strict=True)]
        else:
            after = event.after or {}
            try:
                values = list(self._get(after)) if self._get is not None else [after.get(n) for n in names]
            except KeyError:
                values = [after.get(n) for n in names]
        unchanged: list[str] | None = None
        for i in self._varlena:
            value = values[i]
            if (
                value is not None
                and (type(value) is not str or len(value) in _PLACEHOLDER_LENGTHS)
                and is_unavailable(value)
            ):
                values[i] = None
                if unchanged is None:
                    unchanged = []
                unchanged.append(names[i])
        encoders = self._encoders if event.schema.columns is self._columns else self._encoders_of(event.schema.columns)
        fields = [NULL if v is None else escape(encode(v)) for encode, v in zip(encoders, values, strict=True)]
        version = event.version
        ts = event.commit_ts_ms
        fields += (
            str(version.commit_lsn),
            str(version.lsn),
            event.op.value,
            NULL if ts is None else str(ts),
            NULL if unchanged is None else escape(text_array(unchanged)),
        )
        return "\t".join(fields)

    def explain(self, event: ChangeEvent, error: Exception) -> str:
        materialize(event)
        image = (event.before if event.op is Op.DELETE else event.after) or {}
        own = {c.name: c for c in event.schema.columns}
        for name, encode in zip(self._names, self._encoders_of(event.schema.columns), strict=True):
            column = own.get(name) or next(c for c in self._columns if c.name == name)
            value = image.get(name)
            try:
                if value is not None:
                    encode(value)
            except Exception as exc:
                return (
                    f"column {column.name!r} of {event.table}: the value {value!r:.200} is not a valid "
                    f"{column.pg_type} as Debezium encodes it ({type(exc).__name__}: {exc})"
                )
        return f"a row of {event.table} cannot be written ({type(error).__name__}: {error})"


def text_array(items: list[str]) -> str:
    """A PostgreSQL text[] literal with every element quoted."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"
