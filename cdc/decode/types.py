"""Debezium Connect field schema -> warehouse column type and value encoder.

The connector (connectors/postgres-source.json) runs with decimal.handling.mode=string (numeric and
money as plain decimal text, so numeric NaN and ±Infinity arrive too; messages written earlier in
precise mode, base64 unscaled bytes + scale, still decode), interval.handling.mode=string,
time.precision.mode=adaptive, hstore.handling.mode=json, binary.handling.mode=bytes,
include.unknown.datatypes=true and column.propagate.source.type=.*, so every field says its Connect
type, usually a logical type name, and its source column's type, length and scale (parameters
"__debezium.source.column.type/length/scale"). The Connect schema decides how a value is decoded;
the source type refines the warehouse type (numeric(10,2), varchar(50), time(3), inet,
int4range...). Types the warehouse may lack (enums, domains, hstore, ltree, citext, isn) get a
built-in type that holds every value: text, or jsonb for hstore.

`field_type` runs once per column per schema; the encoders it returns run for every value, so each is
a small function picked (and closed over its scale, length...) here, never re-dispatching per call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cdc.decode import structured as s
from cdc.decode import temporal as t
from cdc.errors import TerminalError

SOURCE_TYPE = "__debezium.source.column.type"
SOURCE_LENGTH = "__debezium.source.column.length"
SOURCE_SCALE = "__debezium.source.column.scale"

_MAX_NUMERIC_PRECISION = 1000
_MAX_CHAR_LENGTH = 10485760
_MAX_BIT_LENGTH = 83886080


@dataclass(frozen=True, slots=True)
class FieldType:
    pg_type: str  # warehouse column type as SQL text
    varlena: bool  # may arrive as Debezium's unchanged-TOAST placeholder
    encode: Callable[[Any], str]  # non-null JSON value -> PostgreSQL input text (not COPY-escaped)


def field_type(field: dict[str, Any]) -> FieldType:
    """One field of a Debezium Connect schema -> warehouse type and encoder.

    Raises TerminalError for a schema it cannot map (unknown logical type), naming the field."""
    return _map(field, str(field.get("field", "?")))[0]


@dataclass(frozen=True, slots=True)
class _Field:
    column: str
    schema: dict[str, Any]
    source: str  # source column type, upper case ("NUMERIC", "_INT4", "MOOD"), "" if not sent
    length: int | None
    scale: int | None

    def param(self, key: str) -> int | None:
        return _int((self.schema.get("parameters") or {}).get(key))


# (FieldType, bare): bare = the encoded text never needs quoting inside an array literal
_Mapped = tuple[FieldType, bool]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _map(schema: dict[str, Any], column: str) -> _Mapped:
    params = schema.get("parameters") or {}
    f = _Field(
        column=column,
        schema=schema,
        source=str(params.get(SOURCE_TYPE) or "").upper(),
        length=_int(params.get(SOURCE_LENGTH)),
        scale=_int(params.get(SOURCE_SCALE)),
    )
    name = schema.get("name")
    if name is not None:
        logical = _LOGICAL.get(name)
        if logical is None:
            raise _unmappable(f, f"logical type {name!r}")
        return logical(f)
    kind = schema.get("type")
    plain = _PLAIN.get(kind) if isinstance(kind, str) else None
    if plain is None:
        raise _unmappable(f, f"Connect type {kind!r} without a logical type name")
    return plain(f)


def _unmappable(f: _Field, what: str) -> TerminalError:
    source = f" (source column type {f.source})" if f.source else ""
    return TerminalError(
        f"column {f.column!r} has {what}{source}, which cdc cannot map to a warehouse column type",
        "exclude its table (CDC_EXCLUDE_TABLES) or change the column's type in the source; "
        "if Debezium sends this type, cdc should map it: please report it",
    )


def _mapped(pg_type: str, varlena: bool, encode: Callable[[Any], str], bare: bool = False) -> _Mapped:
    return FieldType(pg_type, varlena, encode), bare


def _precision(f: _Field, source: str, default: int | None) -> int | None:
    """Fractional-second digits of a time/timestamp column: the source scale when the source type
    is the expected one, else the logical type's own."""
    if f.source == source and f.scale is not None and 0 <= f.scale <= 6:
        return f.scale
    return default


def _with_precision(base: str, precision: int | None, suffix: str) -> str:
    return f"{base}({precision}) {suffix}" if precision is not None else f"{base} {suffix}"


