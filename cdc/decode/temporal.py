"""Encoders for Debezium's temporal logical types (io.debezium.time.*) -> PostgreSQL input text.

All arithmetic is on integers (no float), so every value is exact to the microsecond, over
PostgreSQL's whole range (proleptic Gregorian calendar, BC years, years past 9999); the text of
each day is cached.

Debezium's infinity stand-ins (debezium-connector-postgres PostgresValueConverter, 3.4):
- date 'infinity' / '-infinity' -> the epoch days of LocalDate -5877611-06-21 / -5877611-06-22
  (POSITIVE_/NEGATIVE_INFINITY_LOCAL_DATE; yes, '-infinity' is the larger number). Both lie far
  below PostgreSQL's smallest date (4713 BC), so they are unambiguous.
- timestamp 'infinity' / '-infinity' -> pgjdbc's PGStatement.DATE_POSITIVE_INFINITY /
  DATE_NEGATIVE_INFINITY (9223372036825200000 / -9223372036832400000, milliseconds in pgjdbc) read
  as MICROseconds since the epoch (POSITIVE_/NEGATIVE_INFINITY_INSTANT); io.debezium.time.Timestamp
  (timestamp(0..3)) carries the same instants in milliseconds. The positive one is a real
  PostgreSQL timestamp (294247-01-10 04:00:25.2), which therefore also arrives as 'infinity'.
- timestamptz -> the strings "infinity" / "-infinity" (already PostgreSQL input).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from typing import Any

from cdc.errors import TerminalError

Encoder = Callable[[Any], str]

DATE_POSITIVE_INFINITY = -2147472692  # LocalDate.parse("-5877611-06-21").toEpochDay()
DATE_NEGATIVE_INFINITY = -2147472691  # LocalDate.parse("-5877611-06-22").toEpochDay()
TIMESTAMP_POSITIVE_INFINITY_US = 9223372036825200000  # PGStatement.DATE_POSITIVE_INFINITY as µs
TIMESTAMP_NEGATIVE_INFINITY_US = -9223372036832400000  # PGStatement.DATE_NEGATIVE_INFINITY as µs

_US_PER_DAY = 86_400_000_000


def civil_from_days(days: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 -> (astronomical year, month, day) in the proleptic Gregorian calendar
    (year 0 is 1 BC), for any integer (H. Hinnant's days_from_civil inverse)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _ymd(days: int) -> tuple[str, bool]:
    """(YYYY-MM-DD in PostgreSQL's own form, is BC) for any day number."""
    year, month, day = civil_from_days(days)
    if year <= 0:
        return f"{1 - year:04d}-{month:02d}-{day:02d}", True
    return f"{year:04d}-{month:02d}-{day:02d}", False


# --- day cache ----------------------------------------------------------------------------------
# Rows of a batch share few distinct days, so the text of a day is computed once and kept: a dict
# lookup is several times cheaper than building a date. Bounded (cleared when full); the two
# infinity stand-ins are never cached, since they need the exact value, not only its day.

_CACHE_LIMIT = 1 << 16
_DATES: dict[int, str] = {}  # days since epoch -> "2024-02-29" / "4713-01-01 BC"
_STAMPS: dict[int, str] = {}  # days since epoch -> "2024-02-29 %02d:%02d:%02d.%06d" (+ " BC")
_INFINITY_DAYS = {divmod(v, _US_PER_DAY)[0] for v in (TIMESTAMP_POSITIVE_INFINITY_US, TIMESTAMP_NEGATIVE_INFINITY_US)}


def _remember(cache: dict[int, str], days: int, text: str) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[days] = text


# --- date ----------------------------------------------------------------------------------------


def _date_uncached(days: int) -> str:
    if days == DATE_POSITIVE_INFINITY:
        return "infinity"
    if days == DATE_NEGATIVE_INFINITY:
        return "-infinity"
    text, bc = _ymd(days)
    if bc:
        text += " BC"
    _remember(_DATES, days, text)
    return text


def encode_date(days: Any) -> str:
    """io.debezium.time.Date: int32 days since the epoch."""
    return _DATES.get(days) or _date_uncached(days)


# --- timestamp without time zone -----------------------------------------------------------------


def _timestamp_uncached(us: int) -> str:
    if us == TIMESTAMP_POSITIVE_INFINITY_US:
        return "infinity"
    if us == TIMESTAMP_NEGATIVE_INFINITY_US:
        return "-infinity"
    days, rest = divmod(us, _US_PER_DAY)
    text, bc = _ymd(days)
    pattern = f"{text} %02d:%02d:%02d.%06d BC" if bc else f"{text} %02d:%02d:%02d.%06d"
    if days not in _INFINITY_DAYS:
        _remember(_STAMPS, days, pattern)
    seconds, fraction = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return pattern % (hours, minutes, seconds, fraction)


def encode_micro_timestamp(us: Any) -> str:
    """io.debezium.time.MicroTimestamp: int64 µs since the epoch, wall-clock (no zone)."""
    days, rest = divmod(us, _US_PER_DAY)
    pattern = _STAMPS.get(days)
    if pattern is None:
        return _timestamp_uncached(us)
    seconds, fraction = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return pattern % (hours, minutes, seconds, fraction)


def encode_milli_timestamp(ms: Any) -> str:
    """io.debezium.time.Timestamp: int64 ms since the epoch, wall-clock (no zone)."""
    return encode_micro_timestamp(ms * 1000)


def encode_nano_timestamp(ns: Any) -> str:
    """io.debezium.time.NanoTimestamp: int64 ns since the epoch. PostgreSQL keeps µs; Debezium's
    nanoseconds come from µs values, so the last three digits are zero (kept if not, and PostgreSQL
    rounds them)."""
    us, sub_us = divmod(ns, 1000)
    if not sub_us:
        return encode_micro_timestamp(us)
    text = encode_micro_timestamp(us)
    if text.endswith(" BC"):
        return f"{text[:-3]}{sub_us:03d} BC"
    return f"{text}{sub_us:03d}"


# --- time without time zone ----------------------------------------------------------------------


def encode_micro_time(us: Any) -> str:
    """io.debezium.time.MicroTime: int64 µs since midnight (24:00:00 is 86400000000)."""
    seconds, fraction = divmod(us, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return "%02d:%02d:%02d.%06d" % (hours, minutes, seconds, fraction)  # noqa: UP031 - fastest


def encode_milli_time(ms: Any) -> str:
    """io.debezium.time.Time: int32 ms since midnight."""
    seconds, fraction = divmod(ms, 1_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return "%02d:%02d:%02d.%03d" % (hours, minutes, seconds, fraction)  # noqa: UP031 - fastest


def encode_nano_time(ns: Any) -> str:
    """io.debezium.time.NanoTime: int64 ns since midnight."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return "%02d:%02d:%02d.%09d" % (hours, minutes, seconds, fraction)  # noqa: UP031 - fastest


# --- zoned (strings) -----------------------------------------------------------------------------

_SIGNED_YEAR = re.compile(r"([+-]?)(\d+)(-.*)", re.DOTALL)


def encode_zoned_timestamp(text: Any) -> str:
    """io.debezium.time.ZonedTimestamp: ISO-8601 in UTC, e.g. 2024-02-29T11:14:15.123456Z, which
    PostgreSQL reads as is; or "infinity" / "-infinity". Java prints years outside 0000..9999 with a
    sign (-4712-01-01T..., +10000-01-01T...) and 1 BC as year 0000: rewritten to PostgreSQL's BC form."""
    if "0" <= text[0] <= "9" and not text.startswith("0000"):
        return str(text)
    return _zoned_timestamp_slow(text)


def _zoned_timestamp_slow(text: str) -> str:
    if text in ("infinity", "-infinity"):
        return text
    match = _SIGNED_YEAR.fullmatch(text)
    if match is None:
        return text  # let PostgreSQL judge it
    sign, digits, rest = match.groups()
    year = -int(digits) if sign == "-" else int(digits)
    if year <= 0:
        return f"{1 - year:04d}{rest} BC"
    return f"{year:04d}{rest}"


# ZonedTime: ISO_OFFSET_TIME in UTC ("07:44:15.5Z", "10:00:00Z"): PostgreSQL reads it as is.
encode_zoned_time: Encoder = str


# --- intervals -----------------------------------------------------------------------------------

_ISO_INTERVAL = re.compile(r"P(-?\d+)Y(-?\d+)M(-?\d+)DT(-?\d+)H(-?\d+)M(-?)(\d+)(?:\.(\d*))?S")


_INTERVALS: dict[str, str] = {}  # Debezium's text -> ours; few distinct intervals recur
# Each interval encoder made (one per column, for its error message): the compiled fast path
# (cdc/fastpath.py) writes exactly these.
INTERVAL_ENCODERS: weakref.WeakSet[Encoder] = weakref.WeakSet()


def interval_encoder(column: str) -> Encoder:
    """io.debezium.time.Interval (interval.handling.mode=string): Debezium's
    "P{y}Y{m}M{d}DT{h}H{min}M{s}S" with each part signed on its own and seconds a decimal
    (io.debezium.time.Interval.toIsoString). PostgreSQL parses that form through a double, which is
    exact only for small second counts, so it is rewritten in PostgreSQL's own syntax with integer
    microseconds and an explicit sign on every part (so IntervalStyle=sql_standard cannot spread a
    leading minus over the other parts): "+1 years +2 mons +3 days +14706789000 microseconds".
    Seconds beyond microseconds (Debezium goes through a Java double) are rounded to the nearest µs."""

    def encode(text: Any) -> str:
        cached = _INTERVALS.get(text)
        if cached is not None:
            return cached
        match = _ISO_INTERVAL.fullmatch(text)
        if match is None:
            raise TerminalError(
                f"column {column!r}: interval value {text!r} is not Debezium's ISO 8601 form PnYnMnDTnHnMnS",
                "check interval.handling.mode=string in the connector configuration",
            )
        years, months, days, hours, minutes, negative, seconds, fraction = match.groups()
        nanos = int(seconds) * 1_000_000_000 + (int(fraction[:9].ljust(9, "0")) if fraction else 0)
        us = (nanos + 500) // 1000
        if negative:
            us = -us
        us += (int(hours) * 60 + int(minutes)) * 60_000_000
        result = f"{int(years):+d} years {int(months):+d} mons {int(days):+d} days {us:+d} microseconds"
        if len(_INTERVALS) >= _CACHE_LIMIT:
            _INTERVALS.clear()
        _INTERVALS[text] = result
        return result

    INTERVAL_ENCODERS.add(encode)
    return encode


def encode_micro_duration(us: Any) -> str:
    """io.debezium.time.MicroDuration (interval.handling.mode=numeric): int64 µs, where Debezium
    already folded months in at 30.4375 days (lossy upstream)."""
    return f"{us:+d} microseconds"


def encode_nano_duration(ns: Any) -> str:
    """io.debezium.time.NanoDuration: int64 ns (rounded to µs by PostgreSQL)."""
    us, sub = divmod(abs(ns), 1000)
    sign = "-" if ns < 0 else "+"
    return f"{sign}{us}.{sub:03d} microseconds" if sub else f"{sign}{us} microseconds"
