"""The gRPC service on a real port: appends, reads, pagination, rich errors, health and reflection."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from usageledger.v1 import ledger_pb2 as pb

from client.ledger_client import LedgerClient
from ledger.log.audit import verify
from server.app import RunningServer
from tests.conftest import EventFactory
from wire.convert import raw_to_event


def details(err: grpc.RpcError) -> tuple[list[error_details_pb2.ErrorInfo], list[tuple[str, str]]]:
    status = rpc_status.from_call(err)
    assert status is not None
    infos, violations = [], []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
    return infos, violations


def test_append_and_read_back_over_grpc(client: LedgerClient, make_event: EventFactory) -> None:
    results = client.append_events([make_event(), make_event(type="WORKLOAD_READY")])
    assert [(r.log_id, r.sequence, r.duplicate) for r in results] == [("org/acme", 0, False), ("org/acme", 1, False)]
    entry = client.entry("org/acme", 1)
    assert entry.entry_hash == results[1].entry_hash
    assert entry.body_json()["type"] == "WORKLOAD_READY"
    head = client.head("org/acme")
    assert (head.size, head.head_hash) == (2, results[1].entry_hash)


def test_bad_batch_is_invalid_argument_naming_each_field_by_index_and_appends_nothing(
    client: LedgerClient, server: RunningServer, make_event: EventFactory
) -> None:
    future = "2026-10-06T12:05:00.000001Z"  # the fixture clock is 2026-10-06T12:00:00Z
    batch = [make_event(), make_event(instance_type="TPU"), make_event(occurred_at=future, event_id="")]
    with pytest.raises(grpc.RpcError) as err:
        client.append_events(batch)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    infos, violations = details(err.value)
    # ErrorInfo: the first violation's kind (INVALID_<FIELD>) and every bad field (docs/errors.md).
    assert infos[0].reason == "INVALID_" + violations[0][0].rsplit(".", 1)[-1].upper()
    assert infos[0].metadata["fields"] == ",".join(field for field, _ in violations)
    assert [field for field, _ in violations] == [
        "events[1].instance_type",
        "events[2].event_id",
        "events[2].occur_time",
    ]
    assert [h.log_id for h in server.ledger.store.list_logs("", 10)] == ["system"]


def test_unset_enums_and_missing_time_are_named(client: LedgerClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.append_events([pb.UsageEvent(event_id="e", org_id="o", endpoint_id="p", workload_id="w")])
    _, violations = details(err.value)
    assert {f for f, _ in violations} == {
        "events[0].workload_kind",
        "events[0].instance_type",
        "events[0].type",
        "events[0].occur_time",
    }


def test_r24_conflict_is_already_exists_with_error_info(client: LedgerClient, make_event: EventFactory) -> None:
    client.append_events([make_event()])
    event = make_event()
    [stored] = client.append_events([event])
    with pytest.raises(grpc.RpcError) as err:
        client.append_events([{**event, "workload_id": "other"}])
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    infos, _ = details(err.value)
    assert infos[0].reason == "EVENT_ID_CONFLICT"
    # The stored entry is named, so the sender can tell what came first without a read role (R24).
    assert dict(infos[0].metadata) == {
        "org_id": "acme",
        "event_id": event["event_id"],
        "sequence": "1",
        "entry_hash": stored.entry_hash.hex(),
    }
    assert "already in org 'acme''s log (entry 1)" in str(err.value.details())


def test_r24_one_event_id_twice_in_a_batch_with_different_bodies_is_invalid_argument(
    server: RunningServer, client: LedgerClient, make_event: EventFactory
) -> None:
    event = make_event()
    with pytest.raises(grpc.RpcError) as err:
        client.append_events([make_event(), event, {**event, "workload_id": "other"}])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    infos, violations = details(err.value)
    assert infos[0].reason == "EVENT_ID_REPEATED_IN_BATCH"  # docs/errors.md
    [(field, description)] = violations
    assert field == "events[2].event_id"
    assert "is also events[1].event_id in this batch, with a different body" in description
    assert "already in" not in str(err.value.details())
    assert [h.log_id for h in server.ledger.store.list_logs("", 10)] == ["system"]  # nothing of the batch
    # The same body twice is one fact sent twice: the second is a duplicate of the first (R24).
    first, second = client.append_events([event, event])
    assert (first.duplicate, second.duplicate) == (False, True) and first.sequence == second.sequence


def test_list_entries_paginates_with_opaque_tokens(client: LedgerClient, make_event: EventFactory) -> None:
    client.append_events([make_event() for _ in range(25)])
    pages, token = [], ""
    while True:
        response = client.stub.ListEntries(pb.ListEntriesRequest(log_id="org/acme", page_size=10, page_token=token))
        pages.append([e.sequence for e in response.entries])
        token = response.next_page_token
        if not token:
            break
    assert pages == [list(range(0, 10)), list(range(10, 20)), list(range(20, 25))]
    assert [e.sequence for e in client.entries("org/acme", page_size=7)] == list(range(25))
    with pytest.raises(grpc.RpcError) as err:
        client.stub.ListEntries(pb.ListEntriesRequest(log_id="org/acme", page_token="%%%"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_log_and_entry_are_not_found(client: LedgerClient) -> None:
    for call in (lambda: client.head("org/nobody"), lambda: client.entry("system", 99)):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_stream_events_appends_each_batch(
    client: LedgerClient, server: RunningServer, make_event: EventFactory
) -> None:
    batches = [[make_event() for _ in range(3)] for _ in range(4)]
    batches.append(batches[0])  # a re-sent batch: all duplicates
    requests = (pb.StreamEventsRequest(events=[raw_to_event(e) for e in batch]) for batch in batches)
    response = client.stub.StreamEvents(requests)
    assert (response.appended, response.duplicates, response.batches) == (12, 3, 5)
    assert verify(server.ledger.store).ok


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_stream_events_stops_at_the_failing_batch_and_keeps_the_earlier_ones(
    client: LedgerClient, server: RunningServer, make_event: EventFactory, failing: int
) -> None:
    """Batches are validated while the one before is appended: the status still names the first failing batch
    (a validation error or an R24 conflict), every batch before it stays appended and none after it is."""
    first = make_event()
    client.append_events([first])
    batches = [[make_event() for _ in range(2)] for _ in range(4)]
    if failing == 1:
        batches[1][1] = make_event(instance_type="TPU")  # refused by validation
    else:
        batches[failing][0] = {**first, "type": "WORKLOAD_READY"}  # the same event_id, other content: R24
    requests = (pb.StreamEventsRequest(events=[raw_to_event(e) for e in batch]) for batch in batches)
    with pytest.raises(grpc.RpcError) as err:
        client.stub.StreamEvents(requests)
    expected = grpc.StatusCode.INVALID_ARGUMENT if failing == 1 else grpc.StatusCode.ALREADY_EXISTS
    assert err.value.code() == expected
    assert f"batch {failing} (0-based)" in (err.value.details() or "")
    assert client.head("org/acme").size == 1 + 2 * failing
    assert verify(server.ledger.store).ok


def test_health_and_reflection_are_served(server: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "usageledger.v1.LedgerService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        [answer] = list(
            reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        )
        names = {s.name for s in answer.list_services_response.service}
        assert {"usageledger.v1.LedgerService", "grpc.health.v1.Health"} <= names
