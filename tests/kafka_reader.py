"""Read a topic from its beginning with kafka-python, keeping the raw bytes of every message."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition


@dataclass(frozen=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def topics_with_prefix(bootstrap: str, prefix: str) -> list[str]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        return sorted(t for t in consumer.topics() if t.startswith(prefix))
    finally:
        consumer.close()


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    if not topics:
        return
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics(topics, timeout_ms=30000)
    finally:
        admin.close()
    deadline = time.monotonic() + 30
    while set(topics) & set(topics_with_prefix(bootstrap, "")):
        if time.monotonic() > deadline:
            raise AssertionError(f"topics {topics} still exist 30s after deletion")
        time.sleep(0.5)


def read_topic(
    bootstrap: str,
    topic: str | list[str],
    *,
    done: Callable[[list[RawMessage]], bool],
    timeout: float = 90,
) -> list[RawMessage]:
    """Every message of the topic(s) from offset 0, polling until done(messages) or timeout."""
    topics = [topic] if isinstance(topic, str) else topic
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        deadline = time.monotonic() + timeout
        assigned: list[TopicPartition] = []
        for name in topics:
            partitions = consumer.partitions_for_topic(name)
            while not partitions:
                if time.monotonic() > deadline:
                    raise AssertionError(f"topic {name} was never created")
                time.sleep(0.5)
                consumer.topics()  # refresh metadata
                partitions = consumer.partitions_for_topic(name)
            assigned.extend(TopicPartition(name, p) for p in sorted(partitions))
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        messages: list[RawMessage] = []
        while not done(messages):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"topics {topics}: condition not met after {timeout}s with {len(messages)} messages"
                )
            for records in consumer.poll(timeout_ms=500).values():
                messages.extend(
                    RawMessage(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ())) for r in records
                )
        return messages
    finally:
        consumer.close()


def settled(quiet_seconds: float, minimum: int = 1) -> Callable[[list[RawMessage]], bool]:
    """A done() condition: at least minimum messages, then none new for quiet_seconds."""
    seen = {"count": -1, "since": time.monotonic()}

    def check(messages: list[RawMessage]) -> bool:
        if len(messages) != seen["count"]:
            seen["count"], seen["since"] = len(messages), time.monotonic()
            return False
        return len(messages) >= minimum and time.monotonic() - seen["since"] >= quiet_seconds

    return check
