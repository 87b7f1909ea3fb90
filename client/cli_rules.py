"""`ledgerctl rules`: the billing rules R1-R29 that every charge cites, read from the docs/billing-rules.md it ships.

A support agent reading "R17" in a reconstruction, or an org admin reading it on an invoice, gets the rule's text
from the installed command itself: the wheel carries the document (client/billing-rules.md is a link to it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from typing import Annotated

import typer
from rich.markdown import Markdown
from rich.table import Table

from client.output import EXIT_USAGE, JsonFlag, emit_json, fail, out

# A rule starts a paragraph with its bold ID and title: `**R17 Invoices, cut in event time.**`.
_RULE_START = re.compile(r"^\*\*(R\d+) (.+?)\.\*\*", re.MULTILINE)
_SECTION = re.compile(r"^## ", re.MULTILINE)


@dataclass(frozen=True)
class Rule:
    rule_id: str
    title: str
    text: str  # the rule's Markdown, examples included, up to the next rule or section


def billing_rules_text() -> str:
    return files("client").joinpath("billing-rules.md").read_text(encoding="utf-8")


def parse_rules(document: str) -> dict[str, Rule]:
    """Every rule of the document by ID, in document order."""
    starts = list(_RULE_START.finditer(document))
    rules: dict[str, Rule] = {}
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(document)
        section = _SECTION.search(document, match.start(), end)
        text = document[match.start() : section.start() if section else end].strip()
        rules[match.group(1)] = Rule(match.group(1), match.group(2), text)
    return rules


def rules_command(
    rule_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="RULE", help="Rule IDs such as R10 or r17 (default: list every rule)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the billing rules R1-R29 that charges, invoices and lookups cite (docs/billing-rules.md)."""
    rules = parse_rules(billing_rules_text())
    wanted = [rule_id.upper() for rule_id in rule_ids or []]
    unknown = [rule_id for rule_id in wanted if rule_id not in rules]
    if unknown:
        fail(
            f"no rule {unknown[0]}: the rules are {next(iter(rules))} to {next(reversed(rules))}",
            EXIT_USAGE,
            as_json=as_json,
        )
    chosen = [rules[rule_id] for rule_id in wanted] or list(rules.values())
    if as_json:
        emit_json([{"rule_id": r.rule_id, "title": r.title, "text": r.text} for r in chosen])
    elif wanted:
        for rule in chosen:
            out.print(Markdown(rule.text))
            out.print()
    else:
        table = Table("rule", "title")
        for rule in chosen:
            table.add_row(rule.rule_id, rule.title)
        out.print(table)
        out.print("ledgerctl rules R17 shows one rule in full, with its example")
