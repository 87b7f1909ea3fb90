"""A dispute lookup as a statement a support agent reads in one screen: the answer first, then one entry per session.

Works on the `--json` form of a lookup (client/cli_support.py `reconstruction_json`), so the text can never say
something the JSON does not. Lines are wrapped at spaces only, never inside an identifier or an amount, so nothing
is cut at 80 columns (issue #25): a long line continues on the next, indented.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from client.output import as_fraction, exact_amount
from ledger.rating.money import exact_text

NOT_INVOICED = "not yet invoiced"
# The priced part of a storage line's explanation: "43.9 GB x $0.10/GB-month" (R13) or
# "(1000 GB x $0.07 + 200 GB x $0.05)/GB-month" (R14's graduated tiers).
REPEATS_NOTE = "Note: digits in (parentheses) repeat forever; R21 rounds only invoice lines"
_REPEATING = re.compile(r"\$[0-9.]*\(")  # an amount with a repetend, `$0.00(925)` (docs/money.md)
_R13_PRICE = re.compile(r"GB x (?P<price>\$[0-9.]+)/GB-month")
_R14_TIERS = re.compile(r"\): (?P<tiers>\(.+?\))/GB-month")


def money(value: str | Fraction | Decimal) -> str:
    """A rated amount exactly (docs/money.md: `0.00(925)`, digits in parentheses repeat; R21 rounds only invoice
    lines), with a dollar sign."""
    shown = value if isinstance(value, str) else exact_text(value)
    return f"-${shown[1:]}" if shown.startswith("-") else f"${shown}"


def amount_of(item: dict[str, Any]) -> Fraction:
    """An amount of the --json form as a Fraction: from its `amount_fraction` when the server sent one (a storage
    share that does not terminate), else its decimal string, which is then exact."""
    fraction = item.get("amount_fraction")
    return Fraction(fraction) if fraction else Fraction(Decimal(item["amount"]))


def cents(text: str) -> str:
    """An invoice figure: whole cents (R21), as `ledgerctl invoices` shows them."""
    value = Decimal(text)
    return f"-${-value:.2f}" if value < 0 else f"${value:.2f}"


def clock(text: str | None) -> str:
    """HH:MM:SS(.ffffff) of an RFC 3339 UTC instant: a statement's rows share the header's day."""
    if not text:
        return "-"
    return text[11:-1].removesuffix(".000000")


def day_minute(text: str | None) -> str:
    return f"{text[:10]} {text[11:16]}" if text else "-"


def window_text(start: str | None, end: str | None) -> str:
    """`2026-10-05 11:15:00 to 12:15:00`, naming the end's day only when it differs."""
    if not start or not end:
        return "-"
    until = clock(end) if end[:10] == start[:10] else f"{end[:10]} {clock(end)}"
    return f"{start[:10]} {clock(start)} to {until}"


def rule_list(rules: list[str]) -> str:
    """`R1 R2 R3 R4 R10 R11` as `R1-R4 R10 R11`: consecutive rule IDs as a range."""
    numbers = sorted({int(rule[1:]) for rule in rules if rule[1:].isdigit()})
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return " ".join(f"R{run[0]}-R{run[-1]}" if len(run) > 2 else " ".join(f"R{n}" for n in run) for run in runs)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def entries(count: int) -> str:
    return f"{count} ledger entr{'y' if count == 1 else 'ies'}"


@dataclass
class Ledgered:
    """What a lookup's charges add up to, by the invoice that carried them (None: not yet invoiced)."""

    due: dict[str | None, Fraction] = field(default_factory=dict)
    invoiced: dict[str, Fraction] = field(default_factory=dict)
    late: set[str] = field(default_factory=set)

    def add(self, invoice: dict[str, Any], due: Fraction, *, charged: bool = True) -> None:
        """A charge due now and the invoice carrying it; `charged` False when the invoice's own figure for it is
        added separately (a session's invoiced ranges, at the prices invoiced then)."""
        key = invoice["invoice_id"]
        self.due[key] = self.due.get(key, Fraction(0)) + due
        if key is not None and charged:
            self.charge(key, due, late=invoice["late"])

    def charge(self, invoice_id: str, amount: Fraction, *, late: bool) -> None:
        self.invoiced[invoice_id] = self.invoiced.get(invoice_id, Fraction(0)) + amount
        if late:
            self.late.add(invoice_id)

    @property
    def difference(self) -> Fraction:
        """What the invoices charged minus what the rules say is due now for the charges they carry."""
        due = sum((amount for key, amount in self.due.items() if key is not None), Fraction(0))
        return sum(self.invoiced.values(), Fraction(0)) - due


