"""What a lookup's window holds (R27): which sessions it shows and which of their requests it lists one by one."""

from __future__ import annotations

from collections.abc import Mapping

from ledger.rating import RequestAttribution, Session, WorkloadRating
from ledger.timeutil import MICROS_PER_SECOND

# A storage sample reports the interval ending at its occurred_at (R13, R14): samples up to one default interval
# after the window can still cover part of it, so the workloads with entries that far past it are rated too. A
# longer interval (up to MAX_INTERVAL_SECONDS) ending later is found apart: from the rollups by its start, or by the
# whole read's own pass over the endpoint's later samples.
STORAGE_LOOKAHEAD = 300 * MICROS_PER_SECOND
# Requests listed one by one: the endpoint's first 20 in flight in the window, whichever sessions served them (each
# session still counts all of its own, and the R25 split always uses every request of the session). A report to
# paste into a ticket: its size is bounded by the window, not by how many replicas the endpoint ran; a request
# asked for by ID is always answered.
MAX_LISTED_REQUESTS = 20


def overlaps(a_start: int, a_end: int, start: int, end: int) -> bool:
    """[a_start, a_end] meets the window [start, end) (an instant event at `start` counts)."""
    return a_start < end and a_end >= start


def end_of(session: Session, now: int) -> int:
    """Where the answer ends a session: its stop, or `now` while it is open (R4, R10)."""
    return session.stop if session.stop is not None else max(now, session.up)


def shown_session(session: Session | None, endpoint_id: str, start: int, end: int, now: int) -> bool:
    """Whether the answer lists this session: one of the endpoint's, overlapping the window."""
    return (
        session is not None
        and session.endpoint_id == endpoint_id
        and overlaps(session.up, end_of(session, now), start, end)
    )


def listed_requests(
    ratings: Mapping[str, WorkloadRating], endpoint_id: str, start: int, end: int, now: int
) -> dict[str, list[RequestAttribution]]:
    """The requests the answer lists, by workload: the first MAX_LISTED_REQUESTS in flight in the window across the
    endpoint's sessions, by start and then entry, each in start order under its session (R27)."""
    found = []
    for workload_id, rating in ratings.items():
        session = rating.session
        if shown_session(session, endpoint_id, start, end, now):
            assert session is not None  # shown_session
            found += [((r.started_at, r.started_seq), workload_id, r) for r in window_requests(session, start, end)]
    found.sort(key=lambda item: item[0])
    listing: dict[str, list[RequestAttribution]] = {}
    for _, workload_id, request in found[:MAX_LISTED_REQUESTS]:
        listing.setdefault(workload_id, []).append(request)
    return listing


def window_requests(session: Session, start: int, end: int) -> list[RequestAttribution]:
    """The session's requests in flight at some point of the window, by start (R3, R25)."""
    if session.attribution is None:
        return []
    return [r for r in session.attribution.requests if overlaps(r.started_at, r.in_flight_to, start, end)]
