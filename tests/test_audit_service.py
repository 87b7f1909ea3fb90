"""AuditService on a real port: checkpoints, proofs (property-tested against an independent rebuild) and leaves."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import given, settings
from hypothesis import strategies as st
from usageledger.v1 import audit_pb2 as apb
from usageledger.v1 import audit_pb2_grpc as apb_grpc

from client.ledger_client import LedgerClient
from ledger.log.merkle import Frontier, leaf_hash, verify_consistency, verify_inclusion
from ledger.log.note import NoteVerifier, open_checkpoint
from server.app import RunningServer
from wire.checkpoints import leaf_from_proto

if TYPE_CHECKING:
    from tests.audit_support import AddEvents, TamperFactory

pytest_plugins = ["tests.audit_support"]

# Storage-independent behaviour runs on SQLite only; PostgreSQL where storage matters (locks, triggers, nodes).
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _stub(client: LedgerClient) -> apb_grpc.AuditServiceStub:
    return apb_grpc.AuditServiceStub(client.channel)


def _reason(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    raise AssertionError("no ErrorInfo")


def _roots(client: LedgerClient, log_id: str) -> list[bytes]:
    """Every prefix root of a log, rebuilt from ListLeaves bytes alone: roots[n] is the root of the first n."""
    stub = _stub(client)
    frontier, roots, token = Frontier.empty(), [Frontier.empty().root()], ""
    while True:
        page = stub.ListLeaves(apb.ListLeavesRequest(log_id=log_id, page_size=7, page_token=token), timeout=5)
        for leaf in page.leaves:
            assert leaf.index == frontier.size
            leaf_from_proto(leaf)  # canonical bytes, index matches
            frontier, _ = frontier.append(leaf_hash(leaf.entry_bytes))
            roots.append(frontier.root())
        token = page.next_page_token
        if not token:
            return roots


@sqlite_only
def test_sign_then_get_checkpoints_and_the_verifier_key(
    audit_client: LedgerClient, add_events: AddEvents, verifier_key: str
) -> None:
    stub = _stub(audit_client)
    add_events(audit_client, 5)
    signed = stub.SignCheckpoint(apb.SignCheckpointRequest(log_id="org/acme"), timeout=5)
    assert signed.newly_signed and signed.checkpoint.size == 5
    assert signed.checkpoint.origin == "usage-ledger.local/org/acme"
    again = stub.SignCheckpoint(apb.SignCheckpointRequest(log_id="org/acme"), timeout=5)
    assert not again.newly_signed and again.checkpoint == signed.checkpoint
    assert stub.GetCheckpoint(apb.GetCheckpointRequest(log_id="org/acme"), timeout=5).checkpoint == signed.checkpoint
    at = stub.GetCheckpoint(apb.GetCheckpointRequest(log_id="org/acme", size=5), timeout=5).checkpoint
    assert at == signed.checkpoint

    key = stub.GetVerifierKey(apb.GetVerifierKeyRequest(), timeout=5)
    assert key.verifier_key == verifier_key and key.ledger_name == "usage-ledger.local"
    opened = open_checkpoint(signed.checkpoint.signed_note, NoteVerifier(key.verifier_key), signed.checkpoint.origin)
    assert opened.root_hash == signed.checkpoint.root_hash == audit_client.head("org/acme").root_hash

    for request, code in (
        (apb.GetCheckpointRequest(log_id="org/acme", size=4), grpc.StatusCode.NOT_FOUND),
        (apb.GetCheckpointRequest(log_id="org/nobody"), grpc.StatusCode.NOT_FOUND),
        (apb.GetCheckpointRequest(log_id=""), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as err:
            stub.GetCheckpoint(request, timeout=5)
        assert err.value.code() == code


@sqlite_only
def test_inclusion_proof_uses_the_newest_checkpoint_that_covers_the_entry(
    audit_client: LedgerClient, add_events: AddEvents
) -> None:
    stub = _stub(audit_client)
    add_events(audit_client, 5)
    stub.SignCheckpoint(apb.SignCheckpointRequest(log_id="org/acme"), timeout=5)
    add_events(audit_client, 3, org="acme")
    roots = _roots(audit_client, "org/acme")

    covered = stub.GetInclusionProof(apb.GetInclusionProofRequest(log_id="org/acme", sequence=2), timeout=5)
    assert covered.tree_size == 5 and covered.checkpoint.size == 5
    verify_inclusion(leaf_hash(covered.leaf.entry_bytes), 2, 5, list(covered.proof_hashes), roots[5])

    newer = stub.GetInclusionProof(apb.GetInclusionProofRequest(log_id="org/acme", sequence=6), timeout=5)
    assert newer.tree_size == 8 and not newer.HasField("checkpoint")
    verify_inclusion(leaf_hash(newer.leaf.entry_bytes), 6, 8, list(newer.proof_hashes), roots[8])

    for request, field in (
        (apb.GetInclusionProofRequest(log_id="org/acme", sequence=1, tree_size=9), "tree_size"),
        (apb.GetInclusionProofRequest(log_id="org/acme", sequence=5, tree_size=5), "sequence"),
    ):
        with pytest.raises(grpc.RpcError) as err:
            stub.GetInclusionProof(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (err.value.details() or "")


@sqlite_only
def test_consistency_proof_bounds(audit_client: LedgerClient, add_events: AddEvents) -> None:
    stub = _stub(audit_client)
    add_events(audit_client, 4)
    assert not stub.GetConsistencyProof(
        apb.GetConsistencyProofRequest(log_id="org/acme", old_size=4, new_size=4), timeout=5
    ).proof_hashes
    for old, new in ((0, 3), (3, 5), (4, 3)):
        with pytest.raises(grpc.RpcError) as err:
            stub.GetConsistencyProof(apb.GetConsistencyProofRequest(log_id="org/acme", old_size=old, new_size=new))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@sqlite_only
def test_list_leaves_pages_exact_entry_bytes(audit_client: LedgerClient, add_events: AddEvents) -> None:
    stub = _stub(audit_client)
    add_events(audit_client, 10)
    roots = _roots(audit_client, "org/acme")
    assert len(roots) == 11 and roots[10] == audit_client.head("org/acme").root_hash
    for entry, leaf in zip(
        audit_client.entries("org/acme"),
        stub.ListLeaves(apb.ListLeavesRequest(log_id="org/acme", page_size=100), timeout=5).leaves,
        strict=True,
    ):
        assert leaf.entry_bytes == entry.encoded() and leaf.entry_hash == entry.entry_hash
    tail = stub.ListLeaves(apb.ListLeavesRequest(log_id="org/acme", start_index=8), timeout=5)
    assert [leaf.index for leaf in tail.leaves] == [8, 9] and not tail.next_page_token
    for request, code in (
        (apb.ListLeavesRequest(log_id="org/acme", page_token="bm90IGEgbnVtYmVy"), grpc.StatusCode.INVALID_ARGUMENT),
        (apb.ListLeavesRequest(log_id="org/acme", page_size=-1), grpc.StatusCode.INVALID_ARGUMENT),
        (apb.ListLeavesRequest(log_id="org/nobody"), grpc.StatusCode.NOT_FOUND),
    ):
        with pytest.raises(grpc.RpcError) as err:
            stub.ListLeaves(request, timeout=5)
        assert err.value.code() == code


def test_proofs_served_for_random_sizes_verify(audit_client: LedgerClient, add_events: AddEvents) -> None:
    stub = _stub(audit_client)
    for batch in (1, 6, 13, 20, 3):  # uneven batches, so stored nodes straddle append boundaries
        add_events(audit_client, batch)
    roots = _roots(audit_client, "org/acme")
    size = len(roots) - 1

    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        tree_size = data.draw(st.integers(1, size), label="tree_size")
        index = data.draw(st.integers(0, tree_size - 1), label="index")
        request = apb.GetInclusionProofRequest(log_id="org/acme", sequence=index, tree_size=tree_size)
        proof = stub.GetInclusionProof(request, timeout=5)
        assert proof.leaf.index == index and proof.tree_size == tree_size
        verify_inclusion(
            leaf_hash(proof.leaf.entry_bytes), index, tree_size, list(proof.proof_hashes), roots[tree_size]
        )
        old = data.draw(st.integers(1, tree_size), label="old_size")
        request_c = apb.GetConsistencyProofRequest(log_id="org/acme", old_size=old, new_size=tree_size)
        hashes = list(stub.GetConsistencyProof(request_c, timeout=5).proof_hashes)
        verify_consistency(old, tree_size, roots[old], roots[tree_size], hashes)

    check()


@sqlite_only
def test_signing_a_rewritten_log_is_refused_with_data_loss_and_nothing_stored(
    audit_client: LedgerClient, signed_server: RunningServer, tamper: TamperFactory, add_events: AddEvents
) -> None:
    stub = _stub(audit_client)
    add_events(audit_client, 6)
    signed = stub.SignCheckpoint(apb.SignCheckpointRequest(log_id="org/acme"), timeout=5).checkpoint
    bodies = [e.body.replace(b'"A100"', b'"L4"') for e in audit_client.entries("org/acme")]
    with tamper() as t:
        t.replace_log("org/acme", bodies, signed_server.ledger.clock())
    add_events(audit_client, 1, org="acme")
    with pytest.raises(grpc.RpcError) as err:
        stub.SignCheckpoint(apb.SignCheckpointRequest(log_id="org/acme"), timeout=5)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert _reason(err.value) == "CHECKPOINT_REFUSED"
    assert "refusing to sign log org/acme" in (err.value.details() or "")
    assert stub.GetCheckpoint(apb.GetCheckpointRequest(log_id="org/acme"), timeout=5).checkpoint == signed


@sqlite_only
def test_audit_service_is_healthy_and_reflected(audit_client: LedgerClient) -> None:
    health = health_pb2_grpc.HealthStub(audit_client.channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service="usageledger.v1.AuditService"), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
