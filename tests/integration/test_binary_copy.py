"""COPY in binary format (rust/cdc_fastpath/src/binary.rs) stores exactly what COPY text stores:
the same staging text, COPYed both ways into the real warehouse PostgreSQL, reads back the same,
row for row; what PostgreSQL refuses as text it refuses in binary too; and what the conversion
does not read exactly, it leaves to the text."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg2
import psycopg2.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.decode import structured as s
from cdc.decode import temporal as t
from cdc.fastpath import Extension
from cdc.settings import Settings
from cdc.warehouse.binary_copy import code_of
from cdc.warehouse.copy import escape

pytestmark = pytest.mark.stack

COLUMNS = (
    ("rn", "integer"),
    ("i2", "smallint"),
    ("i8", "bigint"),
    ("f4", "real"),
    ("f8", "double precision"),
    ("b", "boolean"),
    ("tx", "text"),
    ("vc", "varchar(12)"),
    ("ch", "char(3)"),
    ("js", "json"),
    ("jb", "jsonb"),
    ("n", "numeric"),
    ("n2", "numeric(12,2)"),
    ("d", "date"),
    ("ts", "timestamp without time zone"),
    ("ts3", "timestamp(3) without time zone"),
    ("tz", "timestamp with time zone"),
    ("tz0", "timestamp(0) with time zone"),
    ("u", "uuid"),
)
CODES = tuple(code_of(pg_type) or "" for _, pg_type in COLUMNS)
EPOCH = dt.datetime(1970, 1, 1)
FIRST_DAY, LAST_DAY = (dt.date(1, 1, 1) - EPOCH.date()).days, (dt.date(9999, 12, 31) - EPOCH.date()).days


@pytest.fixture(scope="module")
def conn(stack: Settings) -> Iterator[Any]:
    connection = psycopg2.connect(stack.require_warehouse_url())
    connection.autocommit = True
    with connection.cursor() as cur:
        cur.execute("SET TimeZone = 'America/New_York'")  # a zone-less text would be read in it: none is sent
        for name in ("as_text", "as_binary"):
            columns = ", ".join(f"{c} {pg_type}" for c, pg_type in COLUMNS)
            cur.execute(f"CREATE TEMP TABLE {name} ({columns})")
    yield connection
    connection.close()


def copy_both(conn: Any, text: str, data: bytes) -> tuple[list[str], list[str]]:
    with conn.cursor() as cur:
        cur.execute("TRUNCATE as_text, as_binary")
        cur.copy_expert("COPY as_text FROM STDIN", _Reader(text.encode()))
        cur.copy_expert("COPY as_binary FROM STDIN WITH (FORMAT binary)", _Reader(data))
        rows = []
        for name in ("as_text", "as_binary"):
            cur.execute(f"SELECT r::text FROM {name} r ORDER BY rn")
            rows.append([row[0] for row in cur.fetchall()])
    return rows[0], rows[1]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk = self._data[self._at : end]
        self._at += len(chunk)
        return chunk

    def readline(self, size: int = -1) -> bytes:  # pragma: no cover - psycopg2 uses read
        return self.read(size)


# -- values in the forms cdc's encoders write them ---------------------------------------------------
def nullable(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.just("\\N"), values, values, values)


def raw_texts(max_size: int | None = None) -> st.SearchStrategy[str]:
    return st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=max_size)


def texts(max_size: int | None = None) -> st.SearchStrategy[str]:
    """A text column's COPY field, as cdc.warehouse.copy.escape writes it."""
    return raw_texts(max_size).map(escape)


def cents(n: int) -> str:
    """Kafka Connect's Decimal (scale 2) of n hundredths, as the decoder's encoder writes it."""
    return s.decimal_encoder(2)(base64.b64encode(n.to_bytes(8, "big", signed=True)).decode())


def zoned(micros: int, digits: int) -> str:
    """Debezium's ZonedTimestamp text (UTC, 'Z'), with 0-6 fraction digits."""
    moment = EPOCH + dt.timedelta(microseconds=micros)
    fraction = f"{moment.microsecond:06d}"[:digits]
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + (f".{fraction}" if digits else "")
    return t.encode_zoned_timestamp(text + "Z")


