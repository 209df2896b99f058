"""Where `cdc sync`'s per-event CPU goes, without a stack: the throughput benchmark's messages
(benchmarks/events.py, 7.2 KB each) through the stages of the sync loop, in polls of 10,000 and
flushes of 20,000 as cdc sync reads them, on the Python path and on the fast path, side by side in
one process; the staging text of every flush asserted identical.

The garbage collector is set as cdc sync's loop sets it (cdc.sync.loop.collect_rarely).

Stages, in µs per event: decode (EnvelopeDecoder alone; or the extension's decode_events, through
FastDecoder.decode), buffer (Buffer.add: compaction by key; on the fast path, FastDecoder.feed: the
kept messages into the buffer's FastRows, and the Python decoder for what the extension left, the
tombstones), staging (the COPY rows the flush sends: staging_text, or FastRows.staging_text).
Kafka and PostgreSQL are not in it: benchmarks/throughput.py measures the whole.
Also reported: the extension alone (decode_events over the same polls),
the part of the fast path's decode that is not per-event Python. For where its time goes inside,
run this under `perf record -g` (the extension is built with symbols).

    python -m benchmarks.sync_cpu [--events 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from typing import Any

from benchmarks import common as c
from benchmarks.events import OrdersStream
from cdc.buffer import Buffer
from cdc.decode.envelope import NEW_KEY_HEADER, EnvelopeDecoder, PoisonMessage, read_header
from cdc.decode.fast import FastDecoder
from cdc.events import ChangeEvent, Op, Origin, Version, new_tuple
from cdc.fastpath import kinds_of, load
from cdc.sync.consume import Record
from cdc.sync.loop import collect_rarely
from cdc.warehouse.copy import staging_text

POLL = 10_000
FLUSH = 20_000


def records(events: int) -> list[Record]:
    stream = OrdersStream(events, "cdc", "bench", seed=7)
    topic = "cdc.bench.orders"
    return [
        new_tuple(Record, (topic, 0, offset, key, value, None)) for offset, (key, value) in enumerate(stream.messages())
    ]


def run(messages: list[Record], fast: bool) -> tuple[dict[str, float], list[str]]:
    decoder = EnvelopeDecoder()
    extension = load() if fast else None
    fast_decoder = FastDecoder(decoder, extension) if extension is not None else None
    spent = {"decode": 0.0, "buffer": 0.0, "staging": 0.0}
    texts: list[str] = []
    buffer = Buffer()
    clock = time.perf_counter
    for start in range(0, len(messages), POLL):
        poll = messages[start : start + POLL]
        t0 = clock()
        events: list[ChangeEvent] = []
        if fast_decoder is not None:
            ready = fast_decoder.decode(poll)
            t1 = clock()
            fast_decoder.feed(poll, ready, buffer)  # the Python decoder's leftovers (tombstones) included
        else:
            for record in poll:
                try:
                    event = decoder.decode(new_tuple(Origin, record[:3]), record.key, record.value, record.headers)
                except PoisonMessage:
                    continue
                if event is not None:
                    events.append(event)
            t1 = clock()
            for event in events:
                buffer.add(event)
        t2 = clock()
        spent["decode"] += t1 - t0
        spent["buffer"] += t2 - t1
        if len(buffer) >= FLUSH or start + POLL >= len(messages):
            t3 = clock()
            for batch in buffer.batches():
                if batch.fast is not None:  # as the warehouse writes a batch the extension keeps
                    texts.append(batch.fast.staging_text())
                    continue
                text, refused = staging_text(batch.events(), batch.schema.columns)
                assert not refused
                texts.append(text)
            spent["staging"] += clock() - t3
            buffer = Buffer()
    return spent, texts


def extension_alone(messages: list[Record]) -> float:
    """µs per event of decode_events alone (the events included) on the messages, in polls of POLL."""
    decoder = EnvelopeDecoder()
    extension = load()
    assert extension is not None
    fast_decoder = FastDecoder(decoder, extension)
    fast_decoder.into(messages[:POLL], Buffer())  # the Python decoder learns the shape
    shape = decoder.route(messages[0].topic)
    assert shape is not None
    table = shape.table
    names = (table.table.schema, table.table.name)
    args = (shape.prefix, shape.key_prefix, kinds_of(table.columns), list(table.key), *names)
    make = (ChangeEvent, Version, Origin, {op.value: op for op in Op}, table.table, table, read_header, NEW_KEY_HEADER)
    events = 0
    started = time.perf_counter()
    for start in range(0, len(messages), POLL):
        poll = messages[start : start + POLL]
        ready: list[Any] = [None] * len(poll)
        events += extension.decode_events(*args, poll, list(range(len(poll))), ready, make)[0]
    return (time.perf_counter() - started) / events * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if load() is None:
        print("the fast path extension is not built (make install, with cargo)", file=sys.stderr)
        return 1
    messages = records(args.events)
    events = sum(1 for r in messages if r.value is not None)
    average = sum(len(r.value or b"") for r in messages) / len(messages)
    print(f"{events:,} events, {len(messages):,} messages, {average:,.0f} B avg")
    rounds: dict[str, list[dict[str, float]]] = {"python": [], "fast": []}
    alone: list[float] = []
    for n in range(args.rounds):
        outputs = {}
        for path in ("python", "fast"):  # alternated, so the machine's noise falls on both
            gc.collect()
            with collect_rarely():  # as cdc sync's loop runs
                spent, outputs[path] = run(messages, path == "fast")
            rounds[path].append({k: v / events * 1e6 for k, v in spent.items()})
        assert outputs["python"] == outputs["fast"], "the two paths' staging text differs"
        gc.collect()
        with collect_rarely():
            alone.append(extension_alone(messages))
        print(f"round {n + 1}: identical staging text ({sum(map(len, outputs['fast'])):,} chars)")
    result: dict[str, Any] = {"benchmark": "sync_cpu", "started_utc": c.now_stamp(), "args": vars(args)}
    result["machine"] = c.cpu_facts()
    table = {}
    for path, measured in rounds.items():
        table[path] = {stage: round(statistics.median(r[stage] for r in measured), 2) for stage in measured[0]}
        table[path]["total"] = round(sum(table[path].values()), 2)
    result["us_per_event_median"] = table
    result["speedup"] = {s: round(table["python"][s] / table["fast"][s], 2) for s in table["fast"]}
    result["extension_alone_us_per_event_median"] = round(statistics.median(alone), 2)
    print(f"{'µs/event (median of ' + str(args.rounds) + ')':<28}{'decode':>9}{'buffer':>9}{'staging':>9}{'total':>9}")
    for path in ("python", "fast"):
        row = table[path]
        print(f"{path:<28}{row['decode']:>9.2f}{row['buffer']:>9.2f}{row['staging']:>9.2f}{row['total']:>9.2f}")
    speed = result["speedup"]
    ratios = "".join(f"{speed[stage]:>8.1f}x" for stage in ("decode", "buffer", "staging", "total"))
    print(f"{'python / fast':<28}{ratios}")
    alone_us = result["extension_alone_us_per_event_median"]
    print(f"of the fast path's decode, the extension alone (decode_events): {alone_us:.2f} µs/event")
    print(f"results: {c.save_result('sync_cpu', result, result['started_utc'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
