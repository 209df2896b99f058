"""type_change: whether every value of the old type is a value of the new one with the same
meaning (widened), the reverse (narrowed), or neither (incompatible); None for the same type.
The type strings are the ones cdc/decode/types.py produces."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.schema.changes import Kind
from cdc.schema.classify import type_change

W, N, X = Kind.TYPE_WIDENED, Kind.TYPE_NARROWED, Kind.TYPE_INCOMPATIBLE
TS = "timestamp without time zone"
TSTZ = "timestamp with time zone"


def bug(old: str, new: str, expected: Kind | None, reason: str) -> Any:
    return pytest.param(old, new, expected, id=f"{old}->{new}", marks=pytest.mark.xfail(strict=True, reason=reason))


ROWS = [
    # integers
    ("integer", "bigint", W),
    ("smallint", "integer", W),
    ("smallint", "bigint", W),
    ("bigint", "integer", N),
    ("integer", "smallint", N),
    # integers and numeric: an integer fits numeric(p,s) when p - s integer digits hold its digits
    ("integer", "numeric", W),
    ("integer", "numeric(12,2)", W),  # 10 integer digits: every int4 (2147483647) fits
    ("integer", "numeric(10,0)", W),
    ("bigint", "numeric(19,0)", W),
    ("bigint", "numeric(18,0)", N),  # every numeric(18,0) is a bigint; a bigint may have 19 digits
    ("integer", "numeric(11,2)", X),  # 9 integer digits: 2147483647 does not fit
    ("numeric(12,2)", "integer", N),
    ("numeric(10,0)", "integer", N),  # 9999999999 is no int4; every int4 is a numeric(10,0)
    ("numeric", "integer", N),
    ("numeric", "bigint", N),
    # numeric to numeric
    ("numeric(8,2)", "numeric(12,2)", W),
    ("numeric(12,2)", "numeric(8,2)", N),
    ("numeric(8,2)", "numeric(8,3)", X),  # more scale, fewer integer digits: neither holds the other
    ("numeric(8,3)", "numeric(8,2)", X),
    ("numeric(8,2)", "numeric(10,4)", W),  # as many integer digits, more scale
    ("numeric(8,2)", "numeric", W),
    ("numeric", "numeric(8,2)", N),
    ("numeric(5,-2)", "numeric(8,0)", W),  # multiples of 100 up to 9999900: 7 integer digits
    ("numeric(5,-2)", "numeric(5,0)", X),
    # floats: a float holds an integer exactly while its mantissa holds the integer's bits
    ("real", "double precision", W),
    ("double precision", "real", N),
    ("smallint", "real", W),  # 16 bits in a 24-bit mantissa
    ("integer", "real", X),  # 31 bits do not fit 24
    ("integer", "double precision", W),
    ("bigint", "double precision", X),  # 63 bits do not fit 53: 2^53 + 1 would round
    ("double precision", "bigint", X),
    ("numeric(8,2)", "double precision", X),
    ("double precision", "numeric", X),  # a binary float is not the decimal it prints as
    # text
    ("varchar(20)", "varchar(50)", W),
    ("varchar(50)", "varchar(20)", N),
    ("varchar(20)", "text", W),
    ("text", "varchar(20)", N),
    ("varchar(20)", "varchar", W),
    ("varchar", "text", W),
    ("text", "varchar", N),
    ("char(5)", "varchar(10)", W),
    ("char(5)", "text", W),
    ("char(5)", "char(10)", W),
    ("char(10)", "char(5)", N),
    ("char(5)", "bpchar", W),
    ("text", "char(5)", N),
    ("varchar(10)", "char(20)", X),  # padding: 'a ' and 'a' become one value
    ("varchar(20)", "bpchar", X),
    # time
    (TS, TSTZ, W),  # every instant kept, read in the server's time zone
    ("timestamp(6) without time zone", "timestamp(6) with time zone", W),
    (TSTZ, TS, N),
    ("timestamp(3) without time zone", "timestamp(6) without time zone", W),
    ("timestamp(6) without time zone", "timestamp(3) without time zone", N),
    ("timestamp(3) without time zone", TS, W),  # no precision: 6
    ("timestamp(3) without time zone", "timestamp(6) with time zone", W),
    ("timestamp(6) without time zone", "timestamp(3) with time zone", X),
    ("date", "timestamp(6) without time zone", W),
    ("date", TS, W),
    ("date", TSTZ, W),
    ("timestamp(6) without time zone", "date", N),
    ("time(3) without time zone", "time(6) without time zone", W),
    ("time(6) without time zone", "time(3) without time zone", N),
    ("time without time zone", TS, X),
    ("date", "time without time zone", X),
    # other kinds
    ("text", "integer", X),
    ("integer", "text", X),  # text holds the digits, not their order or arithmetic
    ("boolean", "integer", X),
    ("integer", "boolean", X),
    ("uuid", "text", X),
    ("json", "jsonb", W),
    ("jsonb", "json", N),
    ("jsonb", "text", X),
    # arrays: element by element
    ("integer[]", "bigint[]", W),
    ("bigint[]", "integer[]", N),
    ("varchar(5)[]", "text[]", W),
    ("integer[]", "integer", X),
    ("integer", "integer[]", X),
    ("date[]", TS, X),  # an array is never its element's type, nor anything that type widens to
    # the same type
    ("integer", "integer", None),
    ("numeric(8,2)", "numeric(8,2)", None),
    ("text", "text", None),
    ("integer[]", "integer[]", None),
    (TSTZ, TSTZ, None),
]

BUGS: list[Any] = []  # each found by this file once, fixed since, and kept as a row below
FIXED = [
    # every numeric(5,0) (at most 99999) is an integer: integer -> numeric(5,0) narrows
    ("integer", "numeric(5,0)", N),
    ("numeric(5,0)", "integer", W),
    # numeric(8,-2) rounds to hundreds (123 -> 100) and reaches 10 digits: neither holds the other
    ("integer", "numeric(8,-2)", X),
    # a char(5) value has at most 5 characters
    ("char(5)", "varchar(5)", W),
    ("bpchar", "text", W),
    ("interval(3)", "interval", W),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"), [pytest.param(*row, id=f"{row[0]}->{row[1]}") for row in ROWS + FIXED] + BUGS
)
def test_type_change(old: str, new: str, expected: Kind | None) -> None:
    assert type_change(old, new) is expected


@pytest.mark.parametrize(
    ("old", "new"),
    [pytest.param(old, new, id=f"{old}<->{new}") for old, new, kind in ROWS if kind is W],
)
def test_a_widening_read_backwards_is_a_narrowing(old: str, new: str) -> None:
    assert type_change(new, old) is N
