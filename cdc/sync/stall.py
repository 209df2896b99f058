"""The stall detector: partitions with unread messages whose position does not move.

A member can stop reading a partition for reasons of its own (a consumer library's bug, a
partition it believes assigned but never fetches): from inside, that looks like nothing at all.
Lag above zero that does not shrink while the loop keeps polling is the one sign, so `cdc sync`
watches for it and stops with an error naming the partitions, so that a supervisor restarts it
and it resumes from the offsets the warehouse stores.

Time is counted in reading time: each loop iteration adds at most `MAX_STEP` seconds, so minutes
spent blocked in a flush that retries against an unreachable warehouse never look like a stall,
and an iteration whose poll came back full (a backlog larger than one batch: partitions are served
in turn, and one may wait a while for its) adds nothing. While a rebalance is under way the loop
does not check partitions at all, only that the rebalance ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc.errors import CdcError
from cdc.sync.consume import Partition

MAX_STEP = 1.0  # seconds one loop iteration may add to the reading clock


@dataclass(frozen=True)
class Stalled:
    partition: Partition
    position: int | None  # the next offset to take; None: the member does not know where it stands
    end: int
    stored: int | None

    def describe(self) -> str:
        topic, number = self.partition
        where = "position unknown" if self.position is None else f"at offset {self.position}"
        stored = "nothing stored" if self.stored is None else f"warehouse holds {self.stored}"
        return f"{topic}[{number}] {where}, end {self.end}, {stored}"


class StallError(CdcError):
    """Lag stayed above zero while nothing was read for longer than the stall limit."""


class StallDetector:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.clock = 0.0  # seconds of reading so far
        self._last: float | None = None
        self._since: dict[Partition, tuple[int | None, float]] = {}  # position, and since when
        self._unassigned_since: float | None = None

    def tick(self, now: float, *, busy: bool = False) -> None:
        """Once per loop iteration, with the loop's monotonic time; busy: the poll came back full."""
        if self._last is not None and not busy:
            self.clock += min(max(now - self._last, 0.0), MAX_STEP)
        self._last = now

    def forget(self) -> None:
        """A rebalance: positions start anew."""
        self._since = {}
        self._unassigned_since = None

    def check(
        self, ends: dict[Partition, int], positions: dict[Partition, int], stored: dict[Partition, int]
    ) -> list[Stalled]:
        """The partitions behind their end whose position has not moved for `limit` seconds."""
        self._unassigned_since = None
        stalled: list[Stalled] = []
        since: dict[Partition, tuple[int | None, float]] = {}
        for partition, end in ends.items():
            position = positions.get(partition)
            if (stored.get(partition, 0) if position is None else position) >= end:
                continue
            previous = self._since.get(partition)
            if previous is None or previous[0] != position:
                since[partition] = (position, self.clock)
                continue
            since[partition] = previous
            if self.clock - previous[1] >= self.limit:
                stalled.append(Stalled(partition, position, end, stored.get(partition)))
        self._since = since
        return stalled

    def unassigned_for(self) -> float:
        """Seconds of reading without any partition assigned (while matching topics exist)."""
        self._since = {}
        if self._unassigned_since is None:
            self._unassigned_since = self.clock
        return self.clock - self._unassigned_since
