"""`ledgerctl rules`: every rule ID the ledger cites is defined in docs/billing-rules.md, and the command shows it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from client.cli_rules import billing_rules_text, parse_rules

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "billing-rules.md"


def ledgerctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledgerctl", *args], capture_output=True, text=True, timeout=60)


def test_the_command_reads_the_document_itself() -> None:
    assert billing_rules_text() == DOC.read_text(encoding="utf-8")


def test_the_document_defines_r1_to_r29_in_order_each_with_a_title() -> None:
    rules = parse_rules(DOC.read_text(encoding="utf-8"))
    assert list(rules) == [f"R{n}" for n in range(1, 30)]
    assert rules["R10"].title == "Granularity" and rules["R29"].title == "Backfills"
    # A rule's text stops at the next rule or section: R14's example is R14's, R15 starts a new section.
    assert "1,500 GB" in rules["R14"].text and "Spend limit" not in rules["R14"].text


def test_every_rule_id_the_code_cites_is_defined() -> None:
    defined = set(parse_rules(DOC.read_text(encoding="utf-8")))
    cited: dict[str, str] = {}
    for top in ("ledger", "storage", "wire", "server", "client"):
        for source in (ROOT / top).rglob("*.py"):
            for rule_id in re.findall(r"\bR\d{1,2}\b", source.read_text(encoding="utf-8")):
                cited.setdefault(rule_id, str(source.relative_to(ROOT)))
    undefined = {rule_id: where for rule_id, where in cited.items() if rule_id not in defined}
    assert not undefined, undefined
    assert {"R10", "R17", "R24", "R25"} <= set(cited)


def test_ledgerctl_rules_shows_a_rule_in_full_and_lists_them_all() -> None:
    one = ledgerctl("rules", "r17", "--json")
    assert one.returncode == 0, one.stderr
    [rule] = json.loads(one.stdout)
    assert rule["rule_id"] == "R17" and rule["title"] == "Invoices, cut in event time"
    assert "exceeds $50.00" in rule["text"] and "18:16:00.000001" in rule["text"]  # the rule and its example
    listed = ledgerctl("rules")
    assert listed.returncode == 0 and "R29" in listed.stdout and "Backfills" in listed.stdout


def test_an_unknown_rule_is_a_usage_error() -> None:
    result = ledgerctl("rules", "R30")
    assert result.returncode == 2 and "no rule R30: the rules are R1 to R29" in result.stderr
