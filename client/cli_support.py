"""`ledgerctl support`: answer a billing ticket (R27) from the ledger's own entries, and correct it (R23)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.duration_pb2 import Duration
from rich import box
from rich.table import Table
from usageledger.v1 import ledger_pb2 as lpb
from usageledger.v1 import support_pb2 as spb
from usageledger.v1 import support_pb2_grpc as spb_grpc

from client.csv_output import LOOKUP_COLUMNS, FormatOption, chosen_format, emit_csv, lookup_rows
from client.ledger_client import LedgerClient
from client.output import (
    DEFAULT_TARGET,
    EXIT_USAGE,
    REPEATS_NOTE,
    TIME_HELP,
    JsonFlag,
    OrgOption,
    Target,
    as_fraction,
    emit_json,
    exact_amount,
    fail,
    gigabyte_seconds_text,
    out,
    rpc_failure,
    timestamp_option,
    when,
)
from client.statement import statement, wrapped
from ledger.adjustments import parse_ref

support_app = typer.Typer(
    help="Billing disputes: reconstruct an endpoint's or a request's charges from ledger entries (R27) and "
    "correct them with adjustments (R23).",
    no_args_is_help=True,
)

_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
MAX_TIMELINE_ROWS = 40  # per session in the text report; --json has every one


# -- arguments --------------------------------------------------------------------------------------------------


def parse_tolerance(text: str, as_json: bool) -> int:
    """`30m`, `90s`, `1h30m` or plain seconds, as microseconds."""
    if text.isdigit():
        return int(text) * 1_000_000
    match = _DURATION.match(text)
    if not text or not match:
        fail(f"--tolerance {text!r}: use a duration such as 30m, 90s or 1h30m", EXIT_USAGE, as_json=as_json)
    seconds = int(match["h"] or 0) * 3600 + int(match["m"] or 0) * 60 + int(match["s"] or 0)
    return seconds * 1_000_000


# -- proto to JSON ----------------------------------------------------------------------------------------------


def _enum(enum: Any, value: int, prefix: str) -> str | None:
    return str(enum.Name(value))[len(prefix) :] if value else None


def _time(message: Any, name: str) -> str | None:
    return when(getattr(message, name)) if message.HasField(name) else None


def ref_json(ref: spb.DisputeEntryRef) -> dict[str, Any]:
    return {
        "ref": f"{ref.log_id}:{ref.sequence}",
        "log_id": ref.log_id,
        "sequence": ref.sequence,
        "entry_hash": ref.entry_hash.hex(),
    }


def _opt_ref(message: Any, name: str) -> dict[str, Any] | None:
    return ref_json(getattr(message, name)) if message.HasField(name) else None


def _coverage(coverage: spb.DisputeInvoiceCoverage) -> dict[str, Any]:
    return {
        "invoiced": coverage.invoiced,
        "invoice_id": coverage.invoice_id or None,
        "invoice_ref": _opt_ref(coverage, "invoice_ref"),
        "late": coverage.late,
        "explanation": coverage.explanation,
    }


def _verdict(value: int) -> str | None:
    return _enum(spb.Verdict, value, "VERDICT_")


def request_json(request: spb.DisputeRequest) -> dict[str, Any]:
    return {
        "request_id": request.request_id,
        "workload_id": request.workload_id,
        "endpoint_id": request.endpoint_id,
        "started_at": _time(request, "start_time"),
        "finished_at": _time(request, "finish_time"),
        "in_flight_from": _time(request, "in_flight_start_time"),
        "in_flight_to": _time(request, "in_flight_end_time"),
        "attributed_seconds": request.attributed_seconds,
        "attributed_amount": request.attributed_amount,
        "attributed_amount_exact": request.attributed_amount_exact,
        "attributed_amount_fraction": request.attributed_amount_fraction,
        "attributed_seconds_exact": exact_amount(request.attributed_seconds, request.attributed_seconds_fraction),
        "attributed_seconds_fraction": request.attributed_seconds_fraction or None,
        "killed_by": _enum(lpb.StopReason, request.killed_by, "STOP_REASON_"),
        "rules": list(request.rules),
        "explanation": request.explanation,
        "refs": [ref_json(r) for r in request.refs],
    }


def session_json(session: spb.DisputeSession) -> dict[str, Any]:
    split = session.attribution
    return {
        "workload_id": session.workload_id,
        "endpoint_id": session.endpoint_id,
        "workload_kind": _enum(lpb.WorkloadKind, session.workload_kind, "WORKLOAD_KIND_"),
        "instance_type": session.instance_type,
        "worker_type": _enum(lpb.WorkerType, session.worker_type, "WORKER_TYPE_"),
        "up": _time(session, "up_time"),
        "ready": _time(session, "ready_time"),
        "stop": _time(session, "stop_time"),
        "stop_reason": _enum(lpb.StopReason, session.stop_reason, "STOP_REASON_"),
        "unit": session.unit,
        "billed_units": session.billed_units,
        "duration_seconds": session.duration_seconds,
        "amount": session.amount,
        "window_amount": session.window_amount,
        "verdict": _verdict(session.verdict),
        "rules": list(session.rules),
        "attribution": (
            {
                "cold_start_seconds": split.cold_start_seconds,
                "serving_seconds": split.serving_seconds,
                "idle_seconds": split.idle_seconds,
                "rounding_seconds": split.rounding_seconds,
                "cold_start_amount": split.cold_start_amount,
                "serving_amount": split.serving_amount,
                "idle_amount": split.idle_amount,
                "rounding_amount": split.rounding_amount,
            }
            if session.HasField("attribution")
            else None
        ),
        "parts": [
            {
                "name": p.name,
                "seconds": p.seconds,
                "amount": p.amount,
                "rules": list(p.rules),
                "explanation": p.explanation,
            }
            for p in session.parts
        ],
        "units": [
            {
                "first_unit_index": u.first_unit_index,
                "count": u.count,
                "unit_seconds": u.unit_seconds,
                "first_unit_start": _time(u, "first_unit_start_time"),
                "price_version": u.price_version,
                "price_ref": _opt_ref(u, "price_ref"),
                "rate_per_second": u.rate_per_second,
                "unit_price": u.unit_price,
                "amount": u.amount,
                "invoice": _coverage(u.invoice),
                "explanation": u.explanation,
            }
            for u in session.units
        ],
        "timeline": [
            {
                "at": _time(step, "occur_time"),
                "event_type": _enum(lpb.EventType, step.event_type, "EVENT_TYPE_"),
                "request_id": step.request_id or None,
                "stop_reason": _enum(lpb.StopReason, step.stop_reason, "STOP_REASON_"),
                "verdict": _verdict(step.verdict),
                "rule": step.rule,
                "explanation": step.explanation,
                "ref": ref_json(step.ref),
            }
            for step in session.timeline
        ],
        "invoiced": [
            {
                "invoice_id": r.invoice_id,
                "invoice_ref": _opt_ref(r, "invoice_ref"),
                "first_unit_index": r.first_unit_index,
                "count": r.count,
                "unit_price": r.unit_price,
                "price_version": r.price_version,
                "amount": r.amount,
                "reversal": r.reversal,
                "late": r.late,
                "explanation": r.explanation,
            }
            for r in session.invoiced
        ],
        "requests": [request_json(r) for r in session.requests],
        "request_count": session.request_count,
        "requests_in_window": session.requests_in_window,
        "explanation": session.explanation,
        "refs": [ref_json(r) for r in session.refs],
        "plan_ref": _opt_ref(session, "plan_ref"),
    }


def reconstruction_json(response: spb.ReconstructChargesResponse) -> dict[str, Any]:
    """The --json form: field names follow billing-rules.md; money and seconds are exact decimal strings."""
    totals = response.totals
    return {
        "ok": True,
        "org_id": response.org_id,
        "endpoint_id": response.endpoint_id,
        "window": {"start": _time(response, "start_time"), "end": _time(response, "end_time")},
        "as_of": _time(response, "as_of_time"),
        "currency": response.currency_code,
        "sessions": [session_json(s) for s in response.sessions],
        "zero_lines": [
            {
                "rule": z.rule,
                "verdict": _verdict(z.verdict),
                "amount": z.amount,
                "event_type": _enum(lpb.EventType, z.event_type, "EVENT_TYPE_"),
                "workload_id": z.workload_id or None,
                "start": _time(z, "start_time"),
                "end": _time(z, "end_time"),
                "explanation": z.explanation,
                "refs": [ref_json(r) for r in z.refs],
            }
            for z in response.zero_lines
        ],
        "storage": [
            {
                "workload_id": s.workload_id,
                "storage_kind": _enum(lpb.StorageKind, s.storage_kind, "STORAGE_KIND_"),
                "volume_id": s.volume_id or None,
                "gigabytes": s.gigabytes,
                "interval_seconds": s.interval_seconds,
                "start": _time(s, "start_time"),
                "end": _time(s, "end_time"),
                "rule": s.rule,
                "amount": s.amount,
                "amount_exact": exact_amount(s.amount, s.amount_fraction),
                "amount_fraction": s.amount_fraction or None,
                "gigabyte_seconds": s.gigabyte_seconds or None,
                "first_tier_gigabyte_seconds": s.first_tier_gigabyte_seconds or None,
                "beyond_tier_gigabyte_seconds": s.beyond_tier_gigabyte_seconds or None,
                "explanation": s.explanation,
                "ref": ref_json(s.ref),
                "invoice": _coverage(s.invoice),
            }
            for s in response.storage
        ],
        "anomalies": [
            {
                "rule": "R26",
                "workload_id": a.workload_id,
                "event_type": _enum(lpb.EventType, a.event_type, "EVENT_TYPE_"),
                "at": _time(a, "occur_time"),
                "reason": a.reason,
                "ref": ref_json(a.ref),
            }
            for a in response.anomalies
        ],
        "adjustments": [adjustment_json(a) for a in response.adjustments],
        "request": request_json(response.request) if response.HasField("request") else None,
        "entries": [
            {
                **ref_json(e.ref),
                "kind": _enum(lpb.EntryKind, e.kind, "ENTRY_KIND_"),
                "event_type": _enum(lpb.EventType, e.event_type, "EVENT_TYPE_"),
                "occurred_at": _time(e, "occur_time"),
                "workload_id": e.workload_id or None,
                "request_id": e.request_id or None,
                "description": e.description,
            }
            for e in response.entries
        ],
        "totals": {
            "sessions_amount": totals.sessions_amount,
            "storage_amount": totals.storage_amount,
            "adjustments_amount": totals.adjustments_amount,
            "total_amount": totals.total_amount,
            "window_compute_amount": totals.window_compute_amount,
            "window_storage_amount": totals.window_storage_amount,
            "storage_amount_exact": exact_amount(totals.storage_amount, totals.storage_amount_fraction),
            "total_amount_exact": exact_amount(totals.total_amount, totals.total_amount_fraction),
            "window_storage_amount_exact": exact_amount(
                totals.window_storage_amount, totals.window_storage_amount_fraction
            ),
            "storage_amount_fraction": totals.storage_amount_fraction or None,
            "total_amount_fraction": totals.total_amount_fraction or None,
            "window_storage_amount_fraction": totals.window_storage_amount_fraction or None,
        },
        "invoices": [
            {
                "invoice_id": i.invoice_id,
                "ref": _opt_ref(i, "ref"),
                "issued_at": _time(i, "issue_time"),
                "period_start": _time(i, "period_start_time"),
                "period_end": _time(i, "period_end_time"),
                "total_amount": i.total_amount or None,
                "credits_applied": i.credits_applied or None,
                "amount_due": i.amount_due or None,
            }
            for i in response.invoices
        ],
        "proofs": [
            {
                "log_id": p.log_id,
                "tree_size": p.tree_size,
                "root_hash": p.root_hash.hex(),
                "signed_note": p.signed_note,
                "bundle_json": p.bundle_json,
                "unproven_sequences": list(p.unproven_sequences),
            }
            for p in response.proofs
        ],
        "notes": list(response.notes),
    }


def adjustment_json(adjustment: spb.DisputeAdjustment) -> dict[str, Any]:
    return {
        "rule": "R23",
        "ticket": adjustment.ticket,
        "amount": adjustment.amount,
        "reason": adjustment.reason,
        "ref": ref_json(adjustment.ref),
        "corrects": [ref_json(r) for r in adjustment.corrects],
        "invoice": _coverage(adjustment.invoice),
        "explanation": adjustment.explanation,
    }


# -- the readable report ----------------------------------------------------------------------------------------


def _short(ref: dict[str, Any]) -> str:
    return f"{ref['ref']} ({ref['entry_hash'][:12]}…)"


def _clock(text: str | None) -> str:
    """Times in one report share a day: show it once in the header, HH:MM:SS.ffffff in the rows."""
    return text[11:-1] if text else "-"


def _money(text: str) -> str:
    return f"${text}"


def print_statement(report: dict[str, Any], *, details: bool) -> None:
    """The statement a support agent reads (client/statement.py), and with `details` every table behind it."""
    for line in wrapped(statement(report), out.width):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if details:
        print_details(report)


def _folding(table: Table) -> Table:
    """Cells fold onto more lines instead of being cut with an ellipsis: an ID or amount is never shortened."""
    for column in table.columns:
        column.overflow = "fold"
    return table


def print_details(report: dict[str, Any]) -> None:
    """--details: each session's parts, unit runs and timeline, every zero line and storage interval, proofs."""
    out.print()
    charges = Table(
        "workload", "kind", "instance", "up", "stop", "billed", "amount", "in window", "verdict", "rules",
        title="Charges (each session rated whole; R10 rounds per session)", box=box.SIMPLE_HEAD, title_justify="left",
    )  # fmt: skip
    for s in report["sessions"]:
        stop = _clock(s["stop"]) + (f" {s['stop_reason']}" if s["stop_reason"] else "") if s["stop"] else "open"
        charges.add_row(
            s["workload_id"],
            s["workload_kind"],
            f"{s['instance_type']} {s['worker_type']}",
            _clock(s["up"]),
            stop,
            f"{s['billed_units']} {s['unit']}{'s' if s['billed_units'] != 1 else ''}",
            _money(s["amount"]),
            _money(s["window_amount"]),
            s["verdict"],
            " ".join(s["rules"]),
        )
    out.print(_folding(charges))

    for s in report["sessions"]:
        parts = Table(
            "part", "seconds", "amount", "rules", "why",
            title=f"{s['workload_id']}: where its {s['duration_seconds']} s went", box=box.SIMPLE_HEAD,
            title_justify="left",
        )  # fmt: skip
        for part in s["parts"]:
            parts.add_row(
                part["name"], part["seconds"], _money(part["amount"]), " ".join(part["rules"]), part["explanation"]
            )
        out.print(_folding(parts))
        for unit in s["units"]:
            out.print(f"  {unit['explanation']}; {unit['invoice']['explanation']}")
        timeline = Table(
            "at", "event", "verdict", "rule", "entry", "meaning",
            title=f"{s['workload_id']}: timeline", box=box.SIMPLE_HEAD, title_justify="left",
        )  # fmt: skip
        steps = s["timeline"]
        for step in steps[:MAX_TIMELINE_ROWS]:
            event = step["event_type"] + (f" {step['request_id']}" if step["request_id"] else "")
            timeline.add_row(
                _clock(step["at"]), event, step["verdict"], step["rule"], step["ref"]["ref"], step["explanation"]
            )
        out.print(_folding(timeline))
        if len(steps) > MAX_TIMELINE_ROWS:
            out.print(f"  … {len(steps) - MAX_TIMELINE_ROWS} more steps (use --json)")
        if s["requests_in_window"] > len(s["requests"]):
            out.print(
                f"  {len(s['requests'])} of the {s['requests_in_window']} requests in flight in the window are listed "
                "(a window lists the endpoint's first 20): narrow the window, or look one up with --request ID"
            )
        if s["request_count"] > s["requests_in_window"]:
            out.print(f"  {s['requests_in_window']} of the session's {s['request_count']} requests are in the window")

    if report["zero_lines"]:
        zero = Table(
            "rule", "from", "to", "workload", "entries", "why not billed",
            title="Not billed", box=box.SIMPLE_HEAD, title_justify="left",
        )  # fmt: skip
        for z in report["zero_lines"]:
            zero.add_row(
                z["rule"],
                _clock(z["start"]),
                _clock(z["end"]) if z["end"] else "open",
                z["workload_id"] or "-",
                " ".join(r["ref"] for r in z["refs"]) or "-",
                z["explanation"],
            )
        out.print(_folding(zero))

    if report["storage"]:
        storage = Table(
            "workload", "kind", "GB", "from", "to", "GB-seconds (R14: first 1,000 GB + beyond)", "rule", "amount",
            "entry", title="Storage intervals (R13, R14)", box=box.SIMPLE_HEAD, title_justify="left",
        )  # fmt: skip
        for line in report["storage"]:
            kind = line["storage_kind"] + (f" {line['volume_id']}" if line["volume_id"] else "")
            storage.add_row(
                line["workload_id"],
                kind,
                line["gigabytes"],
                _clock(line["start"]),
                _clock(line["end"]),
                gigabyte_seconds_text(line),
                line["rule"],
                _money(line["amount_exact"]),
                line["ref"]["ref"],
            )
        out.print(_folding(storage))

    for anomaly in report["anomalies"]:
        out.print(f"[yellow]anomaly[/] {anomaly['reason']} ({_short(anomaly['ref'])})")
    for adjustment in report["adjustments"]:
        out.print(f"[cyan]adjustment[/] {adjustment['explanation']} ({_short(adjustment['ref'])})")

    totals = report["totals"]
    out.print(
        f"\n[bold]Totals[/] sessions {_money(totals['sessions_amount'])}, "
        f"storage {_money(totals['storage_amount_exact'])}, adjustments {_money(totals['adjustments_amount'])}: "
        f"[bold]{_money(totals['total_amount_exact'])}[/]{as_fraction(totals['total_amount_fraction'] or '')} "
        f"(of which units and storage starting in the window: {_money(totals['window_compute_amount'])} + "
        f"{_money(totals['window_storage_amount_exact'])}, R10)"
    )
    if "(" in totals["total_amount_exact"] or any("(" in line["amount_exact"] for line in report["storage"]):
        out.print(REPEATS_NOTE)
    for invoice in report["invoices"]:
        credits = invoice["credits_applied"] or "0"
        out.print(f"invoice {invoice['invoice_id']}: total {invoice['total_amount']}, credits applied {credits} (R16)")


