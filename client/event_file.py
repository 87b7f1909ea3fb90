"""A JSON Lines file of usage events read strictly, whole, before anything is sent (issue #23, item 2).

Each line is one JSON object with billing-rules.md's field names (docs/events.md). JSON types are taken exactly:
a string "false" is not a boolean, 3600.9 and 3600.0 are not integers, true is not 1, and a timestamp is an RFC 3339
string. A key that is no event field, or the same key twice on a line, is refused rather than dropped or
overwritten; decimal strings follow the one grammar of ledger.events.DECIMAL_RE. Every line is parsed once, into
the domain's UsageEvent (ledger.events.parse_event, the server's own checks), and every problem of every line is
reported as `FILE:LINE: FIELD: DESCRIPTION`. Only the checks that need the server remain for it: the price book's
instance types (R11) and R24 against what the ledger already holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import InvalidInput
from ledger.events import UsageEvent, parse_event
from wire.convert import json_type

MAX_REPORTED = 50  # problems listed in full; the count says how many more there are


@dataclass(frozen=True)
class FileEvent:
    """One event of the file and the line it came from (1-based)."""

    line: int
    event: UsageEvent


@dataclass(frozen=True)
class Problem:
    line: int
    field: str  # "" when the line as a whole is at fault
    description: str

    def describe(self, path: Path) -> str:
        return f"{path}:{self.line}: {self.field + ': ' if self.field else ''}{self.description}"


class EventFileError(Exception):
    """The file has problems: `syntax` says whether any line is not JSON at all (a usage error, not a refusal)."""

    def __init__(self, path: Path, problems: list[Problem], syntax: bool) -> None:
        self.path = path
        self.problems = problems
        self.syntax = syntax
        shown = [p.describe(path) for p in problems[:MAX_REPORTED]]
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more problems")
        lines = len({p.line for p in problems})
        super().__init__(f"{path}: {len(problems)} problems on {lines} lines; nothing was sent\n" + "\n".join(shown))


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)  # json's default keeps the last one silently
        found[key] = value
    return found


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")  # json's default takes NaN and Infinity


_decode = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_no_constant).decode


def _line_problems(number: int, record: dict[str, Any], now_micros: int) -> tuple[UsageEvent | None, list[Problem]]:
    problems = []
    occurred_at = record.get("occurred_at")
    if occurred_at is not None and type(occurred_at) is not str:
        # parse_event also takes integer microseconds (what a protobuf Timestamp carries); a file spells times out.
        problems.append(Problem(number, "occurred_at", f"must be an RFC 3339 string, not {json_type(occurred_at)}"))
        record = {k: v for k, v in record.items() if k != "occurred_at"}
    try:
        # The server checks instance types against its price book (R11); here every other check runs.
        event = parse_event(record, now_micros=now_micros, known_instance_type=lambda _: True)
    except InvalidInput as err:
        named = {p.field for p in problems}
        problems += [Problem(number, v.field, v.description) for v in err.violations if v.field not in named]
        return None, problems
    return (event, problems) if not problems else (None, problems)


def read_event_file(path: Path, now_micros: int) -> list[FileEvent]:
    """Every event of `path` in file order, or EventFileError listing every problem; OSError (or
    UnicodeDecodeError) if it cannot be read as UTF-8.

    `now_micros` is this machine's clock, for the check that no event lies more than 5 minutes in the future.
    Blank lines are skipped. One event_id given twice with different bodies is refused here (R24), before the
    first of them could be appended.
    """
    return parse_event_lines(path.read_text(encoding="utf-8"), path, now_micros)


def parse_event_lines(text: str, path: Path, now_micros: int) -> list[FileEvent]:
    """read_event_file's work on text already read; `path` only names it in problems."""
    events: list[FileEvent] = []
    first_of: dict[tuple[str, str], FileEvent] = {}
    problems: list[Problem] = []
    syntax = False
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = _decode(line)
        except _DuplicateKey as err:
            problems.append(Problem(number, err.key[:64], "appears twice on the line; give each field once"))
            continue
        except json.JSONDecodeError as err:
            problems.append(Problem(number, "", f"not valid JSON ({err.msg} at column {err.colno})"))
            syntax = True
            continue
        except ValueError as err:
            problems.append(Problem(number, "", f"not valid JSON ({err})"))
            syntax = True
            continue
        if not isinstance(record, dict):
            problems.append(Problem(number, "", "each line must be one JSON object (a usage event)"))
            syntax = True
            continue
        event, found = _line_problems(number, record, now_micros)
        problems += found
        if event is None:
            continue
        read = FileEvent(number, event)
        first = first_of.setdefault((event.org_id, event.event_id), read)
        if first is not read and first.event != event:
            problems.append(
                Problem(
                    number, "event_id", f"R24: {event.event_id!r} is also on line {first.line}, with different fields"
                )
            )
        events.append(read)
    if problems:
        raise EventFileError(path, problems, syntax)
    return events