# --- plain Connect types -------------------------------------------------------------------------


def _integer(f: _Field) -> _Mapped:
    kind = f.schema["type"]
    if f.source == "OID":
        return _mapped("oid", False, str, True)
    return _mapped(_INTEGER_TYPES[kind], False, str, True)


_INTEGER_TYPES = {"int8": "smallint", "int16": "smallint", "int32": "integer", "int64": "bigint"}


def _float(f: _Field) -> _Mapped:
    real = f.schema["type"] in ("float", "float32")
    return _mapped("real" if real else "double precision", False, s.encode_float, True)


def _boolean(f: _Field) -> _Mapped:
    if f.source == "BIT":  # bit(1) arrives as a boolean
        return _mapped("bit(1)", True, s.encode_single_bit, True)
    if f.source == "VARBIT":
        return _mapped("varbit(1)", True, s.encode_single_bit, True)
    return _mapped("boolean", False, s.encode_bool, True)


# source type -> (warehouse type, varlena), for values Debezium sends as plain strings
_STRING_TYPES = {
    "TEXT": ("text", True),
    "CITEXT": ("text", True),  # extension type: the warehouse may lack it
    "ISBN": ("text", False),  # extension type (isn)
    "LTREE": ("text", True),
    "NAME": ("name", False),
    "CHAR": ('"char"', False),  # the one-byte internal type; char(n) is BPCHAR
    "INET": ("inet", True),
    "CIDR": ("cidr", True),
    "MACADDR": ("macaddr", False),
    "MACADDR8": ("macaddr8", False),
    "INT4RANGE": ("int4range", True),
    "INT8RANGE": ("int8range", True),
    "NUMRANGE": ("numrange", True),
    "TSRANGE": ("tsrange", True),
    "TSTZRANGE": ("tstzrange", True),
    "DATERANGE": ("daterange", True),
    "TSVECTOR": ("tsvector", True),
    "XML": ("xml", True),
    "JSON": ("json", True),
    "JSONB": ("jsonb", True),
    "UUID": ("uuid", False),
}


def _string(f: _Field) -> _Mapped:
    if f.source in ("NUMERIC", "DECIMAL"):  # decimal.handling.mode=string
        return _mapped(_numeric_type(f.length, f.scale), True, s.encode_numeric_text, True)
    if f.source == "MONEY":
        return _mapped("money", False, s.encode_money_text, True)
    if f.source in ("VARCHAR", "BPCHAR"):
        sized = f.length is not None and 0 < f.length <= _MAX_CHAR_LENGTH
        if f.source == "VARCHAR":
            return _mapped(f"varchar({f.length})" if sized else "varchar", True, str)
        return _mapped(f"char({f.length})" if sized else "bpchar", True, str)
    known = _STRING_TYPES.get(f.source)
    if known is None and _numeric_domain(f):
        return _mapped(_numeric_type(f.length, f.scale), True, s.encode_numeric_text, True)
    pg_type, varlena = known or ("text", True)  # domains, unknown types: text
    return _mapped(pg_type, varlena, str)


_UNCONSTRAINED_NUMERIC_LENGTH = 131089  # what the JDBC driver reports as the precision of plain numeric


def _numeric_domain(f: _Field) -> bool:
    """A domain over numeric, in string mode: its source type is the domain's name, so only the
    length and scale tell it from a domain over text. Of the types Debezium sends as a plain string,
    only numeric has a scale, and only unconstrained numeric a length of 131089. A domain over
    numeric(p,0) looks exactly like one over varchar(p) and stays text (every value kept as text)."""
    if f.source.startswith("_"):
        return False  # an array type's name: its elements are mapped on their own
    return f.length == _UNCONSTRAINED_NUMERIC_LENGTH or (f.scale is not None and f.scale != 0)


# Types Debezium does not know, sent (include.unknown.datatypes) as the UTF-8 bytes of their text.
# Only built-in types whose text is self-contained are decoded; any other name (a domain over bytea
# looks the same as a custom type) stays bytea, which keeps the bytes exactly.
_TEXT_AS_BYTES = {
    "BOX": ("box", False),
    "CIRCLE": ("circle", False),
    "LINE": ("line", False),
    "LSEG": ("lseg", False),
    "PATH": ("path", True),
    "POLYGON": ("polygon", True),
    "TSQUERY": ("tsquery", True),
    "PG_LSN": ("pg_lsn", False),
    "TXID_SNAPSHOT": ("txid_snapshot", True),
    "PG_SNAPSHOT": ("pg_snapshot", True),
}


