"""Issue #23 item 2: `ledgerctl events ingest` never changes a billable fact. Exact JSON types, no unknown or repeated
keys, one decimal grammar, the whole file checked before anything is sent, and R24 conflicts named by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from client.event_file import EventFileError, parse_event_lines, read_event_file
from ledger.events import parse_event
from server.app import RunningServer
from tests.test_cli import as_json, ledgerctl
from tests.test_events import BOOK, NOW, _well_formed_events
from wire.convert import event_to_proto, event_to_raw, raw_to_event

BASE: dict[str, Any] = {
    "event_id": "e-1",
    "org_id": "acme",
    "endpoint_id": "ep-1",
    "workload_id": "wl-1",
    "workload_kind": "SERVING",
    "instance_type": "A100",
    "type": "WORKLOAD_UP",
    "occurred_at": "2026-10-05T09:00:00Z",
}
SAMPLE = {**BASE, "type": "STORAGE_SAMPLE", "storage_kind": "CONTAINER_DISK", "gigabytes": "50"}


@pytest.fixture
def target(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


def write(tmp_path: Path, *lines: str | dict[str, Any]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def problems(path: Path) -> list[tuple[int, str, str]]:
    with pytest.raises(EventFileError) as raised:
        read_event_file(path, now_micros=NOW)
    return [(p.line, p.field, p.description) for p in raised.value.problems]


# -- the file reader: every problem, by line and field ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("development", "false"),  # R8: a string "false" was stored as true and a 1-hour A100 session billed $0
        ("development", 0),
        ("interval_seconds", 3600.9),  # was truncated to 3600
        ("interval_seconds", 3600.0),
        ("interval_seconds", True),  # was taken as 1
        ("interval_seconds", "3600"),
        ("gigabytes", "1_000"),
        ("gigabytes", "１２"),  # full-width digits
        ("gigabytes", " 12 "),
        ("gigabytes", "1e3"),
        ("gigabytes", "+5"),
        ("gigabytes", ".5"),
        ("gigabytes", 12.5),
        ("gigabytes", True),
        ("occurred_at", 1_791_190_800_000_000),  # microseconds are what a Timestamp carries, not a file
        ("event_id", 17),
        ("workload_kind", 1),
    ],
)
def test_values_of_the_wrong_json_type_or_grammar_are_refused_by_line_and_field(
    tmp_path: Path, field: str, value: Any
) -> None:
    good = {**SAMPLE, "event_id": "e-0"}
    path = write(tmp_path, good, {**SAMPLE, field: value})
    found = problems(path)
    assert [(line, name) for line, name, _ in found] == [(2, field)], found


def test_a_misspelt_key_is_refused_rather_than_dropped_for_the_default(tmp_path: Path) -> None:
    # R12's 300 s default would otherwise apply silently to a sample meant to cover an hour.
    path = write(tmp_path, {**SAMPLE, "interval_second": 3600})
    assert problems(path) == [
        (1, "interval_second", "is not a usage-event field (see docs/billing-rules.md, 'Usage events')")
    ]


def test_a_key_given_twice_is_refused_rather_than_the_last_winning(tmp_path: Path) -> None:
    line = json.dumps(SAMPLE)[:-1] + ', "gigabytes": "5000"}'
    path = write(tmp_path, line)
    assert problems(path) == [(1, "gigabytes", "appears twice on the line; give each field once")]


def test_nan_and_infinity_are_not_json_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(SAMPLE)[:-1] + ', "interval_seconds": NaN}')
    with pytest.raises(EventFileError) as raised:
        read_event_file(path, now_micros=NOW)
    assert raised.value.syntax and raised.value.problems[0].line == 1


def test_the_decimal_grammar_takes_plain_ascii_decimals(tmp_path: Path) -> None:
    lines = [{**SAMPLE, "event_id": f"e-{n}", "gigabytes": value} for n, value in enumerate(["12.50", "007", "0", 12])]
    events = read_event_file(write(tmp_path, *lines), now_micros=NOW)
    assert [str(e.event.gigabytes) for e in events] == ["12.50", "7", "0", "12"]
    assert [event_to_proto(e.event).gigabytes for e in events] == ["12.5", "7", "0", "12"]


def test_one_event_id_twice_in_the_file_with_different_fields_is_refused_before_sending(tmp_path: Path) -> None:
    path = write(tmp_path, BASE, {**BASE, "event_id": "e-2"}, {**BASE, "workload_id": "wl-9"}, BASE)
    assert problems(path) == [(3, "event_id", "R24: 'e-1' is also on line 1, with different fields")]


def test_every_problem_of_every_line_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, {**BASE, "development": "yes"}, BASE, "{not json", [1, 2], {**BASE, "extra": 1})
    with pytest.raises(EventFileError) as raised:
        read_event_file(path, now_micros=NOW)
    assert [(p.line, p.field) for p in raised.value.problems] == [(1, "development"), (3, ""), (4, ""), (5, "extra")]
    assert raised.value.syntax  # line 3 is no JSON at all: a usage error
    assert f"{path}:1: development: must be true or false" in str(raised.value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_well_formed_events())
def test_the_server_validates_exactly_the_event_the_file_holds(raw: dict[str, Any]) -> None:
    """Parsed once from the file, sent as its proto, the server's own parse of it yields the same event."""
    if isinstance(raw["occurred_at"], int):
        from ledger.timeutil import format_micros

        raw["occurred_at"] = format_micros(raw["occurred_at"])
    reference = parse_event(raw, now_micros=NOW, known_instance_type=lambda t: t in BOOK.rates)
    [read] = parse_event_lines(json.dumps(raw) + "\n", Path("events.jsonl"), now_micros=NOW)
    assert read.event == reference
    on_server = parse_event(
        event_to_raw(event_to_proto(read.event)), now_micros=NOW, known_instance_type=lambda t: t in BOOK.rates
    )
    assert on_server == reference and on_server.body() == reference.body()


