"""The handover between backfilled rows and streamed changes (cdc/backfill/handover.py), the key
ranges' SQL (cdc/backfill/ranges.py) and the COPY pipe (cdc/backfill/pipe.py), without a database."""

from __future__ import annotations

import threading

import pytest
from psycopg2 import sql

from cdc.backfill.handover import Handover, Taken, lifted_version, txid_of, widen
from cdc.backfill.pipe import CHUNK, PipeClosed, copy_between
from cdc.backfill.ranges import _spread, predicate
from cdc.backfill.snapshot import Visibility
from cdc.decode.envelope import EnvelopeDecoder
from cdc.events import Version
from cdc.warehouse.postgres import _kept_applies
from tests.unit.test_envelope import recorded

P = 1_000
SNAPSHOT = Visibility.parse("100:110:103,105")  # running at the snapshot: 103, 105; 110 on: later


def test_the_snapshot_sees_what_ended_before_it_and_nothing_running_or_later() -> None:
    assert [SNAPSHOT.sees(x) for x in (99, 100, 103, 104, 105, 109, 110, 200)] == [
        True,
        True,
        False,
        True,
        False,
        True,
        False,
        False,
    ]
    assert Visibility.parse(SNAPSHOT.text) == SNAPSHOT


@pytest.mark.parametrize(
    ("version", "txid", "lifted"),
    [
        (Version(900, 950), 104, Version(900, 950)),  # in the snapshot: its rows hold it, the change loses
        (Version(900, 950), 105, Version(P, 950)),  # running at the snapshot, committed after it: wins
        (Version(900, 960), 111, Version(P, 960)),  # began after the snapshot, first to commit: wins
        (Version(P, 1_010), 111, Version(P, 1_010)),  # sorts after the snapshot already
        (Version(1_200, 1_210), 112, Version(1_200, 1_210)),
    ],
)
def test_only_the_transaction_the_snapshot_did_not_see_but_that_sorts_before_it_is_raised(
    version: Version, txid: int, lifted: Version
) -> None:
    assert lifted_version(version, txid, [Taken(P, SNAPSHOT)]) == lifted


def test_a_change_is_raised_above_the_newest_snapshot_that_did_not_see_it() -> None:
    older = Taken(P, SNAPSHOT)
    newer = Taken(2_000, Visibility.parse("120:130:125"))
    snapshots = [newer, older]  # newest first
    assert lifted_version(Version(900, 950), 125, snapshots) == Version(2_000, 950)  # neither saw it
    assert lifted_version(Version(1_500, 1_550), 115, snapshots) == Version(1_500, 1_550)  # the newer saw it
    assert lifted_version(Version(900, 950), 115, snapshots) == Version(P, 950)  # only the older missed it


def test_the_order_of_changes_is_kept_by_raising() -> None:
    """Raised changes stay above what the snapshot saw and below every later transaction."""
    taken = [Taken(P, SNAPSHOT)]
    seen = lifted_version(Version(800, 990), 104, taken)
    first_after = lifted_version(Version(900, 1_005), 111, taken)
    next_one = lifted_version(Version(1_020, 1_030), 112, taken)
    assert seen < Version(P, 0) < first_after < next_one


@pytest.mark.parametrize(
    ("xid", "near", "full"),
    [
        (5, (3 << 32) | 7, (3 << 32) | 5),
        (0xFFFFFFF0, (3 << 32) | 10, (2 << 32) | 0xFFFFFFF0),  # before the epoch turned
        (10, (3 << 32) | 0xFFFFFFF0, (4 << 32) | 10),  # after it turned
        (7, 100, 7),
    ],
)
def test_a_32_bit_transaction_id_is_widened_to_the_epoch_around_the_snapshot(xid: int, near: int, full: int) -> None:
    assert widen(xid, near) == full


