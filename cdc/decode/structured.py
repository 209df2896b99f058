"""Encoders for Debezium's non-temporal structured values -> PostgreSQL input text: decimals, bytes,
bit strings, geometric values and arrays. Exact: integer arithmetic only, floats via repr (the
shortest text that reads back as the same double)."""

from __future__ import annotations

import re
import weakref
from binascii import a2b_base64
from collections.abc import Callable
from typing import Any, Literal

import orjson

Encoder = Callable[[Any], str]


# --- numbers -------------------------------------------------------------------------------------


def encode_float(value: Any) -> str:
    """float32/float64: a JSON number, or the strings "NaN", "Infinity", "-Infinity" (which
    PostgreSQL reads as they are). repr gives the shortest text that reads back as the same double;
    for real, a float32 value printed that way reads back (rounded to float32) as itself."""
    return value if value.__class__ is str else repr(value)


def encode_bool(value: Any) -> str:
    return "t" if value else "f"


def _scaled(unscaled: int, scale: int) -> str:
    """An unscaled integer and a scale -> plain decimal text (no exponent)."""
    if scale <= 0:
        return str(unscaled * 10**-scale)
    if unscaled < 0:
        digits = str(-unscaled).rjust(scale + 1, "0")
        return "-" + digits[:-scale] + "." + digits[-scale:]
    digits = str(unscaled).rjust(scale + 1, "0")
    return digits[:-scale] + "." + digits[-scale:]


# Each decimal encoder made, and its scale: the compiled fast path (cdc/fastpath.py) writes
# exactly these. One encoder per scale, so this stays as small as the scales seen.
DECIMAL_SCALES: dict[Encoder, int] = {}
_DECIMALS: dict[int, Encoder] = {}


def decimal_encoder(scale: int) -> Encoder:
    """org.apache.kafka.connect.data.Decimal: base64 of the big-endian two's-complement unscaled
    value; the scale is fixed by the schema."""
    return _interned(_DECIMALS, DECIMAL_SCALES, scale, _decimal_encoder)


def _interned(made: dict[int, Encoder], known: dict[Encoder, int], n: int, make: Callable[[int], Encoder]) -> Encoder:
    """One encoder per parameter, remembered both ways: `known` is what the fast path reads."""
    encode = made.get(n)
    if encode is None:
        encode = made[n] = make(n)
        known[encode] = n
    return encode


def _decimal_encoder(scale: int) -> Encoder:
    from_bytes = int.from_bytes
    if scale <= 0:
        factor = 10**-scale

        def encode_integral(value: Any) -> str:
            return str(from_bytes(a2b_base64(value), "big", signed=True) * factor)

        return encode_integral

    width = scale + 1

    def encode(value: Any) -> str:
        unscaled = from_bytes(a2b_base64(value), "big", signed=True)
        if unscaled >= 0:
            digits = str(unscaled)
            if len(digits) <= scale:
                digits = digits.rjust(width, "0")
            return digits[:-scale] + "." + digits[-scale:]
        digits = str(-unscaled).rjust(width, "0")
        return "-" + digits[:-scale] + "." + digits[-scale:]

    return encode


def encode_variable_scale_decimal(value: Any) -> str:
    """io.debezium.data.VariableScaleDecimal: {"scale": int, "value": base64 unscaled}."""
    return _scaled(int.from_bytes(a2b_base64(value["value"]), "big", signed=True), value["scale"])


# decimal.handling.mode=string: BigDecimal.toPlainString() ("-0.00", "123.4500", never an exponent),
# or, for numeric's special values, the name of Debezium's SpecialValueDecimal enum constant. The text
# goes into COPY as it is, so anything but a number literal PostgreSQL reads exactly is refused here
# (the exponent form too: Debezium does not send it, but PostgreSQL reads it exactly).
_NUMBER_TEXT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,4})?")
_number_text = _NUMBER_TEXT.fullmatch
_SPECIAL_NUMERIC = {
    "NAN": "NaN",  # SpecialValueDecimal.toString(): the enum constant's name
    "POSITIVE_INFINITY": "Infinity",
    "NEGATIVE_INFINITY": "-Infinity",
    "NaN": "NaN",  # PostgreSQL's own spelling, should Debezium ever send it
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
}


def encode_numeric_text(value: Any) -> str:
    """numeric as a string (decimal.handling.mode=string) -> the same text, checked; NaN and
    ±Infinity (PostgreSQL 14+) in PostgreSQL's spelling. Raises ValueError for anything else."""
    if value.__class__ is str and _number_text(value) is not None:
        return value
    special = _SPECIAL_NUMERIC.get(value) if value.__class__ is str else None
    if special is None:
        raise ValueError(f"{value!r:.80} is not a numeric as Debezium writes it")
    return special


def encode_money_text(value: Any) -> str:
    """money as a string (decimal.handling.mode=string): a plain decimal; money has no NaN."""
    if value.__class__ is str and _number_text(value) is not None:
        return value
    raise ValueError(f"{value!r:.80} is not a money amount as Debezium writes it")