# -- commands ---------------------------------------------------------------------------------------------------


@support_app.command("lookup")
def support_lookup(
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Endpoint ID from the ticket.")] = None,
    request: Annotated[str | None, typer.Option("--request", help="Request ID, if the ticket gives one.")] = None,
    around: Annotated[
        str | None, typer.Option("--around", help="Approximate time of the issue: " + TIME_HELP + ".")
    ] = None,
    tolerance: Annotated[
        str | None, typer.Option("--tolerance", help="Window around --around, such as 30m (the default), 2h, 90s.")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="Window start (with --to), instead of --around.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Window end (exclusive).")] = None,
    org: Annotated[
        str | None, typer.Option("--org", help="Org ID (found from the endpoint or request if left out).")
    ] = None,
    proofs_dir: Annotated[
        Path | None,
        typer.Option(
            "--proofs",
            help="Also ask for inclusion proofs of every cited entry and write one proof.json per log into this "
            "folder, to check offline with `ledgerctl audit check-proof FILE --verifier-key KEY`.",
            file_okay=False,
        ),
    ] = None,
    details: Annotated[
        bool,
        typer.Option(
            "--details",
            help="After the statement, every table behind it: each session's parts, unit runs and timeline, every "
            "zero line and storage interval.",
        ),
    ] = False,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
    format_name: FormatOption = "text",
) -> None:
    """Reconstruct every charge of an endpoint around a time, or of one request (R27): the rule behind each line and
    the ledger entries (log, sequence, hash) behind each figure.

    Give --endpoint with --around (default tolerance 30m) or --from/--to, or just --request; --proofs DIR for
    evidence anyone with the ledger's verifier key can check. --format csv: one row per charge line (the request's
    share, each session's units as due and as invoiced, storage intervals, zero lines, adjustments)."""
    output = chosen_format(format_name, as_json)
    as_json = output == "json"
    if endpoint is None and request is None:
        fail("give --endpoint (and a time), or --request", EXIT_USAGE, as_json=as_json)
    if around is not None and (start is not None or end is not None):
        fail("give --around or --from/--to, not both", EXIT_USAGE, as_json=as_json)
    if (start is None) != (end is None):
        fail("give both --from and --to", EXIT_USAGE, as_json=as_json)
    if tolerance is not None and around is None:
        fail("--tolerance goes with --around", EXIT_USAGE, as_json=as_json)
    if endpoint is not None and request is None and around is None and start is None:
        fail(
            "R27: give the ticket's approximate time (--around) or a window (--from/--to)", EXIT_USAGE, as_json=as_json
        )
    message = spb.ReconstructChargesRequest(
        org_id=org or "", endpoint_id=endpoint or "", request_id=request or "", include_proofs=proofs_dir is not None
    )
    if around is not None:
        message.approximate_time.CopyFrom(timestamp_option(around, "--around", as_json))
        if tolerance is not None:
            seconds = parse_tolerance(tolerance, as_json) // 1_000_000
            message.tolerance.CopyFrom(Duration(seconds=seconds))
    if start is not None and end is not None:
        message.start_time.CopyFrom(timestamp_option(start, "--from", as_json))
        message.end_time.CopyFrom(timestamp_option(end, "--to", as_json))
    with LedgerClient(target) as client:
        try:
            response = client.call(spb_grpc.SupportServiceStub(client.channel).ReconstructCharges, message)
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
    report = reconstruction_json(response)
    if proofs_dir is not None:
        write_proofs(report, proofs_dir, as_json)
    if as_json:
        emit_json(report)
    elif output == "csv":
        emit_csv(LOOKUP_COLUMNS, lookup_rows(report))
    else:
        print_statement(report, details=details)


