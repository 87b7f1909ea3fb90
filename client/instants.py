"""The instants ledgerctl accepts, one grammar for every time option (docs/cli.md, "Times").

RFC 3339 with or without seconds, with or without a fraction, with `Z` or an offset; `YYYY-MM-DD HH:MM[:SS]`
as people type it; a bare date meaning its 00:00. No zone means UTC. The ledger keeps microseconds, so a fraction
finer than that must be zeros.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from ledger.timeutil import from_datetime

FORMS = (
    "RFC 3339 such as 2026-10-05T11:45:00Z or 2026-10-05T11:45Z, `2026-10-05 11:45` (UTC), or a date (its 00:00 UTC)"
)

_INSTANT = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"\s*(?P<zone>[Zz]|[+-]\d{2}:\d{2})?)?$"
)


def parse_instant(text: str) -> int:
    """Microseconds since the epoch of one of the forms above; ValueError saying which forms are accepted."""
    match = _INSTANT.match(text.strip())
    if match is None:
        raise ValueError(f"not a time: use {FORMS}")
    fraction = match["fraction"] or ""
    if len(fraction) > 6 and set(fraction[6:]) != {"0"}:
        raise ValueError("finer than a microsecond, which is the ledger's resolution")
    zone = match["zone"]
    if zone is None or zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        day = datetime.strptime(match["date"], "%Y-%m-%d")
        moment = day.replace(
            hour=int(match["hour"] or 0),
            minute=int(match["minute"] or 0),
            second=int(match["second"] or 0),
            microsecond=int((fraction + "000000")[:6]),
            tzinfo=tz,
        )
    except ValueError as err:
        raise ValueError(f"not a time ({err}): use {FORMS}") from err
    return from_datetime(moment)