SCALARS = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False)
JSON = st.recursive(
    SCALARS | raw_texts(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(raw_texts(8), inner, max_size=3),
    max_leaves=8,
)
MICROS = st.integers(FIRST_DAY * 86_400_000_000, (LAST_DAY + 1) * 86_400_000_000 - 1)
ROW = st.tuples(
    nullable(st.integers(-(2**15), 2**15 - 1).map(str)),
    nullable(st.integers(-(2**63), 2**63 - 1).map(str)),
    nullable(
        st.floats(width=32, allow_nan=False, allow_infinity=False).map(s.encode_float)
        | st.sampled_from(["NaN", "Infinity", "-Infinity", "-0.0"])
    ),
    nullable(st.floats(allow_nan=False, allow_infinity=False).map(s.encode_float) | st.just("NaN")),
    nullable(st.booleans().map(s.encode_bool)),
    nullable(texts()),
    nullable(texts(12)),
    nullable(texts(3)),
    nullable(JSON.map(lambda v: escape(orjson.dumps(v).decode()))),
    nullable(JSON.map(lambda v: escape(orjson.dumps(v).decode()))),
    nullable(st.decimals(-(10**30), 10**30, allow_nan=False, allow_infinity=False).map(lambda d: format(d, "f"))),
    nullable(st.integers(-(10**12) + 1, 10**12 - 1).map(cents)),
    nullable(st.integers(FIRST_DAY, LAST_DAY).map(t.encode_date)),
    nullable(MICROS.map(t.encode_micro_timestamp)),
    nullable(MICROS.map(t.encode_micro_timestamp)),
    nullable(st.builds(zoned, MICROS, st.integers(0, 6))),
    nullable(st.builds(zoned, MICROS, st.integers(0, 6))),
    nullable(st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=40))
def test_binary_copy_stores_what_text_copy_stores(fast: Extension, conn: Any, rows: list[tuple[str, ...]]) -> None:
    text = "".join("\t".join((str(rn), *row)) + "\n" for rn, row in enumerate(rows))
    data = fast.copy_binary(CODES, text)
    assert data is not None, text  # every value above is in a form the conversion reads
    as_text, as_binary = copy_both(conn, text, data)
    assert as_binary == as_text
    assert len(as_text) == len(rows)


def row_with(column: str, value: str, rn: int = 1) -> str:
    """A staging line of NULLs but for `rn` and one column."""
    fields = ["\\N"] * len(COLUMNS)
    fields[0] = str(rn)
    fields[[c for c, _ in COLUMNS].index(column)] = value
    return "\t".join(fields) + "\n"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("n", "1E+5"),  # an exponent: numeric_in's business
        ("n", "NaN"),
        ("n", "Infinity"),
        ("d", "0044-03-15 BC"),
        ("d", "infinity"),
        ("d", "12345-01-01"),
        ("ts", "2024-01-01 24:00:00.000000"),  # rolls over to the next day in PostgreSQL
        ("ts", "2024-01-01 00:00:00.1234567"),  # more digits than microseconds: PostgreSQL rounds
        ("ts", "0001-01-01 00:00:00.000000 BC"),
        ("tz", "2024-01-01T10:00:00+02:00"),  # another zone than UTC's Z
        ("tz", "2024-01-01 10:00:00Z"),
        ("f8", "inf"),
        ("f8", "1e400"),  # beyond a double: PostgreSQL refuses it, Rust's parse would give inf
        ("f4", "1e-50"),  # below a real: PostgreSQL refuses it, Rust's parse would give 0
        ("u", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"),
        ("tx", "a\\x41"),  # an escape cdc never writes
        ("b", "true"),
        ("i2", "+1"),
    ],
)
def test_a_form_the_conversion_does_not_read_exactly_is_left_to_the_text(
    fast: Extension, column: str, value: str
) -> None:
    assert fast.copy_binary(CODES, row_with(column, value)) is None


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("n2", "12345678901.5"),  # numeric field overflow: the column's typmod, applied in binary too
        ("vc", "thirteen chars"),  # too long for varchar(12)
        ("ch", "four"),
        ("jb", '{"a": '),  # jsonb receive parses its text as jsonb input does
        ("js", "not json"),
        ("i2", "40000"),  # refused by the conversion (smallint), and by PostgreSQL as text
    ],
)
def test_what_postgresql_refuses_as_text_it_refuses_in_binary(
    fast: Extension, conn: Any, column: str, value: str
) -> None:
    line = row_with(column, value)
    data = fast.copy_binary(CODES, line)
    with pytest.raises(psycopg2.errors.DataError), conn.cursor() as cur:
        cur.copy_expert("COPY as_text FROM STDIN", _Reader(line.encode()))
    if data is not None:
        with pytest.raises(psycopg2.errors.DataError), conn.cursor() as cur:
            cur.copy_expert("COPY as_binary FROM STDIN WITH (FORMAT binary)", _Reader(data))


def test_extreme_values_read_back_the_same(fast: Extension, conn: Any) -> None:
    values = {
        "i2": ["-32768", "32767"],
        "i8": ["-9223372036854775808", "9223372036854775807"],
        "f4": ["3.4028235e+38", "1e-45", "-0.0"],
        "f8": ["1.7976931348623157e+308", "5e-324", "2.2250738585072014e-308"],
        "n": ["0", "-0.000", "0.0001", "10000", "99999999999999999999999999.000000000000000001", "-1.5"],
        "n2": ["9999999999.99", "-0.01", "0.005", "1.999"],  # rounded to the scale both ways
        "d": ["0001-01-01", "9999-12-31", "2000-02-29", "1900-03-01"],
        "ts": ["0001-01-01 00:00:00.000000", "9999-12-31 23:59:59.999999", "1999-12-31 23:59:59.999999"],
        "ts3": ["2024-06-30 12:00:00.999500", "2024-06-30 12:00:00.000499"],
        "tz": ["1970-01-01T00:00:00Z", "2038-01-19T03:14:08.5Z", "0001-01-01T00:00:00.000001Z"],
        "tz0": ["2024-01-01T00:00:00.5Z", "2024-01-01T00:00:01.5Z"],
        "tx": ["", "\\\\N", "tab\\there", "\\r\\n", "é\u2028😀"],
        "vc": ["twelve chars", "trailing   "],
        "ch": ["a", "abc", "   "],
        "jb": ['{"b": 1, "a": [1, 2.50, "x"], "a": null}', '"\\\\u00e9"', "1e400"],
        "js": ['{"b": 1, "a": 2}', "  [1 , 2]  "],
        "u": ["A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "00000000-0000-0000-0000-000000000000"],
    }
    lines = []
    for column, texts_ in values.items():
        lines += [row_with(column, v, rn=len(lines) + i) for i, v in enumerate(texts_)]
    text = "".join(lines)
    data = fast.copy_binary(CODES, text)
    assert data is not None
    as_text, as_binary = copy_both(conn, text, data)
    assert as_binary == as_text
    assert len(as_text) == len(lines)
