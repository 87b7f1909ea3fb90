"""`ledgerctl support lookup` as a statement (issue #25): snapshots of the example day at 80 and 120 columns.

The example day (examples/day.jsonl) is ingested into a real server on the fixed test clock; invoice #1 is issued
when the org's usage crosses the $50.00 threshold (R17) during the ingest, so some sessions are invoiced and
wl-llama-flex-06 (up 11:48:52) is not. Regenerate the snapshots after a deliberate layout change with
`UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_support_statement.py` and read the diff before committing it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.cli_support import reconstruction_json
from client.csv_output import LOOKUP_COLUMNS, USAGE_COLUMNS, emit_csv
from client.statement import cents, ledgered, money, rule_list, statement, wrapped
from ledger.dispute import DisputeQuery
from server.app import RunningServer, start_server
from tests.billing_support import Desk, t
from tests.conftest import EXAMPLE_DAY, FixedClock
from tests.test_dispute_reconstruction import lookup
from wire.support import reconstruction_to_proto

SNAPSHOTS = Path(__file__).resolve().parent / "data" / "snapshots"
ENDPOINT_HOUR = ("support", "lookup", "--org", "acme", "--endpoint", "ep-llama", "--around", "2026-10-05T11:45Z")
OOM_REQUEST = ("support", "lookup", "--request", "req-000384")
# Every workload ID of the example day's ep-llama sessions in the 11:15-12:15 window (examples/README.md).
LLAMA_WORKLOADS = [f"wl-llama-{suffix}" for suffix in ("active-01", "flex-01", "flex-02", "flex-03", "flex-05")]


@pytest.fixture(scope="module")
def example_day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server holding the example day, shared by this module's read-only lookups."""
    folder = tmp_path_factory.mktemp("statement")
    server: RunningServer = start_server(f"sqlite:///{folder / 'day.db'}", "127.0.0.1:0", clock=FixedClock())
    target = f"127.0.0.1:{server.port}"
    ingested = ledgerctl("events", "ingest", str(EXAMPLE_DAY), "--json", target=target, columns=120)
    assert ingested.returncode == 0, ingested.stderr
    closed = ledgerctl("invoices", "close", "--org", "acme", "--at", "2026-10-05T12:00:00Z", target=target, columns=120)
    assert closed.returncode == 0, closed.stdout + closed.stderr
    yield target
    server.stop(grace=None)


def ledgerctl(*args: str, target: str, columns: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "LEDGER_DATABASE_URL": "", "LEDGER_TARGET": target}
    return subprocess.run(
        [sys.executable, "-m", "ledgerctl", *args], capture_output=True, text=True, timeout=120, env=env
    )


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed (UPDATE_SNAPSHOTS=1 rewrites it)"


def assert_readable(text: str, columns: int) -> list[str]:
    lines = text.splitlines()
    assert all(len(line) <= columns for line in lines), max(lines, key=len)
    assert "…" not in text and "..." not in text.replace("...)", ""), "a cell or identifier was cut"
    return lines


@pytest.mark.parametrize("columns", [80, 120])
def test_r27_endpoint_statement_answers_first_in_one_screen(example_day: str, columns: int) -> None:
    result = ledgerctl(*ENDPOINT_HOUR, target=example_day, columns=columns)
    assert result.returncode == 0, result.stderr
    lines = assert_readable(result.stdout, columns)
    check_snapshot(f"lookup-endpoint-{columns}.txt", result.stdout)
    # A one-hour window of the example day fits a screen and a half; the answer is in the first ten lines.
    assert len(lines) <= 60
    head = "\n".join(lines[:10])
    for answer in ("Due now under the rules:", "Invoiced:", "on 3 invoices: #1", "Not yet invoiced:", "Difference:"):
        assert answer in head, answer
    words = set(result.stdout.split())
    for workload in [*LLAMA_WORKLOADS, "wl-llama-flex-06"]:
        assert workload in words, workload  # whole, never `wl-llama-…`
    # wl-llama-flex-03: UP 09:02:47.784206 to OOM 11:47:07.431403 = 9859.647197 s -> 165 minutes (R10) x $0.0456 =
    # $7.524 (R11), carried by invoice #1 (R17).
    assert "165 minutes x $0.0456 = $7.524" in " ".join(result.stdout.split())
    # 76 storage samples are summarised: one line per disk and one for vol-models with its R14 tiers.
    flat = " ".join(result.stdout.split())
    assert "Network volumes (R14) at (1000 GB x $0.07 + 200 GB x $0.05)/GB-month: vol-models: 1200 GB," in flat
    assert len(re.findall(r" wl-llama-[a-z0-9-]+: [0-9.-]+ GB, ", flat)) == 6


