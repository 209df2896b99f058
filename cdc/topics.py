"""`cdc topics`: the change topics in Kafka and how many messages each holds."""

from __future__ import annotations

from dataclasses import dataclass

from cdc.errors import TransientError


@dataclass(frozen=True)
class TopicCount:
    topic: str
    partitions: int
    messages: int


def count(bootstrap: str, prefix: str) -> list[TopicCount]:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=10000)
    except KafkaError as exc:
        raise TransientError(
            f"Kafka at {bootstrap} did not answer ({exc.__class__.__name__}).",
            "start it (cdc stack up) or set CDC_KAFKA_BOOTSTRAP_SERVERS",
        ) from exc
    try:
        result = []
        for topic in sorted(t for t in consumer.topics() if t.startswith(prefix)):
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            begin, end = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
            result.append(TopicCount(topic, len(parts), sum(end[p] - begin[p] for p in parts)))
        return result
    finally:
        consumer.close()
