"""Instants as integer microseconds since the Unix epoch (UTC): exact, cheap to compare, and RFC 3339 on the wire."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timezone

MICROS_PER_SECOND = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$")

# A clock returns "now" in microseconds; tests inject their own to drive time precisely.
Clock = Callable[[], int]


def system_clock() -> int:
    return time.time_ns() // 1000


def parse_rfc3339_micros(text: str) -> int:
    """Parse RFC 3339 (a zone is required) to microseconds; digits past the microsecond must be zero."""
    match = _RFC3339_RE.match(text)
    if not match:
        raise ValueError("expected YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or an offset such as +02:00")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    fraction = fraction or ""
    if len(fraction) > 6 and set(fraction[6:]) != {"0"}:
        raise ValueError("time is finer than a microsecond")
    micros = int((fraction + "000000")[:6])
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        offset_minutes = int(zone[1:3]) * 60 + int(zone[4:6])
        from datetime import timedelta

        tz = timezone(sign * timedelta(minutes=offset_minutes))
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz)
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


@functools.lru_cache(maxsize=4096)  # a dispute answer writes each request's instants several times
def format_micros(micros: int) -> str:
    """The one RFC 3339 form the ledger writes: UTC, six fraction digits, `Z`."""
    seconds, fraction = divmod(micros, MICROS_PER_SECOND)
    moment = time.gmtime(seconds)
    return (
        f"{moment.tm_year:04d}-{moment.tm_mon:02d}-{moment.tm_mday:02d}T"
        f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d}.{fraction:06d}Z"
    )


def to_datetime(micros: int) -> datetime:
    seconds, fraction = divmod(micros, MICROS_PER_SECOND)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=fraction)


def from_datetime(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give a zone")
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds
