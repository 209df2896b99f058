"""`cdc sync --metrics-port N`: Prometheus metrics, served over HTTP from a thread of the process.

Names follow Prometheus' conventions (`_total` counters, base units: seconds, bytes). Everything is
recorded where cdc sync already has the figure (a flush committed, a retry, a progress tick, the
slot guard's look at the replication slot), so the hot path pays nothing per event.

The metrics (docs/grafana-dashboard.json is built on these):
- cdc_events_applied_total{table, op}: change events applied (op c, u, d, r, t), counted before
  compaction, as `cdc status` counts them;
- cdc_flush_events, cdc_flush_seconds: histograms of the events per flush and its commit time;
- cdc_end_to_end_lag_seconds{table}: at the last flush of the table, how long its newest change
  took from its source commit to the warehouse commit; cdc_end_to_end_lag_seconds_hist the same,
  every flush, as a histogram;
- cdc_consumer_lag_messages{topic, partition}: messages behind the end of each partition read;
- cdc_retries_total{what}, cdc_dead_letters_total, cdc_schema_changes_total, cdc_flushes_total;
- cdc_slot_retained_wal_bytes, cdc_slot_safe_wal_size_bytes: the replication slot, as the slot guard
  last saw it (cdc/sync/slot_guard.py);
- process_resident_memory_bytes and the rest of prometheus-client's process collector.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

from cdc.errors import ConfigError
from cdc.slot import SlotReading
from cdc.warehouse import FlushResult

log = logging.getLogger("cdc.sync.metrics")

_FLUSH_EVENTS = (10, 100, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000)
_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.events = Counter(
            "cdc_events_applied", "Change events applied, by table and op", ["table", "op"], registry=r
        )
        self.flush_events = Histogram("cdc_flush_events", "Events per flush", buckets=_FLUSH_EVENTS, registry=r)
        self.flush_seconds = Histogram("cdc_flush_seconds", "Flush commit time", buckets=_SECONDS, registry=r)
        self.flushes = Counter("cdc_flushes", "Flushes committed", registry=r)
        self.lag = Gauge(
            "cdc_end_to_end_lag_seconds",
            "Source commit to warehouse commit of the newest change of the last flush, per table",
            ["table"],
            registry=r,
        )
        self.lag_hist = Histogram(
            "cdc_end_to_end_lag_seconds_hist",
            "Source commit to warehouse commit of each flush's newest change per table",
            buckets=_SECONDS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "cdc_consumer_lag_messages", "Messages behind the partition's end", ["topic", "partition"], registry=r
        )
        self.retries = Counter("cdc_retries", "Transient failures retried", ["what"], registry=r)
        self.dead = Counter("cdc_dead_letters", "Messages sent to the dead-letter table", registry=r)
        self.schema_changes = Counter("cdc_schema_changes", "Source schema changes recorded", registry=r)
        self.slot_retained = Gauge(
            "cdc_slot_retained_wal_bytes", "WAL the replication slot holds on the source (sampled)", registry=r
        )
        self.slot_safe = Gauge(
            "cdc_slot_safe_wal_size_bytes",
            "WAL that may still be written before the slot is lost (sampled; absent when unlimited)",
            registry=r,
        )
        self._server: Any = None

    # -- recorded by the sync loop --------------------------------------------------------------
    def flushed(self, result: FlushResult, seconds: float, events: int) -> None:
        now_ms = time.time() * 1000
        self.flushes.inc()
        self.flush_events.observe(events)
        self.flush_seconds.observe(seconds)
        for table, progress in result.progress.items():
            for op, count in progress.ops.items():
                self.events.labels(table, op).inc(count)
            if progress.newest_ts_ms is not None:
                lag = max(0.0, (now_ms - progress.newest_ts_ms) / 1000)
                self.lag.labels(table).set(lag)
                self.lag_hist.observe(lag)
        if result.dead:
            self.dead.inc(result.dead)
        if result.schema_changes:
            self.schema_changes.inc(result.schema_changes)

    def retried(self, what: str) -> None:
        self.retries.labels(what).inc()

    def consumer_lags(self, behind: dict[tuple[str, int], int]) -> None:
        for (topic, partition), count in behind.items():
            self.consumer_lag.labels(topic, str(partition)).set(count)

    # -- serving and sampling --------------------------------------------------------------------
    def slot_seen(self, slot: SlotReading) -> None:
        """A reading of the replication slot, by the slot guard (every CDC_SLOT_CHECK_SECONDS)."""
        if slot.exists:
            self.slot_retained.set(slot.retained_bytes)
            if slot.safe_wal_size is not None:
                self.slot_safe.set(slot.safe_wal_size)

    # -- serving ---------------------------------------------------------------------------------
    def serve(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104
        try:
            self._server, _ = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}",
                "choose a free port with --metrics-port (0 picks one)",
            ) from exc
        log.info("serving Prometheus metrics on http://%s:%d/metrics", addr, self._server.server_port)

    @property
    def port(self) -> int:
        return int(self._server.server_port) if self._server is not None else 0

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
