"""Proving what a lookup cites (R27): inclusion proofs of its entries against each log's newest signed checkpoint."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ledger.dispute.report import EntryProofs
from ledger.log.proofs import prove_entries
from ledger.ports import CheckpointedSource
from ledger.tracing import traced

PROOFS_ON_REQUEST = (
    "R27: every figure cites its entries by log, sequence and hash; for inclusion proofs of them, checkable offline, "
    "ask again with include_proofs (ledgerctl support lookup --proofs DIR)"
)


@traced("ledger.dispute.prove")
def prove_cited(
    source: CheckpointedSource, cited: Mapping[str, Iterable[int]]
) -> tuple[tuple[EntryProofs, ...], tuple[str, ...]]:
    """Proofs of the cited entries per log that has a signed checkpoint; notes on the logs and entries without."""
    found: list[EntryProofs] = []
    notes: list[str] = []
    for log_id, sequences in sorted(cited.items()):
        wanted = sorted(set(sequences))
        stored = source.latest_checkpoint(log_id)
        if stored is None:
            notes.append(
                f"R27: log {log_id} has no signed checkpoint yet (the server signs them when it has a signing key)"
            )
            continue
        checkpoint = stored.signed()
        covered = [s for s in wanted if s < checkpoint.size]
        unproven = tuple(s for s in wanted if s >= checkpoint.size)
        bundle = prove_entries(source, log_id, covered, checkpoint)
        found.append(
            EntryProofs(log_id, checkpoint.size, checkpoint.root_hash, checkpoint.note, bundle.to_json(), unproven)
        )
        if unproven:
            notes.append(
                f"R27: {len(unproven)} entries of {log_id} were appended after its newest signed checkpoint "
                f"(size {checkpoint.size}); they are proven once the next checkpoint is signed"
            )
    return tuple(found), tuple(notes)
