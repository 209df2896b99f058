"""The root cause of issue 7, pinned at the consumer: a revoke callback that outlasts the poll's
timeout (the flush before giving partitions up) while a new topic brings a rebalance.

kafka-python 2.3 records the subscription it rejoins with when it sends JoinGroup; when the poll's
timeout ran out before the answer, the next poll saw nothing to rejoin for, and the member kept its
old assignment for good: revoked, never assigned, the new topic read by nobody. Against the raw
KafkaConsumer this reproduced on every try with a 0.3 s callback and 100 ms polls.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from cdc.settings import Settings
from cdc.sync.consume import KafkaSource, Partition

pytestmark = pytest.mark.stack


@pytest.fixture
def topics(stack: Settings) -> Iterator[tuple[KafkaAdminClient, str]]:
    admin = KafkaAdminClient(bootstrap_servers=stack.require_kafka())
    prefix = f"rebalance{uuid.uuid4().hex[:8]}"
    yield admin, prefix
    admin.delete_topics([f"{prefix}.a", f"{prefix}.b"])
    admin.close()


@pytest.mark.both_clients
def test_a_slow_revoke_during_a_new_topic_rebalance_is_followed_by_the_assignment(
    stack: Settings, topics: tuple[KafkaAdminClient, str], kafka_client: str
) -> None:
    admin, prefix = topics
    admin.create_topics([NewTopic(f"{prefix}.a", 1, 1)])
    calls: list[tuple[str, list[str]]] = []

    def revoked(partitions: list[Partition]) -> None:
        calls.append(("revoked", [t for t, _ in partitions]))
        time.sleep(0.3)  # a flush: longer than the 100 ms poll

    def assigned(partitions: list[Partition]) -> None:
        calls.append(("assigned", [t for t, _ in partitions]))

    source_class: Any = KafkaSource
    if kafka_client == "confluent":
        from cdc.sync.consume_confluent import ConfluentSource

        source_class = ConfluentSource
    source = source_class(
        stack.require_kafka(),
        group=f"g_{prefix}",
        topics_pattern=rf"^{prefix}\..*",
        on_revoked=revoked,
        on_assigned=assigned,
    )
    try:
        deadline = time.monotonic() + 30
        while [t for t, _ in source.assignment()] != [f"{prefix}.a"]:
            assert time.monotonic() < deadline, calls
            source.poll(100)
        admin.create_topics([NewTopic(f"{prefix}.b", 1, 1)])
        created = time.monotonic()
        took: float | None = None
        settled = 0  # polls since the last callback, with both topics assigned
        while settled < 30:
            assert time.monotonic() - created < 40, f"the new topic was never assigned; callbacks: {calls}"
            before = len(calls)
            source.poll(100)
            both = [t for t, _ in source.assignment()] == [f"{prefix}.a", f"{prefix}.b"]
            if both and took is None:
                took = time.monotonic() - created
            settled = settled + 1 if both and len(calls) == before else 0
        seen = list(calls)
    finally:
        source.close()  # librdkafka revokes on close: not part of what is checked
    calls = seen
    assert calls[-1] == ("assigned", [f"{prefix}.a", f"{prefix}.b"]), calls
    revokes = [i for i, (kind, _) in enumerate(calls) if kind == "revoked"]
    assert all(i + 1 < len(calls) and calls[i + 1][0] == "assigned" for i in revokes), calls
    assert took is not None
    print(f"{kafka_client}: new topic assigned {took:.1f}s after it was created")
