"""`cdc sync` put together from settings: the warehouse, the consumer backend, the loop."""

from __future__ import annotations

import logging
from typing import Any

from cdc.errors import ConfigError
from cdc.schema.alerts import WebhookSender
from cdc.schema.policy import policies_of
from cdc.settings import Settings
from cdc.sync.consume import KafkaSource, change_topics
from cdc.sync.loop import Sync, SyncOptions, SyncStats, stop_on_signals
from cdc.sync.slot_guard import SlotGapError, SlotGuard
from cdc.warehouse.postgres import PostgresWarehouse

log = logging.getLogger("cdc.sync")


def run_sync(
    settings: Settings,
    *,
    tables: tuple[str, ...] = (),
    group: str | None = None,
    until_idle: float | None = None,
    progress_every: float = 10.0,
    stall_seconds: float | None = None,
    metrics_port: int | None = None,
) -> SyncStats:
    """Run the loop until it is stopped (SIGINT/SIGTERM), idle (with until_idle) or fails."""
    group_id = group or settings.consumer_group
    options = SyncOptions(
        group=group_id,
        flush_rows=settings.flush_rows,
        flush_bytes=settings.flush_bytes,
        flush_interval=settings.flush_interval_ms / 1000,
        tables=tables,
        topic_prefix=settings.topic_prefix,
        until_idle=until_idle,
        progress_every=progress_every,
        retry_max_seconds=settings.retry_max_seconds,
        stall_seconds=stall_seconds or settings.stall_seconds,
    )
    warehouse = PostgresWarehouse(
        settings.require_warehouse_url(),
        schema=settings.warehouse_schema,
        group=group_id,
        soft_delete=settings.delete_mode == "soft",
        table_name_format=settings.table_name_format,
        policies=policies_of(settings),
        queue_alerts=settings.alert_webhook_url is not None,
    )
    bootstrap = settings.require_kafka()
    source_class = _source_class(settings)
    runner = Sync(
        options,
        warehouse,
        lambda revoked, assigned: source_class(
            bootstrap,
            group=group_id,
            topics_pattern=change_topics(settings.topic_prefix, options.tables),
            on_revoked=revoked,
            on_assigned=assigned,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            group_instance_id=settings.kafka_group_instance_id,
        ),
    )
    metrics = None
    if metrics_port is not None:
        from cdc.sync.metrics import Metrics

        metrics = runner.metrics = Metrics()
        metrics.serve(metrics_port)
    guard = _slot_guard(settings, queue_alerts=settings.alert_webhook_url is not None)
    sender = None
    if settings.alert_webhook_url is not None:
        sender = WebhookSender(
            settings.require_warehouse_url(),
            settings.alert_webhook_url.get_secret_value(),
            scope=settings.warehouse_schema,
            max_backoff=10,  # one small POST per 10 s while it is down; delivered within 10 s once up
        )
        runner.on_schema_change = sender.wake
        sender.start()  # also delivers what an earlier run left pending
    try:
        if guard is not None:
            if sender is not None:
                guard.on_alert = sender.wake
            if metrics is not None:
                guard.on_reading = metrics.slot_seen
            runner.guard = guard  # started by the loop, once the warehouse is ready
        with stop_on_signals(runner):
            return runner.run()
    except SlotGapError:
        if sender is not None:
            sender.drain()  # the alert of the gap, before the process ends
        raise
    finally:
        if guard is not None:
            guard.stop()
        if sender is not None:
            sender.stop()
        if metrics is not None:
            metrics.close()
        warehouse.close()


def _slot_guard(settings: Settings, *, queue_alerts: bool) -> SlotGuard | None:
    if settings.source_url is None:
        log.warning("CDC_SOURCE_URL is not set: the replication slot is not watched (a lost slot goes unnoticed)")
        return None
    return SlotGuard(
        source_url=settings.source_url.get_secret_value(),
        warehouse_url=settings.require_warehouse_url(),
        connect_url=settings.connect_url,
        connector=settings.connector_name,
        slot=settings.slot_name,
        scope=settings.warehouse_schema,
        retained_limit=settings.slot_retained_warn_bytes,
        queue_alerts=queue_alerts,
        every=settings.slot_check_seconds,
    )


def _source_class(settings: Settings) -> Any:
    if settings.kafka_client != "confluent":
        return KafkaSource
    try:
        from cdc.sync.consume_confluent import ConfluentSource
    except ImportError as exc:
        raise ConfigError(
            f"CDC_KAFKA_CLIENT=confluent, but confluent-kafka cannot be imported ({exc}).",
            "pip install 'cdc[confluent]', or unset CDC_KAFKA_CLIENT to use kafka-python",
        ) from exc
    return ConfluentSource


def stopped_line(stats: SyncStats) -> str:
    """The last line of `cdc sync`: what was read, and what of it is stored."""
    if stats.unstored_partitions:
        stored = (
            f"{stats.unstored_partitions} partition(s) were read past what the warehouse holds: the next start"
            " reads them again from there"
        )
    elif stats.stored_partitions:
        stored = f"all that was read is stored, with the offsets of its {stats.stored_partitions} partition(s)"
    else:
        stored = "no partition was assigned"
    return (
        f"sync stopped: {stats.events} events read, {stats.rows} rows written, {stats.skipped} already applied, "
        f"{stats.dead} dead letters; {stored}"
    )