def ledgered(report: dict[str, Any]) -> Ledgered:
    """Sum every unit run, storage interval and adjustment by the invoice that carried it (R17, R22, R23): due now
    from the rules, invoiced from what each invoice charged for each range of units (R12: at its price then)."""
    found = Ledgered()
    for session in report["sessions"]:
        for run in session["units"]:
            found.add(run["invoice"], amount_of(run), charged=False)
        for invoiced in session.get("invoiced", ()):
            found.charge(invoiced["invoice_id"], amount_of(invoiced), late=invoiced["late"] or invoiced["reversal"])
    for line in report["storage"]:
        found.add(line["invoice"], amount_of(line))
    for adjustment in report["adjustments"]:
        found.add(adjustment["invoice"], amount_of(adjustment))
    return found


def _invoice_part(report: dict[str, Any], invoice_id: str, amount: Fraction, late: bool) -> str:
    """`#2 $48.58 of its $50.04, cut 14:22`: this lookup's part of an invoice, its total in cents (R21) and its cut
    instant (R17); the period and the INVOICE entry are in --details and --json."""
    summary = next((i for i in report["invoices"] if i["invoice_id"] == invoice_id), None)
    part = f"#{invoice_id} {money(amount)}"
    if summary is not None:
        part += f" of its {cents(summary['total_amount'])}" if summary["total_amount"] else ""
        cut = summary["period_end"]
        same_day = cut is not None and cut[:10] == (report["window"]["start"] or "")[:10]
        part += f", cut {clock(cut) if same_day else day_minute(cut)}" if cut else ""
    return part + (" with late lines (R22)" if late else "")


def answer_lines(report: dict[str, Any]) -> list[str]:
    """The answer to the ticket: what was invoiced and where, what the rules say is due now, and any difference."""
    totals = report["totals"]
    window = report["window"]
    sessions, storage = report["sessions"], report["storage"]
    lines = [
        f"Ticket answer (R27): org {report['org_id']}, endpoint {report['endpoint_id']}, "
        f"{window_text(window['start'], window['end'])} UTC (as of {report['as_of']})",
    ]
    request = report["request"]
    if request is not None:
        lines += request_lines(request)
    lines.append(
        f"Due now under the rules: {money(totals['total_amount_exact'])} ({plural(len(sessions), 'session')} "
        f"{money(totals['sessions_amount'])}, R10; {plural(len(storage), 'storage interval')} "
        f"{money(totals['storage_amount_exact'])}, R13 R14; adjustments {money(totals['adjustments_amount'])}, R23)"
    )
    found = ledgered(report)
    if found.invoiced:
        invoiced = sorted(found.invoiced, key=int)
        parts = [_invoice_part(report, k, found.invoiced[k], k in found.late) for k in invoiced]
        where = "on invoice " if len(parts) == 1 else f"on {len(parts)} invoices: "
        lines.append(f"Invoiced: {money(sum(found.invoiced.values(), Fraction(0)))} {where}{'; '.join(parts)}")
    if not found.invoiced:
        lines.append("Invoiced: nothing yet (R17)")
    if None in found.due:
        lines.append(f"Not yet invoiced: {money(found.due[None])} (R17: on the org's next invoice)")
    difference = found.difference
    if difference:
        lines.append(
            f"Difference: the invoices charged {money(difference)} {'more' if difference > 0 else 'less'} than "
            "the rules say now: events that arrived after an invoice changed a session (R22), see each session's "
            "units below; the org's next invoice carries the late lines that correct it"
        )
    else:
        lines.append("Difference: none: every invoiced charge is what the rules say is due now")
    return lines


def request_lines(request: dict[str, Any]) -> list[str]:
    finished = f"finished {clock(request['finished_at'])}" if request["finished_at"] else "never finished"
    killed = f" (its workload stopped: {request['killed_by']}, R4)" if request["killed_by"] else ""
    amount = exact_amount(request["attributed_amount"], request["attributed_amount_fraction"])
    return [
        f"Request {request['request_id']} on {request['workload_id']}: started {clock(request['started_at'])}, "
        f"{finished}{killed}",
        f"  attributed {request['attributed_seconds_exact']} s of serving time = {money(amount)}"
        f"{as_fraction(request['attributed_amount_fraction'])} (R25: each instant shared by the requests in flight)",
    ]


