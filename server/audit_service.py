"""AuditService: signed checkpoints, inclusion and consistency proofs and exact leaf bytes, plus background signing."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, cast

import grpc
from usageledger.v1 import audit_pb2 as apb
from usageledger.v1 import audit_pb2_grpc as apb_grpc

from ledger.errors import FieldViolation, InvalidInput, LedgerError, VerificationError
from ledger.intake import Ledger
from ledger.log.entry import Entry, LogHead
from ledger.log.merkle import consistency_proof, inclusion_proof
from ledger.log.note import NoteSigner, read_private_key_file
from ledger.log.proofs import LogNodes, SignedCheckpoint, decode_entry, prove_entries
from ledger.log.signing import (
    DEFAULT_LEDGER_NAME,
    CheckpointRefused,
    CheckpointSchedule,
    CheckpointSigner,
    CheckpointStore,
    SigningKeyNotConfigured,
    StoredCheckpoint,
)
from ledger.metrics import record_signing_refusal
from ledger.tracing import root_span, span, untraced
from server.errors import abort
from server.service import _decode_token, _encode_token, _page_size
from wire.convert import micros_to_timestamp

log = logging.getLogger("usageledger.audit")

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


_OPTIONS: contextvars.ContextVar[AuditOptions | None] = contextvars.ContextVar("audit_options", default=None)


@contextlib.contextmanager
def audit_options(options: AuditOptions) -> Iterator[None]:
    """The options register_audit uses while the server's services are registered (server.app.start_server)."""
    token = _OPTIONS.set(options)
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def load_signer(path: str | os.PathLike[str]) -> NoteSigner:
    """Read the signing key file, warning (never printing the key) when others may read it."""
    key, warning = read_private_key_file(path)
    if warning is not None:
        log.warning("%s", warning)
    signer = NoteSigner(key)
    log.info("signing checkpoints with key %s", signer.verifier_key)
    return signer


# -- proto conversion ----------------------------------------------------------------------------------------------


def checkpoint_to_proto(stored: StoredCheckpoint) -> apb.Checkpoint:
    # The convenience copies come from the note's own text, never from the row's unsigned size and root columns.
    signed = stored.signed()
    return apb.Checkpoint(
        log_id=stored.log_id,
        origin=signed.origin,
        size=signed.size,
        root_hash=signed.root_hash,
        signed_note=stored.note,
        sign_time=micros_to_timestamp(stored.signed_at),
    )


def checkpoint_from_proto(message: apb.Checkpoint) -> SignedCheckpoint:
    """The signed note is what counts; the message's other fields are a copy of its text and are not read."""
    return SignedCheckpoint.parse(message.log_id, message.signed_note)


def leaf_to_proto(entry: Entry) -> apb.Leaf:
    return apb.Leaf(
        index=entry.sequence,
        entry_bytes=entry.encoded(),
        previous_hash=entry.previous_hash,
        entry_hash=entry.entry_hash,
    )


def leaf_from_proto(message: apb.Leaf) -> Entry:
    entry = decode_entry(message.entry_bytes, message.previous_hash, message.entry_hash)
    if entry.sequence != message.index:
        raise VerificationError(f"leaf {message.index}: its entry bytes say sequence {entry.sequence}")
    return entry


class AuditStore(CheckpointStore, Protocol):
    """What the audit service reads besides checkpoints: pages of entries, of log heads and of checkpoints."""

    def checkpoint_page(self, log_id: str, start_size: int, limit: int) -> list[StoredCheckpoint]: ...

    def list_entries(self, log_id: str, start: int, limit: int) -> list[Entry]: ...

    def list_logs(self, after: str, limit: int) -> list[LogHead]: ...

    def close(self) -> None: ...


# -- the service -----------------------------------------------------------------------------------------------------


def _page_start(page_token: str, default: int) -> int:
    """Where a page starts: the number a page token of ours carries (the first index or size of the next page), or
    `default` without one."""
    if not page_token:
        return default
    token = _decode_token(page_token)
    # ASCII digits of a sequence number or size only (str.isdigit also takes "²", which int() refuses): signed
    # 64-bit columns.
    if not (token.isascii() and token.isdigit() and int(token) < 2**63):
        raise InvalidInput([FieldViolation("page_token", "is not a page token this server issued")])
    return int(token)


def _require_log_id(log_id: str) -> None:
    if not log_id:
        raise InvalidInput([FieldViolation("log_id", "is required: system or org/<org_id>")])


