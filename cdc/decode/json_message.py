"""The JSON object a Kafka Connect message carries, with or without its schema envelope, for
the few messages cdc reads outside the sync's decoder (notifications, the commit time of a change
waiting in Kafka)."""

from __future__ import annotations

import json
from typing import Any


def payload_of(value: bytes | None) -> dict[str, Any] | None:
    """The message's payload object (JsonConverter's "payload" when schemas are enabled), or None
    for a tombstone, text that is not JSON, or JSON that is not an object."""
    if not value:
        return None
    try:
        message = json.loads(value)
    except ValueError:
        return None
    if isinstance(message, dict) and isinstance(message.get("payload"), dict):
        message = message["payload"]
    return message if isinstance(message, dict) else None