@pytest.mark.parametrize("columns", [80, 120])
def test_r25_request_statement_keeps_the_request_first(example_day: str, columns: int) -> None:
    result = ledgerctl(*OOM_REQUEST, target=example_day, columns=columns)
    assert result.returncode == 0, result.stderr
    lines = assert_readable(result.stdout, columns)
    check_snapshot(f"lookup-request-{columns}.txt", result.stdout)
    flat = " ".join(result.stdout.split())
    # req-000384: alone in flight from 11:46:57.123119 to the OOM kill at 11:47:07.431403: 10.308284 s x $0.00076
    # = $0.00783429584 (R25), billed up to the kill (R4).
    assert "Request req-000384 on wl-llama-flex-03" in "\n".join(lines[:3])
    head = " ".join(" ".join(lines[:10]).split())
    assert "attributed 10.308284 s of serving time = $0.00783429584" in head  # the request's answer comes first
    assert "10.308284 s of serving time = $0.00783429584" in flat and "OOM, R4" in flat


def test_details_holds_every_table_and_json_everything(example_day: str) -> None:
    details = ledgerctl(*ENDPOINT_HOUR, "--details", target=example_day, columns=80)
    assert details.returncode == 0, details.stderr
    assert_readable(details.stdout, 80)
    for table in ("wl-llama-flex-03: timeline", "Storage intervals (R13, R14)", "Not billed"):
        assert table in details.stdout, table


def test_wrapping_never_splits_an_identifier_or_an_amount() -> None:
    line = "wl-llama-active-01  A100 ACTIVE  00:00:00 to 23:59:59.5: 1440 minutes x $0.036 = $51.84; invoice #1"
    for width in (20, 40, 80):
        pieces = wrapped([line], width)
        assert " ".join(" ".join(pieces).split()) == " ".join(line.split())
        assert {"wl-llama-active-01", "$0.036", "23:59:59.5:"} <= set(" ".join(pieces).split())


@given(st.lists(st.from_regex(r"[a-z0-9$.:#-]{1,30}", fullmatch=True), min_size=1, max_size=30), st.integers(20, 140))
def test_wrapped_lines_keep_every_word_whole(words: list[str], width: int) -> None:
    pieces = wrapped([" ".join(words)], width)
    assert " ".join(pieces).split() == words
    assert all(len(piece) <= width or " " not in piece.strip() for piece in pieces)


def test_r21_amounts_show_exactly_with_their_repetends() -> None:
    assert cents("50.11") == "$50.11" and cents("-1.44") == "-$1.44" and cents("9273.2") == "$9273.20"
    assert money("7.524") == "$7.524" and money("-0.01") == "-$0.01" and money(Fraction(0)) == "$0"
    assert money(Fraction(1, 108)) == "$0.00(925)" and money(Fraction(-1, 3)) == "-$0.(3)"


def test_r17_r22_charges_add_up_by_the_invoice_that_carried_them() -> None:
    invoice_1 = {"invoice_id": "1", "late": False}
    not_yet = {"invoice_id": None, "late": False}
    report = {
        "sessions": [
            # 3 units at $1.20 on invoice #1, a fourth not yet invoiced.
            {
                "units": [{"amount": "3.6", "invoice": invoice_1}, {"amount": "1.2", "invoice": not_yet}],
                "invoiced": [{"invoice_id": "1", "amount": "3.6", "late": False, "reversal": False}],
            },
            # R22: invoice #1 charged 5 units at $0.50; a late stop showed 3 were due, and invoice #2 took 2 back.
            {
                "units": [{"amount": "1.5", "invoice": invoice_1}],
                "invoiced": [
                    {"invoice_id": "1", "amount": "2.5", "late": False, "reversal": False},
                    {"invoice_id": "2", "amount": "-1", "late": True, "reversal": True},
                ],
            },
        ],
        "storage": [{"amount": "0.25", "invoice": invoice_1}],
        "adjustments": [{"amount": "-0.5", "invoice": not_yet}],
    }
    found = ledgered(report)
    assert found.due == {"1": Fraction("5.35"), None: Fraction("0.7")}
    assert found.invoiced == {"1": Fraction("6.35"), "2": Fraction(-1)} and found.late == {"2"}
    assert found.difference == 0  # the late line on #2 corrected what #1 overcharged


