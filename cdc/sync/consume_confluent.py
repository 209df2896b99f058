"""The same consumer-group member as cdc.sync.consume.KafkaSource, on confluent-kafka (librdkafka).

kafka-python decodes every record batch in Python; on large Debezium messages that is a third of
`cdc sync`'s time (see benchmarks/README.md). librdkafka fetches, decompresses and splits batches
in C. Optional: `pip install 'cdc[confluent]'`, then CDC_KAFKA_CLIENT=confluent.

Differences from kafka-python that matter here:
- librdkafka's topic regex has no lookahead, and cdc's change-topic pattern needs one. So the
  topic list is matched in Python every `metadata_refresh` seconds and subscribed by name (a new
  matching topic means a new subscription, hence a rebalance, as with a pattern).
- Positions are applied in the assignment itself: the rebalance callback's seeks are collected
  and handed to assign(), since a partition cannot be seeked before it is assigned.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from cdc.errors import CdcError
from cdc.events import new_tuple
from cdc.kafka_errors import check_resolvable, confluent_error, is_refusal
from cdc.sync.consume import BATCH, Partition, Record

log = logging.getLogger(__name__)


# How much librdkafka fetches and keeps ahead. Sizes count compressed bytes (lz4 batches of
# Debezium JSON inflate ~10x): 8 MiB ahead, refilled as soon as it drains. librdkafka's default
# fetch.queue.backoff.ms (1 s) stalls fetching whenever the queue is full, which measured at half
# of the drain time.
FETCH_SETTINGS: dict[str, int] = {
    "queued.max.messages.kbytes": 8 * 1024,
    "fetch.queue.backoff.ms": 10,
    "fetch.max.bytes": 4 * 1024 * 1024,
    "max.partition.fetch.bytes": 1024 * 1024,
    "fetch.wait.max.ms": 100,
}


def take_available(consumer: Consumer, timeout: float, most: int) -> list[Message]:
    """Wait up to `timeout` s for one message, then take what is already fetched, up to `most`:
    consume(n, t) alone would wait for all n (or the timeout) and add latency at low rates."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(most - 1, 0)]


