"""`ledger-server`: run the usage ledger's gRPC service."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading

from ledger.errors import LedgerError
from server.app import start_server
from server.limits import DEFAULT_MAX_INFLIGHT

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ledger-server",
        description="Serve the usage ledger over gRPC (health checking and reflection included).",
    )
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
        help="appends served at once; more are refused with RESOURCE_EXHAUSTED so clients back off "
        "(default: %(default)s, 0: no limit) [env LEDGER_MAX_INFLIGHT]",
    )
    parser.add_argument("--log-level", default=os.environ.get("LEDGER_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")

    if not _is_loopback(args.listen) and not args.allow_insecure_remote:
        print(
            f"ledger-server: refusing to serve plaintext on {args.listen}, which is not a loopback address; "
            "listen on 127.0.0.1 or pass --allow-insecure-remote",
            file=sys.stderr,
        )
        return 2
    try:
        running = start_server(args.database_url, args.listen, max_inflight=args.max_inflight or None)
    except (LedgerError, OSError) as err:
        print(f"ledger-server: {err}", file=sys.stderr)
        return 1
    print(f"ledger-server: serving on {args.listen.rsplit(':', 1)[0]}:{running.port} ({args.database_url})", flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    running.stop(grace=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
