"""Decode cost of a numeric value, per Debezium decimal.handling.mode: what `cdc sync` pays per value
to parse the value's JSON and turn it into PostgreSQL input text (cdc.decode.types), for

- precise (the old connector setting): numeric(p,s) as base64 of the unscaled integer, unconstrained
  numeric as {"scale": s, "value": base64} (VariableScaleDecimal);
- string (the setting now): BigDecimal.toPlainString() text, checked against a number literal before
  it may go into COPY; NaN/±Infinity as Debezium's enum names.

No stack needed. Values are random but fixed (seeded): amounts of numeric(12,2), and unconstrained
numerics of 1-20 digits with scale 0-10.

    python -m benchmarks.numeric_decode [--values 200000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import random
import re
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import table_text
from cdc.decode.types import field_type

PRECISE_12_2 = {
    "type": "bytes",
    "name": "org.apache.kafka.connect.data.Decimal",
    "parameters": {"scale": "2", "connect.decimal.precision": "12", "__debezium.source.column.type": "NUMERIC"},
}
PRECISE_VARIABLE = {
    "type": "struct",
    "name": "io.debezium.data.VariableScaleDecimal",
    "parameters": {"__debezium.source.column.type": "NUMERIC", "__debezium.source.column.length": "131089"},
}


def string_field(length: int, scale: int) -> dict[str, Any]:
    params = {"type": "NUMERIC", "length": str(length), "scale": str(scale)}
    return {"type": "string", "parameters": {f"__debezium.source.column.{k}": v for k, v in params.items()}}


def unscaled_b64(unscaled: int) -> str:
    return base64.b64encode(unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)).decode()


def values(count: int) -> tuple[list[Decimal], list[Decimal]]:
    rng = random.Random(13)  # noqa: S311 - fixed test values, not secrets
    amounts = [Decimal(rng.randrange(-(10**10), 10**10)).scaleb(-2) for _ in range(count)]
    free = [
        Decimal(rng.randrange(-(10 ** rng.randint(1, 20)), 10**20)).scaleb(-rng.randint(0, 10)) for _ in range(count)
    ]
    return amounts, free


def precise_json(amounts: list[Decimal], free: list[Decimal]) -> tuple[bytes, bytes]:
    fixed = [unscaled_b64(int(a.scaleb(2))) for a in amounts]
    variable = []
    for d in free:
        sign, digits, exponent = d.as_tuple()
        unscaled = int("".join(map(str, digits))) * (-1 if sign else 1)
        variable.append({"scale": -int(exponent), "value": unscaled_b64(unscaled)})
    return orjson.dumps(fixed), orjson.dumps(variable)


def string_json(amounts: list[Decimal], free: list[Decimal]) -> tuple[bytes, bytes]:
    return orjson.dumps([f"{a:f}" for a in amounts]), orjson.dumps([f"{d:f}" for d in free])


def best_ns(fn: Callable[[], object], count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        fn()
        best = min(best, time.perf_counter_ns() - start)
    return best / count


def measure(name: str, raw: bytes, encode: Callable[[Any], str], repeat: int) -> list[Any]:
    parsed = orjson.loads(raw)
    count = len(parsed)
    parse = best_ns(lambda: orjson.loads(raw), count, repeat)
    convert = best_ns(lambda: [encode(v) for v in parsed], count, repeat)
    return [name, parse, convert, parse + convert, len(raw) / count]


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    cpu = model.group(1).strip() if model else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    amounts, free = values(args.values)
    p_fixed, p_variable = precise_json(amounts, free)
    s_fixed, s_variable = string_json(amounts, free)
    specials = orjson.dumps([("NAN", "POSITIVE_INFINITY", "NEGATIVE_INFINITY")[i % 3] for i in range(args.values)])

    string_12_2 = field_type(string_field(12, 2)).encode
    string_free = field_type(string_field(131089, 0)).encode
    decoded = {
        "precise": [string_12_2(t) for t in map(field_type(PRECISE_12_2).encode, orjson.loads(p_fixed))],
        "string": [string_12_2(t) for t in orjson.loads(s_fixed)],
    }
    # Both paths give the same text for a constrained numeric; unconstrained ones differ only where
    # precise mode has already stripped trailing zeros upstream (Debezium), so compare as numbers.
    assert decoded["precise"] == decoded["string"]
    precise_free = list(map(field_type(PRECISE_VARIABLE).encode, orjson.loads(p_variable)))
    assert [Decimal(t) for t in precise_free] == [Decimal(t) for t in map(string_free, orjson.loads(s_variable))]

    rows = [
        measure("numeric(12,2)  precise (base64 unscaled)", p_fixed, field_type(PRECISE_12_2).encode, args.repeat),
        measure("numeric(12,2)  string (checked text)", s_fixed, string_12_2, args.repeat),
        measure("numeric(12,2)  string, unchecked (str)", s_fixed, str, args.repeat),
        measure(
            "numeric        precise (VariableScaleDecimal)",
            p_variable,
            field_type(PRECISE_VARIABLE).encode,
            args.repeat,
        ),
        measure("numeric        string (checked text)", s_variable, string_free, args.repeat),
        measure("numeric        string NaN/±Infinity", specials, string_free, args.repeat),
    ]
    print(f"{args.values:,} values per case, best of {args.repeat}; {machine()}")
    print(
        table_text(
            ["case", "JSON parse ns", "to text ns", "total ns/value", "JSON bytes"],
            [[r[0], f"{r[1]:.0f}", f"{r[2]:.0f}", f"{r[3]:.0f}", f"{r[4]:.1f}"] for r in rows],
        )
    )
    print(f"string / precise, numeric(12,2): {rows[1][3] / rows[0][3]:.2f}x per value")
    print(f"string / precise, unconstrained numeric: {rows[4][3] / rows[3][3]:.2f}x per value")
    print(f"cost of the check (string checked - unchecked, numeric(12,2)): {rows[1][2] - rows[2][2]:.0f} ns/value")


if __name__ == "__main__":
    main()