class ConfluentSource:
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
        metadata_refresh: float = 5.0,
    ) -> None:
        self._bootstrap = bootstrap
        check_resolvable(bootstrap)
        self._failed: CdcError | None = None  # a refusal reported in a callback, raised by poll
        self._pattern = re.compile(topics_pattern)
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned
        self._max = max_poll_records
        self._refresh = metadata_refresh
        self._topics: list[str] = []
        self._checked = 0.0
        self._assigning: list[Partition] | None = None  # set while the assignment callback runs
        self._pending: dict[Partition, int] = {}  # seeks asked for during that callback
        self._sought: dict[Partition, int] = {}  # the last seek of each partition
        self._revoked_now: set[Partition] = set()  # revoked during the poll under way
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "client.id": f"cdc-sync-{group}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # Every change topic has one partition: see cdc.sync.consume._RoundRobin. The protocol
                # name is the same as kafka-python's, so members of either client share a group.
                "partition.assignment.strategy": "roundrobin",
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": min(3000, session_timeout_ms // 3),
                **({"group.instance.id": group_instance_id} if group_instance_id else {}),
                **FETCH_SETTINGS,
                "error_cb": self._on_error,
                "logger": logging.getLogger("cdc.librdkafka"),
            }
        )
        self._update_subscription(force=True)

    # -- subscription ------------------------------------------------------------------------
    def _update_subscription(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self._refresh:
            return
        self._checked = now
        try:
            metadata = self._consumer.list_topics(timeout=5)
        except KafkaException as exc:
            if not force:
                log.warning("could not list Kafka topics (%s); keeping the subscription", exc)
                return
            raise confluent_error(exc.args[0], self._bootstrap) from exc
        topics = sorted(t for t in metadata.topics if self._pattern.match(t))
        if topics == self._topics:
            return
        self._topics = topics
        if topics:
            self._consumer.subscribe(topics, on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke)
        else:
            self._consumer.unsubscribe()

    def _revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        revoked = sorted((tp.topic, tp.partition) for tp in partitions)
        for partition in revoked:
            self._sought.pop(partition, None)
        self._revoked_now.update(revoked)
        self._on_revoked(revoked)

    def _assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        assigned = sorted((tp.topic, tp.partition) for tp in partitions)
        self._assigning, self._pending = assigned, {}
        try:
            self._on_assigned(assigned)
        finally:
            self._assigning = None
        # Partitions the callback did not position (the warehouse was unreachable) start from
        # nowhere in particular: the sync loop seeks them once it has read the stored offsets.
        consumer.assign([TopicPartition(t, p, self._pending.get((t, p), OFFSET_INVALID)) for t, p in assigned])
        self._pending = {}

    # -- the Source interface (cdc.sync.loop.Source) ----------------------------------------------
    def poll(self, timeout_ms: int) -> list[Record]:
        self._update_subscription()
        if not self._topics:
            time.sleep(timeout_ms / 1000)
            return []
        records = []
        self._revoked_now = set()
        messages = take_available(self._consumer, timeout_ms / 1000, self._max)
        # A message fetched before a revocation the same poll served is not this member's to read:
        # another member reads its partition from the stored offsets (unless it came back to us).
        gone = self._revoked_now - set(self.assignment()) if self._revoked_now else set()
        for m in messages:
            error = m.error()
            if error is not None:
                self._on_error(error)
                continue
            if gone and (m.topic(), m.partition()) in gone:
                continue
            # topic, partition and offset are set on every fetched (non-error) message
            records.append(new_tuple(Record, (m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.headers)))
        if self._failed is not None:
            raise self._failed
        return records

    def seek(self, partition: Partition, offset: int) -> None:
        self._sought[partition] = offset
        if self._assigning is not None:
            self._pending[partition] = offset
            return
        try:
            self._consumer.seek(TopicPartition(*partition, offset))
        except KafkaException:
            # Not fetching yet (just assigned): assign again, this partition at the offset, the
            # others where they are. A partition that has delivered nothing since its seek has no
            # position yet (OFFSET_INVALID, which would mean "from the beginning"): it stays at
            # the offset it was sought to.
            current = self._consumer.position(self._consumer.assignment())
            self._consumer.assign([self._where(tp) for tp in current])

    def _where(self, tp: TopicPartition) -> TopicPartition:
        key = (tp.topic, tp.partition)
        if tp.offset < 0 and key in self._sought:
            return TopicPartition(tp.topic, tp.partition, self._sought[key])
        return tp

    def seek_to_beginning(self, partitions: list[Partition]) -> None:
        for partition in partitions:
            self.seek(partition, OFFSET_BEGINNING)

    def assignment(self) -> list[Partition]:
        if self._assigning is not None:
            return list(self._assigning)
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def pause(self, partitions: list[Partition]) -> None:
        self._consumer.pause([TopicPartition(*p) for p in partitions])

    def resume(self, partitions: list[Partition]) -> None:
        self._consumer.resume([TopicPartition(*p) for p in partitions])

    def end_offsets(self, partitions: list[Partition]) -> dict[Partition, int] | None:
        """The offset after the last message of each partition (None if Kafka did not answer)."""
        ends = {}
        for topic, partition in partitions:
            try:
                _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
            except KafkaException:
                return None
            ends[(topic, partition)] = high
        return ends

    def partitions_of(self, topic: str) -> list[Partition]:
        """The partitions of a topic, as the cluster's metadata has them ([] if unknown)."""
        try:
            found = self._consumer.list_topics(topic, timeout=2).topics.get(topic)
        except KafkaException:
            return []
        return [(topic, p) for p in sorted(found.partitions)] if found is not None and found.error is None else []

    def has_topics(self) -> bool:
        """Whether any topic matches the subscription (so an empty assignment is not idleness)."""
        return bool(self._topics)

    def topics(self) -> list[str]:
        """Every topic in the cluster."""
        try:
            return sorted(self._consumer.list_topics(timeout=5).topics)
        except KafkaException as exc:
            raise confluent_error(exc.args[0], self._bootstrap) from exc

    def close(self) -> None:
        self._consumer.close()

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka retries what it can by itself; a refusal or a fatal error stops cdc sync."""
        if is_refusal(error):
            log.error("Kafka client error: %s", error)
            self._failed = self._failed or confluent_error(error, self._bootstrap)
        else:
            log.warning("Kafka client: %s", error)
