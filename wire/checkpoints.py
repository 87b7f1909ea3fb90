"""AuditService's messages: signed checkpoints and leaves (exact entry bytes), for the server and for auditors."""

from __future__ import annotations

from usageledger.v1 import audit_pb2 as apb

from ledger.errors import VerificationError
from ledger.log.entry import Entry
from ledger.log.proofs import SignedCheckpoint, decode_entry
from ledger.log.signing import StoredCheckpoint
from wire.convert import micros_to_timestamp


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
