"""The composition root: every part of a server (ledger, rollups, billing, signing) built once and handed out."""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

import grpc

from ledger.billing.closer import PeriodCloser
from ledger.billing.engine import DEFAULT_INVOICE_GRACE_SECONDS, BillingEngine
from ledger.intake import Ledger
from ledger.log.entry import org_of_log
from ledger.log.note import NoteSigner, read_private_key_file
from ledger.log.signing import DEFAULT_LEDGER_NAME, CheckpointSchedule, CheckpointSigner
from ledger.metrics import readings, record_signing_refusal, rollup_lag_sources
from ledger.ports import Appended
from ledger.timeutil import Clock
from ledger.usage import RollupFollower, UsageView
from server.audit_service import AuditStore, BackgroundSigner
from storage.sql import SqlStore
from storage.sql.rollups import UsageRollups

# The loggers of the parts built here, as before they were built in one place.
billing_log = logging.getLogger("usageledger.billing")
audit_log = logging.getLogger("usageledger.audit")

DEFAULT_CHECKPOINT_EVERY = 1000
DEFAULT_CHECKPOINT_SECONDS = 60.0


@dataclass(frozen=True)
class AuditOptions:
    """How the server signs checkpoints. Without `signing_key_path` nothing is signed and the checkpoint RPCs
    answer FAILED_PRECONDITION; proofs and leaves are served either way."""

    signing_key_path: str | os.PathLike[str] | None = None
    ledger_name: str = DEFAULT_LEDGER_NAME
    # Background signing: a log is signed when it grew by `checkpoint_every` entries, or `checkpoint_seconds`
    # after its last checkpoint if it grew at all; 0 turns a trigger off, both 0 turns the thread off.
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS
    # How often the background thread looks at the log heads; None: a quarter of checkpoint_seconds, at most 1 s.
    poll_seconds: float | None = None
    # The background thread opens its own store here, so it owns (and closes) its connections; None shares the
    # server's store.
    database_url: str | None = None

    def poll_interval(self) -> float:
        if self.poll_seconds is not None:
            return self.poll_seconds
        return min(1.0, self.checkpoint_seconds / 4) if self.checkpoint_seconds else 1.0


@dataclass(frozen=True)
class BillingOptions:
    """How the server runs billing. `close_interval` seconds between closer ticks (R15, R17, R19); None runs no
    closer: invoices and state then change only through the RPCs (CloseBillingPeriod, payment-method changes)."""

    close_interval: float | None = None
    # R17: a month-end invoice is issued on the wall clock this long after its month ended, if the settled-through
    # time (R28) has not reached the end by then.
    invoice_grace_seconds: int = DEFAULT_INVOICE_GRACE_SECONDS
    # R19: the credit every new org starts with (0: none).
    starter_credit: Decimal = Decimal(0)


@dataclass
class Billing:
    """The server's one billing engine (and account-state hub) and its period closer, if one runs."""

    engine: BillingEngine
    closer: PeriodCloser | None = None
    # Stops exporting the rollup-lag gauges (usageledger.rollup.lag).
    stop_gauges: Callable[[], None] | None = None

    def wake(self, appended: Iterable[Appended]) -> None:
        """After an append: ask the closer (if any) to re-evaluate the orgs that got new entries (R15, R19)."""
        closer = self.closer
        if closer is not None:
            logs = {a.log_id for a in appended if not a.duplicate}  # per event: the cheapest test first
            orgs = {org for log_id in logs if (org := org_of_log(log_id)) is not None}
            if orgs:
                closer.notify(orgs)

    def stop(self) -> None:
        """Stop the closer (finishing its current org) and end every watch stream; call before the store closes."""
        if self.stop_gauges is not None:
            self.stop_gauges()
            self.stop_gauges = None
        if self.closer is not None:
            self.closer.stop()
            self.closer = None
        self.engine.hub.close()


@dataclass
class Signing:
    """AuditService's parts: where checkpoints are stored, the signer (None without a key) and the ledger's name."""

    store: AuditStore
    signer: CheckpointSigner | None
    ledger_name: str


