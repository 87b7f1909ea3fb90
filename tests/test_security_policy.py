"""Authentication and the role policy on a real server with --require-auth: every role against every RPC."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from usageledger.v1 import ledger_pb2 as pb

from ledger.api_keys import Role, issue_key
from server import auth
from server.app import RunningServer, start_server
from storage.sql.keystore import SqlKeyStore
from tests.conftest import FixedClock
from wire.convert import raw_to_event

CONTROL_PLANE, BILLING, SUPPORT, AUDITOR, ORG_ADMIN = (
    Role.CONTROL_PLANE,
    Role.BILLING,
    Role.SUPPORT,
    Role.AUDITOR,
    Role.ORG_ADMIN,
)
OWN = "own"  # allowed for the caller's own org only
OPEN = "open"  # no credentials needed

# The policy as docs/security.md states it, written out independently of server/auth.py's POLICY: a change to
# either that is not made to the other fails test_every_role_against_every_rpc.
EXPECTED: dict[str, dict[Role, str] | str] = {
    "/usageledger.v1.LedgerService/AppendEvents": {CONTROL_PLANE: "yes"},
    "/usageledger.v1.LedgerService/StreamEvents": {CONTROL_PLANE: "yes"},
    "/usageledger.v1.LedgerService/GetEntry": {SUPPORT: "yes", AUDITOR: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.LedgerService/ListEntries": {SUPPORT: "yes", AUDITOR: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.LedgerService/GetLogHead": {SUPPORT: "yes", AUDITOR: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.LedgerService/ListLogs": {SUPPORT: "yes", AUDITOR: "yes"},
    "/usageledger.v1.LedgerService/OpenBackfill": {CONTROL_PLANE: "yes"},
    "/usageledger.v1.LedgerService/CloseBackfill": {CONTROL_PLANE: "yes"},
    "/usageledger.v1.LedgerService/ListBackfills": {
        CONTROL_PLANE: "yes",
        SUPPORT: "yes",
        AUDITOR: "yes",
        ORG_ADMIN: OWN,
    },
    "/usageledger.v1.PricingService/SetPriceBook": {CONTROL_PLANE: "yes"},
    "/usageledger.v1.PricingService/GetPriceBook": dict.fromkeys(Role, "yes"),
    "/usageledger.v1.PricingService/ListPriceBooks": dict.fromkeys(Role, "yes"),
    "/usageledger.v1.UsageService/QueryUsage": {BILLING: "yes", SUPPORT: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.UsageService/RebuildRollups": {SUPPORT: "yes"},
    "/usageledger.v1.AuditService/GetCheckpoint": {SUPPORT: "yes", AUDITOR: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.AuditService/ListCheckpoints": {SUPPORT: "yes", AUDITOR: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.AuditService/SignCheckpoint": {SUPPORT: "yes", AUDITOR: "yes"},
    "/usageledger.v1.AuditService/GetInclusionProof": {SUPPORT: "yes", AUDITOR: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.AuditService/GetConsistencyProof": {SUPPORT: "yes", AUDITOR: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.AuditService/ListLeaves": {SUPPORT: "yes", AUDITOR: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.AuditService/GetVerifierKey": dict.fromkeys(Role, "yes"),
    "/usageledger.v1.SupportService/ReconstructCharges": {SUPPORT: "yes"},
    "/usageledger.v1.SupportService/AdjustCharges": {SUPPORT: "yes"},
    "/usageledger.v1.AccountService/SetAccountSettings": {BILLING: "yes", SUPPORT: "yes"},
    "/usageledger.v1.AccountService/GetAccountSettings": {
        CONTROL_PLANE: "yes",
        BILLING: "yes",
        SUPPORT: "yes",
        ORG_ADMIN: OWN,
    },
    "/usageledger.v1.AccountService/GetAccountState": {
        CONTROL_PLANE: "yes",
        BILLING: "yes",
        SUPPORT: "yes",
        ORG_ADMIN: OWN,
    },
    "/usageledger.v1.AccountService/WatchAccountState": {CONTROL_PLANE: "yes", BILLING: "yes", SUPPORT: "yes"},
    "/usageledger.v1.AccountService/SetPaymentMethod": {BILLING: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.AccountService/ClearPaymentMethod": {BILLING: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.BillingService/GrantCredit": {BILLING: "yes", SUPPORT: "yes"},
    "/usageledger.v1.BillingService/ListCredits": {BILLING: "yes", SUPPORT: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.BillingService/CloseBillingPeriod": {BILLING: "yes"},
    "/usageledger.v1.BillingService/ListInvoices": {BILLING: "yes", SUPPORT: "yes", AUDITOR: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.BillingService/GetInvoice": {BILLING: "yes", SUPPORT: "yes", AUDITOR: "yes", ORG_ADMIN: OWN},
    "/usageledger.v1.BillingService/RecordPayment": {BILLING: "yes"},
    "/grpc.health.v1.Health/Check": OPEN,
    "/grpc.health.v1.Health/List": OPEN,
    "/grpc.health.v1.Health/Watch": OPEN,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": OPEN,
}


def event(org: str, event_id: str) -> pb.UsageEvent:
    return raw_to_event(
        {
            "event_id": event_id,
            "org_id": org,
            "endpoint_id": "ep-1",
            "workload_id": "wl-1",
            "workload_kind": "SERVING",
            "instance_type": "A100",
            "type": "WORKLOAD_UP",
            "occurred_at": "2026-10-05T09:00:00Z",
        }
    )


_ids = iter(range(1_000_000))


def sample_request(method: str, org: str) -> Any:
    """A request for `method` touching `org` where the method is org-scoped; an empty one otherwise."""
    log_id = f"org/{org}"
    fields: dict[str, Any] = {}
    name = method.rsplit("/", 1)[1]
    if name in ("AppendEvents", "StreamEvents"):
        fields = {"events": [event(org, f"policy-{next(_ids)}")]}
    elif "org_id" in request_class(method).DESCRIPTOR.fields_by_name:
        fields = {"org_id": org}
    elif "log_id" in request_class(method).DESCRIPTOR.fields_by_name:
        fields = {"log_id": log_id}
    return request_class(method)(**fields)


def method_descriptor(method: str) -> Any:
    service, name = method.lstrip("/").split("/")
    return descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]


def request_class(method: str) -> Any:
    return message_factory.GetMessageClass(method_descriptor(method).input_type)


def call(channel: grpc.Channel, method: str, request: Any, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    """Call any method by name; returns the status code (OK or the error's)."""
    found = method_descriptor(method)
    response_class = message_factory.GetMessageClass(found.output_type)
    serialize, deserialize = (lambda m: m.SerializeToString()), response_class.FromString
    try:
        if found.client_streaming and found.server_streaming:
            stub = channel.stream_stream(method, request_serializer=serialize, response_deserializer=deserialize)
            list(stub(iter([request]), metadata=metadata, timeout=10))
        elif found.client_streaming:
            channel.stream_unary(method, request_serializer=serialize, response_deserializer=deserialize)(
                iter([request]), metadata=metadata, timeout=10
            )
        elif found.server_streaming:
            stub = channel.unary_stream(method, request_serializer=serialize, response_deserializer=deserialize)
            next(iter(stub(request, metadata=metadata, timeout=10)))
        else:
            channel.unary_unary(method, request_serializer=serialize, response_deserializer=deserialize)(
                request, metadata=metadata, timeout=10
            )
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def error_reason(err: grpc.RpcError) -> tuple[str, str]:
    status = rpc_status.from_call(err)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason, status.message


class KeyRing:
    """Issues keys straight into the server's database, as `ledgerctl keys create` does."""

    def __init__(self, server: RunningServer) -> None:
        self.keys = SqlKeyStore(server.ledger.store.writer)  # type: ignore[attr-defined]

    def new(self, role: Role, org: str | None = None) -> str:
        issued = issue_key(role, org, 0)
        self.keys.add(issued.record)
        return issued.token


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('policy') / 'ledger.db'}"
    running = start_server(url, clock=FixedClock(), require_auth=True, key_cache_seconds=0)
    yield running
    running.stop(grace=None)


