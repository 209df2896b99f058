"""Rows -> PostgreSQL COPY text format. Pure and on the hot path: every applied value passes here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cdc.decode.toast import is_unavailable
from cdc.events import ChangeEvent, Column, Op

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


def image_of(event: ChangeEvent) -> dict[str, Any]:
    """The row image a change leaves: the new one, or for a delete the old one (its key)."""
    image = event.before if event.op is Op.DELETE else event.after
    return image or {}


def staging_line(event: ChangeEvent, columns: tuple[Column, ...]) -> str:
    """One staging row: the columns, then version, op, commit time and the unchanged-TOAST list.

    Of a delete only the key is written: with REPLICA IDENTITY DEFAULT, Debezium fills the other
    columns of the old image with type defaults ("" for a uuid, 0...), which are not the row's
    values and may not even be valid input for the column's type."""
    image = image_of(event)
    key = event.schema.key if event.op is Op.DELETE else None
    fields: list[str] = []
    unchanged: list[str] | None = None
    for column in columns:
        value = image.get(column.name) if key is None or column.name in key else None
        if value is None:
            fields.append(NULL)
        elif column.varlena and is_unavailable(value):
            fields.append(NULL)
            unchanged = unchanged or []
            unchanged.append(column.name)
        else:
            fields.append(escape(column.encode(value)))
    version = event.version
    fields.append(str(version.commit_lsn))
    fields.append(str(version.lsn))
    fields.append(event.op.value)
    fields.append(NULL if event.commit_ts_ms is None else str(event.commit_ts_ms))
    fields.append(NULL if unchanged is None else escape(text_array(unchanged)))
    return "\t".join(fields)


def staging_text(events: Iterable[ChangeEvent], columns: tuple[Column, ...]) -> str:
    return "".join(staging_line(event, columns) + "\n" for event in events)


def text_array(items: list[str]) -> str:
    """A PostgreSQL text[] literal with every element quoted."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"
