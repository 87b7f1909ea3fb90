"""AuditService: signed checkpoints, inclusion and consistency proofs and exact leaf bytes, plus background signing."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Protocol

import grpc
from usageledger.v1 import audit_pb2 as apb
from usageledger.v1 import audit_pb2_grpc as apb_grpc

from ledger.errors import FieldViolation, InvalidInput, VerificationError
from ledger.log.entry import Entry, LogHead
from ledger.log.merkle import consistency_proof, inclusion_proof
from ledger.log.proofs import LogNodes, prove_entries
from ledger.log.signing import (
    CheckpointRefused,
    CheckpointSchedule,
    CheckpointSigner,
    CheckpointStore,
    SigningKeyNotConfigured,
    StoredCheckpoint,
)
from ledger.tracing import root_span, span, untraced
from wire import paging
from wire.checkpoints import checkpoint_to_proto, leaf_to_proto

log = logging.getLogger("usageledger.audit")


class AuditStore(CheckpointStore, Protocol):
    """What the audit service reads besides checkpoints: pages of entries, of log heads and of checkpoints."""

    def checkpoint_page(self, log_id: str, start_size: int, limit: int) -> list[StoredCheckpoint]: ...

    def list_entries(self, log_id: str, start: int, limit: int) -> list[Entry]: ...

    def list_logs(self, after: str, limit: int) -> list[LogHead]: ...

    def close(self) -> None: ...


# -- the service -----------------------------------------------------------------------------------------------------


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
        _require_log_id(request.log_id)
        signer = self._signer()
        stored = signer.at(request.log_id, request.size) if request.size else signer.latest(request.log_id)
        return apb.GetCheckpointResponse(checkpoint=checkpoint_to_proto(stored))

    def ListCheckpoints(
        self, request: apb.ListCheckpointsRequest, context: grpc.ServicerContext
    ) -> apb.ListCheckpointsResponse:
        _require_log_id(request.log_id)
        self._signer()  # FAILED_PRECONDITION without a key, as GetCheckpoint
        size = paging.page_size(request.page_size)
        start = paging.number_token(request.page_token, 0)
        self.store.head(request.log_id)  # NOT_FOUND for an unknown log rather than an empty page
        found = self.store.checkpoint_page(request.log_id, start, size + 1)
        token = paging.encode_token(str(found[size].size)) if len(found) > size else ""
        return apb.ListCheckpointsResponse(
            checkpoints=[checkpoint_to_proto(c) for c in found[:size]], next_page_token=token
        )

    def SignCheckpoint(
        self, request: apb.SignCheckpointRequest, context: grpc.ServicerContext
    ) -> apb.SignCheckpointResponse:
        _require_log_id(request.log_id)
        stored, created = self._signer().sign(request.log_id)
        return apb.SignCheckpointResponse(checkpoint=checkpoint_to_proto(stored), newly_signed=created)

    def GetInclusionProof(
        self, request: apb.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> apb.GetInclusionProofResponse:
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

    def GetConsistencyProof(
        self, request: apb.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> apb.GetConsistencyProofResponse:
        _require_log_id(request.log_id)
        head = self.store.head(request.log_id)
        if request.new_size > head.size:
            raise InvalidInput([FieldViolation("new_size", f"log {request.log_id} has only {head.size} entries")])
        with span("ledger.proof.consistency", log_id=request.log_id):
            proof = consistency_proof(request.old_size, request.new_size, LogNodes(self.store, request.log_id))
        return apb.GetConsistencyProofResponse(proof_hashes=proof)

    def ListLeaves(self, request: apb.ListLeavesRequest, context: grpc.ServicerContext) -> apb.ListLeavesResponse:
        _require_log_id(request.log_id)
        size = paging.page_size(request.page_size)
        start = paging.number_token(request.page_token, request.start_index)
        self.store.head(request.log_id)  # NOT_FOUND for an unknown log rather than an empty page
        entries = self.store.list_entries(request.log_id, start, size + 1)
        token = paging.encode_token(str(entries[size].sequence)) if len(entries) > size else ""
        return apb.ListLeavesResponse(leaves=[leaf_to_proto(e) for e in entries[:size]], next_page_token=token)

    def GetVerifierKey(
        self, request: apb.GetVerifierKeyRequest, context: grpc.ServicerContext
    ) -> apb.GetVerifierKeyResponse:
        return apb.GetVerifierKeyResponse(verifier_key=self._signer().verifier_key, ledger_name=self.ledger_name)


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
