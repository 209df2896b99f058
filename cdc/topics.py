"""`cdc topics`: the change topics in Kafka and how many messages each holds."""

from __future__ import annotations

from dataclasses import dataclass

from cdc.kafka_errors import check_resolvable, kafka_error


@dataclass(frozen=True)
class TopicCount:
    topic: str
    partitions: int
    messages: int


def count(bootstrap: str, prefix: str) -> list[TopicCount]:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    check_resolvable(bootstrap)
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=10000)
    except KafkaError as exc:
        raise kafka_error(exc, bootstrap) from exc
    try:
        result = []
        for topic in sorted(t for t in consumer.topics() if t.startswith(prefix)):
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            begin, end = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
            result.append(TopicCount(topic, len(parts), sum(end[p] - begin[p] for p in parts)))
    except KafkaError as exc:
        raise kafka_error(exc, bootstrap) from exc
    finally:
        consumer.close()
    return result