def _bytes(f: _Field) -> _Mapped:
    known = _TEXT_AS_BYTES.get(f.source)
    if known is not None:
        return _mapped(known[0], known[1], s.encode_utf8_bytes)
    return _mapped("bytea", True, s.encode_bytea)


def _map_type(f: _Field) -> _Mapped:  # hstore.handling.mode=map
    return _mapped("jsonb", True, s.encode_json_map)


def _array(f: _Field) -> _Mapped:
    items = f.schema.get("items")
    if not isinstance(items, dict):
        raise _unmappable(f, "an array schema without items")
    params = dict(items.get("parameters") or {})
    element_source = f.source[1:] if f.source.startswith("_") else ""
    params[SOURCE_TYPE] = element_source
    for key in (SOURCE_LENGTH, SOURCE_SCALE):
        value = (f.schema.get("parameters") or {}).get(key)
        if value is not None:
            params[key] = value
    element, bare = _map({**items, "parameters": params}, f.column)
    if element.pg_type.endswith("[]"):
        raise _unmappable(f, f"an array of arrays ({element.pg_type}[])")
    return _mapped(element.pg_type + "[]", True, s.array_encoder(element.encode, bare))


_PLAIN: dict[str, Callable[[_Field], _Mapped]] = {
    "int8": _integer,
    "int16": _integer,
    "int32": _integer,
    "int64": _integer,
    "float": _float,  # the JsonConverter's names for FLOAT32 / FLOAT64
    "double": _float,
    "float32": _float,
    "float64": _float,
    "boolean": _boolean,
    "string": _string,
    "bytes": _bytes,
    "array": _array,
    "map": _map_type,
}


# --- logical types -------------------------------------------------------------------------------


def _numeric_type(precision: int | None, scale: int | None) -> str:
    """numeric(p,s) from the source column's length and scale; plain numeric when unconstrained
    (Debezium reports length 131089 and scale 0 for it).

    PostgreSQL 15 keeps a numeric's scale in the low 11 bits of its typmod (scale may be -1000 to
    1000), and the JDBC driver Debezium uses reads those bits unsigned: numeric(5,-2) arrives as
    scale 2046. Read back as signed, it is the column's own -2."""
    if precision is None or not 0 < precision <= _MAX_NUMERIC_PRECISION:
        return "numeric"
    scale = scale or 0
    if scale > _MAX_NUMERIC_PRECISION:
        scale -= 2048
    if not -_MAX_NUMERIC_PRECISION <= scale <= _MAX_NUMERIC_PRECISION:
        return "numeric"
    return f"numeric({precision},{scale})"


def _decimal(f: _Field) -> _Mapped:
    scale = f.param("scale")
    if scale is None:
        raise _unmappable(f, "a Decimal without a scale parameter")
    encode = s.decimal_encoder(scale)
    if f.source == "MONEY":
        return _mapped("money", False, encode, True)
    if f.source == "NUMERIC" and f.length is not None and 0 < f.length <= _MAX_NUMERIC_PRECISION:
        return _mapped(_numeric_type(f.length, scale), True, encode, True)
    precision = f.param("connect.decimal.precision")
    if precision is not None and 0 < precision <= _MAX_NUMERIC_PRECISION:
        return _mapped(_numeric_type(precision, scale), True, encode, True)
    return _mapped("numeric", True, encode, True)


def _variable_decimal(f: _Field) -> _Mapped:
    return _mapped("numeric", True, s.encode_variable_scale_decimal, True)


def _date(f: _Field) -> _Mapped:
    return _mapped("date", False, t.encode_date)


def _time(default: int, encode: Callable[[Any], str]) -> Callable[[_Field], _Mapped]:
    def mapped(f: _Field) -> _Mapped:
        return _mapped(_with_precision("time", _precision(f, "TIME", default), "without time zone"), False, encode)

    return mapped


def _timestamp(default: int, encode: Callable[[Any], str]) -> Callable[[_Field], _Mapped]:
    def mapped(f: _Field) -> _Mapped:
        pg_type = _with_precision("timestamp", _precision(f, "TIMESTAMP", default), "without time zone")
        return _mapped(pg_type, False, encode)

    return mapped


def _zoned_time(f: _Field) -> _Mapped:
    pg_type = _with_precision("time", _precision(f, "TIMETZ", None), "with time zone")
    return _mapped(pg_type, False, t.encode_zoned_time)