def _rate(session: dict[str, Any]) -> str:
    prices = {run["unit_price"] for run in session["units"]}
    if len(prices) == 1:
        return f" x {money(prices.pop())}"
    return f" at {len(prices)} prices (R12, --details)" if prices else ""


def _bare_range(first: int, count: int) -> str:
    return str(first) if count == 1 else f"{first}-{first + count - 1}"


def _due_price(session: dict[str, Any], unit_index: int) -> str | None:
    for run in session["units"]:
        if run["first_unit_index"] <= unit_index < run["first_unit_index"] + run["count"]:
            return str(run["unit_price"])
    return None


def _invoices_of(session: dict[str, Any]) -> str:
    """Per range of billed units: the invoice that carried it at its price then (R12, R17), the late lines that took
    units back since (R22), and the units no invoice carries yet. One price shared by every range is said once."""
    charged = [r for r in session.get("invoiced", ()) if not r["reversal"]]
    prices = {Decimal(r["unit_price"]) for r in charged}
    one_price = len(prices) == 1
    ranges = []
    for invoiced in session.get("invoiced", ()):
        units = _bare_range(invoiced["first_unit_index"], invoiced["count"])
        where = f"#{invoiced['invoice_id']}"
        if invoiced["reversal"]:
            ranges.append(f"{units} taken back on {where} (late line, R22)")
            continue
        price = "" if one_price else f" at {money(invoiced['unit_price'])}{_due_now(session, invoiced)}"
        late = " (late line, R22)" if invoiced["late"] else ""
        ranges.append(f"{units} on {where}{price}{late}")
    waiting = [
        _bare_range(run["first_unit_index"], run["count"])
        for run in session["units"]
        if run["invoice"]["invoice_id"] is None
    ]
    if not ranges:
        return NOT_INVOICED
    head = f"invoiced at {money(str(prices.pop()))}{_due_now(session, charged[0])}: " if one_price else "invoiced: "
    tail = f"; {', '.join(waiting)} {NOT_INVOICED}" if waiting else ""
    return f"{head}units {', '.join(ranges)}{tail}"


def _carried(run: dict[str, Any]) -> bool:
    return run["invoice"]["invoice_id"] is not None


def _due_now(session: dict[str, Any], invoiced: dict[str, Any]) -> str:
    """` (due now $0.05, R12)` when the rules now price the range's first unit otherwise than its invoice did."""
    due = _due_price(session, invoiced["first_unit_index"])
    if due is None or Decimal(due) == Decimal(invoiced["unit_price"]):
        return ""
    return f" (due now {money(due)}, R12)"


def session_lines(session: dict[str, Any]) -> list[str]:
    """One entry per session: workload ID whole, up, stop, units, rate, amount, invoice; then its R25 split."""
    if session["stop"]:
        stop = clock(session["stop"]) + (f" {session['stop_reason']}" if session["stop_reason"] else "")
    else:
        stop = "still up"
    lines = [
        f"{session['workload_id']}  {session['instance_type']} {session['worker_type'] or ''}".rstrip()
        + f"  {clock(session['up'])} to {stop}: "
        f"{plural(session['billed_units'], session['unit'])}{_rate(session)} = {money(session['amount'])} "
        f"({rule_list(session['rules'])}); {_invoices_of(session)}"
    ]
    split = session["attribution"]
    if split is not None:
        lines.append(
            f"  R25: cold start {money(split['cold_start_amount'])}, serving {money(split['serving_amount'])}, "
            f"idle {money(split['idle_amount'])}, rounding {money(split['rounding_amount'])}"
        )
    return lines


@dataclass
class StoredThing:
    """A volume or a container disk's samples in the window, summed (R13, R14)."""

    name: str
    count: int = 0
    seconds: int = 0
    amount: Fraction = Fraction(0)
    gigabytes: set[str] = field(default_factory=set)


_STORAGE_KINDS = {"CONTAINER_DISK": "Container disks", "NETWORK_VOLUME": "Network volumes"}


