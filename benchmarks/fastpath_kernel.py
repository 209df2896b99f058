"""The compiled staging kernel (rust/cdc_fastpath) against the Python path it replaces, pure CPU, no
stack: decode (EnvelopeDecoder) + COPY text lines (staging_text) in Python, against
cdc_fastpath.staging_lines, on the same synthetic messages in flushes of 20,000 (cdc sync's
default), side by side in one process, the outputs asserted identical each round.

The messages are recorded ones (tests/fixtures/debezium) of two tables, each made unique: its own
key, LSN, sequence, commit time and a few values, so nothing is cached by accident. fx.every_type:
28 columns the kernel writes, 24.5 KB per message (23 KB of it the schema half), and the same with
the fixture's one 297 KB message (a 125 KB value) among every eight; fx.pk_change: 2 columns,
3.2 KB. Building the list of values is not timed (a Kafka client hands it over).

    python -m benchmarks.fastpath_kernel [--messages 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from benchmarks import common as c
from cdc.decode.envelope import EnvelopeDecoder
from cdc.events import Column, Origin
from cdc.fastpath import Extension, kind_of, load
from cdc.warehouse.copy import staging_text

FIXTURES = c.REPO / "tests" / "fixtures" / "debezium"
Message = tuple[Origin, bytes, bytes]


def _recorded(name: str) -> list[Message]:
    found = []
    for line in (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        if m["value"] is not None:
            found.append(
                (Origin(m["topic"], m["partition"], m["offset"]), (m["key"] or "").encode(), m["value"].encode())
            )
    return found


def synthesize(
    name: str, count: int, vary: Callable[[dict[str, Any], int], None], largest: int
) -> tuple[bytes, tuple[Column, ...], tuple[str, ...], list[Message]]:
    decoder = EnvelopeDecoder()
    templates = []
    for origin, key, value in _recorded(name):
        event = decoder.decode(origin, key, value)
        if event is not None and event.op.value in ("c", "u") and len(value) <= largest:
            templates.append((origin, key, value, event))
    origin, key, value, event = templates[0]
    prefix = event.raw_prefix
    key_prefix = key[: key.index(b',"payload":') + len(b',"payload":')]
    payloads = [json.loads(v[len(prefix) : -1]) for _, _, v, _ in templates]
    messages = []
    for i in range(count):
        payload = copy.deepcopy(payloads[i % len(payloads)])
        payload["after"]["id"] = i + 1
        vary(payload["after"], i)
        lsn = 200_000_000 + i * 72
        payload["source"]["sequence"] = f'["{lsn - 4000}","{lsn}"]'
        payload["source"]["lsn"] = lsn
        payload["source"]["ts_ms"] = 1_796_242_505_973 + i
        messages.append(
            (
                Origin(origin.topic, 0, i),
                key_prefix + orjson.dumps({"id": i + 1}) + b"}",
                prefix + orjson.dumps(payload) + b"}",
            )
        )
    columns = tuple(col for col in event.schema.columns if kind_of(col) is not None)
    return prefix, columns, event.schema.key, messages


def vary_every_type(after: dict[str, Any], i: int) -> None:
    after["c_bigint"] = i * 7919
    after["c_integer"] = i % 100_000
    after["c_double"] = i / 7
    after["c_text"] = f"row {i} text\twith a tab" if i % 10 == 0 else f"row {i} text"
    after["c_bool"] = i % 2 == 0
    if after.get("c_timestamp") is not None and abs(after["c_timestamp"]) < 2**62:
        # Not the infinities: Debezium writes int64, and a value moved past it is not one it sends.
        after["c_timestamp"] += i * 1_000_003
    after["c_timestamptz"] = f"2026-0{1 + i % 9}-1{i % 10}T10:0{i % 10}:00.{i % 1000000:06d}Z"


def vary_pk_change(after: dict[str, Any], i: int) -> None:
    after["v"] = f"value {i}" + ("\\" if i % 50 == 0 else "")


FLUSH = 20_000  # events per flush, as cdc sync's default CDC_FLUSH_ROWS


def python_path(columns: tuple[Column, ...], messages: list[Message]) -> tuple[list[str], float]:
    """Per flush of FLUSH messages: decode each, then the flush's COPY text."""
    decode = EnvelopeDecoder().decode
    texts, took = [], 0.0
    for first in range(0, len(messages), FLUSH):
        started = time.perf_counter()
        events = [decode(o, k, v) for o, k, v in messages[first : first + FLUSH]]
        text, bad = staging_text([e for e in events if e is not None], columns)
        took += time.perf_counter() - started
        assert not bad
        texts.append(text)
    return texts, took


