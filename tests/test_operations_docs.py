"""docs/operations.md names exactly the metrics the server defines, and the span names the code starts."""

from __future__ import annotations

import re
from pathlib import Path

import ledger.metrics
import server.telemetry

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()


def defined_instruments() -> set[str]:
    names = set()
    for module in (ledger.metrics, server.telemetry):
        for value in vars(module).values():
            name = getattr(value, "_name", None)  # the API's proxy instruments keep their name here
            if isinstance(name, str) and (name.startswith("usageledger.") or name.startswith("rpc.")):
                names.add(name)
    return names


def test_every_metric_defined_is_documented_and_every_documented_metric_is_defined() -> None:
    documented = set(re.findall(r"`((?:usageledger|rpc)\.[a-z_.]+)`", OPERATIONS))
    attributes = {"rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code"}
    documented -= {"usageledger.access", *attributes}  # the access log's logger, and the RPC metric's attributes
    assert documented == defined_instruments()


def test_every_span_name_documented_is_started_somewhere_in_the_code() -> None:
    code = "\n".join(p.read_text() for folder in ("ledger", "storage", "server") for p in (ROOT / folder).rglob("*.py"))
    for name in re.findall(r"`((?:ledger|billing)\.[a-z_]+\.[a-z_.]+)`", OPERATIONS):
        assert f'"{name}"' in code, f"docs/operations.md names span {name}, which nothing starts"