class AuditServicer(apb_grpc.AuditServiceServicer):  # type: ignore[misc]
    def __init__(self, store: AuditStore, signer: CheckpointSigner | None, ledger_name: str) -> None:
        self.store = store
        self.signer = signer
        self.ledger_name = ledger_name

    def _signer(self) -> CheckpointSigner:
        if self.signer is None:
            raise SigningKeyNotConfigured()
        return self.signer

    def GetCheckpoint(
        self, request: apb.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> apb.GetCheckpointResponse:
        try:
            _require_log_id(request.log_id)
            signer = self._signer()
            stored = signer.at(request.log_id, request.size) if request.size else signer.latest(request.log_id)
            return apb.GetCheckpointResponse(checkpoint=checkpoint_to_proto(stored))
        except LedgerError as err:
            abort(context, err)
            raise

    def ListCheckpoints(
        self, request: apb.ListCheckpointsRequest, context: grpc.ServicerContext
    ) -> apb.ListCheckpointsResponse:
        try:
            _require_log_id(request.log_id)
            self._signer()  # FAILED_PRECONDITION without a key, as GetCheckpoint
            size = _page_size(request.page_size)
            start = _page_start(request.page_token, 0)
            self.store.head(request.log_id)  # NOT_FOUND for an unknown log rather than an empty page
            found = self.store.checkpoint_page(request.log_id, start, size + 1)
        except LedgerError as err:
            abort(context, err)
            raise
        token = _encode_token(str(found[size].size)) if len(found) > size else ""
        return apb.ListCheckpointsResponse(
            checkpoints=[checkpoint_to_proto(c) for c in found[:size]], next_page_token=token
        )

    def SignCheckpoint(
        self, request: apb.SignCheckpointRequest, context: grpc.ServicerContext
    ) -> apb.SignCheckpointResponse:
        try:
            _require_log_id(request.log_id)
            stored, created = self._signer().sign(request.log_id)
            return apb.SignCheckpointResponse(checkpoint=checkpoint_to_proto(stored), newly_signed=created)
        except LedgerError as err:
            abort(context, err)
            raise

    def GetInclusionProof(
        self, request: apb.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> apb.GetInclusionProofResponse:
        try:
            _require_log_id(request.log_id)
            log_id, sequence = request.log_id, request.sequence
            head = self.store.head(log_id)
            stored: StoredCheckpoint | None
            if request.tree_size:
                size = request.tree_size
                if size > head.size:
                    raise InvalidInput([FieldViolation("tree_size", f"log {log_id} has only {head.size} entries")])
                stored = self.store.checkpoint_at(log_id, size)
            else:
                stored = self.store.latest_checkpoint(log_id)
            # The proof is of the tree the note signs: its size from the note's text, not the row's unsigned column.
            signed = stored.signed() if stored is not None else None
            if signed is not None and not request.tree_size and signed.size <= sequence:
                stored = signed = None
            if not request.tree_size:
                size = signed.size if signed is not None else head.size
            elif signed is not None and signed.size != size:
                raise VerificationError(
                    f"log {log_id}: the checkpoints row of size {size} holds a note of size {signed.size} "
                    "(checkpoints table altered)",
                    kind="checkpoint",
                )
            if sequence >= size:
                raise InvalidInput([FieldViolation("sequence", f"entry #{sequence} is not in a tree of size {size}")])
            if signed is not None:
                bundle = prove_entries(self.store, log_id, [sequence], signed)
                [entry], proof = bundle.entries, list(bundle.proof)  # one entry's proof is its RFC 9162 proof
            else:
                entry = self.store.get_entry(log_id, sequence)
                proof = inclusion_proof(sequence, size, LogNodes(self.store, log_id))
            return apb.GetInclusionProofResponse(
                leaf=leaf_to_proto(entry),
                tree_size=size,
                proof_hashes=proof,
                checkpoint=checkpoint_to_proto(stored) if stored is not None else None,
            )
        except LedgerError as err:
            abort(context, err)
            raise

    def GetConsistencyProof(
        self, request: apb.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> apb.GetConsistencyProofResponse:
        try:
            _require_log_id(request.log_id)
            head = self.store.head(request.log_id)
            if request.new_size > head.size:
                raise InvalidInput([FieldViolation("new_size", f"log {request.log_id} has only {head.size} entries")])
            with span("ledger.proof.consistency", log_id=request.log_id):
                proof = consistency_proof(request.old_size, request.new_size, LogNodes(self.store, request.log_id))
            return apb.GetConsistencyProofResponse(proof_hashes=proof)
        except LedgerError as err:
            abort(context, err)
            raise

    def ListLeaves(self, request: apb.ListLeavesRequest, context: grpc.ServicerContext) -> apb.ListLeavesResponse:
        try:
            _require_log_id(request.log_id)
            size = _page_size(request.page_size)
            start = _page_start(request.page_token, request.start_index)
            self.store.head(request.log_id)  # NOT_FOUND for an unknown log rather than an empty page
            entries = self.store.list_entries(request.log_id, start, size + 1)
        except LedgerError as err:
            abort(context, err)
            raise
        token = _encode_token(str(entries[size].sequence)) if len(entries) > size else ""
        return apb.ListLeavesResponse(leaves=[leaf_to_proto(e) for e in entries[:size]], next_page_token=token)

    def GetVerifierKey(
        self, request: apb.GetVerifierKeyRequest, context: grpc.ServicerContext
    ) -> apb.GetVerifierKeyResponse:
        try:
            return apb.GetVerifierKeyResponse(verifier_key=self._signer().verifier_key, ledger_name=self.ledger_name)
        except LedgerError as err:
            abort(context, err)
            raise


# -- background signing ----------------------------------------------------------------------------------------------


class BackgroundSigner:
    """Signs each log when the schedule says it is due, until the gRPC server stops (or is never started)."""

    def __init__(
        self,
        signer: CheckpointSigner,
        store: AuditStore,
        schedule: CheckpointSchedule,
        server: grpc.Server,
        *,
        poll_seconds: float,
        owns_store: bool,
    ) -> None:
        self.signer = signer
        self.store = store
        self.schedule = schedule
        self.poll_seconds = poll_seconds
        self._server = weakref.ref(server)
        self._owns_store = owns_store
        # Per log: size of its newest checkpoint (None: none) and when this process signed or first saw it.
        self._signed: dict[str, tuple[int | None, float]] = {}
        self._refused: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, name="checkpoint-signer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _running(self, timeout: float) -> bool:
        server = self._server()
        # wait_for_termination returns True when it timed out, i.e. the server is still up.
        return server is not None and bool(server.wait_for_termination(timeout=timeout))

    def _run(self) -> None:
        try:
            while self._running(self.poll_seconds):
                try:
                    with untraced():  # the poll's reads; each signature is a trace of its own (_sign_if_due)
                        self.sign_due()
                except Exception:
                    log.exception("background checkpoint signing failed; trying again in %.1f s", self.poll_seconds)
        finally:
            if self._owns_store:
                self.store.close()

    def sign_due(self) -> int:
        """Sign every log that is due; returns how many were signed."""
        signed = 0
        after = ""
        while self._running(0):
            heads = self.store.list_logs(after, 500)
            for head in heads:
                if not self._running(0):
                    return signed
                signed += self._sign_if_due(head.log_id, head.size)
            if len(heads) < 500:
                break
            after = heads[-1].log_id
        return signed

    def _sign_if_due(self, log_id: str, size: int) -> int:
        now = time.monotonic()
        if log_id not in self._signed:
            latest = self.store.latest_checkpoint(log_id)
            self._signed[log_id] = (None if latest is None else latest.size, now)
        signed_size, since = self._signed[log_id]
        elapsed = None if signed_size is None else now - since
        if not self.schedule.due(size, signed_size, elapsed) or self._refused.get(log_id) == size:
            return 0
        try:
            with root_span("ledger.checkpoint.background_sign", log_id=log_id):
                stored, created = self.signer.sign(log_id)
        except CheckpointRefused:
            # Tried (and logged and counted by the signer) once per size: an operator must look at this log; it is
            # never signed until the cause is found.
            self._refused[log_id] = size
            return 0
        self._refused.pop(log_id, None)
        self._signed[log_id] = (stored.size, now)
        return int(created)


def register_audit(ledger: Ledger, server: grpc.Server) -> str:
    """Add AuditService (and, with a key and a schedule, the background signer) using the current AuditOptions."""
    options = _OPTIONS.get() or AuditOptions()
    store = ledger.store
    if not hasattr(store, "add_checkpoint"):
        raise TypeError(f"{type(store).__name__} cannot store checkpoints (needs the SQL store)")
    checkpoint_store = cast(AuditStore, store)
    signer = None
    if options.signing_key_path is not None:
        note_signer = load_signer(options.signing_key_path)
        signer = CheckpointSigner(
            checkpoint_store,
            note_signer,
            ledger_name=options.ledger_name,
            clock=ledger.clock,
            on_refusal=lambda _: record_signing_refusal(),
        )
        schedule = CheckpointSchedule(options.checkpoint_every, options.checkpoint_seconds)
        if schedule.enabled:
            background_store: AuditStore = checkpoint_store
            if options.database_url is not None:
                from storage.sql import SqlStore

                background_store = SqlStore(options.database_url, clock=ledger.clock, migrate_schema=False)
            background = CheckpointSigner(
                background_store,
                note_signer,
                ledger_name=options.ledger_name,
                clock=ledger.clock,
                on_refusal=lambda _: record_signing_refusal(),
            )
            BackgroundSigner(
                background,
                background_store,
                schedule,
                server,
                poll_seconds=options.poll_interval(),
                owns_store=background_store is not checkpoint_store,
            ).start()
    else:
        log.warning("no checkpoint signing key configured (--signing-key): checkpoints will not be signed")
    apb_grpc.add_AuditServiceServicer_to_server(AuditServicer(checkpoint_store, signer, options.ledger_name), server)
    return str(apb.DESCRIPTOR.services_by_name["AuditService"].full_name)