def kernel(  # noqa: PLR0917 - one measurement's inputs
    fast: Extension, prefix: bytes, columns: tuple[Column, ...], key: tuple[str, ...], values: list[bytes], threads: int
) -> tuple[list[str], float]:
    """Per flush of FLUSH values: the kernel's COPY text, the flush split across `threads`."""
    kinds = [(col.name, kind_of(col) or "", col.varlena) for col in columns]
    texts, took = [], 0.0
    with ThreadPoolExecutor(threads) as pool:
        for first in range(0, len(values), FLUSH):
            flush = values[first : first + FLUSH]
            step = (len(flush) + threads - 1) // threads
            chunks = [flush[i : i + step] for i in range(0, len(flush), step)]
            started = time.perf_counter()
            results = list(pool.map(lambda chunk: fast.staging_lines(prefix, kinds, list(key), chunk), chunks))
            took += time.perf_counter() - started
            assert not any(left for _, left in results)
            texts.append("".join(text for text, _ in results))
    return texts, took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fast = load()
    if fast is None:
        print("the extension is not built: make install (needs cargo), or pip install ./rust/cdc_fastpath")
        return 2
    results: dict[str, Any] = {
        "benchmark": "fastpath_kernel",
        "options": vars(args),
        "machine": c.cpu_facts(),
        "tables": {},
    }
    cases = (
        ("fx.every_type", "fx.every_type", vary_every_type, 100_000),
        # The recorded messages include one of 297 KB (a 125 KB value): one message in eight.
        ("fx.every_type, with its 297 KB message", "fx.every_type", vary_every_type, 10**9),
        ("fx.pk_change", "fx.pk_change", vary_pk_change, 10**9),
    )
    for name, fixture, vary, largest in cases:
        prefix, columns, key, messages = synthesize(fixture, args.messages, vary, largest)
        values = [v for _, _, v in messages]
        times: dict[str, list[float]] = {"python": [], "kernel": [], "kernel, 2 threads": []}
        for _ in range(args.rounds):
            gc.collect()
            expected, took = python_path(columns, messages)
            times["python"].append(took)
            for label, threads in (("kernel", 1), ("kernel, 2 threads", 2)):
                gc.collect()
                text, took = kernel(fast, prefix, columns, key, values, threads)
                assert text == expected, f"{name}: the kernel's output differs from the Python path's"
                times[label].append(took)
        per_event = {label: statistics.median(t) / len(messages) * 1e6 for label, t in times.items()}
        results["tables"][name] = {
            "messages": len(messages),
            "columns": len(columns),
            "mean_message_bytes": round(sum(map(len, values)) / len(values)),
            "prefix_bytes": len(prefix),
            "seconds": times,
            "us_per_event_median": per_event,
            "speedup_vs_python": {label: per_event["python"] / us for label, us in per_event.items()},
        }
        rows = [[name, label, f"{us:.2f}", f"{per_event['python'] / us:.1f}x"] for label, us in per_event.items()]
        print(c.table_text(["table", "path", "µs/event (median)", "vs Python"], rows))
    print(f"wrote {c.save_result('fastpath_kernel', results)}; outputs identical in every round")
    return 0


if __name__ == "__main__":
    sys.exit(main())