# --- bytes ---------------------------------------------------------------------------------------


def encode_bytea(value: Any) -> str:
    """bytes (binary.handling.mode=bytes: base64 in JSON) -> bytea hex input \\x..."""
    return "\\x" + a2b_base64(value).hex()


def encode_utf8_bytes(value: Any) -> str:
    """A type Debezium does not know (include.unknown.datatypes=true) arrives as the bytes of its
    PostgreSQL text form (JdbcValueConverters.toByteBuffer(String): UTF-8)."""
    return a2b_base64(value).decode("utf-8")


# --- bit strings ---------------------------------------------------------------------------------


# Each bit(n) encoder made, and its n, as DECIMAL_SCALES: the compiled fast path writes these.
BIT_LENGTHS: dict[Encoder, int] = {}
_BITS: dict[int, Encoder] = {}


def fixed_bits_encoder(length: int) -> Encoder:
    """io.debezium.data.Bits for bit(n): base64 of java.util.BitSet.toByteArray(), little-endian,
    bit i = the i-th character from the RIGHT of the bit string, trailing zero bytes dropped (so
    B'00000000' arrives as an empty byte string). Left-padded back to n characters."""
    return _interned(_BITS, BIT_LENGTHS, length, _fixed_bits_encoder)


def _fixed_bits_encoder(length: int) -> Encoder:
    spec = f"0{length}b"

    def encode(value: Any) -> str:
        return format(int.from_bytes(a2b_base64(value), "little"), spec)

    return encode


def encode_varying_bits(value: Any) -> str:
    """io.debezium.data.Bits for varbit(n): as for bit(n), but the actual length is not sent, so
    leading zeros are lost upstream (B'0101' and B'101' both arrive as 0x05; B'000' as empty)."""
    number = int.from_bytes(a2b_base64(value), "little")
    return format(number, "b") if number else ""


def encode_single_bit(value: Any) -> str:
    """bit(1) / varbit(1): Debezium sends a boolean."""
    return "1" if value else "0"


# --- geometry ------------------------------------------------------------------------------------


def encode_point(value: Any) -> str:
    """io.debezium.data.geometry.Point: {"x": double, "y": double, "wkb": ..., "srid": ...}."""
    return f"({encode_float(value['x'])},{encode_float(value['y'])})"


def encode_ewkb(value: Any) -> str:
    """io.debezium.data.geometry.Geometry/Geography: {"wkb": base64, "srid": int|null} -> bytea of
    the EWKB (the SRID folded back into the WKB, as PostGIS writes it), so nothing is dropped:
    ST_GeomFromEWKB(column) restores the geometry."""
    wkb = a2b_base64(value["wkb"])
    srid = value.get("srid")
    if srid is None or len(wkb) < 5:
        return "\\x" + wkb.hex()
    order: Literal["little", "big"] = "little" if wkb[0] == 1 else "big"
    kind = int.from_bytes(wkb[1:5], order) | 0x20000000
    ewkb = wkb[:1] + kind.to_bytes(4, order) + int(srid).to_bytes(4, order, signed=True) + wkb[5:]
    return "\\x" + ewkb.hex()


# --- json ----------------------------------------------------------------------------------------


def encode_json_map(value: Any) -> str:
    """A Connect map (hstore.handling.mode=map) -> a JSON object for jsonb."""
    return orjson.dumps(value).decode()


# --- arrays --------------------------------------------------------------------------------------


def quote_element(text: str) -> str:
    """An array element in double quotes, with backslash and double quote escaped (array input)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Each array encoder made -> (its element's encoder, bare): the compiled fast path writes these.
# One encoder per array column of a schema, so weakly held: gone with the schema.
ARRAY_ELEMENTS: weakref.WeakKeyDictionary[Encoder, tuple[Encoder, bool]] = weakref.WeakKeyDictionary()


def array_encoder(element: Encoder, bare: bool) -> Encoder:
    """A JSON list -> a one-dimensional PostgreSQL array literal. Elements are double-quoted (so
    "", "NULL", commas, braces, quotes, spaces survive) unless `bare` says the element's text can
    never need it (numbers, booleans); None elements become an unquoted NULL."""
    encode = _array_encoder(element, bare)
    ARRAY_ELEMENTS[encode] = (element, bare)
    return encode


def _array_encoder(element: Encoder, bare: bool) -> Encoder:
    if bare:

        def encode_bare(value: Any) -> str:
            return "{" + ",".join(["NULL" if x is None else element(x) for x in value]) + "}"

        return encode_bare

    if element is str:  # strings: the element is its own text

        def encode_strings(value: Any) -> str:
            return "{" + ",".join(["NULL" if x is None else quote_element(x) for x in value]) + "}"

        return encode_strings

    def encode(value: Any) -> str:
        return "{" + ",".join(["NULL" if x is None else quote_element(element(x)) for x in value]) + "}"

    return encode
