"""`cdc dlq list | replay`: look at the messages sync could not apply, and apply them again once
the cause is fixed (a warehouse constraint relaxed, a column widened, a replica identity set...)."""

from __future__ import annotations

from dataclasses import dataclass

from cdc.buffer import Buffer
from cdc.decode.envelope import EnvelopeDecoder, PoisonMessage
from cdc.warehouse import DeadLetter, Flush, StoredLetter
from cdc.warehouse.postgres import PostgresWarehouse


@dataclass(frozen=True)
class ReplayReport:
    replayed: list[StoredLetter]
    still_failing: list[StoredLetter]


def replay(warehouse: PostgresWarehouse, group: str, ids: list[int] | None = None) -> ReplayReport:
    """Decode and apply the dead letters again, in their Kafka order, and mark them replayed in the
    same transaction. The version guard makes this safe at any time for keyed tables: a letter
    older than what the warehouse holds changes nothing. For a keyless table the letter is applied
    (that is what replaying it means), once: a replayed letter is not taken again."""
    letters = warehouse.dead_letters(group, ids=ids)
    decoder = EnvelopeDecoder()
    buffer = Buffer()
    failed: list[DeadLetter] = []
    for letter in letters:
        try:
            event = decoder.decode(letter.origin, letter.key, letter.value)
        except PoisonMessage as exc:
            failed.append(DeadLetter(letter.origin, letter.key, letter.value, str(exc)))
            continue
        if event is not None:
            buffer.add(event)
    replaying = {letter.origin: letter.id for letter in letters}
    result = warehouse.apply(Flush(buffer.batches(), {}, failed, replaying))
    still = set(result.dead_origins)
    replayed = [letter for letter in letters if letter.origin not in still]
    return ReplayReport(replayed, [letter for letter in letters if letter.origin in still])