def test_rule_lists_name_runs_of_rules_as_ranges() -> None:
    assert rule_list(["R1", "R2", "R3", "R4", "R10", "R11"]) == "R1-R4 R10 R11"
    assert rule_list(["R13", "R14", "R25"]) == "R13 R14 R25"


# -- item 2: invoiced against due (R12, R17, R22) -------------------------------------------------------------------


def statement_of(desk: Desk, around: str) -> tuple[dict[str, Any], str]:
    query = DisputeQuery(endpoint_id="ep-1", around=t(around), tolerance=30 * 60 * 1_000_000)
    report = reconstruction_json(reconstruction_to_proto(lookup(desk.ledger, query)))
    return report, " ".join(" ".join(statement(report)).split())


def test_r22_a_late_stop_shows_what_the_invoices_charged_against_what_is_due_until_a_late_line_corrects_it(
    sqlite_url: str,
) -> None:
    desk = Desk(sqlite_url, "2026-10-01T00:00:00Z")
    try:
        desk.session("wl-1", "2026-10-02T00:00:00Z")
        # As tests/test_billing_rules.py's R22/R23 case: a HEARTBEAT at 06:00 proves 360 minutes started (R28);
        # the threshold cut (R17) holds units 0-347 (348 x $0.144 = $50.112) on #1, the month-end grace puts
        # units 348-359 (12 x $0.144 = $1.728) on #2.
        desk.close("2026-10-02T06:00:00Z")
        desk.close("2026-11-01T01:00:00Z", heartbeat=False)
        desk.at("2026-11-01T01:10:00Z")
        desk.stop("wl-1", "2026-10-02T05:50:00Z")  # written late: only 350 units were due, $50.40

        report, text = statement_of(desk, "2026-10-02T05:50:00Z")
        [session] = report["sessions"]
        assert [(r["invoice_id"], r["first_unit_index"], r["count"], r["unit_price"], r["amount"], r["reversal"])
                for r in session["invoiced"]] == [("1", 0, 348, "0.144", "50.112", False),
                                                  ("2", 348, 12, "0.144", "1.728", False)]  # fmt: skip
        assert session["amount"] == "50.4"
        # The invoices charged $51.84 for 360 units; the rules now say 350 units, $50.40, are due: $1.44 too
        # much, until the next invoice takes the 10 units back (R22).
        assert "Invoiced: $51.84 on 2 invoices: #1 $50.112 of its $50.11" in text and "#2 $1.728 of its $1.73" in text
        assert "Difference: the invoices charged $1.44 more than the rules say now" in text
        assert "invoiced at $0.144: units 0-347 on #1, 348-359 on #2" in text

        [third] = desk.close("2026-12-01T01:00:00Z", heartbeat=False).issued
        report, text = statement_of(desk, "2026-10-02T05:50:00Z")
        [session] = report["sessions"]
        assert [(r["invoice_id"], r["first_unit_index"], r["count"], r["amount"], r["reversal"], r["late"])
                for r in session["invoiced"]][2:] == [(str(third.number), 350, 10, "-1.44", True, True)]  # fmt: skip
        assert f"350-359 taken back on #{third.number} (late line, R22)" in text
        assert f"#{third.number} -$1.44 of its -$1.44, cut 2026-12-01 00:00 with late lines (R22)" in text
        assert "Difference: none" in text
    finally:
        desk.close_store()


# -- item 4: --format csv -------------------------------------------------------------------------------------------


def csv_rows(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout, newline="")))


def test_csv_is_rfc_4180_with_a_header_quoting_where_needed(capsys: pytest.CaptureFixture[str]) -> None:
    emit_csv(("line", "amount", "late", "explanation"), [{"line": "due", "amount": "7.524", "late": False,
                                                           "explanation": 'R10: "rounded", up'}])  # fmt: skip
    assert capsys.readouterr().out == 'line,amount,late,explanation\r\ndue,7.524,false,"R10: ""rounded"", up"\r\n'