def test_the_client_library_refuses_wrong_types_instead_of_coercing() -> None:
    for field, value in (("development", "false"), ("interval_seconds", 3600.9), ("interval_seconds", True)):
        with pytest.raises(TypeError, match=field):
            raw_to_event({**SAMPLE, field: value})
    with pytest.raises(ValueError, match="interval_second"):
        raw_to_event({**SAMPLE, "interval_second": 3600})
    assert raw_to_event({**SAMPLE, "gigabytes": 50}).gigabytes == "50"


# -- ledgerctl events ingest ------------------------------------------------------------------------------------


def test_a_bad_line_1501_leaves_nothing_appended(target: str, tmp_path: Path) -> None:
    lines: list[str | dict[str, Any]] = [{**BASE, "event_id": f"e-{n:05d}"} for n in range(1500)]
    lines.append({**BASE, "event_id": "e-bad", "development": "false"})
    result = ledgerctl("events", "ingest", str(write(tmp_path, *lines)), "--json", target=target)
    assert result.returncode == 1, result.stderr
    answer = as_json(result)
    assert answer["problems"] == [{"line": 1501, "field": "development", "description": "must be true or false"}]
    assert ":1501: development: must be true or false" in answer["error"] and "nothing was sent" in answer["error"]
    assert ledgerctl("log", "head", "--org", "acme", target=target).returncode == 1  # NOT_FOUND: no log at all


def test_an_r24_conflict_names_the_line_the_stored_entry_and_what_was_appended_before(
    target: str, tmp_path: Path
) -> None:
    # Past events: sent without the R29 backfill bracket, so the entry sequences are the events' alone.
    first = tmp_path / "first.jsonl"
    first.write_text("".join(json.dumps({**BASE, "event_id": f"e-{n}"}) + "\n" for n in range(3)))
    assert ledgerctl("events", "ingest", str(first), "--no-backfill", target=target).returncode == 0
    lines: list[str | dict[str, Any]] = [{**BASE, "event_id": f"n-{n}"} for n in range(4)]
    lines.insert(4, {**BASE, "event_id": "e-1", "workload_id": "wl-other"})  # line 5 rewrites entry 1's fact
    lines.append({**BASE, "event_id": "n-9"})
    path = write(tmp_path, *lines)
    result = ledgerctl("events", "ingest", str(path), "--batch-size", "2", "--no-backfill", "--json", target=target)
    assert result.returncode == 1, result.stderr
    answer = as_json(result)
    assert answer.get("code") == "ALREADY_EXISTS" and answer["line"] == 5, answer
    assert answer["conflict"]["sequence"] == "1" and answer["conflict"]["event_id"] == "e-1"
    assert (answer["appended"], answer["sent_through_line"], answer["failed_batch_first_line"]) == (4, 4, 5)
    assert f"{path}:5: event_id 'e-1': R24: the ledger already holds entry 1 of org/acme" in answer["error"]
    assert "lines 1-4 were sent before it: 4 appended" in answer["error"]
    assert "nothing from line 5 on was appended" in answer["error"]
    text = ledgerctl("events", "ingest", str(path), "--batch-size", "2", "--no-backfill", target=target)
    assert text.returncode == 1 and ":5: event_id 'e-1'" in text.stderr.replace("\n", "")
    head = as_json(ledgerctl("log", "head", "--org", "acme", "--json", target=target))
    assert head["size"] == 3 + 4  # the first file, then lines 1-4 of the second
