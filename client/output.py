"""Output conventions shared by every ledgerctl command: JSON or tables, errors, exit codes, progress bars.

Exit codes scripts can trust: 0 done, 1 the ledger said no (rejected input, failed verification),
2 usage error (bad flags, unreadable file), 3 the server could not be reached.
"""

from __future__ import annotations

import json
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, NoReturn

import grpc
import typer
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_status import rpc_status
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ledger.rating.money import exact_text
from ledger.timeutil import format_micros
from wire.convert import micros_to_timestamp, timestamp_to_micros

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_TARGET = "127.0.0.1:50051"


class _Stdout(Console):
    """ledgerctl's standard output: a reader that stops reading (`ledgerctl ... | head`) has what it wanted, so
    the command ends quietly with exit 0, not rich's 1, which scripts would read as "the ledger said no"."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        quiet_stdout()
        raise SystemExit(EXIT_OK)


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush into a closed pipe says nothing either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ is not None else 1)
    os.close(devnull)


err_console = Console(stderr=True)
out: Console = _Stdout()

Target = Annotated[str, typer.Option("--target", envvar="LEDGER_TARGET", help="Ledger server HOST:PORT.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
OrgOption = Annotated[str, typer.Option("--org", help="Org ID.")]


def _print_version(value: bool) -> None:
    if value:
        from ledger.version import package_version

        typer.echo(f"ledgerctl {package_version()}")
        raise typer.Exit(EXIT_OK)


def connection_options(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print ledgerctl's version and exit."),
    ] = False,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="LEDGER_API_KEY",
            show_default=False,
            help="API key for a server run with --require-auth. Prefer the env variable: other users can read "
            "command lines.",
        ),
    ] = None,
    tls_ca: Annotated[
        Path | None, typer.Option("--tls-ca", envvar="LEDGER_TLS_CA", help="Use TLS, trusting this PEM CA.")
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", envvar="LEDGER_TLS_CERT", help="Use TLS with this PEM client certificate (mTLS)."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", envvar="LEDGER_TLS_KEY", help="The client certificate's PEM key.")
    ] = None,
) -> None:
    """How every command reaches the server: `ledgerctl [--api-key K] [--tls-ca F ...] COMMAND` (and `--version`)."""
    from client.ledger_client import Connection

    given = {"LEDGER_API_KEY": api_key, "LEDGER_TLS_CA": tls_ca, "LEDGER_TLS_CERT": tls_cert, "LEDGER_TLS_KEY": tls_key}
    # Each option is its env variable: setting it here reaches every LedgerClient a command creates.
    os.environ.update({name: str(value) for name, value in given.items() if value is not None})
    connection = Connection.from_env()
    if connection.tls:
        try:
            connection.channel_credentials()
        except (OSError, ValueError) as err:
            fail(f"TLS: {err}", EXIT_USAGE)


TIME_HELP = "a time: RFC 3339 (seconds optional), `YYYY-MM-DD HH:MM` or a date; no zone means UTC"


def instant_option(text: str, option: str, as_json: bool) -> int:
    """The instant an option names, in the one grammar every command accepts (client/instants.py); a bad one is
    a usage error (exit 2) naming the option and the accepted forms."""
    from client.instants import parse_instant

    try:
        return parse_instant(text)
    except ValueError as err:
        fail(f"{option} {text!r}: {err}", EXIT_USAGE, as_json=as_json)


def timestamp_option(text: str, option: str, as_json: bool) -> Timestamp:
    """instant_option's instant as the Timestamp a request carries."""
    return micros_to_timestamp(instant_option(text, option, as_json))


def when(ts: Timestamp) -> str:
    """A Timestamp of an answer as the RFC 3339 text every command prints (UTC, microseconds when there are any)."""
    return format_micros(timestamp_to_micros(ts))


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def fail(message: str, exit_code: int, /, *, as_json: bool = False, **extra: Any) -> NoReturn:
    if as_json:
        emit_json({"ok": False, "error": message, **extra})
    else:
        err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(exit_code)


def rpc_failure(
    err: grpc.RpcError, target: str, as_json: bool, line_of: dict[int, int] | None = None, context: str = ""
) -> NoReturn:
    """Report a failed call and exit; `context` (such as how far an ingest got) is added to the message."""
    code = err.code()
    suffix = f"; {context}" if context else ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN):
        if error_reason(err) == "STORAGE_UNAVAILABLE":
            what = f"the ledger at {target} could not use its database ({err.details()})"
            fail(what + suffix, EXIT_UNREACHABLE, as_json=as_json, code=code.name)
        connection = connection_failure(err.details() or "", target)
        if connection is not None:
            message, exit_code = connection
            fail(message + suffix, exit_code, as_json=as_json, code=code.name)
        if code != grpc.StatusCode.UNKNOWN:
            what = (
                f"cannot reach the ledger at {target} ({err.details()}); start it with `ledger-server` or pass --target"
            )
            fail(what + suffix, EXIT_UNREACHABLE, as_json=as_json, code=code.name)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        fail(
            f"authentication failed at {target}: {err.details()}; give an API key with --api-key or LEDGER_API_KEY "
            "(or a client certificate with --tls-cert and --tls-key)" + suffix,
            EXIT_REFUSED,
            as_json=as_json,
            code=code.name,
        )
    violations = violations_of(err)
    if line_of is not None:
        violations = [with_line(field, desc, line_of) for field, desc in violations]
    if as_json:
        emit_json(
            {
                "ok": False,
                "code": code.name,
                "error": err.details() + suffix,
                "violations": [{"field": f, "description": d} for f, d in violations],
            }
        )
    else:
        err_console.print(f"[bold red]error ({code.name}):[/] {err.details()}{suffix}")
        for field, description in violations:
            err_console.print(f"  {field}: {description}")
    raise typer.Exit(EXIT_REFUSED)


