"""Who may call what: callers from API keys or client certificates, and the role policy for every RPC.

POLICY maps each full method name to the roles allowed to call it and, for org-scoped methods, how to read the
orgs a request touches. A method missing from it is denied (fail closed), and tests/test_security_policy.py fails
for any method a registered service has that is missing here, so a new RPC cannot ship unprotected. To protect a
new service, add `**service_rules(<its ServiceDescriptor>, {"Method": allow(...), ...})` to POLICY and a row to
docs/security.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from usageledger.v1 import account_pb2, audit_pb2, billing_pb2, ledger_pb2, pricing_pb2, support_pb2, usage_pb2

from ledger.api_keys import ORG_BOUND_ROLES, ApiKey, InvalidApiKey, KeySource, Role, authenticate, parse_token
from ledger.events import IDENTIFIER_RE
from ledger.log.entry import org_of_log
from server.guard import Behavior, Continuation, rewrap
from server.telemetry import note_caller
from server.tls import peer_subject
from wire.status import edge_status

log = logging.getLogger("usageledger.auth")

# -- the policy -------------------------------------------------------------------------------------------------------

# The orgs a request (or one message of a request stream) touches; None stands for data of no org (the system log).
OrgScope = Callable[[Any], Iterable[str | None]]


@dataclass(frozen=True)
class Rule:
    """Who may call one method. `orgs`, when set, makes the method org-scoped: a caller bound to an org (every
    org-admin, and any key created with --org) may call it only for requests touching that org alone. A caller
    bound to an org can never call a method that is not org-scoped."""

    roles: frozenset[Role]
    orgs: OrgScope | None = None
    public: bool = False


def allow(*roles: Role, orgs: OrgScope | None = None) -> Rule:
    return Rule(frozenset(roles), orgs)


# Health checking and reflection stay open so probes, grpcurl and grpc_cli work unconfigured.
PUBLIC = Rule(frozenset(), public=True)


def service_rules(service: descriptor.ServiceDescriptor, rules: Mapping[str, Rule]) -> dict[str, Rule]:
    """Rules keyed by full method name (`/pkg.Service/Method`); a name the service does not have is a typo."""
    unknown = set(rules) - {m.name for m in service.methods}
    if unknown:
        raise ValueError(f"{service.full_name} has no method(s) {sorted(unknown)}")
    return {f"/{service.full_name}/{name}": rule for name, rule in rules.items()}


def events_orgs(request: Any) -> set[str]:
    """AppendEvents and each StreamEvents batch touch the orgs their events name."""
    return {event.org_id for event in request.events}


def log_org(request: Any) -> set[str | None]:
    """Reads of one log touch its org; `system` (price books) belongs to no org."""
    return {org_of_log(request.log_id)}


def request_org(request: Any) -> set[str]:
    """Requests with an `org_id` field touch that org."""
    return {request.org_id}


def no_org_data(_request: Any) -> set[str]:
    """Platform-wide data that is no org's (price books, the verifier key): org-bound callers may read it too."""
    return set()


CONTROL_PLANE, BILLING, SUPPORT, AUDITOR, ORG_ADMIN = (
    Role.CONTROL_PLANE,
    Role.BILLING,
    Role.SUPPORT,
    Role.AUDITOR,
    Role.ORG_ADMIN,
)
ALL_ROLES = tuple(Role)
_LEDGER = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"]

