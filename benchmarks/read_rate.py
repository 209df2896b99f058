"""How fast each Kafka client hands a topic's messages to Python, without decoding or applying
them: the ceiling the consumer backend puts on `cdc sync`.

    python -m benchmarks.read_rate --topic cdc.bench_<run>.orders   # e.g. a topic kept with --keep

Both clients are configured as cdc/consume.py and cdc/consume_confluent.py configure them, read
the whole topic from offset 0 into cdc's Record tuples, and report messages/s and their own CPU.
"""

from __future__ import annotations

import argparse
import resource
import time
import uuid
from collections.abc import Callable

from benchmarks import common as c
from cdc.consume import Record


def kafka_python(bootstrap: str, topic: str, end: int) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_poll_records=10_000,
        fetch_max_bytes=4 * 1024 * 1024,
        max_partition_fetch_bytes=1024 * 1024,
        receive_message_max_bytes=16 * 1024 * 1024,
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
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-rate-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "queued.max.messages.kbytes": 8 * 1024,
            "fetch.queue.backoff.ms": 10,
            "fetch.max.bytes": 4 * 1024 * 1024,
            "max.partition.fetch.bytes": 1024 * 1024,
            "fetch.wait.max.ms": 100,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    read = 0
    while read < end:
        first = consumer.poll(1.0)
        if first is None:
            continue
        messages = [first, *consumer.consume(9_999, 0)]
        batch = [
            Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.headers)  # type: ignore[arg-type]
            for m in messages
            if m.error() is None
        ]
        read += len(batch)
    consumer.close()
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
