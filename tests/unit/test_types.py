"""cdc.decode.types: Debezium Connect field schema -> warehouse type + exact PostgreSQL input text.

Table-driven: one row per type and edge value. The recorded fixture rows of fx.every_type
(tests/fixtures/debezium, produced by capture_scenario.sql + capture_dml.sql) are checked column by
column against an expected table written from capture_dml.sql, and so are those of the same table
recorded with decimal.handling.mode=precise (tests/fixtures/debezium_precise: topics written before
the connector moved to string mode still hold such messages). tests/integration/test_type_fidelity.py
proves the texts load into PostgreSQL as exactly the source's values."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdc.decode.types import field_type
from cdc.errors import TerminalError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"
PRECISE_FIXTURES = FIXTURES.parent / "debezium_precise"  # recorded with decimal.handling.mode=precise


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unscaled(n: int) -> str:
    """A Connect Decimal value: base64 of the big-endian two's-complement unscaled integer."""
    return b64(n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True))


def field(
    kind: str,
    name: str | None = None,
    source: str | None = None,
    length: int | None = None,
    scale: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A field schema as Debezium writes it with column.propagate.source.type=.*"""
    params: dict[str, str] = {k: str(v) for k, v in extra.pop("parameters", {}).items()}
    if source is not None:
        params["__debezium.source.column.type"] = source
    if length is not None:
        params["__debezium.source.column.length"] = str(length)
    if scale is not None:
        params["__debezium.source.column.scale"] = str(scale)
    schema: dict[str, Any] = {"type": kind, "optional": True, "field": "col", **extra}
    if name is not None:
        schema["name"] = name
    if params:
        schema["parameters"] = params
    return schema


DECIMAL = "org.apache.kafka.connect.data.Decimal"
VSD = "io.debezium.data.VariableScaleDecimal"
T = "io.debezium.time."
D = "io.debezium.data."
MAX_INT = 2147483647
POINT_WKB = "AQEAAAAAAAAAAADwPwAAAAAAAABA"  # WKB of POINT(1 2), little-endian


def numeric(p: int, s: int) -> dict[str, Any]:
    return field("bytes", DECIMAL, "NUMERIC", p, s, parameters={"scale": s, "connect.decimal.precision": p})


def array(items: dict[str, Any], source: str, length: int = MAX_INT, scale: int = 0) -> dict[str, Any]:
    return field("array", None, source, length, scale, items={**items, "optional": True})


# (id, schema, JSON value, expected pg_type, expected text)
CASES: list[tuple[str, dict[str, Any], Any, str, str]] = [
    # integers
    ("int16", field("int16", None, "INT2", 5, 0), -32768, "smallint", "-32768"),
    ("int32", field("int32", None, "INT4", 10, 0), 2147483647, "integer", "2147483647"),
    ("int64", field("int64", None, "INT8", 19, 0), -9223372036854775808, "bigint", "-9223372036854775808"),
    ("int64 oid", field("int64", None, "OID", 10, 0), 4294967295, "oid", "4294967295"),
    ("int8 no source", field("int8"), 7, "smallint", "7"),
    ("int32 domain", field("int32", None, "POSITIVE_INT", 10, 0), 5, "integer", "5"),
    # floating point: repr is the shortest text that reads back as the same double
    ("real", field("float", None, "FLOAT4", 8, 8), 1.5, "real", "1.5"),
    ("real max", field("float", None, "FLOAT4", 8, 8), 3.4028235e38, "real", "3.4028235e+38"),
    ("real NaN", field("float", None, "FLOAT4", 8, 8), "NaN", "real", "NaN"),
    ("real +inf", field("float", None, "FLOAT4", 8, 8), "Infinity", "real", "Infinity"),
    ("double -inf", field("double", None, "FLOAT8", 17, 17), "-Infinity", "double precision", "-Infinity"),
    ("double", field("double", None, "FLOAT8", 17, 17), 0.1, "double precision", "0.1"),
    ("double tiny", field("double", None, "FLOAT8", 17, 17), 5e-324, "double precision", "5e-324"),
    ("double -0", field("double", None, "FLOAT8", 17, 17), -0.0, "double precision", "-0.0"),
    ("double max", field("double"), -1.7976931348623157e308, "double precision", "-1.7976931348623157e+308"),
    ("float64 name", field("float64"), 2.5, "double precision", "2.5"),
    # booleans and bit(1)
    ("bool true", field("boolean", None, "BOOL", 1, 0), True, "boolean", "t"),
    ("bool false", field("boolean", None, "BOOL", 1, 0), False, "boolean", "f"),
    ("bit(1) is a boolean", field("boolean", None, "BIT", 1, 0), True, "bit(1)", "1"),
    ("varbit(1) is a boolean", field("boolean", None, "VARBIT", 1, 0), False, "varbit(1)", "0"),
    # strings
    ("text", field("string", None, "TEXT", MAX_INT, 0), "a\tb\\c\nd", "text", "a\tb\\c\nd"),
    ("varchar(50)", field("string", None, "VARCHAR", 50, 0), "", "varchar(50)", ""),
    ("varchar", field("string", None, "VARCHAR", MAX_INT, 0), "x", "varchar", "x"),
    ("char(5)", field("string", None, "BPCHAR", 5, 0), "ab   ", "char(5)", "ab   "),
    ('"char"', field("string", None, "CHAR", 1, 0), "x", '"char"', "x"),
    ("name", field("string", None, "NAME", 64, 0), "pg_class", "name", "pg_class"),
    ("citext", field("string", None, "CITEXT", MAX_INT, 0), "AbC", "text", "AbC"),
    ("isbn", field("string", None, "ISBN", MAX_INT, 0), "978-0-393-04002-9", "text", "978-0-393-04002-9"),
    ("inet", field("string", None, "INET", MAX_INT, 0), "::1", "inet", "::1"),
    ("cidr", field("string", None, "CIDR", MAX_INT, 0), "10.0.0.0/8", "cidr", "10.0.0.0/8"),
    ("macaddr", field("string", None, "MACADDR"), "08:00:2b:01:02:03", "macaddr", "08:00:2b:01:02:03"),
    ("macaddr8", field("string", None, "MACADDR8"), "08:00:2b:01:02:03:04:05", "macaddr8", "08:00:2b:01:02:03:04:05"),
    ("int4range", field("string", None, "INT4RANGE"), "[1,10)", "int4range", "[1,10)"),
    ("int8range", field("string", None, "INT8RANGE"), "empty", "int8range", "empty"),
    ("numrange", field("string", None, "NUMRANGE"), "(1.5,2]", "numrange", "(1.5,2]"),
    ("daterange", field("string", None, "DATERANGE"), "[2024-01-01,)", "daterange", "[2024-01-01,)"),
    ("tsrange", field("string", None, "TSRANGE"), '["2024-01-01 00:00:00",)', "tsrange", '["2024-01-01 00:00:00",)'),
    (
        "tstzrange",
        field("string", None, "TSTZRANGE"),
        '["2024-01-01 00:00:00+00","2024-12-31 00:00:00+00")',
        "tstzrange",
        '["2024-01-01 00:00:00+00","2024-12-31 00:00:00+00")',
    ),
    ("text domain", field("string", None, "EMAIL", MAX_INT, 0), "a@b.c", "text", "a@b.c"),
    ("string no source", field("string"), "x", "text", "x"),
    # bytes
    ("bytea", field("bytes", None, "BYTEA", MAX_INT, 0), "AAH/", "bytea", "\\x0001ff"),
    ("bytea empty", field("bytes", None, "BYTEA", MAX_INT, 0), "", "bytea", "\\x"),
    ("bytes no source", field("bytes"), "////", "bytea", "\\xffffff"),
    ("unknown type: text bytes", field("bytes", None, "BOX"), b64(b"(1,2),(0,0)"), "box", "(1,2),(0,0)"),
    ("unknown tsquery", field("bytes", None, "TSQUERY"), b64(b"'a' & 'b'"), "tsquery", "'a' & 'b'"),
    ("unknown pg_lsn", field("bytes", None, "PG_LSN"), b64(b"0/16B3748"), "pg_lsn", "0/16B3748"),
    ("custom type stays bytes", field("bytes", None, "MY_COMPOSITE"), b64(b"(1,x)"), "bytea", "\\x28312c7829"),
    # Connect Decimal (precise): base64 big-endian two's complement, scale from the schema
    ("numeric(10,2)", numeric(10, 2), "EtaH", "numeric(10,2)", "12345.67"),
    ("numeric(10,2) small", numeric(10, 2), "AQ==", "numeric(10,2)", "0.01"),
    ("numeric(10,2) -small", numeric(10, 2), "/w==", "numeric(10,2)", "-0.01"),
    ("numeric(10,2) zero", numeric(10, 2), "AA==", "numeric(10,2)", "0.00"),
    ("numeric(10,2) empty bytes", numeric(10, 2), "", "numeric(10,2)", "0.00"),
    ("numeric(10,2) max", numeric(10, 2), unscaled(9999999999), "numeric(10,2)", "99999999.99"),
    ("numeric(10,2) min", numeric(10, 2), unscaled(-9999999999), "numeric(10,2)", "-99999999.99"),
    ("numeric(5,0)", numeric(5, 0), "/nlh", "numeric(5,0)", "-99999"),
    (
        "numeric(38,10)",
        numeric(38, 10),
        "tMSzV6V5O4X2dd3AAAAAAQ==",
        "numeric(38,10)",
        "-9999999999999999999999999999.9999999999",
    ),
    ("numeric(5,-2)", numeric(5, -2), unscaled(123), "numeric(5,-2)", "12300"),
    (
        "numeric(1000,999)",
        numeric(1000, 999),
        unscaled(-(10**998)),
        "numeric(1000,999)",
        "-0.1" + "0" * 998,
    ),
    (
        "decimal, domain",
        field("bytes", DECIMAL, "PRICE", 10, 2, parameters={"scale": 2, "connect.decimal.precision": 12}),
        unscaled(-5),
        "numeric(12,2)",
        "-0.05",
    ),
    ("decimal, nothing known", field("bytes", DECIMAL, parameters={"scale": 3}), unscaled(1234), "numeric", "1.234"),
    (
        "money",
        field("bytes", DECIMAL, "MONEY", MAX_INT, 0, parameters={"scale": 2}),
        "gAAAAAAAAAA=",
        "money",
        "-92233720368547758.08",
    ),
    ("money small", field("bytes", DECIMAL, "MONEY", MAX_INT, 0, parameters={"scale": 2}), "BNI=", "money", "12.34"),
    (
        "numeric(5,-2): scale 2046 is -2",  # PostgreSQL's 11-bit typmod scale, read unsigned by the JDBC driver
        numeric(5, 2046),
        unscaled(123 * 10**2048),
        "numeric(5,-2)",
        "12300." + "0" * 2046,
    ),
    # decimal.handling.mode=string: BigDecimal.toPlainString(), special values by their enum names
    ("numeric string", field("string", None, "NUMERIC", 131089, 0), "1.500", "numeric", "1.500"),
    ("numeric string NaN", field("string", None, "NUMERIC", 131089, 0), "NAN", "numeric", "NaN"),
    ("numeric string +inf", field("string", None, "NUMERIC", 131089, 0), "POSITIVE_INFINITY", "numeric", "Infinity"),
    ("numeric string -inf", field("string", None, "NUMERIC", 131089, 0), "NEGATIVE_INFINITY", "numeric", "-Infinity"),
    ("numeric string pg NaN", field("string", None, "NUMERIC", 131089, 0), "NaN", "numeric", "NaN"),
    ("numeric string pg -inf", field("string", None, "NUMERIC", 131089, 0), "-Infinity", "numeric", "-Infinity"),
    (
        "numeric string tiny",
        field("string", None, "NUMERIC", 131089, 0),
        "0.000000000000000000000000000001",
        "numeric",
        "0.000000000000000000000000000001",
    ),
    ("numeric string exponent", field("string", None, "NUMERIC", 131089, 0), "1E-7", "numeric", "1E-7"),
    ("numeric(10,2) string", field("string", None, "NUMERIC", 10, 2), "-0.00", "numeric(10,2)", "-0.00"),
    ("numeric(10,2) string NaN", field("string", None, "NUMERIC", 10, 2), "NAN", "numeric(10,2)", "NaN"),
    (
        "numeric(38,10) string",
        field("string", None, "NUMERIC", 38, 10),
        "-9999999999999999999999999999.9999999999",
        "numeric(38,10)",
        "-9999999999999999999999999999.9999999999",
    ),
    ("numeric(5,-2) string", field("string", None, "NUMERIC", 5, 2046), "12300", "numeric(5,-2)", "12300"),
    ("decimal string", field("string", None, "DECIMAL", 12, 3), "+1.5", "numeric(12,3)", "+1.5"),
    # domains over numeric in string mode: the domain's name, the base type's length and scale
    ("numeric(12,2) domain string", field("string", None, "PRICE", 12, 2), "NAN", "numeric(12,2)", "NaN"),
    ("numeric domain string", field("string", None, "AMOUNT", 131089, 0), "1.500", "numeric", "1.500"),
    ("numeric(5,-2) domain string", field("string", None, "HUNDREDS", 5, 2046), "12300", "numeric(5,-2)", "12300"),
    ("numeric(12,0) domain string is text", field("string", None, "CENTS", 12, 0), "42", "text", "42"),
    ("varchar(12) domain string", field("string", None, "CODE", 12, 0), "abc", "text", "abc"),
    (
        "money string",
        field("string", None, "MONEY", MAX_INT, 0),
        "-92233720368547758.08",
        "money",
        "-92233720368547758.08",
    ),
    # VariableScaleDecimal: unconstrained numeric
    (
        "numeric",
        field("struct", VSD, "NUMERIC", 131089, 0),
        {"scale": 20, "value": "EQfV61tbpNfG"},
        "numeric",
        "3.14159265358979323846",
    ),
    (
        "numeric int",
        field("struct", VSD, "NUMERIC", 131089, 0),
        {"scale": 0, "value": unscaled(-100)},
        "numeric",
        "-100",
    ),
    (
        "numeric -frac",
        field("struct", VSD, "NUMERIC", 131089, 0),
        {"scale": 3, "value": unscaled(-5)},
        "numeric",
        "-0.005",
    ),
    # dates: int32 days since 1970-01-01, proleptic Gregorian, Debezium's infinity stand-ins
    ("date", field("int32", T + "Date", "DATE", 13, 0), 19782, "date", "2024-02-29"),
    ("date epoch", field("int32", T + "Date", "DATE", 13, 0), 0, "date", "1970-01-01"),
    ("date -1", field("int32", T + "Date", "DATE", 13, 0), -1, "date", "1969-12-31"),
    ("date 0001-01-01", field("int32", T + "Date", "DATE", 13, 0), -719162, "date", "0001-01-01"),
    ("date 1 BC", field("int32", T + "Date", "DATE", 13, 0), -719163, "date", "0001-12-31 BC"),
    ("date 1 BC start", field("int32", T + "Date", "DATE", 13, 0), -719528, "date", "0001-01-01 BC"),
    ("date 4713 BC", field("int32", T + "Date", "DATE", 13, 0), -2440550, "date", "4713-01-01 BC"),
    ("date 10000", field("int32", T + "Date", "DATE", 13, 0), 2932897, "date", "10000-01-01"),
    ("date max", field("int32", T + "Date", "DATE", 13, 0), 2145042905, "date", "5874897-12-31"),
    ("date infinity", field("int32", T + "Date", "DATE", 13, 0), -2147472692, "date", "infinity"),
    ("date -infinity", field("int32", T + "Date", "DATE", 13, 0), -2147472691, "date", "-infinity"),
    ("connect Date", field("int32", "org.apache.kafka.connect.data.Date"), 19782, "date", "2024-02-29"),
    # time without time zone (adaptive: time(0..3) -> Time ms, time(4..6) -> MicroTime µs)
    (
        "time",
        field("int64", T + "MicroTime", "TIME", 15, 6),
        47655123456,
        "time(6) without time zone",
        "13:14:15.123456",
    ),
    ("time 0", field("int64", T + "MicroTime", "TIME", 15, 6), 0, "time(6) without time zone", "00:00:00.000000"),
    (
        "time 24:00",
        field("int64", T + "MicroTime", "TIME", 15, 6),
        86400000000,
        "time(6) without time zone",
        "24:00:00.000000",
    ),
    ("time(4)", field("int64", T + "MicroTime", "TIME", 13, 4), 1, "time(4) without time zone", "00:00:00.000001"),
    ("time(3)", field("int32", T + "Time", "TIME", 12, 3), 86399999, "time(3) without time zone", "23:59:59.999"),
    ("time(0)", field("int32", T + "Time", "TIME", 8, 0), 86400000, "time(0) without time zone", "24:00:00.000"),
    ("time nanos", field("int64", T + "NanoTime"), 47655123456000, "time(6) without time zone", "13:14:15.123456000"),
    # timestamp without time zone
    (
        "timestamp",
        field("int64", T + "MicroTimestamp", "TIMESTAMP", 29, 6),
        1709212455123456,
        "timestamp(6) without time zone",
        "2024-02-29 13:14:15.123456",
    ),
    (
        "timestamp 1900",
        field("int64", T + "MicroTimestamp", "TIMESTAMP", 29, 6),
        -2208988800000000,
        "timestamp(6) without time zone",
        "1900-01-01 00:00:00.000000",
    ),
    (
        "timestamp before epoch",
        field("int64", T + "MicroTimestamp", "TIMESTAMP", 29, 6),
        -1,
        "timestamp(6) without time zone",
        "1969-12-31 23:59:59.999999",
    ),
    (
        "timestamp 4713 BC",  # what Debezium's DateTimeFormat makes of '4713-01-01 00:00:00 BC'
        field("int64", T + "MicroTimestamp", "TIMESTAMP", 29, 6),
        -210863520000000000,
        "timestamp(6) without time zone",
        "4713-01-01 00:00:00.000000 BC",
    ),
    (
        "timestamp max",
        field("int64", T + "MicroTimestamp", "TIMESTAMP", 29, 6),
        9224318015999999999,
        "timestamp(6) without time zone",
        "294276-12-31 23:59:59.999999",
    ),
    (
        "timestamp infinity",
        field("int64", T + "MicroTimestamp", "TIMESTAMP", 29, 6),
        9223372036825200000,
        "timestamp(6) without time zone",
        "infinity",
    ),
    (
        "timestamp -infinity",
        field("int64", T + "MicroTimestamp", "TIMESTAMP", 29, 6),
        -9223372036832400000,
        "timestamp(6) without time zone",
        "-infinity",
    ),
    (
        "timestamp(3)",
        field("int64", T + "Timestamp", "TIMESTAMP", 26, 3),
        253402300799999,
        "timestamp(3) without time zone",
        "9999-12-31 23:59:59.999000",
    ),
    (
        "timestamp(3) infinity",
        field("int64", T + "Timestamp", "TIMESTAMP", 26, 3),
        9223372036825200,
        "timestamp(3) without time zone",
        "infinity",
    ),
    (
        "timestamp(0) -infinity",
        field("int64", T + "Timestamp", "TIMESTAMP", 19, 0),
        -9223372036832400,
        "timestamp(0) without time zone",
        "-infinity",
    ),
    (
        "timestamp nanos",
        field("int64", T + "NanoTimestamp"),
        1709212455123456789,
        "timestamp(6) without time zone",
        "2024-02-29 13:14:15.123456789",
    ),
    # timestamptz / timetz: ISO strings in UTC
    (
        "timestamptz",
        field("string", T + "ZonedTimestamp", "TIMESTAMPTZ", 35, 6),
        "2024-02-29T11:14:15.123456Z",
        "timestamp(6) with time zone",
        "2024-02-29T11:14:15.123456Z",
    ),
    (
        "timestamptz inf",
        field("string", T + "ZonedTimestamp", "TIMESTAMPTZ", 35, 6),
        "infinity",
        "timestamp(6) with time zone",
        "infinity",
    ),
    ("timestamptz -inf", field("string", T + "ZonedTimestamp"), "-infinity", "timestamp with time zone", "-infinity"),
    (
        "timestamptz 4713 BC",  # Java's ISO year -4712
        field("string", T + "ZonedTimestamp", "TIMESTAMPTZ", 35, 6),
        "-4712-01-01T00:00:00.000000Z",
        "timestamp(6) with time zone",
        "4713-01-01T00:00:00.000000Z BC",
    ),
    (
        "timestamptz 1 BC",  # Java's ISO year 0000
        field("string", T + "ZonedTimestamp", "TIMESTAMPTZ", 35, 6),
        "0000-01-01T00:00:00.000000Z",
        "timestamp(6) with time zone",
        "0001-01-01T00:00:00.000000Z BC",
    ),
    (
        "timestamptz 10000",  # Java's ISO year +10000
        field("string", T + "ZonedTimestamp", "TIMESTAMPTZ", 35, 6),
        "+10000-01-01T00:00:00.000000Z",
        "timestamp(6) with time zone",
        "10000-01-01T00:00:00.000000Z",
    ),
    (
        "timetz",
        field("string", T + "ZonedTime", "TIMETZ", 21, 6),
        "07:44:15.5Z",
        "time(6) with time zone",
        "07:44:15.5Z",
    ),
    # intervals: Debezium's ISO form -> PostgreSQL's own syntax, integer microseconds, every part signed
    (
        "interval",
        field("string", T + "Interval", "INTERVAL", 49, 6),
        "P1Y2M3DT4H5M6.789S",
        "interval",
        "+1 years +2 mons +3 days +14706789000 microseconds",
    ),
    (
        "interval negative parts",
        field("string", T + "Interval", "INTERVAL", 49, 6),
        "P-178000000Y0M-1DT0H0M-0.000001S",
        "interval",
        "-178000000 years +0 mons -1 days -1 microseconds",
    ),
    (
        "interval mixed signs",
        field("string", T + "Interval", "INTERVAL", 49, 6),
        "P0Y0M1DT0H0M-0.3S",
        "interval",
        "+0 years +0 mons +1 days -300000 microseconds",
    ),
    (
        "interval double artefact",  # '00:00:01.003691' arrives as 1.003690999 (Java double, 9 digits DOWN)
        field("string", T + "Interval", "INTERVAL", 49, 6),
        "P0Y0M0DT0H0M1.003690999S",
        "interval",
        "+0 years +0 mons +0 days +1003691 microseconds",
    ),
    (
        "interval big hours",
        field("string", T + "Interval", "INTERVAL", 49, 6),
        "P0Y0M0DT-2147483647H-59M-59.999999S",
        "interval",
        "+0 years +0 mons +0 days -7730941132799999999 microseconds",
    ),
    (
        "interval zero",
        field("string", T + "Interval"),
        "P0Y0M0DT0H0M0S",
        "interval",
        "+0 years +0 mons +0 days +0 microseconds",
    ),
    (
        "interval(3)",
        field("string", T + "Interval", "INTERVAL", 49, 3),
        "P0Y0M0DT0H0M1.5S",
        "interval(3)",
        "+0 years +0 mons +0 days +1500000 microseconds",
    ),
    ("micro duration", field("int64", T + "MicroDuration"), -1500000, "interval", "-1500000 microseconds"),
    ("nano duration", field("int64", T + "NanoDuration"), -1500, "interval", "-1.500 microseconds"),
    # json, xml, uuid, enums, extension types
    ("json", field("string", D + "Json", "JSON"), '{"b": 1, "a": [1, 2.50]}', "json", '{"b": 1, "a": [1, 2.50]}'),
    ("jsonb", field("string", D + "Json", "JSONB"), '{"a": null}', "jsonb", '{"a": null}'),
    ("hstore as json", field("string", D + "Json", "HSTORE"), '{"a":"1","b":null}', "jsonb", '{"a":"1","b":null}'),
    (
        "hstore as map",
        field("map", None, "HSTORE", keys={"type": "string"}),
        {"a": "1", "b": None},
        "jsonb",
        '{"a":"1","b":null}',
    ),
    ("xml", field("string", D + "Xml", "XML"), '<root a="1">text</root>', "xml", '<root a="1">text</root>'),
    (
        "uuid",
        field("string", D + "Uuid", "UUID"),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "uuid",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    ),
    ("enum", field("string", D + "Enum", "MOOD", parameters={"allowed": "sad,ok,happy"}), "happy", "text", "happy"),
    ("enum set", field("string", D + "EnumSet", parameters={"allowed": "a,b"}), "a,b", "text", "a,b"),
    ("ltree", field("string", D + "Ltree", "LTREE"), "Top.Science", "text", "Top.Science"),
    ("tsvector", field("string", D + "Tsvector", "TSVECTOR"), "'a':1 'b':2", "tsvector", "'a':1 'b':2"),
    # bit strings: little-endian java.util.BitSet bytes, trailing zero bytes dropped
    ("bit(8)", field("bytes", D + "Bits", "BIT", 8, 0, parameters={"length": 8}), "qg==", "bit(8)", "10101010"),
    ("bit(8) zero", field("bytes", D + "Bits", "BIT", 8, 0, parameters={"length": 8}), "", "bit(8)", "00000000"),
    ("bit(8) one", field("bytes", D + "Bits", "BIT", 8, 0, parameters={"length": 8}), "AQ==", "bit(8)", "00000001"),
    (
        "bit(16)",
        field("bytes", D + "Bits", "BIT", 16, 0, parameters={"length": 16}),
        "AQI=",
        "bit(16)",
        "0000001000000001",
    ),
    ("varbit(16)", field("bytes", D + "Bits", "VARBIT", 16, 0, parameters={"length": 16}), "BQ==", "varbit(16)", "101"),
    ("varbit(16) empty", field("bytes", D + "Bits", "VARBIT", 16, 0, parameters={"length": 16}), "", "varbit(16)", ""),
    (
        "varbit",
        field("bytes", D + "Bits", "VARBIT", MAX_INT, 0, parameters={"length": MAX_INT}),
        "Bg==",
        "varbit",
        "110",
    ),
    # geometry
    (
        "point",
        field("struct", D + "geometry.Point", "POINT"),
        {"x": 1.5, "y": -2.25, "wkb": "AQEAAAAAAAAAAAD4PwAAAAAAAALA", "srid": None},
        "point",
        "(1.5,-2.25)",
    ),
    (
        "point nan",
        field("struct", D + "geometry.Point", "POINT"),
        {"x": "NaN", "y": "-Infinity"},
        "point",
        "(NaN,-Infinity)",
    ),
    (
        "geometry with srid -> EWKB",
        field("struct", D + "geometry.Geometry", "GEOMETRY"),
        {"wkb": POINT_WKB, "srid": 4326},
        "bytea",
        "\\x0101000020e6100000000000000000f03f0000000000000040",
    ),
    (
        "geography without srid -> WKB",
        field("struct", D + "geometry.Geography", "GEOGRAPHY"),
        {"wkb": POINT_WKB, "srid": None},
        "bytea",
        "\\x0101000000000000000000f03f0000000000000040",
    ),
    (
        "pgvector",
        field("array", D + "DoubleVector", "VECTOR", items={"type": "double"}),
        [1.0, 2.5],
        "double precision[]",
        "{1.0,2.5}",
    ),
    ("halfvec", field("array", D + "FloatVector", "HALFVEC", items={"type": "float"}), [0.5], "real[]", "{0.5}"),
    # arrays: element types from the items schema, element source type from "_TYPE"
    ("int[]", array({"type": "int32"}, "_INT4", 10), [1, None, 3], "integer[]", "{1,NULL,3}"),
    ("int[] empty", array({"type": "int32"}, "_INT4", 10), [], "integer[]", "{}"),
    ("bigint[]", array({"type": "int64"}, "_INT8", 19), [-9223372036854775808], "bigint[]", "{-9223372036854775808}"),
    ("smallint[]", array({"type": "int16"}, "_INT2", 5), [None], "smallint[]", "{NULL}"),
    (
        "text[]",
        array({"type": "string"}, "_TEXT"),
        ["", "NULL", "a,b", 'quote"d', "back\\slash", " sp ", "{}", "é 😀 中文", None],
        "text[]",
        '{"","NULL","a,b","quote\\"d","back\\\\slash"," sp ","{}","é 😀 中文",NULL}',
    ),
    ("varchar(50)[]", array({"type": "string"}, "_VARCHAR", 50), ["x"], "varchar(50)[]", '{"x"}'),
    ("char(2)[]", array({"type": "string"}, "_BPCHAR", 2), ["a "], "char(2)[]", '{"a "}'),
    ("bool[]", array({"type": "boolean"}, "_BOOL", 1), [True, False, None], "boolean[]", "{t,f,NULL}"),
    ("real[]", array({"type": "float"}, "_FLOAT4", 8, 8), [1.5, "NaN", "-Infinity"], "real[]", "{1.5,NaN,-Infinity}"),
    ("float8[]", array({"type": "double"}, "_FLOAT8", 17, 17), [0.1, None], "double precision[]", "{0.1,NULL}"),
    (
        "numeric(10,2)[]",
        array(
            {"type": "bytes", "name": DECIMAL, "parameters": {"scale": "2", "connect.decimal.precision": "10"}},
            "_NUMERIC",
            10,
            2,
        ),
        ["EtaH", None, "/w=="],
        "numeric(10,2)[]",
        "{12345.67,NULL,-0.01}",
    ),
    (
        "numeric[]",
        array({"type": "struct", "name": VSD}, "_NUMERIC", 131089, 0),
        [{"scale": 1, "value": unscaled(15)}, None],
        "numeric[]",
        "{1.5,NULL}",
    ),
    (
        "numeric[] string",
        array({"type": "string"}, "_NUMERIC", 131089, 0),
        ["NAN", "1.50", None, "POSITIVE_INFINITY", "NEGATIVE_INFINITY"],
        "numeric[]",
        "{NaN,1.50,NULL,Infinity,-Infinity}",
    ),
    ("numeric(10,2)[] string", array({"type": "string"}, "_NUMERIC", 10, 2), ["0.01"], "numeric(10,2)[]", "{0.01}"),
    (
        "date[]",
        array({"type": "int32", "name": T + "Date"}, "_DATE", 13),
        [19782, -2440550, -2147472692],
        "date[]",
        '{"2024-02-29","4713-01-01 BC","infinity"}',
    ),
    (
        "timestamp[]",
        array({"type": "int64", "name": T + "MicroTimestamp"}, "_TIMESTAMP", 29, 6),
        [1709212455123456],
        "timestamp(6) without time zone[]",
        '{"2024-02-29 13:14:15.123456"}',
    ),
    (
        "timestamptz[]",
        array({"type": "string", "name": T + "ZonedTimestamp"}, "_TIMESTAMPTZ", 35, 6),
        ["2024-02-29T11:14:15.123456Z", "-infinity"],
        "timestamp(6) with time zone[]",
        '{"2024-02-29T11:14:15.123456Z","-infinity"}',
    ),
    (
        "time[]",
        array({"type": "int64", "name": T + "MicroTime"}, "_TIME", 15, 6),
        [0],
        "time(6) without time zone[]",
        '{"00:00:00.000000"}',
    ),
    (
        "timetz[]",
        array({"type": "string", "name": T + "ZonedTime"}, "_TIMETZ", 21, 6),
        ["10:00:00Z"],
        "time(6) with time zone[]",
        '{"10:00:00Z"}',
    ),
    (
        "uuid[]",
        array({"type": "string", "name": D + "Uuid"}, "_UUID"),
        ["00000000-0000-0000-0000-000000000000"],
        "uuid[]",
        '{"00000000-0000-0000-0000-000000000000"}',
    ),
    (
        "jsonb[]",
        array({"type": "string", "name": D + "Json"}, "_JSONB"),
        ['{"a": "x,\\"y"}'],
        "jsonb[]",
        '{"{\\"a\\": \\"x,\\\\\\"y\\"}"}',
    ),
    ("bytea[]", array({"type": "bytes"}, "_BYTEA"), ["AAH/", None], "bytea[]", '{"\\\\x0001ff",NULL}'),
    ("inet[]", array({"type": "string"}, "_INET"), ["::1", "10.0.0.1/8"], "inet[]", '{"::1","10.0.0.1/8"}'),
    ("int4range[]", array({"type": "string"}, "_INT4RANGE"), ["[1,10)", "empty"], "int4range[]", '{"[1,10)","empty"}'),
    (
        "enum[]",
        array({"type": "string", "name": D + "Enum", "parameters": {"allowed": "a,b"}}, "_MOOD"),
        ["a", None],
        "text[]",
        '{"a",NULL}',
    ),
    ("ltree[]", array({"type": "string", "name": D + "Ltree"}, "_LTREE"), ["A.B"], "text[]", '{"A.B"}'),
    ("array, no source", field("array", items={"type": "string", "optional": True}), ["x"], "text[]", '{"x"}'),
]


@pytest.mark.parametrize(("schema", "value", "pg_type", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_encodes_exactly(schema: dict[str, Any], value: Any, pg_type: str, text: str) -> None:
    mapped = field_type(schema)
    assert mapped.pg_type == pg_type
    assert mapped.encode(value) == text


def test_case_ids_are_unique() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_encoders_are_repeatable() -> None:
    """Day and interval texts are cached: a second call (cache hit) gives the same text."""
    for _, schema, value, _, text in CASES:
        encode = field_type(schema).encode
        assert encode(value) == text
        assert encode(value) == text


def test_a_timestamp_on_the_infinity_day_is_not_cached_as_infinity() -> None:
    encode = field_type(field("int64", T + "MicroTimestamp", "TIMESTAMP", 29, 6)).encode
    assert encode(9223372036825200000 + 1) == "294247-01-10 04:00:25.200001"
    assert encode(9223372036825200000) == "infinity"
    assert encode(9223372036825200000 - 1) == "294247-01-10 04:00:25.199999"


VARLENA = [
    (field("int32", None, "INT4"), False),
    (field("string", None, "TEXT"), True),
    (field("string", None, "VARCHAR", 50), True),
    (field("string", None, "BPCHAR", 5), True),
    (field("bytes", None, "BYTEA"), True),
    (numeric(10, 2), True),
    (field("struct", VSD, "NUMERIC", 131089, 0), True),
    (field("string", D + "Json", "JSONB"), True),
    (field("string", D + "Json", "HSTORE"), True),
    (field("string", D + "Xml", "XML"), True),
    (array({"type": "int32"}, "_INT4"), True),
    (field("string", None, "INT4RANGE"), True),
    (field("string", D + "Uuid", "UUID"), False),
    (field("string", D + "Enum", "MOOD"), False),
    (field("int64", T + "MicroTimestamp", "TIMESTAMP", 29, 6), False),
    (field("string", T + "Interval", "INTERVAL"), False),
    (field("struct", D + "geometry.Point", "POINT"), False),
    (field("bytes", DECIMAL, "MONEY", parameters={"scale": 2}), False),
    (field("bytes", D + "Bits", "VARBIT", 16, parameters={"length": 16}), True),
]


@pytest.mark.parametrize(("schema", "varlena"), VARLENA, ids=[str(s.get("parameters")) for s, _ in VARLENA])
def test_varlena(schema: dict[str, Any], varlena: bool) -> None:
    assert field_type(schema).varlena is varlena


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        (
            {"type": "string", "name": "io.debezium.data.SomethingNew", "field": "c_new"},
            "io.debezium.data.SomethingNew",
        ),
        ({"type": "struct", "fields": [], "field": "c_struct"}, "struct"),
        ({"type": "struct", "name": "io.debezium.data.SparseDoubleVector", "field": "c_sparse"}, "SparseDoubleVector"),
        ({"type": "int32", "name": "io.debezium.time.Year", "field": "c_year"}, "io.debezium.time.Year"),
        (
            {
                "type": "array",
                "items": {"type": "array", "name": D + "DoubleVector", "items": {"type": "double"}},
                "field": "c_vecs",
            },
            "array of arrays",
        ),
    ],
)
def test_unknown_schema_is_a_terminal_error_naming_the_field(schema: dict[str, Any], named: str) -> None:
    with pytest.raises(TerminalError) as raised:
        field_type(schema)
    assert repr(schema["field"]) in raised.value.problem
    assert named in raised.value.problem
    assert raised.value.fix


NOT_NUMBERS = ["", " 1", "1 ", "1\n", "1;select 1", "-", ".", "1e", "1e12345", "\u0661", "nan", "inf", "0x1F", "1_000"]


@pytest.mark.parametrize("text", [*NOT_NUMBERS, "NaN\t"], ids=repr)
@pytest.mark.parametrize("source", ["NUMERIC", "MONEY"])
def test_a_string_that_is_not_a_number_is_refused(source: str, text: str) -> None:
    """The text goes into COPY as it is: anything but a number literal raises, and the message
    becomes a dead letter."""
    encode = field_type(field("string", None, source, 10, 2)).encode
    with pytest.raises(ValueError, match="is not a"):
        encode(text)


@pytest.mark.parametrize("value", [None, 1.5, 2, ["1"], {"scale": 0, "value": "AQ=="}])
def test_a_string_numeric_that_is_not_a_string_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="is not a numeric"):
        field_type(field("string", None, "NUMERIC", 131089, 0)).encode(value)


@pytest.mark.parametrize("special", ["NAN", "POSITIVE_INFINITY", "NEGATIVE_INFINITY", "NaN", "Infinity"])
def test_money_has_no_special_values(special: str) -> None:
    with pytest.raises(ValueError, match="is not a money amount"):
        field_type(field("string", None, "MONEY", MAX_INT, 0)).encode(special)


def test_interval_not_in_debeziums_form_is_a_terminal_error() -> None:
    encode = field_type(field("string", T + "Interval", "INTERVAL", field="c_iv")).encode
    with pytest.raises(TerminalError, match="'c_iv': interval value '1 day'"):
        encode("1 day")


# --- the recorded fixture: every column of fx.every_type --------------------------------------------

EVERY_TYPE_COLUMNS: dict[str, tuple[str, bool]] = {  # column -> (pg_type, varlena)
    "id": ("integer", False),
    "c_smallint": ("smallint", False),
    "c_integer": ("integer", False),
    "c_bigint": ("bigint", False),
    "c_numeric": ("numeric", True),
    "c_numeric_10_2": ("numeric(10,2)", True),
    "c_numeric_38_10": ("numeric(38,10)", True),
    "c_numeric_5_0": ("numeric(5,0)", True),
    "c_real": ("real", False),
    "c_double": ("double precision", False),
    "c_money": ("money", False),
    "c_bool": ("boolean", False),
    "c_text": ("text", True),
    "c_varchar": ("varchar(50)", True),
    "c_char": ("char(5)", True),
    "c_date": ("date", False),
    "c_time": ("time(6) without time zone", False),
    "c_time_3": ("time(3) without time zone", False),
    "c_timetz": ("time(6) with time zone", False),
    "c_timestamp": ("timestamp(6) without time zone", False),
    "c_timestamp_3": ("timestamp(3) without time zone", False),
    "c_timestamptz": ("timestamp(6) with time zone", False),
    "c_interval": ("interval", False),
    "c_uuid": ("uuid", False),
    "c_json": ("json", True),
    "c_jsonb": ("jsonb", True),
    "c_xml": ("xml", True),
    "c_int_array": ("integer[]", True),
    "c_text_array": ("text[]", True),
    "c_enum": ("text", False),
    "c_bytea": ("bytea", True),
    "c_bit": ("bit(8)", True),
    "c_varbit": ("varbit(16)", True),
    "c_inet": ("inet", True),
    "c_cidr": ("cidr", True),
    "c_macaddr": ("macaddr", False),
    "c_point": ("point", False),
    "c_hstore": ("jsonb", True),
    "c_int4range": ("int4range", True),
    "c_tstzrange": ("tstzrange", True),
    "c_numeric_array": ("numeric[]", True),
}
# recorded before the column was added to the scenario
PRECISE_COLUMNS = {name: mapped for name, mapped in EVERY_TYPE_COLUMNS.items() if name != "c_numeric_array"}

ROW_1 = {  # INSERT ... VALUES (1, ...) of capture_dml.sql (session time zone UTC)
    "id": "1",
    "c_smallint": "12",
    "c_integer": "123456",
    "c_bigint": "1234567890123",
    "c_numeric": "3.14159265358979323846",
    "c_numeric_10_2": "12345.67",
    "c_numeric_38_10": "1.0000000001",
    "c_numeric_5_0": "42",
    "c_real": "1.5",
    "c_double": "2.718281828459045",
    "c_money": "12.34",
    "c_bool": "t",
    "c_text": "plain text",
    "c_varchar": "varchar",
    "c_char": "ab   ",
    "c_date": "2024-02-29",
    "c_time": "13:14:15.123456",
    "c_time_3": "13:14:15.123",
    "c_timetz": "07:44:15.5Z",  # '13:14:15.5+05:30', moved to UTC by Debezium
    "c_timestamp": "2024-02-29 13:14:15.123456",
    "c_timestamp_3": "2024-02-29 13:14:15.123000",
    "c_timestamptz": "2024-02-29T11:14:15.123456Z",
    "c_interval": "+1 years +2 mons +3 days +14706789000 microseconds",
    "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "c_json": '{"a": [1, 2.5, null], "b": "x"}',
    "c_jsonb": '{"n": 1.25, "nested": {"k": [true, false]}}',
    "c_xml": '<root a="1">text</root>',
    "c_int_array": "{1,2,3}",
    "c_text_array": '{"a","b"}',
    "c_enum": "happy",
    "c_bytea": "\\x0001ff",
    "c_bit": "10101010",
    "c_varbit": "101",
    "c_inet": "192.168.0.1/24",
    "c_cidr": "10.0.0.0/8",
    "c_macaddr": "08:00:2b:01:02:03",
    "c_point": "(1.5,-2.25)",
    "c_hstore": '{"a":"1","b":null}',
    "c_int4range": "[1,10)",
    "c_tstzrange": '["2024-01-01 00:00:00+00","2024-12-31 00:00:00+00")',
}

BIG_JSONB = (
    "{"
    + ", ".join(f'"{k}": "{"v" * 50}"' for k in sorted((f"k{g}" for g in range(1, 2001)), key=lambda k: (len(k), k)))
    + "}"
)

# tests/fixtures/debezium_precise (decimal.handling.mode=precise, the connector's setting until
# numeric NaN/Infinity had to arrive): Kafka offset -> the encoded `after` row (columns not listed are NULL)
PRECISE_EXPECTED_ROWS: dict[int, dict[str, str]] = {
    0: ROW_1,
    1: {
        "id": "2",
        "c_smallint": "-32768",
        "c_integer": "2147483647",
        "c_bigint": "-9223372036854775808",
        # the source's trailing zero (…567890) is gone: Debezium strips VariableScaleDecimal's zeros
        "c_numeric": "123456789012345678901234567890.12345678901234567890123456789",
        "c_numeric_10_2": "99999999.99",
        "c_numeric_38_10": "-9999999999999999999999999999.9999999999",
        "c_numeric_5_0": "-99999",
        "c_real": "3.4028235e+38",
        "c_double": "-1.7976931348623157e+308",
        "c_money": "-92233720368547758.08",
        "c_bool": "f",
        "c_text": "",
        "c_varchar": "",
        "c_char": "     ",
        "c_date": "0001-01-01",
        "c_time": "00:00:00.000000",
        "c_time_3": "23:59:59.999",
        "c_timetz": "10:59:59.999999Z",  # '23:59:59.999999-11:00'
        "c_timestamp": "1900-01-01 00:00:00.000000",
        "c_timestamp_3": "9999-12-31 23:59:59.999000",
        "c_timestamptz": "1960-06-15T16:00:00.000000Z",  # '1960-06-15 12:00:00 America/New_York'
        "c_interval": "-178000000 years +0 mons -1 days -1 microseconds",
        "c_uuid": "00000000-0000-0000-0000-000000000000",
        "c_json": "[]",
        "c_jsonb": "{}",
        "c_xml": "<e/>",
        "c_int_array": "{}",
        "c_text_array": '{"","NULL","a,b","quote\\"d","é 😀 中文"}',
        "c_enum": "sad",
        "c_bytea": "\\x",
        "c_bit": "00000000",  # arrived as an empty byte string
        "c_varbit": "",
        "c_inet": "::1",  # '::1/128'
        "c_cidr": "2001:db8::/32",
        "c_macaddr": "ff:ff:ff:ff:ff:ff",
        "c_point": "(0.0,0.0)",
        "c_hstore": "{}",
        "c_int4range": "empty",
        "c_tstzrange": "empty",
    },
    2: {"id": "3", "c_int_array": "{1,NULL,3}", "c_text_array": '{NULL,"x"}'},
    3: {  # 'NaN' numeric arrives as NULL (Debezium precise mode)
        "id": "4",
        "c_real": "NaN",
        "c_double": "NaN",
        "c_date": "infinity",
        "c_timestamp": "infinity",
        "c_timestamptz": "-infinity",
    },
    4: {  # 'Infinity' numeric arrives as NULL
        "id": "5",
        "c_real": "Infinity",
        "c_double": "-Infinity",
        "c_date": "-infinity",
        "c_timestamp": "-infinity",
        "c_timestamptz": "infinity",
    },
    5: {
        "id": "6",
        "c_time": "24:00:00.000000",
        "c_timetz": "10:00:00Z",  # '00:00:00+14'
        "c_date": "4713-01-01 BC",
        "c_timestamptz": "2262-04-11T23:47:16.854775Z",
        "c_jsonb": BIG_JSONB,
        "c_text": "long unicode ü 😀 " * 5000,
    },
    6: {**{k: v for k, v in ROW_1.items() if k != "c_jsonb"}, "c_text": "updated", "c_numeric_10_2": "0.01"},
}


ROW_2 = {**PRECISE_EXPECTED_ROWS[1], "c_numeric": "123456789012345678901234567890.123456789012345678901234567890"}

# tests/fixtures/debezium (decimal.handling.mode=string): Kafka offset -> the encoded `after` row
EXPECTED_ROWS: dict[int, dict[str, str]] = {
    0: ROW_1,
    1: ROW_2,  # the source's trailing zero (…567890) is kept
    2: PRECISE_EXPECTED_ROWS[2],
    3: {  # numeric NaN arrives as itself; the numeric[] holding NaN arrives as null (Debezium cannot read it)
        **PRECISE_EXPECTED_ROWS[3],
        "c_numeric": "NaN",
        "c_numeric_10_2": "NaN",
    },
    4: {
        **PRECISE_EXPECTED_ROWS[4],
        "c_numeric": "Infinity",
        "c_numeric_array": "{1.50,NULL,0.00,0.000001000,100000000000000000000}",  # '-0.00' is 0.00 in the source
    },
    5: {"id": "7", "c_numeric": "-Infinity", "c_numeric_38_10": "NaN", "c_numeric_5_0": "NaN"},
    6: {**PRECISE_EXPECTED_ROWS[5], "c_numeric": "0.000000000000000000000000000001000"},
    7: {**{k: v for k, v in ROW_1.items() if k != "c_jsonb"}, "c_text": "updated", "c_numeric_10_2": "0.01"},
}


def every_type_messages(directory: Path = FIXTURES) -> list[dict[str, Any]]:
    lines = (directory / "fx.every_type.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def after_fields(value: dict[str, Any]) -> list[dict[str, Any]]:
    row = next(f for f in value["schema"]["fields"] if f["field"] == "after")
    fields: list[dict[str, Any]] = row["fields"]
    return fields


RECORDINGS = [
    pytest.param(FIXTURES, EVERY_TYPE_COLUMNS, EXPECTED_ROWS, id="string"),
    pytest.param(PRECISE_FIXTURES, PRECISE_COLUMNS, PRECISE_EXPECTED_ROWS, id="precise"),
]


@pytest.mark.parametrize(("directory", "columns", "expected"), RECORDINGS)
def test_every_type_fixture_schema_maps_to_the_expected_types(
    directory: Path, columns: dict[str, tuple[str, bool]], expected: dict[int, dict[str, str]]
) -> None:
    value = orjson.loads(every_type_messages(directory)[0]["value"])
    mapped = {f["field"]: field_type(f) for f in after_fields(value)}
    assert {name: (m.pg_type, m.varlena) for name, m in mapped.items()} == columns


@pytest.mark.parametrize(("directory", "columns", "expected"), RECORDINGS)
def test_every_type_fixture_rows_encode_to_the_source_values(
    directory: Path, columns: dict[str, tuple[str, bool]], expected: dict[int, dict[str, str]]
) -> None:
    checked = 0
    for message in every_type_messages(directory):
        if message["value"] is None:
            continue  # tombstone
        value = orjson.loads(message["value"])
        after = value["payload"]["after"]
        if after is None:
            continue  # the delete
        row = expected[message["offset"]]
        encoded = {}
        for schema in after_fields(value):
            raw = after[schema["field"]]
            encoded[schema["field"]] = None if raw is None else field_type(schema).encode(raw)
        assert encoded == {name: row.get(name) for name in columns}, message["offset"]
        checked += 1
    assert checked == len(expected)


def test_the_numeric_fields_of_the_two_recordings_differ_as_their_modes_say() -> None:
    """Same source rows, two encodings: precise (base64 / VariableScaleDecimal, NaN as null) and
    string (plain text, special values by Debezium's enum names)."""

    def numerics(directory: Path) -> dict[int, tuple[Any, ...]]:
        rows = {}
        for message in every_type_messages(directory)[:2]:
            after = orjson.loads(message["value"])["payload"]["after"]
            rows[after["id"]] = (after["c_numeric"], after["c_numeric_10_2"], after["c_money"])
        return rows

    assert numerics(PRECISE_FIXTURES) == {
        1: ({"scale": 20, "value": "EQfV61tbpNfG"}, "EtaH", "BNI="),
        2: ({"scale": 29, "value": "Afd+5uOsaXA1hlpdOME4xULa4ZgorjmBFQ=="}, "AlQL4/8=", "gAAAAAAAAAA="),
    }
    assert numerics(FIXTURES) == {
        1: ("3.14159265358979323846", "12345.67", "12.34"),
        2: ("123456789012345678901234567890.123456789012345678901234567890", "99999999.99", "-92233720368547758.08"),
    }
    specials = {
        after["id"]: after["c_numeric"]
        for m in every_type_messages()
        if m["value"] and (after := orjson.loads(m["value"])["payload"]["after"]) and after["id"] in (4, 5, 7)
    }
    assert specials == {4: "NAN", 5: "POSITIVE_INFINITY", 7: "NEGATIVE_INFINITY"}