POLICY: dict[str, Rule] = {
    **service_rules(
        _LEDGER,
        {
            "AppendEvents": allow(CONTROL_PLANE, orgs=events_orgs),
            "StreamEvents": allow(CONTROL_PLANE, orgs=events_orgs),
            "GetEntry": allow(SUPPORT, AUDITOR, ORG_ADMIN, orgs=log_org),
            "ListEntries": allow(SUPPORT, AUDITOR, ORG_ADMIN, orgs=log_org),
            "GetLogHead": allow(SUPPORT, AUDITOR, ORG_ADMIN, orgs=log_org),
            # Lists every org's log: for callers who may see every org.
            "ListLogs": allow(SUPPORT, AUDITOR),
            # R29: the control plane brackets the past events it sends; support and auditors may look.
            "OpenBackfill": allow(CONTROL_PLANE, orgs=request_org),
            "CloseBackfill": allow(CONTROL_PLANE, orgs=request_org),
            "ListBackfills": allow(CONTROL_PLANE, SUPPORT, AUDITOR, ORG_ADMIN, orgs=request_org),
        },
    ),
    **service_rules(
        pricing_pb2.DESCRIPTOR.services_by_name["PricingService"],
        {
            "SetPriceBook": allow(CONTROL_PLANE),
            "GetPriceBook": allow(*ALL_ROLES, orgs=no_org_data),
            "ListPriceBooks": allow(*ALL_ROLES, orgs=no_org_data),
        },
    ),
    **service_rules(
        usage_pb2.DESCRIPTOR.services_by_name["UsageService"],
        {
            "QueryUsage": allow(BILLING, SUPPORT, ORG_ADMIN, orgs=request_org),
            # Rollups are derived and rebuildable: recomputing them is an operator's repair, not an org's.
            "RebuildRollups": allow(SUPPORT),
        },
    ),
    **service_rules(
        audit_pb2.DESCRIPTOR.services_by_name["AuditService"],
        {
            # An org admin may verify its own org's log: proofs and checkpoints are how it checks its bill's basis.
            "GetCheckpoint": allow(SUPPORT, AUDITOR, ORG_ADMIN, orgs=log_org),
            "ListCheckpoints": allow(SUPPORT, AUDITOR, ORG_ADMIN, orgs=log_org),
            "GetInclusionProof": allow(SUPPORT, AUDITOR, ORG_ADMIN, orgs=log_org),
            "GetConsistencyProof": allow(SUPPORT, AUDITOR, ORG_ADMIN, orgs=log_org),
            "ListLeaves": allow(SUPPORT, AUDITOR, ORG_ADMIN, orgs=log_org),
            # Signing attests the log as it is and changes no entry; auditors ask for fresh signed heads.
            "SignCheckpoint": allow(SUPPORT, AUDITOR),
            "GetVerifierKey": allow(*ALL_ROLES, orgs=no_org_data),
        },
    ),
    **service_rules(
        support_pb2.DESCRIPTOR.services_by_name["SupportService"],
        {
            "ReconstructCharges": allow(SUPPORT, orgs=request_org),
            # Appends an adjustment entry; the service refuses one without a ticket (R23).
            "AdjustCharges": allow(SUPPORT, orgs=request_org),
        },
    ),
    **service_rules(
        account_pb2.DESCRIPTOR.services_by_name["AccountService"],
        {
            # Discounts (R20) and limits (R15) are set by billing staff or support ("contact support to apply").
            "SetAccountSettings": allow(BILLING, SUPPORT, orgs=request_org),
            "GetAccountSettings": allow(CONTROL_PLANE, BILLING, SUPPORT, ORG_ADMIN, orgs=request_org),
            # The control plane reads and watches the state to stop scaling (R15, R19).
            "GetAccountState": allow(CONTROL_PLANE, BILLING, SUPPORT, ORG_ADMIN, orgs=request_org),
            "WatchAccountState": allow(CONTROL_PLANE, BILLING, SUPPORT, orgs=request_org),
            # An org admin adds its own payment method (an opaque processor reference only, R19).
            "SetPaymentMethod": allow(BILLING, ORG_ADMIN, orgs=request_org),
            "ClearPaymentMethod": allow(BILLING, ORG_ADMIN, orgs=request_org),
        },
    ),
    **service_rules(
        billing_pb2.DESCRIPTOR.services_by_name["BillingService"],
        {
            "GrantCredit": allow(BILLING, SUPPORT, orgs=request_org),
            "ListCredits": allow(BILLING, SUPPORT, ORG_ADMIN, orgs=request_org),
            "CloseBillingPeriod": allow(BILLING, orgs=request_org),
            "ListInvoices": allow(BILLING, SUPPORT, AUDITOR, ORG_ADMIN, orgs=request_org),
            "GetInvoice": allow(BILLING, SUPPORT, AUDITOR, ORG_ADMIN, orgs=request_org),
            "RecordPayment": allow(BILLING, orgs=request_org),
        },
    ),
    **service_rules(
        health_pb2.DESCRIPTOR.services_by_name["Health"], {"Check": PUBLIC, "List": PUBLIC, "Watch": PUBLIC}
    ),
    **service_rules(reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"], {"ServerReflectionInfo": PUBLIC}),
    # Reflection v1: the same messages as v1alpha under grpc.reflection.v1 (server/reflection.py).
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": PUBLIC,
}


# -- callers ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `org_id` binds it to one org; `name` identifies it in logs (never a secret)."""

    role: Role
    org_id: str | None
    name: str


class Unauthenticated(Exception):
    """No usable credentials; `detail` is for the server's log only, the caller hears one generic message."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CachedKeys:
    """Key records cached for `ttl` seconds, so authenticating a call rarely costs a query.

    A revocation therefore takes effect within `ttl` seconds. Unknown key ids are cached too (bounded), so a
    flood of made-up keys costs the database one query per id per `ttl` at most.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, source: KeySource, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    def get_key(self, key_id: str) -> ApiKey | None:
        if self.ttl <= 0:
            return self.source.get_key(key_id)
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = self.source.get_key(key_id)
        with self._lock:
            if len(self._cache) >= self.MAX_ENTRIES:
                self._cache.clear()
            self._cache[key_id] = (now + self.ttl, record)
        return record


def presented_key(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The API key from `authorization: Bearer <key>` or `x-api-key: <key>`; Unauthenticated if ambiguous."""
    found: list[str] = []
    for name, value in metadata:
        if isinstance(value, bytes):
            continue
        if name == "authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization metadata is not `Bearer <key>`")
            found.append(token.strip())
        elif name == "x-api-key":
            found.append(value.strip())
    if len(set(found)) > 1:
        raise Unauthenticated("more than one distinct API key presented")
    return found[0] if found else None


class Authenticator:
    """Turns a call's metadata and TLS peer into a Principal.

    An API key, when presented, decides; otherwise a verified client certificate does when `trust_client_certs`
    (the server runs with --tls-client-ca): its subject CN is the role and O the org (docs/security.md).
    """

    def __init__(self, keys: KeySource | None, *, trust_client_certs: bool = False) -> None:
        self.keys = keys
        self.trust_client_certs = trust_client_certs

    def principal(self, metadata: Iterable[tuple[str, str | bytes]], auth_context: dict[str, list[bytes]]) -> Principal:
        token = presented_key(metadata)
        if token is not None:
            return self._from_key(token)
        if self.trust_client_certs:
            subject = peer_subject(auth_context)
            if subject is not None:
                return _from_certificate(subject.common_name, subject.organization)
        raise Unauthenticated("no API key and no client certificate")

    def _from_key(self, token: str) -> Principal:
        if self.keys is None:
            raise Unauthenticated("API key presented but this server has no key store")
        try:
            record = authenticate(self.keys, token)
        except InvalidApiKey as err:
            # Name the key id when the token is well-formed (an id is no secret); never any part of a bad token.
            try:
                key_id, _ = parse_token(token)
            except InvalidApiKey:
                raise Unauthenticated("malformed API key") from err
            raise Unauthenticated(f"API key {key_id} is unknown, revoked or has a wrong secret") from err
        return Principal(record.role, record.org_id, f"key {record.key_id}")


def _from_certificate(common_name: str, organization: str | None) -> Principal:
    try:
        role = Role(common_name)
    except ValueError:
        raise Unauthenticated(f"client certificate CN={common_name[:64]!r} is not a role") from None
    if role in ORG_BOUND_ROLES and not organization:
        raise Unauthenticated(f"client certificate for {role.value} names no org (O=)")
    if organization and not IDENTIFIER_RE.fullmatch(organization):
        raise Unauthenticated(f"client certificate O={organization[:64]!r} is not an org id")
    org = f",O={organization}" if organization else ""
    return Principal(role, organization or None, f"cert CN={role.value}{org}")


# -- the interceptor ------------------------------------------------------------------------------------------------

UNAUTHENTICATED_MESSAGE = (
    "this call needs credentials: an API key as metadata `authorization: Bearer <key>` or `x-api-key: <key>` "
    "(ledgerctl --api-key / LEDGER_API_KEY), or a client certificate the server trusts"
)


class Authorization(grpc.ServerInterceptor):  # type: ignore[misc]
    """Authenticates every call but the public ones, then applies POLICY before the method runs.

    Denials happen before the method reads anything, so a denied caller learns nothing about the data: asking
    for another org's log is PERMISSION_DENIED whether or not that log exists.
    """

    def __init__(self, authenticator: Authenticator, policy: Mapping[str, Rule] = POLICY) -> None:
        self.authenticator = authenticator
        self.policy = policy

    def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        rule = self.policy.get(details.method)
        if rule is not None and rule.public:
            return handler

        def wrap(behavior: Behavior, request_streaming: bool, _response_streaming: bool) -> Behavior:
            return self._enforcing(details.method, rule, behavior, request_streaming)

        return rewrap(handler, wrap)

    def _enforcing(self, method: str, rule: Rule | None, behavior: Behavior, request_streaming: bool) -> Behavior:
        def enforced(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                principal = self.authenticator.principal(context.invocation_metadata(), context.auth_context())
            except Unauthenticated as err:
                log.warning("unauthenticated call to %s from %s: %s", method, context.peer(), err.detail)
                context.abort_with_status(_status(code_pb2.UNAUTHENTICATED, "UNAUTHENTICATED", UNAUTHENTICATED_MESSAGE))
                raise
            note_caller(principal.name)
            _authorize(method, rule, principal, context)
            if not request_streaming:
                _authorize_orgs(method, rule, principal, request, context)
                return behavior(request, context)
            return behavior(_authorized_stream(method, rule, principal, request, context), context)

        return enforced


def _authorize(method: str, rule: Rule | None, principal: Principal, context: grpc.ServicerContext) -> None:
    if rule is None:
        _deny(context, method, principal, "NO_POLICY", f"{method} has no access policy, so no one may call it")
    elif principal.role not in rule.roles:
        _deny(context, method, principal, "ROLE_NOT_ALLOWED", f"the {principal.role.value} role may not call {method}")
    elif principal.org_id is not None and rule.orgs is None:
        _deny(
            context,
            method,
            principal,
            "ORG_BOUND_CALLER",
            f"{method} spans every org; a caller bound to org {principal.org_id!r} may not call it",
        )


def _authorize_orgs(
    method: str, rule: Rule | None, principal: Principal, message: Any, context: grpc.ServicerContext
) -> None:
    if principal.org_id is None or rule is None or rule.orgs is None:
        return
    if any(org != principal.org_id for org in rule.orgs(message)):
        # The answer names only the caller's own org, and is the same whether the other org exists or not.
        _deny(
            context,
            method,
            principal,
            "ORG_NOT_ALLOWED",
            f"a caller bound to org {principal.org_id!r} may only access that org's data",
        )


def _authorized_stream(
    method: str, rule: Rule | None, principal: Principal, requests: Iterator[Any], context: grpc.ServicerContext
) -> Iterator[Any]:
    for message in requests:
        _authorize_orgs(method, rule, principal, message, context)
        yield message


def _deny(context: grpc.ServicerContext, method: str, principal: Principal, reason: str, message: str) -> None:
    log.warning("permission denied: %s calling %s (%s)", principal.name, method, reason)
    context.abort_with_status(_status(code_pb2.PERMISSION_DENIED, reason, message))


def _status(code: int, reason: str, message: str) -> grpc.Status:
    return edge_status(code, reason, message)
