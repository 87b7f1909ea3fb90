"""`ledgerctl keys`: create, list and revoke API keys, directly on the ledger's database (they are the bootstrap)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.table import Table

from client.database import KeyRegistry, database_access
from client.output import EXIT_REFUSED, EXIT_USAGE, JsonFlag, emit_json, err_console, fail, out
from ledger.api_keys import ORG_BOUND_ROLES, ApiKey, Role, issue_key
from ledger.errors import LedgerError, NotFound
from ledger.events import IDENTIFIER_RE, IDENTIFIER_RULE
from ledger.timeutil import format_micros, system_clock

keys_app = typer.Typer(
    help="API keys: created and revoked on the database directly; the server only stores their salted hashes.",
    no_args_is_help=True,
)

# The server's default database, so `ledgerctl keys` and `ledger-server` meet without flags in the quick start.
DEFAULT_DATABASE_URL = "sqlite:///usage-ledger.db"
DatabaseUrl = Annotated[
    str,
    typer.Option("--database-url", envvar="LEDGER_DATABASE_URL", help="The ledger's database (SQLAlchemy URL)."),
]
ROLE_NAMES = ", ".join(role.value for role in Role)


@contextmanager
def _keystore(context: typer.Context, database_url: str, as_json: bool) -> Iterator[KeyRegistry]:
    """The key records of the database at `database_url`; exit 2 when it cannot be opened. The commands catch
    their own refusals inside, so a LedgerError reaching here comes from opening the database."""
    try:
        with database_access(context, as_json).key_registry(database_url) as keys:
            yield keys
    except LedgerError as err:
        fail(str(err), EXIT_USAGE, as_json=as_json)


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "role": key.role.value,
        "org_id": key.org_id,
        "label": key.label,
        "create_time": format_micros(key.created_at),
        "revoke_time": format_micros(key.revoked_at) if key.revoked_at is not None else None,
    }


@keys_app.command("create")
def keys_create(
    context: typer.Context,
    role: Annotated[str, typer.Option("--role", help=f"One of: {ROLE_NAMES}.")],
    org: Annotated[str | None, typer.Option("--org", help="Bind the key to this org (required for org-admin).")] = None,
    label: Annotated[str | None, typer.Option("--label", help="Who or what holds the key, for listings.")] = None,
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
    as_json: JsonFlag = False,
) -> None:
    """Create a key and print it once: only its salted hash is stored, so it cannot be shown again."""
    try:
        chosen = Role(role)
    except ValueError:
        fail(f"--role must be one of {ROLE_NAMES}; got {role!r}", EXIT_USAGE, as_json=as_json)
    if org is not None and not IDENTIFIER_RE.fullmatch(org):
        fail(f"--org must be {IDENTIFIER_RULE}", EXIT_USAGE, as_json=as_json)
    if chosen in ORG_BOUND_ROLES and org is None:
        fail(f"a {chosen.value} key needs --org ORG: it administers one org", EXIT_USAGE, as_json=as_json)
    if label is not None and len(label) > 200:
        fail("--label holds at most 200 characters", EXIT_USAGE, as_json=as_json)
    issued = issue_key(chosen, org, system_clock(), label)
    with _keystore(context, database_url, as_json) as keys:
        try:
            keys.add(issued.record)
        except LedgerError as err:
            fail(str(err), EXIT_REFUSED, as_json=as_json)
    if as_json:
        emit_json({"ok": True, **_key_json(issued.record), "api_key": issued.token})
        return
    scope = f" for org {org}" if org else " (all orgs)"
    err_console.print(f"created key [bold]{issued.record.key_id}[/]: role {chosen.value}{scope}")
    err_console.print("This is the only time the key is shown; store it in a secret manager now:")
    # The key alone on stdout, so `KEY=$(ledgerctl keys create ...)` captures exactly it.
    print(issued.token)


@keys_app.command("list")
def keys_list(
    context: typer.Context,
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
    as_json: JsonFlag = False,
) -> None:
    """List keys (never their secrets): id, role, org, label, creation and revocation times."""
    with _keystore(context, database_url, as_json) as keystore:
        keys = [k for k in keystore.list_keys() if include_revoked or k.active]
    if as_json:
        emit_json([_key_json(k) for k in keys])
        return
    table = Table("key id", "role", "org", "label", "created", "revoked")
    for key in keys:
        revoked = format_micros(key.revoked_at) if key.revoked_at is not None else ""
        table.add_row(
            key.key_id, key.role.value, key.org_id or "(all)", key.label or "", format_micros(key.created_at), revoked
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    context: typer.Context,
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The key id (the part after `ulk_`, as `keys list` shows it).")
    ],
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key; servers refuse it within seconds (they cache key records briefly). Revoking twice is harmless."""
    with _keystore(context, database_url, as_json) as keys:
        try:
            key = keys.revoke(key_id, system_clock())
        except NotFound as err:
            fail(str(err), EXIT_REFUSED, as_json=as_json)
    if as_json:
        emit_json({"ok": True, **_key_json(key)})
    else:
        out.print(f"revoked key {key.key_id} ({key.role.value}) at {format_micros(key.revoked_at or 0)}")
