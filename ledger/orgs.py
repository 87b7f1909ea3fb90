"""Which orgs exist: an org exists once its log does, and an org-scoped read of any other org is refused.

Without this check a read of an org nobody ever reported answers as confidently as one of a real org: zero usage,
no invoices, an ACTIVE account, "R9: scaled to zero, no charge" (issue #21), which a support agent may paste into
a ticket. The log `org/<org_id>` is created by the org's first entry (an event, a credit grant, a setting).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ledger.errors import NotFound
from ledger.log.entry import LogHead, org_log_id


class UnknownOrg(NotFound):
    """An org-scoped read named an org whose log does not exist."""

    reason = "ORG_NOT_FOUND"

    def __init__(self, org_id: str) -> None:
        self.org_id = org_id
        super().__init__(
            f"org {org_id!r} does not exist: the ledger has no log {org_log_id(org_id)} "
            "(no event, credit or account setting was ever recorded for it); check the org ID"
        )

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"org_id": self.org_id}


class LogHeads(Protocol):
    def head(self, log_id: str) -> LogHead: ...


def require_org(store: LogHeads, org_id: str) -> None:
    """Raise UnknownOrg unless `org_id` has a log. Callers check the caller's role first (server/auth.py), so a
    caller who may not read an org learns nothing about whether it exists."""
    try:
        store.head(org_log_id(org_id))
    except NotFound:
        raise UnknownOrg(org_id) from None