def test_the_transaction_id_comes_from_the_recorded_message_and_raising_changes_the_events() -> None:
    decoder = EnvelopeDecoder()
    events = [e for e in (decoder.decode(*m) for m in recorded("fx.every_type")) if e is not None]
    txids = [txid_of(e) for e in events]
    assert all(isinstance(t, int) for t in txids)
    first = events[0]
    snapshot_lsn = first.version.commit_lsn + 1  # the first change sorts before it
    running = txids[0]
    assert running is not None
    handover = Handover((Taken(snapshot_lsn, Visibility(running, running + 1, frozenset({running}))),), running=True)
    before = [e.version for e in events]
    assert handover.raise_versions(events) == sum(
        1 for v, t in zip(before, txids, strict=True) if t == running and v.commit_lsn < snapshot_lsn
    )
    assert events[0].version == Version(snapshot_lsn, before[0].lsn)
    assert [e.version for e, t in zip(events, txids, strict=True) if t != running] == [
        v for v, t in zip(before, txids, strict=True) if t != running
    ]


def test_range_predicates_compare_the_key_as_a_row_with_untyped_parameters() -> None:
    where, params = predicate(["a", "b"], ("1", "x"), ("5", "y"))
    assert isinstance(where, sql.Composable)
    assert params == ["1", "x", "5", "y"]
    assert predicate(["id"], None, None)[1] == []
    assert predicate(["id"], None, ("9",))[1] == ["9"]


def test_bounds_are_spread_evenly_without_repeats() -> None:
    keys = [(str(i),) for i in range(100)]
    assert _spread(keys, 4) == [("25",), ("50",), ("75",)]
    assert _spread([("1",)] * 50 + [("2",)] * 50, 4) == [("1",), ("2",)]
    assert _spread([], 3) == []


def test_the_pipe_carries_every_byte_in_chunks_and_bounded_memory() -> None:
    rows = [f"{i}\trow {i}\n".encode() for i in range(200_000)]
    received: list[bytes] = []
    progress: list[int] = []

    def read(file: object) -> None:
        for row in rows:
            file.write(row)  # type: ignore[attr-defined]

    def write(file: object) -> None:
        while chunk := file.read(CHUNK):  # type: ignore[attr-defined]
            assert len(chunk) < 2 * CHUNK
            received.append(chunk)

    messages = copy_between(read, write, progress.append)
    assert messages == len(rows) == sum(progress)
    assert b"".join(received) == b"".join(rows)


def test_a_failing_source_stops_the_warehouse_side_with_the_source_error() -> None:
    def read(file: object) -> None:
        file.write(b"1\n")  # type: ignore[attr-defined]
        raise ValueError("source broke")

    def write(file: object) -> None:
        while file.read(CHUNK):  # type: ignore[attr-defined]
            pass

    with pytest.raises(ValueError, match="source broke"):
        copy_between(read, write)


def test_a_failing_warehouse_side_stops_the_source_side() -> None:
    stopped = threading.Event()

    def read(file: object) -> None:
        try:
            while True:
                file.write(b"x" * 1000)  # type: ignore[attr-defined]
        except PipeClosed:
            stopped.set()
            raise

    def write(file: object) -> None:
        file.read(CHUNK)  # type: ignore[attr-defined]
        raise RuntimeError("warehouse broke")

    with pytest.raises(RuntimeError, match="warehouse broke"):
        copy_between(read, write)
    assert stopped.wait(5)


def test_a_kept_batch_is_written_as_kept_only_where_no_version_would_be_raised() -> None:
    """A batch the fast path keeps in the extension is written without events unless its table's
    backfill could still raise a version: one running, or a snapshot newer than its oldest change."""
    snapshot = (Taken(1_000, SNAPSHOT),)
    assert _kept_applies((5, 1), None)  # never backfilled
    assert _kept_applies((5, 1), Handover((), running=False))
    assert _kept_applies((1_000, 7), Handover(snapshot, running=False))  # every change sorts after it
    assert not _kept_applies((999, 7), Handover(snapshot, running=False))  # one may be raised
    assert not _kept_applies((2_000, 1), Handover(snapshot, running=True))  # deleted keys to keep
    assert not _kept_applies(None, Handover(snapshot, running=False))