def _zoned_timestamp(f: _Field) -> _Mapped:
    pg_type = _with_precision("timestamp", _precision(f, "TIMESTAMPTZ", None), "with time zone")
    return _mapped(pg_type, False, t.encode_zoned_timestamp)


def _interval_type(f: _Field) -> str:
    precision = _precision(f, "INTERVAL", 6)
    return "interval" if precision == 6 else f"interval({precision})"


def _interval(f: _Field) -> _Mapped:
    return _mapped(_interval_type(f), False, t.interval_encoder(f.column))


def _duration(encode: Callable[[Any], str]) -> Callable[[_Field], _Mapped]:
    def mapped(f: _Field) -> _Mapped:
        return _mapped(_interval_type(f), False, encode)

    return mapped


def _json(f: _Field) -> _Mapped:
    return _mapped("json" if f.source == "JSON" else "jsonb", True, str)  # JSONB, HSTORE, domains


def _bits(f: _Field) -> _Mapped:
    length = f.param("length") or f.length
    if length is None or not 0 < length <= _MAX_BIT_LENGTH:
        return _mapped("varbit", True, s.encode_varying_bits)
    if f.source == "VARBIT":
        return _mapped(f"varbit({length})", True, s.encode_varying_bits)
    return _mapped(f"bit({length})", True, s.fixed_bits_encoder(length))


def _fixed(pg_type: str, varlena: bool, encode: Callable[[Any], str]) -> Callable[[_Field], _Mapped]:
    def mapped(f: _Field) -> _Mapped:
        return _mapped(pg_type, varlena, encode)

    return mapped


def _vector(pg_type: str) -> Callable[[_Field], _Mapped]:
    def mapped(f: _Field) -> _Mapped:
        return _mapped(pg_type, True, s.array_encoder(s.encode_float, True))

    return mapped


_LOGICAL: dict[str, Callable[[_Field], _Mapped]] = {
    "org.apache.kafka.connect.data.Decimal": _decimal,
    "io.debezium.data.VariableScaleDecimal": _variable_decimal,
    "io.debezium.time.Date": _date,
    "org.apache.kafka.connect.data.Date": _date,  # time.precision.mode=connect: same encodings
    "org.apache.kafka.connect.data.Time": _time(3, t.encode_milli_time),
    "org.apache.kafka.connect.data.Timestamp": _timestamp(3, t.encode_milli_timestamp),
    "io.debezium.time.Time": _time(3, t.encode_milli_time),
    "io.debezium.time.MicroTime": _time(6, t.encode_micro_time),
    "io.debezium.time.NanoTime": _time(6, t.encode_nano_time),
    "io.debezium.time.Timestamp": _timestamp(3, t.encode_milli_timestamp),
    "io.debezium.time.MicroTimestamp": _timestamp(6, t.encode_micro_timestamp),
    "io.debezium.time.NanoTimestamp": _timestamp(6, t.encode_nano_timestamp),
    "io.debezium.time.ZonedTime": _zoned_time,
    "io.debezium.time.ZonedTimestamp": _zoned_timestamp,
    "io.debezium.time.Interval": _interval,
    "io.debezium.time.MicroDuration": _duration(t.encode_micro_duration),
    "io.debezium.time.NanoDuration": _duration(t.encode_nano_duration),
    "io.debezium.data.Json": _json,
    "io.debezium.data.Uuid": _fixed("uuid", False, str),
    "io.debezium.data.Xml": _fixed("xml", True, str),
    "io.debezium.data.Enum": _fixed("text", False, str),  # the warehouse has no such enum
    "io.debezium.data.EnumSet": _fixed("text", True, str),
    "io.debezium.data.Ltree": _fixed("text", True, str),  # extension type
    "io.debezium.data.Tsvector": _fixed("tsvector", True, str),
    "io.debezium.data.Bits": _bits,
    "io.debezium.data.geometry.Point": _fixed("point", False, s.encode_point),
    "io.debezium.data.geometry.Geometry": _fixed("bytea", True, s.encode_ewkb),  # PostGIS may be absent
    "io.debezium.data.geometry.Geography": _fixed("bytea", True, s.encode_ewkb),
    "io.debezium.data.DoubleVector": _vector("double precision[]"),  # pgvector may be absent
    "io.debezium.data.FloatVector": _vector("real[]"),
}
