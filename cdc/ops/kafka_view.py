"""What Kafka holds, read without joining any consumer group: the change topics, each partition's
retained range, and the source commit time of a message at an offset.

`cdc doctor` and `cdc status` use it beside a running `cdc sync`: a consumer without a group id
assigns itself partitions, so it neither triggers a rebalance nor commits anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from cdc.decode.json_message import payload_of
from cdc.kafka_errors import check_resolvable, kafka_error

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Retained:
    """A partition's retained range: messages [begin, end) are in Kafka."""

    begin: int
    end: int


class KafkaView:
    def __init__(self, bootstrap: str, timeout_ms: int = 10_000) -> None:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        check_resolvable(bootstrap)
        self._bootstrap = bootstrap
        try:
            self._consumer: Any = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=timeout_ms,
                api_version_auto_timeout_ms=timeout_ms,
            )
        except KafkaError as exc:
            raise kafka_error(exc, bootstrap) from exc

    def __enter__(self) -> KafkaView:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._consumer.close()

    def topics(self, prefix: str) -> list[str]:
        return sorted(t for t in self._call(self._consumer.topics) if t.startswith(prefix))

    def retained(self, topics: list[str]) -> dict[tuple[str, int], Retained]:
        """Every partition of these topics (the ones that exist) with its retained range."""
        from kafka import TopicPartition

        def read() -> dict[tuple[str, int], Retained]:
            parts = [TopicPartition(t, p) for t in topics for p in sorted(self._consumer.partitions_for_topic(t) or ())]
            if not parts:
                return {}
            begin, end = self._consumer.beginning_offsets(parts), self._consumer.end_offsets(parts)
            return {(p.topic, p.partition): Retained(begin[p], end[p]) for p in parts}

        return self._call(read)

    def source_ms_at(self, topic: str, partition: int, offset: int, scan: int = 20) -> int | None:
        """The source commit time (Debezium's source.ts_ms) of the first message from `offset` on
        that carries one (a tombstone or a truncate's key carries none), looking at most `scan`
        messages; None if there is none."""
        from kafka import TopicPartition

        def read() -> int | None:
            part = TopicPartition(topic, partition)
            self._consumer.assign([part])
            self._consumer.seek(part, offset)
            seen = 0
            for _ in range(5):
                for records in self._consumer.poll(timeout_ms=1000, max_records=scan).values():
                    for record in records:
                        stamp = _source_ms(record.value)
                        seen += 1
                        if stamp is not None or seen >= scan:
                            return stamp
            return None

        return self._call(read)

    def _call(self, read: Callable[[], _T]) -> _T:
        from kafka.errors import KafkaError

        try:
            return read()
        except KafkaError as exc:
            raise kafka_error(exc, self._bootstrap) from exc


def _source_ms(value: bytes | None) -> int | None:
    payload = payload_of(value)
    source = payload.get("source") if payload is not None else None
    stamp = source.get("ts_ms") if isinstance(source, dict) else None
    return stamp if isinstance(stamp, int) else None
