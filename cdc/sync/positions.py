"""Which partitions this member reads, where each stands, and what the warehouse holds: one object
that the rebalance callbacks and the sync loop share.

A partition is either positioned (the consumer was sought to the offset the warehouse stores, and
`next` is the offset of the next record to take) or waiting to be positioned. A record is taken
only from a positioned partition at or after its next offset. A record of any other partition is
never dropped silently: it marks its partition to be positioned, and positioning seeks the
consumer back to the stored offset, so the record is read again.
"""

from __future__ import annotations

from collections.abc import Iterable

from cdc.sync.consume import Partition


class Positions:
    def __init__(self) -> None:
        self.next: dict[Partition, int] = {}  # positioned partitions: the next offset to take
        self.stored: dict[Partition, int] = {}  # what the warehouse holds, as far as we know
        self.waiting: set[Partition] = set()  # to be positioned from the warehouse
        self.strays: set[Partition] = set()  # records arrived for these while they were unknown
        self.rewound: dict[Partition, tuple[int, int]] = {}  # (offset, next) of a record from behind

    def assigned(self, partitions: Iterable[Partition]) -> None:
        """The consumer now reads these, from wherever it likes: each is to be sought to its next
        offset (kept, if the partition was never revoked) or else to the warehouse's."""
        self.waiting.update(partitions)

    def revoked(self, partitions: Iterable[Partition]) -> None:
        for partition in partitions:
            self.next.pop(partition, None)
            self.stored.pop(partition, None)
            self.waiting.discard(partition)
            self.strays.discard(partition)

    def positioned(self, partition: Partition, offset: int, *, stored: bool) -> None:
        """The consumer was sought to `offset`: the warehouse's if `stored`, else the beginning
        (nothing stored) or the partition's own next offset (kept from before)."""
        self.next[partition] = offset
        if stored:
            self.stored[partition] = offset
        self.waiting.discard(partition)
        self.strays.discard(partition)

    def forget_waiting(self, partitions: Iterable[Partition]) -> None:
        """Waiting partitions the consumer turned out not to read (a stale callback)."""
        self.waiting.difference_update(partitions)
        self.strays.difference_update(partitions)

    def take(self, partition: Partition, offset: int) -> bool:
        """Whether a fetched record is new work; if so, the partition's next offset moves past it."""
        expected = self.next.get(partition)
        if expected is None:
            # Fetched before this member knew where the partition stands: position it, which
            # seeks the consumer back, and the record comes again.
            if partition not in self.waiting:
                self.strays.add(partition)
                self.waiting.add(partition)
            return False
        if offset < expected:
            # Taken already (it is in the buffer or the warehouse). Nothing cdc does seeks behind
            # a partition's next offset, so the consumer went back by itself: a topic deleted and
            # made again, or a log cut back. The loop says so.
            self.rewound.setdefault(partition, (offset, expected))
            return False
        self.next[partition] = offset + 1
        return True

    def moved(self) -> dict[Partition, int]:
        """Positioned partitions whose next offset the warehouse does not hold yet."""
        return {p: o for p, o in self.next.items() if self.stored.get(p) != o}

    def committed(self, offsets: dict[Partition, int]) -> None:
        for partition, offset in offsets.items():
            if partition in self.next:
                self.stored[partition] = offset
