"""`ledger-server`: run the usage ledger's gRPC service."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TextIO

from ledger.billing.closer import DEFAULT_CLOSE_INTERVAL
from ledger.billing.engine import DEFAULT_INVOICE_GRACE_SECONDS
from ledger.errors import LedgerError
from ledger.log.signing import DEFAULT_LEDGER_NAME
from ledger.version import package_version
from server.app import start_server
from server.composition import DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_SECONDS
from server.exporters import MetricsListen
from server.health import DEFAULT_PING_TIMEOUT_SECONDS, DEFAULT_PROBE_SECONDS
from server.limits import DEFAULT_MAX_INFLIGHT, DEFAULT_QUEUE, DEFAULT_QUEUE_SECONDS
from server.signing_setup import SigningKeyRequired, SigningSetup, signing_setup
from server.telemetry import configure, configure_logging
from server.tls import ServerTls

DEFAULT_DATABASE_URL = "sqlite:///usage-ledger.db"
DEFAULT_LISTEN = "127.0.0.1:50051"


def _is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _inflight_bound(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of appends, 0 for no limit; got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 3600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 and under 3600; got {text!r}")
    return value


def _starter_credit(text: str) -> Decimal:
    """R19: a non-negative amount in USD, at most 2 decimal places."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
        raise argparse.ArgumentTypeError(f"must be a non-negative amount in USD with at most 2 decimals; got {text!r}")
    return value


