"""Warehouse flushes made from Kafka messages, as `cdc sync` makes them: decoded, buffered."""

from __future__ import annotations

from cdc.buffer import Buffer
from cdc.decode.envelope import EnvelopeDecoder
from cdc.events import Origin
from cdc.warehouse import Flush

Message = tuple[Origin, bytes | None, bytes | None]


def flush_of(messages: list[Message]) -> Flush:
    decoder, buffer = EnvelopeDecoder(), Buffer()
    for message in messages:
        event = decoder.decode(*message)
        if event is not None:
            buffer.add(event)
    return Flush(buffer.batches(), {})