def test_r27_lookup_as_csv_one_row_per_charge_line_adding_up_to_the_statement(example_day: str) -> None:
    report = json.loads(ledgerctl(*ENDPOINT_HOUR, "--json", target=example_day, columns=120).stdout)
    rows = csv_rows(ledgerctl(*ENDPOINT_HOUR, "--format", "csv", target=example_day, columns=120))
    assert list(rows[0]) == list(LOOKUP_COLUMNS)
    kinds = {kind: [r for r in rows if r["line"] == kind] for kind in ("due", "invoiced", "storage", "not billed")}
    # R10: the due rows are each session's unit runs; they add up to the sessions' $167.7096.
    assert sum(Decimal(r["amount"]) for r in kinds["due"]) == Decimal(report["totals"]["sessions_amount"])
    assert len(kinds["storage"]) == len(report["storage"]) == 76 and len(kinds["not billed"]) == 2
    # R17: what each invoice charged per range of units, at its price (R12), beside what is due.
    flex_03 = [(r["invoice"], r["quantity"], r["unit_price"]) for r in kinds["invoiced"]
               if r["workload_id"] == "wl-llama-flex-03"]  # fmt: skip
    assert flex_03 == [("1", "98", "0.0456"), ("2", "67", "0.0456")]
    volume = next(r for r in kinds["storage"] if r["volume_id"] == "vol-models")
    assert volume["amount_exact"] == "0.00(925)" and volume["rules"] == "R14"  # 1/108 (docs/money.md)


def test_usage_and_invoices_as_csv(example_day: str) -> None:
    window = ("--org", "acme", "--from", "2026-10-05", "--to", "2026-10-06", "--group-by", "endpoint")
    usage = json.loads(ledgerctl("usage", *window, "--json", target=example_day, columns=120).stdout)
    rows = csv_rows(ledgerctl("usage", *window, "--format", "csv", target=example_day, columns=120))
    assert list(rows[0]) == list(USAGE_COLUMNS)
    assert [(r["endpoint_id"], r["unit"], r["amount"]) for r in rows] == [
        (u["endpoint_id"] or "", u["unit"], u["amount"]) for u in usage["rows"]
    ]
    invoices = csv_rows(ledgerctl("invoices", "list", "--org", "acme", "--format", "csv", target=example_day,
                                  columns=120))  # fmt: skip
    assert [r["number"] for r in invoices] == ["1", "2", "3"]
    assert all(re.fullmatch(r"\d+\.\d\d", r["total"]) for r in invoices)  # R21: cents
    lines = csv_rows(ledgerctl("invoices", "show", "--org", "acme", "--invoice", "1", "--format", "csv",
                               target=example_day, columns=120))  # fmt: skip
    assert lines and {r["invoice"] for r in lines} == {"1"}
    assert sum(Decimal(r["amount"]) for r in lines) == Decimal(invoices[0]["subtotal"])
    both = ledgerctl("usage", *window, "--format", "csv", "--json", target=example_day, columns=120)
    assert both.returncode == 2 and "give one" in both.stdout + both.stderr


def test_usage_rows_carry_their_closed_value_sets_as_enums_beside_the_strings(example_day: str) -> None:
    from usageledger.v1 import ledger_pb2 as lpb
    from usageledger.v1 import usage_pb2 as upb
    from usageledger.v1 import usage_pb2_grpc as upb_grpc

    from client.instants import parse_instant
    from client.ledger_client import LedgerClient
    from wire.convert import micros_to_timestamp

    request = upb.QueryUsageRequest(org_id="acme", group_by=[upb.GROUP_BY_WORKLOAD_KIND, upb.GROUP_BY_WORKER_TYPE])
    request.start_time.CopyFrom(micros_to_timestamp(parse_instant("2026-10-05")))
    request.end_time.CopyFrom(micros_to_timestamp(parse_instant("2026-10-06")))
    with LedgerClient(example_day) as client:
        rows = upb_grpc.UsageServiceStub(client.channel).QueryUsage(request).rows
    units = {row.unit: row.unit_value for row in rows}
    assert units == {"minute": upb.USAGE_UNIT_MINUTE, "interval": upb.USAGE_UNIT_INTERVAL}
    for row in rows:
        kind = lpb.WorkloadKind.Name(row.workload_kind_value).removeprefix("WORKLOAD_KIND_")
        worker = lpb.WorkerType.Name(row.worker_type_value).removeprefix("WORKER_TYPE_")
        storage = lpb.StorageKind.Name(row.storage_kind_value).removeprefix("STORAGE_KIND_")
        assert (kind, worker, storage) == (
            row.workload_kind or "UNSPECIFIED",
            row.worker_type or "UNSPECIFIED",
            row.storage_kind or "UNSPECIFIED",
        )
    assert {row.storage_kind_value for row in rows if row.unit == "interval"} == {
        lpb.STORAGE_KIND_CONTAINER_DISK,
        lpb.STORAGE_KIND_NETWORK_VOLUME,
    }
