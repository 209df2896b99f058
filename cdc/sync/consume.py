"""The only module that talks to Kafka for `cdc sync`: a consumer-group member whose positions
come from the warehouse, never from Kafka's committed offsets."""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.protocol import ConsumerProtocolMemberAssignment_v0
from kafka.errors import KafkaError

from cdc.decode.envelope import Headers
from cdc.events import new_tuple
from cdc.kafka_errors import check_resolvable, kafka_error

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # (name, value) pairs, or a function returning them: confluent-kafka builds them on request,
    # and cdc needs them only on the rare messages of a primary-key change.
    headers: Headers = None


def change_topics(prefix: str, tables: tuple[str, ...] = ()) -> str:
    """The topics holding row changes: <prefix>.<schema>.<table>, but not Debezium's transaction
    metadata topic nor the topics of cdc's own signal and heartbeat tables. With table patterns
    (schema.table globs), only their topics, and the source's DDL."""
    p = re.escape(prefix)
    internal = r"(?!transaction$)(?!cdc\.debezium_(?:signal|heartbeat)$)"
    if not tables:
        return rf"^{p}\.{internal}[^.]+\..+$"
    wanted = "|".join(fnmatch.translate(topic_safe(t)) for t in tables)
    # The source's DDL (cdc schema install) is read whatever the tables: drift needs it for all.
    return rf"^{p}\.{internal}(?:{wanted}|cdc\.schema_ddl$)"


def topic_safe(name: str) -> str:
    """A name (or glob) as it appears in a Debezium topic: [A-Za-z0-9._-] kept, the rest '_'."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-*?[]") else "_" for ch in name)


# Fetch sizes count compressed bytes: lz4 batches of Debezium JSON inflate ~10x in memory. A whole
# fetch response is one network frame: the receive limit allows what fetch_max_bytes asks for (and
# a batch over the per-partition limit, which Kafka returns whole anyway).
FETCH_SETTINGS: dict[str, int] = {
    "fetch_max_bytes": 4 * 1024 * 1024,
    "max_partition_fetch_bytes": 1024 * 1024,
    "receive_message_max_bytes": 16 * 1024 * 1024,
}


END_OFFSETS_TIMEOUT_MS = 5000
BATCH = 10_000  # records one poll returns at most (both backends)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, revoked: Callable[[list[Partition]], None], assigned: Callable[[list[Partition]], None]):
        self._revoked = revoked
        self._assigned = assigned

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._revoked(sorted((tp.topic, tp.partition) for tp in revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned(sorted((tp.topic, tp.partition) for tp in assigned))


class _RoundRobin(RoundRobinPartitionAssignor):  # type: ignore[misc]
    """kafka-python's round-robin assignor, with its skip-unsubscribed-member loop fixed (2.3.3
    assigns a (group_instance_id, member_id) pair where a member id belongs, and fails with a
    KeyError whenever one member has not yet seen a topic that matches the group's pattern)."""

    @classmethod
    def assign(cls, cluster: Any, group_subscriptions: dict[str, Any]) -> dict[str, Any]:
        topics = sorted({t for s in group_subscriptions.values() for t in s.topics})
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        members = sorted(group_subscriptions)
        assignment: dict[str, dict[str, list[int]]] = {m: {} for m in members}
        turn = 0
        for partition in partitions:
            for _ in range(len(members)):
                member = members[turn % len(members)]
                turn += 1
                if partition.topic in group_subscriptions[member].topics:
                    assignment[member].setdefault(partition.topic, []).append(partition.partition)
                    break
        return {
            m: ConsumerProtocolMemberAssignment_v0(cls.version, sorted(assignment[m].items()), b"") for m in members
        }


