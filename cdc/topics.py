"""`cdc topics`: the change topics in Kafka and how many messages each holds."""

from __future__ import annotations

from dataclasses import dataclass

from cdc.ops.kafka_view import KafkaView


@dataclass(frozen=True)
class TopicCount:
    topic: str
    partitions: int
    messages: int


def count(bootstrap: str, prefix: str) -> list[TopicCount]:
    with KafkaView(bootstrap) as kafka:
        names = kafka.topics(prefix)
        retained = kafka.retained(names)
    result = []
    for topic in names:
        kept = [r for (name, _), r in retained.items() if name == topic]
        result.append(TopicCount(topic, len(kept), sum(r.end - r.begin for r in kept)))
    return result