# What gRPC's status details say when the connection, not the ledger, failed (docs/cli.md, "Exit codes").
_UNTRUSTED = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "unable to get local issuer")
_NOT_TLS = ("WRONG_VERSION_NUMBER", "packet length too long", "http_request")
_HANDSHAKE = ("handshake", "SSL_ERROR", "TSI_")
_NOTHING_ANSWERS = ("Connection refused", "DNS resolution failed", "Deadline Exceeded", "No route to host",
                    "Network is unreachable", "Connection timed out", "failed to connect")  # fmt: skip


def connection_failure(details: str, target: str) -> tuple[str, int] | None:
    """The message and exit code for a call that never reached the ledger, or None when the ledger answered.

    Exit 3 only when nothing answers at the target. A TLS handshake that failed, or a plaintext client meeting a
    TLS server, is a connection set up wrongly (exit 2: fix the options), and the message says which.
    """
    tls = bool(os.environ.get("LEDGER_TLS_CA"))
    if any(marker in details for marker in _UNTRUSTED):
        return (
            f"TLS: the server at {target} presented a certificate that --tls-ca ({os.environ.get('LEDGER_TLS_CA')}) "
            "did not sign: give the CA that issued the server's certificate",
            EXIT_USAGE,
        )
    if tls and any(marker in details for marker in _NOT_TLS):
        return f"TLS: the server at {target} does not speak TLS: leave out --tls-ca (and LEDGER_TLS_CA)", EXIT_USAGE
    if any(marker in details for marker in _HANDSHAKE):
        return f"TLS handshake with {target} failed ({details}): check --tls-ca, --tls-cert and --tls-key", EXIT_USAGE
    if not tls and "Socket closed" in details:
        return (
            f"the server at {target} closed the connection at once: it probably serves TLS; pass --tls-ca CA.pem "
            "(or LEDGER_TLS_CA)",
            EXIT_USAGE,
        )
    if any(marker in details for marker in _NOTHING_ANSWERS) or "Socket closed" in details:
        return (
            f"cannot reach the ledger at {target} ({details}); start it with `ledger-server` or pass --target",
            EXIT_UNREACHABLE,
        )
    return None


def _error_info(err: grpc.RpcError) -> Any:
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(err)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def error_reason(err: grpc.RpcError) -> str | None:
    """The ErrorInfo reason of a failed call (UPPER_SNAKE, such as EVENT_ID_CONFLICT), if it has one."""
    info = _error_info(err)
    return str(info.reason) if info is not None else None


def conflict_of(err: grpc.RpcError) -> dict[str, str] | None:
    """An R24 conflict's ErrorInfo metadata (org_id, event_id and, when stored, sequence and entry_hash)."""
    info = _error_info(err)
    if info is None or info.reason != "EVENT_ID_CONFLICT":
        return None
    return dict(info.metadata)


def violations_of(err: grpc.RpcError) -> list[tuple[str, str]]:
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(err)
    found: list[tuple[str, str]] = []
    if status is None:
        return found
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend((v.field, v.description) for v in bad.field_violations)
    return found


def with_line(field: str, description: str, line_of: dict[int, int]) -> tuple[str, str]:
    """Turn `events[12].occur_time` into `line 57: occur_time` for a person reading a file."""
    if field.startswith("events[") and "]" in field:
        index = int(field[len("events[") : field.index("]")])
        rest = field[field.index("]") + 2 :]
        if index in line_of:
            return f"line {line_of[index]}: {rest}", description
    return field, description


def progress_bar(as_json: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=as_json or not err_console.is_terminal,
        transient=True,
    )


# -- exact amounts (docs/money.md) ---------------------------------------------------------------------------------

REPEATS_NOTE = "digits in parentheses repeat forever (exact, never rounded: R21 rounds only invoice lines)"


def exact_amount(decimal_text: str, fraction: str) -> str:
    """An amount exactly, as ledger.rating.money.exact_text writes it (`0.16689(814)`), from the fraction the
    server sent next to it; from an older server without one, the decimal string as it came."""
    return exact_text(Fraction(fraction)) if fraction else decimal_text


def as_fraction(fraction: str) -> str:
    """` (= 721/4320)` after an amount that repeats, whose fraction is what a person can check; else ``."""
    if not fraction:
        return ""
    value = Fraction(fraction)
    return f" (= {value.numerator}/{value.denominator})" if "(" in exact_text(value) else ""


def gigabyte_seconds_text(line: dict[str, Any]) -> str:
    """A storage line's GB-seconds as `total (first 1,000 GB + beyond)` for an R14 volume, `total` for an R13 disk,
    from the JSON fields `ledgerctl usage` and `support reconstruct` print."""
    total = line.get("gigabyte_seconds")
    if total is None:
        return ""
    first, beyond = line.get("first_tier_gigabyte_seconds"), line.get("beyond_tier_gigabyte_seconds")
    return total if first is None else f"{total} ({first} + {beyond})"