def _finish_every_rebalance(consumer: KafkaConsumer) -> None:
    """Make kafka-python finish every rebalance it starts.

    kafka-python 2.3 rejoins the group when its pattern subscription (or, on the leader, the
    topics' metadata) changes, and tells so by comparing the subscription with the one it last
    joined with. It records the new one when it *sends* the JoinGroup request. If the poll's
    timeout runs out before the answer (the revoke callback flushes to the warehouse, which takes
    longer than a 100 ms poll), the next poll sees nothing to rejoin for and never completes the
    join: the partitions were revoked, the group moved on to a new generation, but the member
    keeps its old assignment, never calls on_partitions_assigned, and never reads the new topics.
    That is the "stall when topics appear" of issue 7 (reproduced in
    tests/integration/test_consumer_rebalance.py). The Java client avoids it by also rejoining while a
    join is pending or prepared (`rejoinNeededOrPending`); so does this."""
    coordinator = consumer._coordinator
    needs_rejoin = coordinator.need_rejoin

    def need_rejoin_or_pending() -> bool:
        return bool(needs_rejoin() or coordinator.rejoining or coordinator.join_future is not None)

    coordinator.need_rejoin = need_rejoin_or_pending


class KafkaSource:
    def __init__(
        self,
        bootstrap: str,
        *,
        group: str,
        topics_pattern: str,
        on_revoked: Callable[[list[Partition]], None],
        on_assigned: Callable[[list[Partition]], None],
        max_poll_records: int = BATCH,
        session_timeout_ms: int = 10_000,
        group_instance_id: str | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        check_resolvable(bootstrap)
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group,
                client_id=f"cdc-sync-{group}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=max_poll_records,
                **FETCH_SETTINGS,
                # New tables get new topics: find them within seconds, not Kafka's default 5 minutes.
                metadata_max_age_ms=5000,
                session_timeout_ms=session_timeout_ms,
                # Every change topic has one partition: the default range assignor would give
                # partition 0 of every topic to the same member, and a second member no work.
                partition_assignment_strategy=[_RoundRobin],
                heartbeat_interval_ms=min(3000, session_timeout_ms // 3),
                group_instance_id=group_instance_id,
            )
        except KafkaError as exc:
            raise kafka_error(exc, bootstrap) from exc
        _finish_every_rebalance(self._consumer)
        self._consumer.subscribe(pattern=topics_pattern, listener=_Listener(on_revoked, on_assigned))

    def poll(self, timeout_ms: int) -> list[Record]:
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:  # kafka-python retries what it can itself: what comes out is final
            raise kafka_error(exc, self._bootstrap) from exc
        return [
            new_tuple(Record, (r.topic, r.partition, r.offset, r.key, r.value, r.headers))
            for records in batches.values()
            for r in records
        ]

    def seek(self, partition: Partition, offset: int) -> None:
        self._consumer.seek(TopicPartition(*partition), offset)

    def seek_to_beginning(self, partitions: list[Partition]) -> None:
        if partitions:
            self._consumer.seek_to_beginning(*(TopicPartition(*p) for p in partitions))

    def assignment(self) -> list[Partition]:
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def pause(self, partitions: list[Partition]) -> None:
        self._consumer.pause(*(TopicPartition(*p) for p in partitions))

    def resume(self, partitions: list[Partition]) -> None:
        self._consumer.resume(*(TopicPartition(*p) for p in partitions))

    def end_offsets(self, partitions: list[Partition]) -> dict[Partition, int] | None:
        """The offset after the last message of each partition (None if Kafka did not answer)."""
        try:
            # KafkaConsumer.end_offsets waits request_timeout_ms (305 s) when Kafka is down: long
            # enough to overrun max.poll.interval and be thrown out of the group.
            ends = self._consumer._fetcher.end_offsets([TopicPartition(*p) for p in partitions], END_OFFSETS_TIMEOUT_MS)
        except KafkaError:
            return None
        return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    def partitions_of(self, topic: str) -> list[Partition]:
        """The partitions of a topic, as the client's metadata has them ([] if unknown). The cached
        metadata (a pattern subscription keeps every topic's): KafkaConsumer.partitions_for_topic
        would fetch it, with no time limit, for a topic not there."""
        return [(topic, p) for p in sorted(self._consumer._client.cluster.partitions_for_topic(topic) or ())]

    def has_topics(self) -> bool:
        """Whether any topic matches the subscription (so an empty assignment is not idleness)."""
        return bool(self._consumer.subscription())

    def topics(self) -> list[str]:
        """Every topic in the cluster."""
        try:
            return sorted(self._consumer.topics())
        except KafkaError as exc:
            raise kafka_error(exc, self._bootstrap) from exc

    def close(self) -> None:
        self._consumer.close(autocommit=False)
