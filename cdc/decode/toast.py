"""Debezium's unchanged-TOAST placeholder, in each form it takes.

When an UPDATE leaves a TOASTed value untouched, pgoutput does not send it, and Debezium puts a
placeholder in its place. The placeholder is the string below for text-like columns, but takes
the column's own shape elsewhere (Debezium's UnchangedToastedPlaceholder): base64 of the string for
bytea, a list of its byte codes for integer arrays, a one-element list for text arrays, a one-entry
map for hstore, a name-based UUID for uuid arrays.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

UNAVAILABLE = "__debezium_unavailable_value"
_RAW = UNAVAILABLE.encode()
_BASE64 = base64.b64encode(_RAW).decode()
_UUID = str(uuid.UUID(bytes=hashlib.md5(_RAW).digest(), version=3))  # noqa: S324 - Java's nameUUIDFromBytes
_CODES = list(_RAW)
_STRINGS = {UNAVAILABLE, _BASE64, _UUID}


PLACEHOLDER_LENGTHS = frozenset(map(len, _STRINGS))


def is_unavailable(value: Any) -> bool:
    if isinstance(value, str):
        # By length first: hashing a large TOASTed text to look it up would read all of it.
        return len(value) in PLACEHOLDER_LENGTHS and value in _STRINGS
    if isinstance(value, list):
        return value == _CODES or (len(value) == 1 and value[0] in _STRINGS)
    if isinstance(value, dict):
        return value == {UNAVAILABLE: UNAVAILABLE}
    return False


# The placeholder's forms as they appear in a message's JSON text: the string ones quoted, the
# list of byte codes by its start.
_TEXT, _BASE64_JSON, _UUID_JSON = (b'"' + text.encode() + b'"' for text in (UNAVAILABLE, _BASE64, _UUID))
_CODES_JSON = ("[" + ",".join(map(str, _CODES[:4]))).encode()


def maybe_unavailable(json_text: bytes) -> bool:
    """Whether a message's JSON (the converter's compact form) may hold a placeholder: no false
    negatives, and a substring test is much cheaper than looking at every value."""
    return _TEXT in json_text or _BASE64_JSON in json_text or _UUID_JSON in json_text or _CODES_JSON in json_text
