"""Every column kind the Python decoder maps, written by the compiled fast path byte for byte as
the Python path writes it (decode -> buffer -> staging text), or left to the Python decoder where
the extension is not sure: arrays of each element kind, bit strings, geometry, variable-scale
decimals, hstore maps, nanosecond times and durations, types sent as their text's bytes."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.decode.types import field_type
from cdc.events import Column
from cdc.fastpath import Extension, kind_of
from tests.unit.test_fastpath_sync import INT64, _message, _records, _same, _small_table

SOURCE = "__debezium.source.column.type"


def _field(name: str, kind: str, source: str = "", logical: str | None = None, **extra: Any) -> dict[str, Any]:
    field: dict[str, Any] = {"type": kind, "optional": True, "field": name, **extra}
    if logical is not None:
        field["name"] = logical
    if source:
        field["parameters"] = {SOURCE: source, **field.get("parameters", {})}
    return field


def _array(name: str, source: str, items: dict[str, Any]) -> dict[str, Any]:
    return _field(name, "array", source, items={**items, "optional": True})


_POINT = [_field("x", "double"), _field("y", "double"), _field("wkb", "bytes"), _field("srid", "int32")]

FIELDS = [
    INT64,
    _field("ns_ts", "int64", "TIMESTAMP", "io.debezium.time.NanoTimestamp"),
    _field("ns_time", "int64", "TIME", "io.debezium.time.NanoTime"),
    _field("ns_dur", "int64", "INTERVAL", "io.debezium.time.NanoDuration"),
    _field(
        "vdec",
        "struct",
        "NUMERIC",
        "io.debezium.data.VariableScaleDecimal",
        fields=[_field("scale", "int32"), _field("value", "bytes")],
    ),
    _field("bits", "bytes", "BIT", "io.debezium.data.Bits", parameters={"length": "12"}),
    _field("vbits", "bytes", "VARBIT", "io.debezium.data.Bits", parameters={"length": "20"}),
    _field("bit1", "boolean", "BIT"),
    _field("pt", "struct", "POINT", "io.debezium.data.geometry.Point", fields=_POINT),
    _field("geom", "struct", "GEOMETRY", "io.debezium.data.geometry.Geometry", fields=_POINT[2:]),
    _field("hs", "map", "HSTORE", keys={"type": "string"}, values={"type": "string", "optional": True}),
    _field("box", "bytes", "BOX"),
    _array("a_int", "_INT4", {"type": "int32"}),
    _array("a_text", "_TEXT", {"type": "string"}),
    _array("a_ts", "_TIMESTAMP", {"type": "int64", "name": "io.debezium.time.MicroTimestamp"}),
    _array("a_bytea", "_BYTEA", {"type": "bytes"}),
    _array("a_num", "_NUMERIC", {"type": "string"}),
    _array("a_bool", "_BOOL", {"type": "boolean"}),
    _array("a_float", "_FLOAT8", {"type": "double"}),
    _array("a_interval", "_INTERVAL", {"type": "string", "name": "io.debezium.time.Interval"}),
    _array("a_uuid", "_UUID", {"type": "string", "name": "io.debezium.data.Uuid"}),
    _array("a_dec", "_NUMERIC", {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal"}),
    _field("vec", "array", "VECTOR", "io.debezium.data.DoubleVector", items={"type": "double"}),
]
FIELDS[-2]["items"]["parameters"] = {"scale": "2"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unscaled(n: int) -> str:
    return _b64(n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True))


PLAIN = {
    "ns_ts": 1709205255123456789,
    "ns_time": 45_296_789_012_345,
    "ns_dur": -1_500,
    "vdec": {"scale": 2, "value": _unscaled(-12345)},
    "bits": _b64(bytes([0b101, 0b1000])),
    "vbits": _b64(bytes([0b101])),
    "bit1": True,
    "pt": {"x": 1.5, "y": -2, "wkb": "AQEAAAAAAAAAAAD4PwAAAAAAAADA", "srid": None},
    "geom": {"wkb": "AQEAAAAAAAAAAAD4PwAAAAAAAADA", "srid": 4326},
    "hs": {"a": "1", "b\tc": None, 'q"': "é\\"},
    "box": _b64(b"(1,1),(0,0)"),
    "a_int": [1, None, -3],
    "a_text": ["a b", "", "NULL", 'q"uote', "back\\slash", "tab\tnew\nline", None, "{,}", "ünï 🎉"],
    "a_ts": [0, -1, 9223372036825200000, None],
    "a_bytea": ["AAH/", ""],
    "a_num": ["1.50", "NAN", "-0.00"],
    "a_bool": [True, False, None],
    "a_float": [0.1, 1e16, "NaN", 3],
    "a_interval": ["P1Y2M3DT4H5M6.789S"],
    "a_uuid": ["b5e3c9a0-1f2e-4d3c-8b7a-6f5e4d3c2b1a"],
    "a_dec": [_unscaled(12345), _unscaled(-(10**40))],
    "vec": [1.0, -0.5],
}

# Rows the extension writes: corners of each kind.
HANDLED = [
    {"ns_ts": -1, "ns_time": 0, "ns_dur": 0, "bits": "", "vbits": "", "bit1": False, "a_int": []},
    {"ns_ts": 2**63 - 1, "ns_dur": -(2**63), "vdec": {"scale": -3, "value": _unscaled(7)}},
    {"ns_ts": -(2**63), "ns_time": 86_400_000_000_000, "vdec": {"scale": 0, "value": ""}},
    {"ns_ts": -1_000_000_123, "vdec": {"scale": 40, "value": _unscaled(-(10**45) - 1)}},
    {"geom": {"wkb": "AQEAAAAAAAAAAAD4PwAAAAAAAADA"}, "pt": {"y": 0.0, "x": -0.0}, "hs": {}},
    {"geom": {"wkb": "AAAAAAEAAAAAAAAAAA==", "srid": -1}, "vbits": _b64(bytes([0, 0, 0x80]))},
    {"geom": {"wkb": "AQE=", "srid": 3857}, "bits": _b64(bytes([0xFF, 0x0F]))},
    {"hs": {"\u2028": "\x00\x01\x7f", "k": "v"}, "box": _b64("ü (2,3)".encode())},
    {"a_text": [], "a_float": [-0.0, 1e-300, 1.7976931348623157e308, "Infinity"], "vec": []},
]
# Rows the extension leaves to the Python decoder: forms Python reads by rules not reproduced, or
# refuses (a dead letter).
LEFT = [
    {"bit1": 1},  # any value's truth in Python
    {"bits": "AB=="},  # non-canonical base64
    {"vdec": {"scale": True, "value": "AA=="}},
    {"vdec": {"value": "AA=="}},  # no scale: KeyError, a dead letter
    {"pt": {"x": None, "y": 1}},  # repr(None)
    {"geom": {"wkb": "AQEAAAAAAAAAAAD4PwAAAAAAAADA", "srid": 2**40}},  # beyond int32
    {"hs": {"a": 1}},  # not an hstore value
    {"box": _b64(b"\xff\xfe")},  # not UTF-8
    {"a_int": [1, "2"]},  # str("2") in Python
    {"a_text": [1]},  # not a string
    {"a_interval": ["1 year"]},  # not Debezium's form: Python refuses it
    {"a_int": "__debezium_unavailable_value"},  # a placeholder in a list column
    {"a_int": [[1]]},
    {"ns_dur": 1.5},
    {"a_float": [5e-324]},  # a subnormal double: the scanner leaves the message to Python
]


def test_every_kind_is_the_extensions_where_python_reads_it_alike(fast: Extension) -> None:
    prefix, key_prefix = _small_table(FIELDS, "t")
    rows = [PLAIN, *({**PLAIN, **row} for row in HANDLED), *({**PLAIN, **row} for row in LEFT)]
    messages = [(key_prefix + b'{"id":%d}}' % n, _message(prefix, "c", n, row, 8 * n)) for n, row in enumerate(rows, 1)]
    decoder = _same(_records(messages), [4, 30], fast)
    assert (decoder.decoded, decoder.left) == (len(HANDLED), len(LEFT))


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
_base64 = st.one_of(st.binary(max_size=6).map(_b64), st.sampled_from(["AB==", "A", "", "AA=A", "é"]))
_json_int = st.integers(-(2**63), 2**64 - 1)  # what orjson writes
_float = st.one_of(
    st.floats(allow_nan=False),
    _json_int,
    st.sampled_from(["NaN", "Infinity", "-Infinity", "x\t"]),
)
_int64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([9223372036825200000, -9223372036832400000]))


def _list(element: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(st.one_of(st.none(), element), max_size=4), element)


VALUES: dict[str, st.SearchStrategy[Any]] = {
    "ns_ts": _int64,
    "ns_time": _int64,
    "ns_dur": st.one_of(_int64, st.floats(allow_nan=False, allow_infinity=False)),
    "vdec": st.one_of(
        st.fixed_dictionaries({"scale": st.integers(-40, 60), "value": st.integers(-(10**50), 10**50).map(_unscaled)}),
        st.fixed_dictionaries({"scale": st.sampled_from([True, 1.0, "2"]), "value": _base64}),
    ),
    "bits": _base64,
    "vbits": _base64,
    "bit1": st.one_of(st.booleans(), st.integers(0, 2)),
    "pt": st.fixed_dictionaries({"x": _float, "y": _float}),
    "geom": st.fixed_dictionaries(
        {"wkb": _base64},
        optional={"srid": st.one_of(st.none(), st.integers(-(2**32), 2**32), st.booleans())},
    ),
    "hs": st.dictionaries(_text, st.one_of(st.none(), _text, _json_int), max_size=4),
    "box": st.one_of(_text.map(lambda t: _b64(t.encode())), _base64),
    "a_int": _list(st.one_of(_json_int, st.booleans())),
    "a_text": _list(st.one_of(_text, st.sampled_from(["NULL", '"', "\\", "\t", "{}", "__debezium_unavailable_value"]))),
    "a_ts": _list(_int64),
    "a_bytea": _list(_base64),
    "a_num": _list(st.sampled_from(["1.5", "-0", "NAN", "POSITIVE_INFINITY", "1e5", "x", ".5", "1."])),
    "a_bool": _list(st.booleans()),
    "a_float": _list(_float),
    "a_interval": _list(st.sampled_from(["P1Y2M3DT4H5M6.789S", "P0Y0M0DT0H0M-0.5S", "P1Y", ""])),
    "a_uuid": _list(_text),
    "a_dec": _list(st.one_of(st.integers(-(10**40), 10**40).map(_unscaled), _base64)),
    "vec": _list(_float),
}


# Most rows vary one column (so most messages stay the extension's), some several at once.
_one_column = st.sampled_from(sorted(VALUES)).flatmap(lambda name: VALUES[name].map(lambda v: {name: v}))
_several = st.fixed_dictionaries({}, optional=VALUES)
_rows = st.lists(st.one_of(_one_column, _one_column, _several), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_rows)
def test_generated_values_of_every_kind_match_or_go_to_python(fast: Extension, rows: list[dict[str, Any]]) -> None:
    prefix, key_prefix = _small_table(FIELDS, "t")
    messages = [(key_prefix + b'{"id":1}}', _message(prefix, "c", 1, PLAIN, 8))]  # teaches the shape
    for n, row in enumerate(rows, 2):
        value = _message(prefix, "u", n % 3, {**PLAIN, **row}, 8 * n)
        messages.append((key_prefix + b'{"id":%d}}' % (n % 3), value))
    _same(_records(messages), [len(messages)], fast)


def test_the_columns_of_every_kind_are_offered_to_the_extension() -> None:
    """No column of the table above is left out of the extension's kinds (the Python mapping
    made each encoder the extension knows by identity)."""
    kinds = {}
    for f in FIELDS:
        ft = field_type(f)
        kinds[f["field"]] = kind_of(Column(f["field"], ft.pg_type, True, ft.varlena, ft.encode))
    assert kinds == {
        "id": "int",
        "ns_ts": "ts_ns",
        "ns_time": "time_ns",
        "ns_dur": "nano_duration",
        "vdec": "variable_decimal",
        "bits": "bits:12",
        "vbits": "varbits",
        "bit1": "bit1",
        "pt": "point",
        "geom": "ewkb",
        "hs": "json_map",
        "box": "utf8_bytes",
        "a_int": "array:bare:int",
        "a_text": "array:quoted:str",
        "a_ts": "array:quoted:ts_us",
        "a_bytea": "array:quoted:bytea",
        "a_num": "array:bare:numeric_text",
        "a_bool": "array:bare:bool",
        "a_float": "array:bare:float",
        "a_interval": "array:quoted:interval",
        "a_uuid": "array:quoted:str",
        "a_dec": "array:bare:decimal:2",
        "vec": "array:bare:float",
    }