@pytest.fixture(scope="module")
def channel(secured: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{secured.port}") as ch:
        yield ch


@pytest.fixture(scope="module")
def keyring(secured: RunningServer) -> KeyRing:
    return KeyRing(secured)


@pytest.fixture(scope="module")
def role_keys(keyring: KeyRing) -> dict[Role, str]:
    return {role: keyring.new(role, "acme" if role is ORG_ADMIN else None) for role in Role}


def registered_methods(channel: grpc.Channel) -> list[str]:
    """Every method of every service the server registers, as reflection (open to all) lists them."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    def ask(**request: Any) -> reflection_pb2.ServerReflectionResponse:
        return next(iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)]))))

    services = [s.name for s in ask(list_services="").list_services_response.service]
    methods = []
    for service in services:
        for blob in ask(file_containing_symbol=service).file_descriptor_response.file_descriptor_proto:
            file = descriptor_pb2.FileDescriptorProto.FromString(blob)
            for declared in file.service:
                if f"{file.package}.{declared.name}" == service:
                    methods += [f"/{service}/{m.name}" for m in declared.method]
    return methods


def test_every_method_of_every_registered_service_has_a_policy_entry(channel: grpc.Channel) -> None:
    methods = registered_methods(channel)
    assert "/usageledger.v1.LedgerService/AppendEvents" in methods and "/grpc.health.v1.Health/Check" in methods
    unprotected = sorted(set(methods) - set(auth.POLICY))
    assert not unprotected, (
        f"RPCs without an access policy (denied to everyone until added): {unprotected}. Add each to POLICY in "
        "server/auth.py, to EXPECTED in this test, and to the role table in docs/security.md."
    )
    untested = sorted(set(methods) - set(EXPECTED))
    assert not untested, f"add {untested} to EXPECTED in this test (and docs/security.md)"


def test_every_role_against_every_rpc(
    channel: grpc.Channel, role_keys: dict[Role, str], secured: RunningServer
) -> None:
    failures = []
    for method in registered_methods(channel):
        expected = EXPECTED.get(method)
        if expected is None:
            continue  # test_every_method_of_every_registered_service_has_a_policy_entry names it
        if expected == OPEN:
            assert call(channel, method, request_class(method)(), ()) not in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            ), method
            continue
        assert isinstance(expected, dict)
        for role in Role:
            access = expected.get(role, "no")
            own = call(channel, method, sample_request(method, "acme"), bearer(role_keys[role]))
            other = call(channel, method, sample_request(method, "beta"), bearer(role_keys[role]))
            allowed_own = access in ("yes", OWN)
            allowed_other = access == "yes"
            for allowed, code, org in ((allowed_own, own, "acme"), (allowed_other, other, "beta")):
                denied = code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
                if allowed == denied or (not allowed and code != grpc.StatusCode.PERMISSION_DENIED):
                    failures.append(f"{role.value} -> {method} for org {org}: {code.name}, expected {access}")
        if auth.POLICY[method].roles != frozenset(expected):
            failures.append(f"{method}: POLICY allows {sorted(auth.POLICY[method].roles)}, EXPECTED {sorted(expected)}")
    assert not failures, "\n".join(failures)


def test_no_credentials_bad_keys_and_revoked_keys_are_unauthenticated(
    channel: grpc.Channel, keyring: KeyRing, role_keys: dict[Role, str]
) -> None:
    method = "/usageledger.v1.LedgerService/ListLogs"
    request = pb.ListLogsRequest()
    good = role_keys[AUDITOR]
    key_id = good.split("_")[1]
    revoked = keyring.new(AUDITOR)
    keyring.keys.revoke(revoked.split("_")[1], 1)
    for metadata in (
        (),
        bearer("not-a-key"),
        bearer(f"ulk_{key_id}_{'A' * 43}"),  # the right key id with a wrong secret
        bearer(f"ulk_{'0' * 16}_{'A' * 43}"),  # an unknown key id
        bearer(revoked),
        (("authorization", f"Basic {good}"),),
        (("x-api-key", good), ("authorization", f"Bearer {revoked}")),  # two different keys
    ):
        assert call(channel, method, request, metadata) == grpc.StatusCode.UNAUTHENTICATED, metadata
    assert call(channel, method, request, bearer(good)) == grpc.StatusCode.OK
    assert call(channel, method, request, (("x-api-key", good),)) == grpc.StatusCode.OK
    assert call(channel, method, request, (("authorization", f"bearer {good}"),)) == grpc.StatusCode.OK


def test_health_and_reflection_need_no_credentials(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert "usageledger.v1.LedgerService" in {m.split("/")[1] for m in registered_methods(channel)}


def test_an_org_admin_learns_nothing_about_another_org(
    channel: grpc.Channel, role_keys: dict[Role, str], keyring: KeyRing
) -> None:
    """org/beta exists (appended below), org/ghost does not: the org admin of acme gets the same refusal for both."""
    append = "/usageledger.v1.LedgerService/AppendEvents"
    assert call(channel, append, sample_request(append, "beta"), bearer(role_keys[CONTROL_PLANE])) == grpc.StatusCode.OK
    stub = channel.unary_unary(
        "/usageledger.v1.LedgerService/GetLogHead",
        request_serializer=pb.GetLogHeadRequest.SerializeToString,
        response_deserializer=pb.GetLogHeadResponse.FromString,
    )
    answers = []
    for log_id in ("org/beta", "org/ghost"):
        with pytest.raises(grpc.RpcError) as err:
            stub(pb.GetLogHeadRequest(log_id=log_id), metadata=bearer(role_keys[ORG_ADMIN]))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        answers.append(error_reason(err.value))
    assert (
        answers[0] == answers[1] == ("ORG_NOT_ALLOWED", "a caller bound to org 'acme' may only access that org's data")
    )
    # The auditor, who may read every org, sees the difference.
    with pytest.raises(grpc.RpcError) as err:
        stub(pb.GetLogHeadRequest(log_id="org/ghost"), metadata=bearer(role_keys[AUDITOR]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Nor may it read the system log, or list every org's log.
    for method, request in (
        ("/usageledger.v1.LedgerService/GetLogHead", pb.GetLogHeadRequest(log_id="system")),
        ("/usageledger.v1.LedgerService/ListLogs", pb.ListLogsRequest()),
    ):
        assert call(channel, method, request, bearer(role_keys[ORG_ADMIN])) == grpc.StatusCode.PERMISSION_DENIED


def test_an_org_bound_control_plane_key_appends_only_to_its_org(channel: grpc.Channel, keyring: KeyRing) -> None:
    token = keyring.new(CONTROL_PLANE, "acme")
    append = "/usageledger.v1.LedgerService/AppendEvents"
    mixed = pb.AppendEventsRequest(events=[event("acme", "bound-1"), event("beta", "bound-2")])
    assert call(channel, append, mixed, bearer(token)) == grpc.StatusCode.PERMISSION_DENIED
    own = pb.AppendEventsRequest(events=[event("acme", "bound-3")])
    assert call(channel, append, own, bearer(token)) == grpc.StatusCode.OK
    # In a stream every batch is checked; the first (acme) is appended, the second (beta) refused.
    stream = channel.stream_unary(
        "/usageledger.v1.LedgerService/StreamEvents",
        request_serializer=pb.StreamEventsRequest.SerializeToString,
        response_deserializer=pb.StreamEventsResponse.FromString,
    )
    batches = [pb.StreamEventsRequest(events=[event(org, f"bound-stream-{org}")]) for org in ("acme", "beta")]
    with pytest.raises(grpc.RpcError) as err:
        stream(iter(batches), metadata=bearer(token))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A method spanning every org is refused to an org-bound key even when its role could call it unbound.
    bound_auditor = keyring.new(AUDITOR, "acme")
    method = "/usageledger.v1.LedgerService/ListLogs"
    assert call(channel, method, pb.ListLogsRequest(), bearer(bound_auditor)) == grpc.StatusCode.PERMISSION_DENIED


def test_a_method_without_a_policy_entry_is_denied_to_every_role(
    channel: grpc.Channel, role_keys: dict[Role, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    method = "/usageledger.v1.LedgerService/GetLogHead"
    monkeypatch.delitem(auth.POLICY, method)
    for role in Role:
        request = sample_request(method, "acme")
        stub = channel.unary_unary(
            method, request_serializer=pb.GetLogHeadRequest.SerializeToString, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.RpcError) as err:
            stub(request, metadata=bearer(role_keys[role]))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(err.value)[0] == "NO_POLICY"


def test_a_failed_authentication_never_logs_the_key(
    channel: grpc.Channel, role_keys: dict[Role, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = role_keys[AUDITOR]
    key_id, secret = good.split("_", 2)[1:]
    wrong = f"ulk_{key_id}_{'B' * 43}"
    garbage = "sk-live-0123456789abcdef-this-is-somebody-else-s-secret"
    method = "/usageledger.v1.LedgerService/ListLogs"
    for token in (wrong, garbage):
        assert call(channel, method, pb.ListLogsRequest(), bearer(token)) == grpc.StatusCode.UNAUTHENTICATED
    assert call(channel, method, pb.ListLogsRequest(), bearer(good)) == grpc.StatusCode.OK
    from server.telemetry import JsonLogFormatter

    lines = [JsonLogFormatter().format(r) for r in caplog.records]
    failures = [line for line in lines if "unauthenticated call" in line]
    assert len(failures) == 2 and key_id in failures[0]  # the key id is no secret and helps trace the caller
    for line in lines:
        for secret_text in (secret, "B" * 43, garbage, wrong, good):
            assert secret_text not in line


def test_policy_rejects_rules_for_methods_a_service_does_not_have() -> None:
    with pytest.raises(ValueError, match="AppendEvent"):
        auth.service_rules(pb.DESCRIPTOR.services_by_name["LedgerService"], {"AppendEvent": auth.allow(CONTROL_PLANE)})


def test_auth_is_off_by_default(tmp_path: Path) -> None:
    running = start_server(f"sqlite:///{tmp_path / 'open.db'}", clock=FixedClock())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            assert call(ch, "/usageledger.v1.LedgerService/ListLogs", pb.ListLogsRequest(), ()) == grpc.StatusCode.OK
    finally:
        running.stop(grace=None)


def test_the_role_table_in_docs_matches_the_policy() -> None:
    """docs/security.md is what operators read: its role x RPC table must say what POLICY enforces."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text(encoding="utf-8")
    documented = {}
    for line in docs.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[0].count("/") == 1 and "." not in cells[0]:
            documented[cells[0].strip("`")] = cells[1:]
    expected = {}
    for method, rule in auth.POLICY.items():
        service, name = method.lstrip("/").split("/")
        if not service.startswith("usageledger.v1."):
            continue
        cells = []
        for role in Role:
            if role not in rule.roles:
                cells.append("—")
            elif role is ORG_ADMIN and rule.orgs is not auth.no_org_data:
                cells.append("own org")
            else:
                cells.append("✓")
        expected[f"{service.removeprefix('usageledger.v1.')}/{name}"] = cells
    assert documented == expected, "update the role x RPC table in docs/security.md"
