"""How fast each Kafka client hands a topic's messages to Python, without decoding or applying
them: the ceiling the consumer backend puts on `cdc sync`.

    python -m benchmarks.read_rate --topic cdc.bench_<run>.orders   # e.g. a topic kept with --keep

Both clients are configured as cdc/sync/consume.py and cdc/sync/consume_confluent.py configure them, read
the whole topic from offset 0 into cdc's Record tuples, and report messages/s and their own CPU.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable

from benchmarks import common as c
from cdc.sync.consume import FETCH_SETTINGS, Record


def kafka_python(bootstrap: str, topic: str, end: int) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=10_000, **FETCH_SETTINGS
    )
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek(TopicPartition(topic, 0), 0)
    read = 0
    while read < end:
        for records in consumer.poll(timeout_ms=1000).values():
            batch = [Record(r.topic, r.partition, r.offset, r.key, r.value, r.headers) for r in records]
            read += len(batch)
    consumer.close()
    return read


def confluent(bootstrap: str, topic: str, end: int) -> int:
    read = 0
    for messages in c.confluent_batches(bootstrap, topic, end):
        batch = [
            Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.headers)
            for m in messages
            if m.error() is None
        ]
        read += len(batch)
    return read


def measure(name: str, read: Callable[[str, str, int], int], bootstrap: str, topic: str, end: int) -> None:
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    count = read(bootstrap, topic, end)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    print(f"{name:>13}: {count:,} messages in {elapsed:.2f} s = {count / elapsed:,.0f}/s (CPU {used:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="raw read rate of kafka-python and confluent-kafka")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the clients this many times")
    args = parser.parse_args(argv)
    stack = c.Stack.load()
    end = c.end_offset(stack.bootstrap, args.topic)
    print(f"{args.topic}: {end:,} messages")
    for _ in range(args.rounds):
        measure("kafka-python", kafka_python, stack.bootstrap, args.topic, end)
        measure("confluent", confluent, stack.bootstrap, args.topic, end)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
