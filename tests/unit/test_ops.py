"""The parts of issue 10 that need no stack: what a batch counts as applied, the slot guard's
verdicts, the commit time read from a change message, the metrics a flush records."""

from __future__ import annotations

import orjson

from cdc.buffer import Buffer
from cdc.events import Op, Version
from cdc.ops.kafka_view import _source_ms
from cdc.slot import SlotReading, lsn_text
from cdc.sync.metrics import Metrics
from cdc.sync.slot_guard import SlotGuard, connector_lsn
from cdc.warehouse import FlushResult, Progress
from tests.unit.test_buffer import KEYED, event


def test_a_batch_counts_every_event_taken_by_op_and_knows_its_newest_change() -> None:
    buffer = Buffer()
    for e in [event(Op.CREATE, 1, 1), event(Op.UPDATE, 1, 2), event(Op.UPDATE, 1, 7), event(Op.DELETE, 2, 5)]:
        buffer.add(e)
    batch = buffer.tables[KEYED.table]
    assert batch.ops == {"c": 1, "u": 2, "d": 1}  # compaction keeps two events; four were applied in effect
    assert batch.newest() == (Version(7, 7), 7)
    buffer.add(event(Op.TRUNCATE, None, 9))
    assert batch.ops["t"] == 1 and batch.newest() == (Version(9, 9), 9)


def test_progress_adds_ops_and_keeps_the_newest_position() -> None:
    progress = Progress()
    progress.add({"c": 2}, Version(10, 12), 1000)
    progress.add({"c": 1, "u": 3}, Version(10, 11), 900)  # an older batch (sealed before a schema change)
    assert progress.ops == {"c": 3, "u": 3}
    assert (progress.newest, progress.newest_ts_ms) == (Version(10, 12), 1000)


def test_the_commit_time_is_read_from_a_change_message_with_or_without_its_schema() -> None:
    payload = {"op": "c", "source": {"ts_ms": 1_700_000_000_123, "lsn": 5}}
    assert _source_ms(orjson.dumps({"schema": {}, "payload": payload})) == 1_700_000_000_123
    assert _source_ms(orjson.dumps(payload)) == 1_700_000_000_123
    assert _source_ms(None) is None and _source_ms(b"not json") is None and _source_ms(b"[1]") is None


def _guard(seen: bool = True) -> SlotGuard:
    guard = SlotGuard(
        source_url="",
        warehouse_url="",
        connect_url=None,
        connector="c",
        slot="cdc_slot",
        scope="replica",
        retained_limit=0,
        queue_alerts=False,
    )
    guard._seen = seen
    return guard


def test_the_slot_guard_calls_a_gap_only_what_loses_changes() -> None:
    healthy = SlotReading(True, True, "reserved", confirmed_flush_lsn=100, retained_bytes=10)
    assert _guard()._gap_in(healthy, committed=100) is None
    assert _guard()._gap_in(healthy, committed=150) is None  # Debezium read further; confirms later
    assert _guard()._gap_in(healthy, committed=None) is None  # no offsets committed yet
    recreated = _guard()._gap_in(
        SlotReading(True, True, "reserved", confirmed_flush_lsn=0x1_0000_0200), committed=0x1F0
    )
    assert recreated == (
        "the replication slot cdc_slot was recreated: it starts at 1/200, but Debezium had read only up to 0/1F0; "
        "the changes between never reached Kafka"
    )
    assert "is lost (wal_status lost)" in (
        _guard()._gap_in(SlotReading(True, False, "lost", confirmed_flush_lsn=100), committed=100) or ""
    )
    assert _guard()._gap_in(SlotReading(False), committed=None) == (
        "the replication slot cdc_slot is gone: changes made since were never captured"
    )
    assert _guard(seen=False)._gap_in(SlotReading(False), committed=None) is None  # not made yet


def test_the_connectors_committed_position_is_its_newest_lsn() -> None:
    offsets = {"offsets": [{"partition": {"server": "cdc"}, "offset": {"lsn": 90, "lsn_proc": 95, "txId": 7}}]}
    assert connector_lsn(offsets) == 95
    assert connector_lsn({"offsets": []}) is None
    assert lsn_text(0x16B3748) == "0/16B3748"


def test_a_flush_is_counted_by_table_and_op_with_its_lag() -> None:
    metrics = Metrics()
    progress = Progress({"c": 3, "d": 1}, Version(1, 2), None)
    metrics.flushed(FlushResult(rows=4, dead=1, tables=1, progress={"wh.t": progress}), seconds=0.2, events=5)
    value = metrics.registry.get_sample_value
    assert value("cdc_events_applied_total", {"table": "wh.t", "op": "c"}) == 3
    assert value("cdc_events_applied_total", {"table": "wh.t", "op": "d"}) == 1
    assert value("cdc_dead_letters_total") == 1 and value("cdc_flushes_total") == 1
    assert value("cdc_flush_events_sum") == 5
    assert value("cdc_end_to_end_lag_seconds", {"table": "wh.t"}) is None  # no commit time: no lag claimed


def test_the_grafana_dashboard_uses_only_metrics_cdc_sync_serves() -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text())
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    served = {
        family.name + suffix for family in Metrics().registry.collect() for suffix in suffixes.get(family.type, ("",))
    }
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for e in exprs for name in re.findall(r"\b(?:cdc|process)_[a-z_]+\b", e)}
    assert used and used <= served, used - served
    assert len(dashboard["panels"]) >= 10


def test_a_metrics_port_in_use_is_a_clear_error() -> None:
    import socket

    import pytest

    from cdc.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as raised:
            Metrics().serve(port, addr="127.0.0.1")
    assert raised.value.problem.startswith(f"cannot serve metrics on 127.0.0.1:{port}: ")
    assert raised.value.fix == "choose a free port with --metrics-port (0 picks one)"
