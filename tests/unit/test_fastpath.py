"""The compiled staging kernel (rust/cdc_fastpath) against the Python path, byte for byte: every
recorded Debezium message, and the corners of each encoder it reproduces. A message the kernel
leaves to Python must be one it was not sure of; one Python refuses must never get a line.

In CI the extension must be built (make install builds it where cargo is present); elsewhere these
tests are skipped without it, and cdc runs on the Python path."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from cdc.decode.envelope import EnvelopeDecoder
from cdc.events import ChangeEvent, Column, Origin
from cdc.fastpath import Extension, kind_of
from cdc.warehouse.copy import StagingWriter

FIXTURES = Path(__file__).parent.parent / "fixtures"
Message = tuple[Origin, bytes | None, bytes | None]


def _recorded(path: Path) -> list[Message]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        key = None if m["key"] is None else m["key"].encode()
        value = None if m["value"] is None else m["value"].encode()
        found.append((Origin(m["topic"], m["partition"], m["offset"]), key, value))
    return found


def _compare(  # noqa: PLR0917 - one comparison's inputs
    fast: Extension,
    prefix: bytes,
    columns: tuple[Column, ...],
    key: tuple[str, ...],
    messages: list[Message],
    events: list[ChangeEvent | None],
) -> tuple[int, list[int]]:
    """Lines of the extension == the Python path's for every message it handled; None events
    (Python refuses them) are never handled. Returns (lines compared, indexes left to Python)."""
    kinds = [(c.name, kind_of(c) or "", c.varlena) for c in columns]
    text, left = fast.staging_lines(prefix, kinds, list(key), [m[2] or b"" for m in messages])
    writer = StagingWriter(columns)
    expected = [writer.line(e) + "\n" for i, e in enumerate(events) if i not in left and e is not None]
    refused = [i for i, e in enumerate(events) if e is None]
    assert set(refused) <= set(left), f"lines written for messages Python refuses: {sorted(set(refused) - set(left))}"
    got = [line + "\n" for line in text.split("\n")[:-1]]  # not splitlines(): U+2028 is data here
    assert got == expected
    return len(got), left


def _groups() -> Iterator[tuple[str, bytes, tuple[Column, ...], tuple[str, ...], list[Message], list[Any]]]:
    for path in sorted(FIXTURES.glob("debezium*/*.jsonl")):
        decoder = EnvelopeDecoder()
        groups: dict[tuple[Any, ...], list[tuple[Message, ChangeEvent]]] = defaultdict(list)
        for origin, key, value in _recorded(path):
            event = decoder.decode(origin, key, value)
            if event is not None and event.raw_prefix:
                groups[event.raw_prefix, event.table, event.schema.columns, event.schema.key].append(
                    ((origin, key, value), event)
                )
        for (prefix, table, columns, key), items in groups.items():
            yield f"{path.parent.name}/{table}", prefix, columns, key, [m for m, _ in items], [e for _, e in items]


def test_every_recorded_message_gets_the_python_paths_line(fast: Extension) -> None:
    compared = whole_tables = 0
    for _, prefix, columns, key, messages, events in _groups():
        supported = tuple(c for c in columns if kind_of(c) is not None)
        if len(supported) == len(columns):
            whole_tables += 1
        # StagingWriter takes any column list: project onto the columns the kernel writes.
        lines, left = _compare(fast, prefix, supported, key, messages, events)
        compared += lines
        assert all(events[i].op.value == "t" for i in left), [events[i].op for i in left]  # only truncates
    assert compared >= 30 and whole_tables >= 4, (compared, whole_tables)  # 33 and 4 when written


_EDGES: dict[str, list[Any]] = {
    "c_double": [
        0.0,
        -0.0,
        1.0,
        0.1,
        1e16,
        1000000000000000.0,
        123456789012345.6,
        0.0001,
        1e-05,
        1.5e-07,
        2.5e300,
        -1e22,
        5e-324,
        1.7976931348623157e308,
        12,
        -3,
        "NaN",
        "Infinity",
        "-Infinity",
        3.141592653589793,
    ],
    "c_real": [1.100000023841858, 3.4028234663852886e38, 1e-45, 0.5],
    "c_bigint": [0, -1, 9223372036854775807, -9223372036854775808],
    "c_smallint": [-32768, 32767],
    "c_bool": [True, False],
    "c_text": [
        "tab\there",
        "new\nline",
        "cr\rx",
        "back\\slash",
        "ünïcødé ✓ 🎉",
        "",
        "\x00nul",
        "__debezium_unavailable_value",
        "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==",
        "b68a35a7-17ad-35b3-af2a-ae46edb4545a",
        "\u2028sep",
        'quote"d',
        "\x7f\x01ctl",
        "'; DROP TABLE x; --",
    ],
    "c_varchar": ["__debezium_unavailable_value", "a\tb"],
    "c_uuid": ["__debezium_unavailable_value"],  # not varlena: never a placeholder
    "c_timestamp": [
        0,
        -1,
        1,
        86400000000 - 1,
        -86400000000,
        253402300799999999,
        253402300800000000,
        -62135596800000000,
        -62135596800000001,
        -210866803200000000,
        9223372036825200000,
        -9223372036832400000,
        9223372036825200001,
        1709205255123456,
    ],
    "c_timestamp_3": [0, -1, 1709205255123, 9223372036825200, -9223372036832400, -62135596800001],
    "c_timestamptz": [
        "2024-02-29T11:14:15.123456Z",
        "0000-01-01T00:00:00Z",
        "-4712-01-01T00:00:00Z",
        "+10000-01-01T00:00:00Z",
        "+0001-01-01T00:00:00Z",
        "-0001-12-31T23:59:59Z",
        "infinity",
        "-infinity",
        "garbage",
        "-x",
        "1\t2",
        "+",
        "-12",
        "00001-01-01T00:00:00Z",
    ],
    "c_date": [0, -1, 19782, -2147472692, -2147472691, -719528, -719529, -1000000, 2932896, 3000000],
    "c_time": [0, 1, 86_400_000_000, 3_600_000_000 * 25, 45_296_789_012, -1],
    "c_time_3": [0, 86_400_000, 45_296_789, -1],
    "c_timetz": ["07:44:15.5Z", "10:00:00Z"],
    "c_bytea": ["", "AA==", "AAH/", "/w==", "3q2+7w==", "AAH", "AAH/=", "AB==", "AA=A", " AA==", "AA\nAA==", "é", 5],
    "c_interval": [
        *("P0Y0M0DT0H0M0S", "P1Y2M3DT4H5M6.789S", "P-1Y-2M-3DT-4H-5M-6.789S", "P0Y0M0DT0H0M-0.5S"),
        *("P0Y0M0DT0H0M1.0000005S", "P0Y0M0DT0H0M1.00000049S", "P0Y0M0DT0H0M1.S", "P0Y0M0DT0H0M1.1234567891234S"),
        *("P178000000Y0M0DT0H0M0S", "P007Y0M0DT-0H0M0S", "P" + "9" * 31 + "Y0M0DT0H0M0S", "P1Y", "1 year", ""),
        *("P1Y2M3DT4H5M6.789Sx", "P\u0661Y0M0DT0H0M0S", "p1Y2M3DT4H5M6S", 7),
    ],
    "c_int_array": [[], [None], [1, -2, 2147483647], [1, "2"], "x", [[1]], [95, 95, 100, 101, 98]],
    "c_text_array": [["a", None, "", "NULL", '"', "\\", "\t\n", "{}", "ü"], [1], ["__debezium_unavailable_value"]],
    "c_numeric_array": [["1.5", "NAN", "-0.00", "1e5"], ["x"], [1.5]],
    "c_bit": ["", "AQ==", "/w8=", "AB==", True],
    "c_varbit": ["", "BQ==", "AACA", 5],
    "c_point": [{"x": 1.5, "y": -2}, {"x": "NaN", "y": 0}, {"x": None, "y": 1}, {"y": 1}, "x"],
}

_SOURCE_EDITS = [
    lambda s: s.update(sequence=None),
    lambda s: s.update(sequence='["000123","0"]'),
    lambda s: s.update(sequence='[null,"5"]'),
    lambda s: s.update(sequence="[1,2]"),
    lambda s: s.update(sequence='[ "1" , "2" ]'),
    lambda s: s.update(sequence='["1"]'),
    lambda s: (s.pop("sequence"), s.update(lsn=None)),
    lambda s: (s.pop("sequence"), s.update(lsn=1.5)),
    lambda s: (s.pop("sequence"), s.update(lsn=True)),
    lambda s: s.update(ts_ms=None),
    lambda s: s.pop("ts_ms"),
    lambda s: s.update(sequence='["99999999999999999999999","1"]'),
]


def test_the_corners_of_every_encoder_and_of_the_source_block_match_or_go_to_python(fast: Extension) -> None:
    path = FIXTURES / "debezium" / "fx.every_type.jsonl"
    decoder = EnvelopeDecoder()
    origin, key, value = _recorded(path)[0]
    first = decoder.decode(origin, key, value)
    assert first is not None and value is not None
    prefix = first.raw_prefix
    base = json.loads(value[len(prefix) : -1])
    variants: list[bytes] = []
    for column, values in _EDGES.items():
        for edge in values:
            payload = copy.deepcopy(base)
            payload["after"][column] = edge
            variants.append(orjson.dumps(payload))
    for edit in _SOURCE_EDITS:
        payload = copy.deepcopy(base)
        edit(payload["source"])
        variants.append(orjson.dumps(payload))
    for op in ("u", "r", "t", "x"):
        variants.append(orjson.dumps(base | {"op": op}))
    variants.append(orjson.dumps(base | {"op": "d", "before": base["after"], "after": None}))
    variants.append(orjson.dumps(base | {"after": None}))
    variants.append(orjson.dumps(base | {"after": {k: v for k, v in base["after"].items() if k != "c_text"}}))
    variants.append(orjson.dumps(base).replace(b'"op":"c"', b'"op":"\\u0063"'))  # an escaped op
    variants.append(orjson.dumps(base).replace(b'"c_double":', b'"c_double": ', 1))
    variants.append(orjson.dumps(base)[:-5])  # truncated JSON
    messages: list[Message] = [(origin, key, prefix + v + b"}") for v in variants]
    columns = tuple(c for c in first.schema.columns if kind_of(c) is not None)
    writer = StagingWriter(columns)
    events: list[ChangeEvent | None] = []
    for o, k, v in messages:
        try:
            event = decoder.decode(o, k, v)
            if event is not None:
                writer.line(event)  # a value its encoder refuses: Python would dead-letter it
            events.append(event)
        except Exception:
            events.append(None)
    lines, left = _compare(fast, prefix, columns, first.schema.key, messages, events)
    assert lines >= 145, (lines, left)  # the kernel handles nearly all of them, refusing only the odd ones