def _non_negative(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be a non-negative {kind.__name__}, 0 to turn off; got {text!r}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ledger-server",
        description="Serve the usage ledger over gRPC (health checking and reflection included).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LEDGER_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="SQLAlchemy URL: sqlite:///FILE (default: %(default)s) or postgresql+psycopg://USER@HOST/DB "
        "[env LEDGER_DATABASE_URL]",
    )
    parser.add_argument(
        "--listen",
        default=os.environ.get("LEDGER_LISTEN", DEFAULT_LISTEN),
        help="HOST:PORT to listen on (default: %(default)s) [env LEDGER_LISTEN]",
    )
    parser.add_argument(
        "--allow-insecure-remote",
        action="store_true",
        help="allow a plaintext listener on a non-loopback address (otherwise refused)",
    )
    parser.add_argument(
        "--max-inflight",
        type=_inflight_bound,
        default=os.environ.get("LEDGER_MAX_INFLIGHT", str(DEFAULT_MAX_INFLIGHT)),
        help="appends served at once (their group commit shares one transaction); beyond them --append-queue "
        "more wait, and the rest are refused with RESOURCE_EXHAUSTED so clients back off "
        "(default: %(default)s, 0: no limit) [env LEDGER_MAX_INFLIGHT]",
    )
    parser.add_argument(
        "--append-queue",
        type=_inflight_bound,
        default=os.environ.get("LEDGER_APPEND_QUEUE", str(DEFAULT_QUEUE)),
        help="appends that wait for a slot beyond --max-inflight before any is refused "
        "(default: %(default)s, 0: refuse at once) [env LEDGER_APPEND_QUEUE]",
    )
    parser.add_argument(
        "--append-queue-seconds",
        type=_seconds,
        default=os.environ.get("LEDGER_APPEND_QUEUE_SECONDS", str(DEFAULT_QUEUE_SECONDS)),
        help="longest a queued append waits for a slot (or its deadline, if sooner) before RESOURCE_EXHAUSTED "
        "(default: %(default)s) [env LEDGER_APPEND_QUEUE_SECONDS]",
    )
    parser.add_argument(
        "--signing-key",
        metavar="FILE",
        default=os.environ.get("LEDGER_SIGNING_KEY") or None,
        help="private key file for signing checkpoints (create one with `ledgerctl audit keygen`); without it, a "
        "SQLite ledger makes FILE.signing.key beside its database on first start and PostgreSQL refuses to start "
        "[env LEDGER_SIGNING_KEY]",
    )
    parser.add_argument(
        "--no-signing",
        action="store_true",
        default=os.environ.get("LEDGER_NO_SIGNING", "") not in ("", "0", "false"),
        help="sign no checkpoints (auditors then have nothing to pin) [env LEDGER_NO_SIGNING=1]",
    )
    parser.add_argument(
        "--ledger-name",
        default=os.environ.get("LEDGER_NAME", DEFAULT_LEDGER_NAME),
        help="checkpoint origins are LEDGER_NAME/LOG_ID (default: %(default)s) [env LEDGER_NAME]",
    )
    parser.add_argument(
        "--checkpoint-every",
        metavar="N",
        type=_non_negative(int),
        default=os.environ.get("LEDGER_CHECKPOINT_EVERY", str(DEFAULT_CHECKPOINT_EVERY)),
        help="sign a log's checkpoint once it grew by N entries (default: %(default)s, 0: off) "
        "[env LEDGER_CHECKPOINT_EVERY]",
    )
    parser.add_argument(
        "--checkpoint-seconds",
        metavar="T",
        type=_non_negative(float),
        default=os.environ.get("LEDGER_CHECKPOINT_SECONDS", str(DEFAULT_CHECKPOINT_SECONDS)),
        help="sign a grown log's checkpoint T seconds after its last one (default: %(default)s, 0: off) "
        "[env LEDGER_CHECKPOINT_SECONDS]",
    )
    parser.add_argument(
        "--health-probe-seconds",
        metavar="T",
        type=_seconds,
        default=os.environ.get("LEDGER_HEALTH_PROBE_SECONDS", str(DEFAULT_PROBE_SECONDS)),
        help="ping the database every T seconds; gRPC health answers NOT_SERVING while it cannot be reached "
        "(default: %(default)s) [env LEDGER_HEALTH_PROBE_SECONDS]",
    )
    parser.add_argument(
        "--health-timeout-seconds",
        metavar="T",
        type=_seconds,
        default=os.environ.get("LEDGER_HEALTH_TIMEOUT_SECONDS", str(DEFAULT_PING_TIMEOUT_SECONDS)),
        help="a ping unanswered after T seconds counts as unreachable (default: %(default)s) "
        "[env LEDGER_HEALTH_TIMEOUT_SECONDS]",
    )
    parser.add_argument(
        "--close-interval",
        metavar="T",
        type=_non_negative(float),
        default=os.environ.get("LEDGER_CLOSE_INTERVAL", str(DEFAULT_CLOSE_INTERVAL)),
        help="every T seconds the period closer issues due invoices and re-checks account state (R15, R17-R19; "
        "docs/billing.md) (default: %(default)s, 0: off) [env LEDGER_CLOSE_INTERVAL]",
    )
    parser.add_argument(
        "--invoice-grace",
        metavar="SECONDS",
        type=_non_negative(int),
        default=os.environ.get("LEDGER_INVOICE_GRACE", str(DEFAULT_INVOICE_GRACE_SECONDS)),
        help="R17: issue a month-end invoice on the wall clock SECONDS after its month ended when the log has not "
        "settled through it (R28), unless a backfill overlapping the month is open (R29) (default: %(default)s) "
        "[env LEDGER_INVOICE_GRACE]",
    )
    parser.add_argument(
        "--starter-credit",
        metavar="USD",
        type=_starter_credit,
        default=os.environ.get("LEDGER_STARTER_CREDIT", "0"),
        help="R19: every new org starts with this credit, granted with its first events (default: %(default)s, "
        "none) [env LEDGER_STARTER_CREDIT]",
    )
    parser.add_argument(
        "--require-auth",
        action="store_true",
        default=os.environ.get("LEDGER_REQUIRE_AUTH", "") not in ("", "0", "false"),
        help="every call but health and reflection needs an API key or client certificate whose role may make it "
        "(docs/security.md; production sets this) [env LEDGER_REQUIRE_AUTH=1]",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        default=os.environ.get("LEDGER_SERVER_TLS_CERT") or None,
        help="serve TLS with this PEM certificate chain [env LEDGER_SERVER_TLS_CERT]",
    )
    parser.add_argument(
        "--tls-key",
        metavar="FILE",
        default=os.environ.get("LEDGER_SERVER_TLS_KEY") or None,
        help="the certificate's PEM private key, readable by its owner only [env LEDGER_SERVER_TLS_KEY]",
    )
    parser.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        default=os.environ.get("LEDGER_TLS_CLIENT_CA") or None,
        help="require client certificates signed by this CA (mutual TLS; the subject's CN is the role, O the org); "
        "implies --require-auth [env LEDGER_TLS_CLIENT_CA]",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        default=os.environ.get("LEDGER_METRICS_LISTEN") or None,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (off by default; loopback only unless "
        "--metrics-allow-remote; docs/operations.md) [env LEDGER_METRICS_LISTEN]",
    )
    parser.add_argument(
        "--metrics-allow-remote",
        action="store_true",
        help="allow --metrics-listen on a non-loopback address: the endpoint has no TLS and no authentication, and "
        "its gauges name orgs",
    )
    parser.add_argument("--log-level", default=os.environ.get("LEDGER_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "text"),
        default=os.environ.get("LEDGER_LOG_FORMAT", "auto"),
        help="readable text when stderr is a terminal and JSON lines with trace ids otherwise (auto, the "
        "default), or always json or text [env LEDGER_LOG_FORMAT]",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level, _log_format(args.log_format, sys.stderr))

    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_client_ca and not args.tls_cert):
        print("ledger-server: --tls-cert and --tls-key go together, and --tls-client-ca needs both", file=sys.stderr)
        return 2
    if args.tls_cert is None and not _is_loopback(args.listen) and not args.allow_insecure_remote:
        print(
            f"ledger-server: refusing to serve plaintext on {args.listen}, which is not a loopback address; "
            "listen on 127.0.0.1, give --tls-cert and --tls-key, or pass --allow-insecure-remote",
            file=sys.stderr,
        )
        return 2
    if not args.require_auth and not args.tls_client_ca and not _is_loopback(args.listen):
        logging.getLogger("usageledger.server").warning(
            "authentication is off on a non-loopback listener: anyone who reaches %s may append and read; "
            "production runs with --require-auth",
            args.listen,
        )
    try:
        metrics_listen = MetricsListen.parse(args.metrics_listen) if args.metrics_listen else None
    except ValueError as err:
        print(f"ledger-server: {err}", file=sys.stderr)
        return 2
    if metrics_listen is not None and not _is_loopback(args.metrics_listen) and not args.metrics_allow_remote:
        print(
            f"ledger-server: refusing to serve metrics on {args.metrics_listen}, which is not a loopback address: "
            "the endpoint has no TLS or authentication and names orgs; listen on 127.0.0.1 or pass "
            "--metrics-allow-remote",
            file=sys.stderr,
        )
        return 2
    try:
        tls = ServerTls.from_files(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
        telemetry = configure(os.environ, metrics_listen)
    except (OSError, ValueError) as err:
        print(f"ledger-server: {err}", file=sys.stderr)
        return 2
    try:
        signing = signing_setup(
            args.database_url, args.signing_key, no_signing=args.no_signing, ledger_name=args.ledger_name
        )
    except SigningKeyRequired as err:
        print(f"ledger-server: {err}", file=sys.stderr)
        return 2
    except (LedgerError, OSError) as err:
        print(f"ledger-server: {err}", file=sys.stderr)
        return 1
    try:
        running = start_server(
            args.database_url,
            args.listen,
            max_inflight=args.max_inflight or None,
            append_queue=int(args.append_queue),
            append_queue_seconds=float(args.append_queue_seconds),
            signing_key=signing.key_path,
            ledger_name=args.ledger_name,
            checkpoint_every=int(args.checkpoint_every),
            checkpoint_seconds=float(args.checkpoint_seconds),
            close_interval=float(args.close_interval) or None,
            health_probe_seconds=float(args.health_probe_seconds),
            health_timeout_seconds=float(args.health_timeout_seconds),
            invoice_grace_seconds=int(args.invoice_grace),
            starter_credit=args.starter_credit if isinstance(args.starter_credit, Decimal) else Decimal(0),
            require_auth=args.require_auth,
            tls=tls,
            tracing=telemetry.tracing,
        )
    except (LedgerError, OSError) as err:
        print(f"ledger-server: {err}", file=sys.stderr)
        return 1
    tune_interpreter()
    auth_on = args.require_auth or (tls is not None and tls.mutual)
    security = ("TLS" if tls else "plaintext") + (", auth required" if auth_on else "")
    print(
        f"ledger-server: serving on {args.listen.rsplit(':', 1)[0]}:{running.port} "
        f"({_redacted(args.database_url)}; {security})",
        flush=True,
    )
    if metrics_listen is not None:
        print(f"ledger-server: metrics on http://{metrics_listen.host}:{telemetry.metrics_port}/metrics", flush=True)
    _announce_signing(signing)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    running.stop(grace=5.0)
    telemetry.shutdown()
    return 0


def _log_format(chosen: str, stream: TextIO) -> str:
    """`auto`: a person at a terminal reads text; a log collector (anything else) gets JSON lines."""
    if chosen != "auto":
        return chosen
    return "text" if stream.isatty() else "json"


def _announce_signing(signing: SigningSetup) -> None:
    """After the serving line (scripts read the port from the first line): which verifier key to pin, never the
    private key."""
    if signing.key_path is None:
        print("ledger-server: checkpoints are not signed (--no-signing)", flush=True)
        return
    if signing.created:
        print(
            f"ledger-server: created the checkpoint signing key {signing.key_path} (mode 0600; back it up, keep it "
            "secret: it is never overwritten, and losing it changes the key auditors pin)",
            flush=True,
        )
    written = f" (also in {signing.verifier_file})" if signing.verifier_file is not None else ""
    print(
        f"ledger-server: checkpoints signed by {signing.key_path}; pin this verifier key{written} with "
        f"`ledgerctl audit verify --verifier-key KEY`, and compare `ledgerctl audit verifier-key` with it:\n"
        f"{signing.verifier_key}",
        flush=True,
    )


# Cyclic garbage collections start after this many net allocations of container objects (CPython: 700).
GC_GEN0_THRESHOLD = 50_000


def tune_interpreter() -> None:
    """Once the server is up: keep the cyclic garbage collector off the ingest path.

    An append batch holds tens of thousands of young tuples, dicts and messages at once, so at CPython's default
    threshold the collector runs several times per batch, and about one run in a hundred is a full collection
    that walks every object of the process (grpc, SQLAlchemy, protobuf, billing state): with a heap of 300,000
    objects that was about 10 us of the 50 us an appended event cost (gc callbacks, in-process AppendEvents).
    Freezing what startup allocated takes it out of every collection for good; a higher first threshold makes
    young collections rare. Almost everything the server allocates is freed by reference counting anyway.
    """
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def _redacted(url: str) -> str:
    """A database URL fit to print: never its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("://", 1)[0] + "://…"


if __name__ == "__main__":
    sys.exit(main())
