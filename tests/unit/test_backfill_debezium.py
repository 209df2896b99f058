"""How `cdc backfill --mode debezium` follows its snapshot through Debezium's notifications, on
notification sequences as Debezium 3.4.3 sent them to the stack (recorded in cdc.notifications)."""

from __future__ import annotations

import json
from collections import namedtuple
from typing import Any

import pytest

from cdc.backfill.debezium import Followed, Scanned, _follow
from cdc.errors import TerminalError
from cdc.events import TableId

Record = namedtuple("Record", "value")
OURS, EARLIER, LATER = "4b45933d", "ef9a71b3", "77d0e1aa"


def _note(signal: str, kind: str, **data: str) -> Record:
    payload = {"id": signal, "type": kind, "aggregate_type": "Incremental Snapshot", "additional_data": data}
    return Record(json.dumps({"schema": {"type": "struct"}, "payload": payload}).encode())


class _Topic:
    """The notifications topic as a consumer polls it: a batch per poll."""

    def __init__(self, *batches: list[Record], then_quiet: bool = False) -> None:
        self._batches = list(batches)
        self._then_quiet = then_quiet

    def poll(self, timeout_ms: int) -> dict[str, list[Record]]:
        if not self._batches:
            assert self._then_quiet, "followed past the last notification: it missed COMPLETED"
            return {}
        return {"cdc.notifications-0": self._batches.pop(0)}


def _followed() -> Followed:
    return Followed([Scanned(TableId("try1", "t"), estimated_rows=3000)], OURS, chunk=1024)


def _progress(followed: Followed, seen: list[int]) -> Any:
    return lambda f: seen.append(f.rows)


def test_its_own_snapshot_is_followed_to_completed_with_the_exact_count() -> None:
    said: list[str] = []
    seen: list[int] = []
    followed = _followed()
    topic = _Topic(
        [
            _note(EARLIER, "IN_PROGRESS", current_collection_in_progress="try1.t", data_collections="try1.t"),
            _note(OURS, "STARTED", data_collections="try1.t"),
            _note(OURS, "IN_PROGRESS", current_collection_in_progress="try1.t", data_collections="try1.t"),
        ],
        [
            _note(OURS, "IN_PROGRESS", current_collection_in_progress="try1.t", data_collections="try1.t"),
            _note(
                OURS, "TABLE_SCAN_COMPLETED", scanned_collection="try1.t", total_rows_scanned="2999", status="SUCCEEDED"
            ),
            _note(OURS, "COMPLETED"),
        ],
    )
    _follow(topic, followed, said.append, _progress(followed, seen))
    assert (followed.tables[0].rows, followed.tables[0].status) == (2999, "SUCCEEDED")
    assert seen == [1024, 2999]  # a chunk per IN_PROGRESS of its own, then the count
    assert said == ["try1.t: Debezium sent 2,999 rows (SUCCEEDED)"]


def test_a_snapshot_asked_for_meanwhile_joins_it_and_is_followed_under_its_id() -> None:
    followed = _followed()
    topic = _Topic(
        [
            _note(OURS, "STARTED", data_collections="try1.t"),
            # Another signal for another table, then for ours: Debezium queues them in the same
            # snapshot, whose notifications now carry the newest id.
            _note(LATER, "IN_PROGRESS", current_collection_in_progress="try1.t", data_collections="try1.t,try1.u"),
            _note(
                LATER,
                "TABLE_SCAN_COMPLETED",
                scanned_collection="cdc_source.try1.t",
                total_rows_scanned="3000",
                status="SUCCEEDED",
                data_collections="try1.t,try1.u",
            ),
            _note(LATER, "COMPLETED"),
        ]
    )
    _follow(topic, followed, lambda _: None, lambda _: None)
    assert followed.tables[0].rows == 3000  # the database in front of the name is understood


def test_an_aborted_snapshot_is_an_error_naming_the_signal() -> None:
    topic = _Topic([_note(OURS, "STARTED", data_collections="try1.t"), _note(OURS, "ABORTED")])
    with pytest.raises(TerminalError, match=f"Debezium aborted the snapshot \\(signal {OURS}\\)"):
        _follow(topic, _followed(), lambda _: None, lambda _: None)


def test_notifications_of_other_snapshots_are_not_taken_for_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cdc.backfill.debezium.STARTED_WITHIN", 0.0)
    topic = _Topic(
        [
            _note(
                EARLIER, "TABLE_SCAN_COMPLETED", scanned_collection="try1.t", total_rows_scanned="5", status="SKIPPED"
            ),
            _note(EARLIER, "COMPLETED"),
        ],
        then_quiet=True,
    )
    with pytest.raises(TerminalError, match="Debezium has not started the snapshot"):
        _follow(topic, _followed(), lambda _: None, lambda _: None)
