"""The client library loads no server, storage or database code (issue #24): a control plane that only appends
events needs grpc, the wire layer and the core, not SQLAlchemy, Alembic, psycopg or the OpenTelemetry SDK.
(ledgerctl's modules are held to the same by the import contracts in pyproject.toml, docs/adr/0005-layers.md.)"""

from __future__ import annotations

import json
import subprocess
import sys

# Top-level packages only the server side needs.
SERVER_SIDE = ("sqlalchemy", "psycopg", "alembic", "server", "storage")


def loaded_after(*modules: str) -> list[str]:
    """The modules of SERVER_SIDE (and the OpenTelemetry SDK) a fresh interpreter holds after importing `modules`."""
    code = (
        f"import sys\nimport {', '.join(modules)}\n"
        f"import json\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {SERVER_SIDE!r} "
        "or m.startswith('opentelemetry.sdk'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    found: list[str] = json.loads(result.stdout)
    return found


def test_the_client_library_loads_no_server_storage_or_database_module() -> None:
    assert loaded_after("client.ledger_client", "client.appender", "client.event_file") == []