def storage_lines(report: dict[str, Any]) -> list[str]:
    """Storage summarised per volume or disk under its price (R13) or graduated tiers (R14), instead of a row per
    5-minute sample."""
    groups: dict[tuple[str, str, str], dict[str, StoredThing]] = {}
    for line in report["storage"]:
        priced = _R14_TIERS.search(line["explanation"]) or _R13_PRICE.search(line["explanation"])
        group = groups.setdefault((line["storage_kind"], line["rule"], priced[1] if priced else ""), {})
        name = line["volume_id"] or line["workload_id"]
        thing = group.setdefault(name, StoredThing(name))
        thing.count += 1
        thing.seconds += line["interval_seconds"]
        thing.amount += amount_of(line)
        thing.gigabytes.add(line["gigabytes"])
    lines = []
    for (kind, rule, tiers), things in groups.items():
        at = f" at {tiers}/GB-month" if tiers else ""
        lines.append(f"{_STORAGE_KINDS.get(kind, kind)} ({rule}){at}:")
        for thing in things.values():
            sizes = sorted(thing.gigabytes, key=Decimal)
            size = f"{sizes[0]}-{sizes[-1]} GB" if len(sizes) > 1 else f"{sizes[0]} GB"
            intervals = plural(thing.count, "interval")
            lines.append(f"  {thing.name}: {size}, {thing.seconds} s in {intervals} = {money(thing.amount)}")
    return lines


def counted_lines(report: dict[str, Any]) -> list[str]:
    """Zero lines, anomalies and adjustments counted with their rules; --details lists each."""
    lines = []
    if report["zero_lines"]:
        rules = Counter(z["rule"] for z in report["zero_lines"])
        by_rule = ", ".join(f"{rule} x{count}" for rule, count in sorted(rules.items(), key=lambda i: int(i[0][1:])))
        lines.append(f"Not billed: {plural(len(report['zero_lines']), 'line')} ({by_rule})")
    if report["anomalies"]:
        lines.append(f"Anomalies: {plural(len(report['anomalies']), 'event')} kept and charged nothing (R26)")
    for adjustment in report["adjustments"]:
        lines.append(f"Adjustment: {adjustment['explanation']} (entry {adjustment['ref']['ref']})")
    return lines


def proof_lines(report: dict[str, Any]) -> list[str]:
    """With --proofs DIR: which file proves which log's entries, and how to check it offline."""
    lines = []
    for proof in report["proofs"]:
        unproven = f", {len(proof['unproven_sequences'])} newer entries not yet" if proof["unproven_sequences"] else ""
        count = proof.get("entries_proven")
        proven = "the entries" if count is None else entries(count)
        where = proof.get("file")
        lines.append(
            f"Proofs: {proven} of {proof['log_id']} proven in its signed checkpoint of size {proof['tree_size']} "
            f"(root {proof['root_hash'][:16]}...){unproven}"
            + (f": {where} (check: ledgerctl audit check-proof {where} --verifier-key KEY)" if where else "")
        )
    return lines


def statement(report: dict[str, Any]) -> list[str]:
    """The default lookup text: answer, sessions, storage, counts; each a logical line (wrap with `wrapped`)."""
    lines = answer_lines(report)
    lines += ["", f"Sessions ({len(report['sessions'])}; each rated whole, R10; times UTC on {_day(report)}):"]
    for session in report["sessions"]:
        lines += session_lines(session)
    if not report["sessions"]:
        lines.append("none: no workload of the endpoint was up in the window (R9)")
    if report["storage"]:
        lines += ["", "Storage in the window, per disk or volume:"]
        lines += storage_lines(report)
    counted = counted_lines(report) + proof_lines(report)
    if counted:
        lines += ["", *counted]
    # The note on asking for proofs is the footer's --proofs hint; the others (no signed checkpoint yet, ...) stay.
    lines += [f"Note: {note}" for note in report["notes"] if "include_proofs" not in note]
    if any(_REPEATING.search(line) for line in lines):
        lines.append(REPEATS_NOTE)
    lines += [
        "",
        f"{entries(len(report['entries']))} cited. --details: parts, unit runs, timelines, every storage interval; "
        "--json: all of it, with hashes; --proofs DIR: inclusion proofs.",
    ]
    return lines


def _day(report: dict[str, Any]) -> str:
    start = report["window"]["start"]
    return str(start[:10]) if start else "-"


def wrapped(lines: list[str], width: int) -> list[str]:
    """Wrap at spaces only (never inside an ID, a time or an amount); continuations are indented under their line."""
    result: list[str] = []
    for line in lines:
        if len(line) <= width or not line.strip():
            result.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()))
        result += textwrap.wrap(
            line,
            width=width,
            subsequent_indent=indent + "    ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    return result
