"""`cdc` with one fault injected, for the stall detector's test: once records of the topic named by
CDC_TEST_STALL_TOPIC arrive, the consumer stops fetching that partition (Kafka's own pause),
behind the sync loop's back. Lag then grows while nothing of it is read: the silent stall of
issue 7, made on purpose. Everything else is the real `cdc`.

    python -m tests.stall_injector sync --table ...
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from cdc.cli import main
from cdc.sync.consume import KafkaSource, Partition, Record


def _pause_kafka_python(source: Any, partition: Partition) -> None:
    from kafka import TopicPartition

    source._consumer.pause(TopicPartition(*partition))


def _pause_confluent(source: Any, partition: Partition) -> None:
    from confluent_kafka import TopicPartition

    source._consumer.pause([TopicPartition(*partition)])


def _inject(source_class: Any, pause: Callable[[Any, Partition], None], topic: str) -> None:
    poll = source_class.poll

    def poll_then_pause(self: Any, timeout_ms: int) -> list[Record]:
        records: list[Record] = poll(self, timeout_ms)
        if not getattr(self, "_stall_injected", False):
            hit = next((r for r in records if r.topic == topic), None)
            if hit is not None:
                self._stall_injected = True
                pause(self, (hit.topic, hit.partition))
                print(f"stall-injector: paused {hit.topic}[{hit.partition}] at {time.time():.3f}", file=sys.stderr)
        return records

    source_class.poll = poll_then_pause


if __name__ == "__main__":
    stalled_topic = os.environ["CDC_TEST_STALL_TOPIC"]
    _inject(KafkaSource, _pause_kafka_python, stalled_topic)
    if os.environ.get("CDC_KAFKA_CLIENT") == "confluent":
        from cdc.sync.consume_confluent import ConfluentSource

        _inject(ConfluentSource, _pause_confluent, stalled_topic)
    sys.argv[0] = "cdc"
    main()
