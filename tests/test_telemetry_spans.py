"""Spans where the time goes, on a real server with an in-memory span exporter: rating, dispute reconstruction and its
phases, invoice drafting, proofs and signing under their RPC's span; the closer's passes and background checkpoint
signing as root spans of their own; no input values in any span; trace ids on background threads' log lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from usageledger.v1 import account_pb2 as apb
from usageledger.v1 import account_pb2_grpc as apb_grpc
from usageledger.v1 import audit_pb2, audit_pb2_grpc, billing_pb2, billing_pb2_grpc, usage_pb2, usage_pb2_grpc
from usageledger.v1 import support_pb2 as spb
from usageledger.v1 import support_pb2_grpc as spb_grpc

from server.app import RunningServer, start_server
from tests.billing_support import event, t
from tests.conftest import FixedClock
from tests.telemetry_support import JsonLines, append, capture, eventually
from wire.convert import micros_to_timestamp

Spans = Sequence[ReadableSpan]

pytest_plugins = ["tests.audit_support"]  # key_file


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(t("2026-10-05T15:00:00Z"))


@pytest.fixture
def running(sqlite_url: str, clock: FixedClock, key_file: Path) -> Iterator[RunningServer]:
    server = start_server(
        sqlite_url,
        "127.0.0.1:0",
        clock=clock,
        tracing=True,
        signing_key=key_file,
        checkpoint_every=0,
        checkpoint_seconds=0,
    )
    yield server
    server.stop(grace=None)


@pytest.fixture
def channel(running: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        yield ch


SESSION = (
    event("acme", "wl-1", "WORKLOAD_UP", "2026-10-05T09:00:00Z"),
    event("acme", "wl-1", "WORKLOAD_STOPPED", "2026-10-05T14:48:00Z", stop_reason="COMPLETED"),
)


def named(spans: Spans, name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{len(found)} spans named {name!r} in {sorted({s.name for s in spans})}"
    return found[0]


def under(spans: Spans, child: str, parent: ReadableSpan) -> ReadableSpan:
    """The span `child`, asserted to descend from `parent` in the same trace."""
    span = named(spans, child)
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    assert span.context is not None and parent.context is not None
    assert span.context.trace_id == parent.context.trace_id, f"{child} is not in {parent.name}'s trace"
    current: ReadableSpan | None = span
    while current is not None and current is not parent:
        current = by_id.get(current.parent.span_id) if current.parent is not None else None
    assert current is parent, f"{child} does not descend from {parent.name}"
    return span


def rpc(spans: Spans, method: str) -> ReadableSpan:
    return named(spans, f"/usageledger.v1.{method}")


def test_a_usage_query_is_rated_from_rollups_caught_up_under_its_rpc_span(
    running: RunningServer, channel: grpc.Channel
) -> None:
    append(running.port, *SESSION)
    with capture() as exporter:
        usage_pb2_grpc.UsageServiceStub(channel).QueryUsage(
            usage_pb2.QueryUsageRequest(
                org_id="acme",
                start_time=micros_to_timestamp(t("2026-10-05T00:00:00Z")),
                end_time=micros_to_timestamp(t("2026-10-06T00:00:00Z")),
            )
        )
    spans = exporter.get_finished_spans()
    call = rpc(spans, "UsageService/QueryUsage")
    query = under(spans, "ledger.usage.query", call)
    assert query.attributes is not None and query.attributes["org_id"] == "acme"
    catch_up = under(spans, "ledger.rollups.catch_up", query)
    assert any(s.name.startswith("db ") and s.parent and s.parent.span_id == catch_up.context.span_id for s in spans)


def test_r27_a_dispute_lookup_shows_its_phases_and_its_proofs(running: RunningServer, channel: grpc.Channel) -> None:
    append(running.port, *SESSION)
    audit_pb2_grpc.AuditServiceStub(channel).SignCheckpoint(audit_pb2.SignCheckpointRequest(log_id="org/acme"))
    request = spb.ReconstructChargesRequest(
        org_id="acme",
        endpoint_id="ep-1",
        start_time=micros_to_timestamp(t("2026-10-05T00:00:00Z")),
        end_time=micros_to_timestamp(t("2026-10-06T00:00:00Z")),
        include_proofs=True,
    )
    with capture() as exporter:
        answer = spb_grpc.SupportServiceStub(channel).ReconstructCharges(request)
    assert answer.sessions
    spans = exporter.get_finished_spans()
    call = rpc(spans, "SupportService/ReconstructCharges")
    lookup = under(spans, "ledger.dispute.reconstruct", call)
    for phase in ("ledger.dispute.rebuild", "ledger.dispute.rate_sessions", "ledger.dispute.prove"):
        under(spans, phase, lookup)
    assert [s for s in spans if s.name == "ledger.dispute.lookup_start"]
    under(spans, "ledger.proof.entries", named(spans, "ledger.dispute.prove"))


def test_r17_closing_a_period_drafts_invoices_from_a_rating_under_its_rpc_span(
    running: RunningServer, channel: grpc.Channel
) -> None:
    append(running.port, *SESSION)
    apb_grpc.AccountServiceStub(channel).SetPaymentMethod(
        apb.SetPaymentMethodRequest(org_id="acme", reference="pm_1NqLiJLkdIwHu7ix")
    )
    with capture() as exporter:
        issued = billing_pb2_grpc.BillingServiceStub(channel).CloseBillingPeriod(
            billing_pb2.CloseBillingPeriodRequest(org_id="acme")
        )
    assert [i.trigger for i in issued.issued] == [billing_pb2.INVOICE_TRIGGER_THRESHOLD]
    spans = exporter.get_finished_spans()
    call = rpc(spans, "BillingService/CloseBillingPeriod")
    under(spans, "ledger.rating.billing", call)
    drafts = [s for s in spans if s.name == "ledger.invoice.draft"]
    assert drafts and all(s.context.trace_id == call.context.trace_id for s in drafts)
    assert {s.attributes["trigger"] for s in drafts if s.attributes} >= {"THRESHOLD"}


def test_signing_and_proofs_are_spans_under_their_rpcs(running: RunningServer, channel: grpc.Channel) -> None:
    append(running.port, *SESSION)
    audit = audit_pb2_grpc.AuditServiceStub(channel)
    with capture() as exporter:
        audit.SignCheckpoint(audit_pb2.SignCheckpointRequest(log_id="org/acme"))
        audit.GetInclusionProof(audit_pb2.GetInclusionProofRequest(log_id="org/acme", sequence=1))
        audit.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(log_id="org/acme", old_size=1, new_size=2))
    spans = exporter.get_finished_spans()
    sign = under(spans, "ledger.checkpoint.sign", rpc(spans, "AuditService/SignCheckpoint"))
    assert sign.attributes is not None and sign.attributes["log_id"] == "org/acme"
    under(spans, "ledger.proof.entries", rpc(spans, "AuditService/GetInclusionProof"))
    under(spans, "ledger.proof.consistency", rpc(spans, "AuditService/GetConsistencyProof"))


def test_a_refused_batch_marks_its_spans_without_echoing_the_input(running: RunningServer) -> None:
    secret = "4111111111111111"
    with capture() as exporter, pytest.raises(grpc.RpcError) as err:
        append(running.port, event("acme", "wl-1", "WORKLOAD_UP", "2026-10-05T09:00:00Z", instance_type=secret))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    spans = exporter.get_finished_spans()
    validate = named(spans, "ledger.validate_events")
    assert validate.status.status_code is StatusCode.ERROR and validate.status.description == "InvalidInput"
    for span in spans:
        shown = [span.status.description, span.attributes, [(e.name, e.attributes) for e in span.events]]
        assert secret not in repr(shown), f"{span.name} echoes the input"


# -- background work -------------------------------------------------------------------------------------------------


def test_closer_passes_are_root_spans_and_their_log_lines_carry_the_trace_id(
    sqlite_url: str, clock: FixedClock
) -> None:
    lines = JsonLines()
    billing_log = logging.getLogger("usageledger.billing")
    billing_log.addHandler(lines)
    previous = billing_log.level
    billing_log.setLevel(logging.INFO)
    running = start_server(sqlite_url, "127.0.0.1:0", clock=clock, tracing=True, close_interval=0.05)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            apb_grpc.AccountServiceStub(ch).SetPaymentMethod(
                apb.SetPaymentMethodRequest(org_id="acme", reference="pm_1NqLiJLkdIwHu7ix")
            )
        with capture() as exporter:
            append(running.port, *SESSION)  # $50.11 uninvoiced: the closer issues a threshold invoice (R17)
            eventually(lambda: any("invoice #1 issued" in line["message"] for line in lines.lines), "the invoice")
    finally:
        running.stop(grace=None)
        billing_log.removeHandler(lines)
        billing_log.setLevel(previous)
    spans = exporter.get_finished_spans()
    passes = [s for s in spans if s.name == "billing.closer.pass"]
    assert passes and all(s.parent is None for s in passes)
    parentless = [s.name for s in spans if s.parent is None]
    assert not [name for name in parentless if name.startswith("db ")], "SQL outside any trace"
    [issued_line] = [line for line in lines.lines if "invoice #1 issued" in line["message"]]
    pass_traces = {format(s.context.trace_id, "032x") for s in passes if s.context is not None}
    assert issued_line["trace_id"] in pass_traces


def test_background_checkpoint_signing_is_a_root_span_and_its_polls_are_untraced(
    sqlite_url: str, clock: FixedClock, key_file: Path
) -> None:
    running = start_server(
        sqlite_url,
        "127.0.0.1:0",
        clock=clock,
        tracing=True,
        signing_key=key_file,
        checkpoint_every=1,
        checkpoint_seconds=0,
    )
    try:
        with capture() as exporter:
            append(running.port, *SESSION)
            eventually(
                lambda: any(s.name == "ledger.checkpoint.background_sign" for s in exporter.get_finished_spans()),
                "a background signature",
            )
    finally:
        running.stop(grace=None)
    spans = exporter.get_finished_spans()
    background = [s for s in spans if s.name == "ledger.checkpoint.background_sign"]
    assert all(s.parent is None for s in background)
    [acme] = [s for s in background if s.attributes and s.attributes["log_id"] == "org/acme"]
    [sign] = [s for s in spans if s.name == "ledger.checkpoint.sign" and s.context.trace_id == acme.context.trace_id]
    assert sign.parent is not None and sign.parent.span_id == acme.context.span_id
    assert not [s.name for s in spans if s.parent is None and s.name.startswith("db ")], "SQL outside any trace"


def test_an_rpc_span_continues_the_callers_w3c_trace(running: RunningServer, channel: grpc.Channel) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with capture() as exporter:
        audit_pb2_grpc.AuditServiceStub(channel).GetVerifierKey(
            audit_pb2.GetVerifierKeyRequest(), metadata=[("traceparent", f"00-{trace_id}-{parent_id}-01")]
        )
    call = rpc(exporter.get_finished_spans(), "AuditService/GetVerifierKey")
    assert call.context is not None and format(call.context.trace_id, "032x") == trace_id
    assert call.parent is not None and format(call.parent.span_id, "016x") == parent_id and call.parent.is_remote
    assert call.attributes is not None and call.attributes["rpc.grpc.status_code"] == 0