def write_proofs(report: dict[str, Any], folder: Path, as_json: bool) -> None:
    """Each log's proof.json into `folder` as <log id with / as ->.proof.json; the report then names the files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for proof in report["proofs"]:
            path = folder / f"{proof['log_id'].replace('/', '-')}.proof.json"
            path.write_text(proof["bundle_json"] + "\n", encoding="utf-8")
            proof["file"] = str(path)
            proof["entries_proven"] = len(json.loads(proof["bundle_json"])["entries"])
    except OSError as err:
        fail(
            f"--proofs {folder}: cannot write the proofs there ({err.strerror}); give a folder you can write to",
            EXIT_USAGE,
            as_json=as_json,
        )


@support_app.command("adjust")
def support_adjust(
    org: OrgOption,
    ticket: Annotated[str, typer.Option("--ticket", help="Support ticket ID (R23).")],
    amount: Annotated[str, typer.Option("--amount", help="USD; negative credits the org, positive debits it.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, in words the customer will read.")],
    ref: Annotated[
        list[str],
        typer.Option("--ref", help="LOG:SEQ of an entry the adjustment corrects (repeatable), e.g. org/acme:1042."),
    ],
    request_id: Annotated[
        str | None,
        typer.Option(
            "--request-id",
            help="Idempotency key. Default: derived from ticket, amount, reason and refs, so re-running the "
            "same command appends nothing new; give a new one to make a second, identical adjustment.",
        ),
    ] = None,
    target: Target = DEFAULT_TARGET,
    as_json: JsonFlag = False,
) -> None:
    """Append an ADJUSTMENT entry citing the corrected entries and the ticket (R23); later lookups show it.

    Safe to re-run: the same adjustment is appended once (see --request-id)."""
    corrects = []
    for text in ref:
        try:
            log_id, sequence = parse_ref(text)
        except ValueError as err:
            fail(f"--ref: {err}", EXIT_USAGE, as_json=as_json)
        corrects.append(spb.DisputeEntryRef(log_id=log_id, sequence=sequence))
    message = spb.AdjustChargesRequest(
        org_id=org, ticket=ticket, amount=amount, reason=reason, corrects=corrects, request_id=request_id or ""
    )
    # Retried like any call: the idempotency key makes a resend find the first entry instead of crediting twice.
    with LedgerClient(target) as client:
        try:
            response = client.call(spb_grpc.SupportServiceStub(client.channel).AdjustCharges, message)
        except grpc.RpcError as err:
            rpc_failure(err, target, as_json)
    adjustment = adjustment_json(response.adjustment)
    if as_json:
        emit_json({"ok": True, "duplicate": response.duplicate, "adjustment": adjustment})
    else:
        out.print(f"{adjustment['explanation']}")
        out.print(f"entry {_short(adjustment['ref'])}; corrects {', '.join(r['ref'] for r in adjustment['corrects'])}")
