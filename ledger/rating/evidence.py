"""Settled-through time (R28): the instant before which an org's log proves every session's usage."""

from __future__ import annotations

from ledger.rating.workloads import OrgRating


def settled_through(rating: OrgRating) -> int | None:
    """R28: the org's latest event time (HEARTBEATs included), held back to the evidence of any open session.

    Before it, every session's usage is known: a closed session is whole, and an open one has evidence of running
    at least that far. A development session bills nothing (R8), so it holds nothing back. None when the org has
    no events. Invoice cuts (R17) and deactivation (R19) are evaluated on it.
    """
    settled = rating.latest_event_at
    if settled is None:
        return None
    for session in rating.sessions:
        if session.stop is None and session.as_of is not None:
            settled = min(settled, session.as_of)
    return settled