@dataclass
class ServerParts:
    """Everything the servicers share, built once by `compose`."""

    ledger: Ledger
    store: SqlStore
    rollups: UsageRollups
    usage: UsageView
    billing: Billing
    signing: Signing

    def stop(self) -> None:
        """After the gRPC server stopped, before the store closes: the closer finishes its org, watches end."""
        self.billing.stop()


def compose(
    store: SqlStore,
    server: grpc.Server,
    *,
    clock: Clock,
    billing: BillingOptions,
    audit: AuditOptions,
) -> ServerParts:
    """Build every part of a server on `store` once; the period closer and the background signer start here and
    run until `server` stops."""
    ledger = Ledger(store, clock=clock)
    rollups = UsageRollups(store)
    # One follower, the rollups' only writer, shared by UsageService and the billing engine (docs/adr/0003).
    usage = UsageView(ledger, rollups, follower=RollupFollower(rollups))
    # Signing first: a key file that cannot be read fails the start before the closer's thread is running.
    signing = _signing(ledger, store, server, audit)
    return ServerParts(ledger, store, rollups, usage, _billing(ledger, usage, rollups, server, billing), signing)


def _billing(
    ledger: Ledger, usage: UsageView, rollups: UsageRollups, server: grpc.Server, options: BillingOptions
) -> Billing:
    engine = BillingEngine(ledger, usage=usage, invoice_grace_seconds=options.invoice_grace_seconds)
    engine.starter_credit = options.starter_credit
    billing = Billing(engine, stop_gauges=rollup_lag_sources.add(lambda: readings(rollups.lag())))
    if options.close_interval is not None:
        billing.closer = PeriodCloser(engine, options.close_interval, serving=serving(server))
        billing.closer.start()
        billing_log.info("period closer running every %.1f s", options.close_interval)
    return billing


def _signing(ledger: Ledger, store: SqlStore, server: grpc.Server, options: AuditOptions) -> Signing:
    """The checkpoint signer of the key file, if any, and the background signer when its schedule is on."""
    if options.signing_key_path is None:
        audit_log.warning("no checkpoint signing key configured (--signing-key): checkpoints will not be signed")
        return Signing(store, None, options.ledger_name)
    note_signer = load_signer(options.signing_key_path)
    signer = _checkpoint_signer(store, note_signer, ledger, options)
    schedule = CheckpointSchedule(options.checkpoint_every, options.checkpoint_seconds)
    if schedule.enabled:
        background_store: AuditStore = store
        if options.database_url is not None:
            background_store = SqlStore(options.database_url, clock=ledger.clock, migrate_schema=False)
        BackgroundSigner(
            _checkpoint_signer(background_store, note_signer, ledger, options),
            background_store,
            schedule,
            server,
            poll_seconds=options.poll_interval(),
            owns_store=background_store is not store,
        ).start()
    return Signing(store, signer, options.ledger_name)


def _checkpoint_signer(
    store: AuditStore, note_signer: NoteSigner, ledger: Ledger, options: AuditOptions
) -> CheckpointSigner:
    return CheckpointSigner(
        store,
        note_signer,
        ledger_name=options.ledger_name,
        clock=ledger.clock,
        on_refusal=lambda _: record_signing_refusal(),
    )


def load_signer(path: str | os.PathLike[str]) -> NoteSigner:
    """Read the signing key file, warning (never printing the key) when others may read it."""
    key, warning = read_private_key_file(path)
    if warning is not None:
        audit_log.warning("%s", warning)
    signer = NoteSigner(key)
    audit_log.info("signing checkpoints with key %s", signer.verifier_key)
    return signer


def serving(server: grpc.Server) -> Callable[[], bool]:
    """Whether `server` still runs, without keeping it alive: background threads end with it."""
    ref = weakref.ref(server)

    def running() -> bool:
        live = ref()
        # wait_for_termination returns True when it timed out, i.e. the server still runs.
        return live is not None and bool(live.wait_for_termination(timeout=0))

    return running
