"""Usage-event validation: every bad field is named, good events keep their exact facts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from ledger.events import EventType, UsageEvent, WorkerType, canonical_event_body, parse_event, well_formed_fields
from ledger.log.entry import canonical_body
from ledger.pricebook import default_price_book
from ledger.timeutil import format_micros, parse_rfc3339_micros

NOW = parse_rfc3339_micros("2026-10-05T12:00:00Z")
BOOK = default_price_book()


def parse(raw: dict[str, Any]) -> Any:
    return parse_event(raw, now_micros=NOW, known_instance_type=lambda t: t in BOOK.rates, prefix="events[0].")


def base(**overrides: Any) -> dict[str, Any]:
    event = {
        "event_id": "e-1",
        "org_id": "acme",
        "endpoint_id": "ep-1",
        "workload_id": "wl-1",
        "workload_kind": "SERVING",
        "instance_type": "H100 PRO",
        "type": "WORKLOAD_UP",
        "occurred_at": "2026-10-05T09:00:00.000001Z",
    }
    event.update(overrides)
    return event


def fields(err: pytest.ExceptionInfo[InvalidInput]) -> set[str]:
    return {v.field for v in err.value.violations}


def test_a_valid_event_keeps_its_facts_and_defaults_to_flex() -> None:
    event = parse(base())
    assert event.type is EventType.WORKLOAD_UP
    assert event.worker_type is WorkerType.FLEX
    assert event.occurred_at == parse_rfc3339_micros("2026-10-05T09:00:00.000001Z")
    assert event.body()["occurred_at"] == "2026-10-05T09:00:00.000001Z"


def test_offsets_are_normalized_to_utc() -> None:
    event = parse(base(occurred_at="2026-10-05T11:00:00+02:00"))
    assert format_micros(event.occurred_at) == "2026-10-05T09:00:00.000000Z"


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as err:
        parse(base(event_id="", workload_kind="GPU", instance_type="TPU v9", occurred_at="yesterday"))
    assert fields(err) == {
        "events[0].event_id",
        "events[0].workload_kind",
        "events[0].instance_type",
        "events[0].occurred_at",
    }


def test_r11_unknown_instance_type_is_rejected_naming_the_rule() -> None:
    with pytest.raises(InvalidInput) as err:
        parse(base(instance_type="Z100"))
    assert "R11" in err.value.violations[0].description


@pytest.mark.parametrize(
    ("occurred_at", "accepted"),
    [
        ("2026-10-05T12:05:00Z", True),  # exactly 5 minutes ahead
        ("2026-10-05T12:05:00.000001Z", False),
        ("1999-12-31T23:59:59Z", False),
        ("2026-10-05T09:00:00", False),  # no zone
        ("2026-10-05T09:00:00.0000001Z", False),  # finer than a microsecond
        ("2026-02-30T09:00:00Z", False),
    ],
)
def test_times_must_be_zoned_microsecond_and_not_far_in_the_future(occurred_at: str, accepted: bool) -> None:
    if accepted:
        parse(base(occurred_at=occurred_at))
    else:
        with pytest.raises(InvalidInput) as err:
            parse(base(occurred_at=occurred_at))
        assert fields(err) == {"events[0].occurred_at"}


def test_storage_samples_need_kind_and_exact_gigabytes() -> None:
    sample = parse(base(type="STORAGE_SAMPLE", storage_kind="NETWORK_VOLUME", volume_id="vol-1", gigabytes="1200.50"))
    assert sample.gigabytes == Decimal("1200.5")
    assert sample.interval_seconds == 300  # the default
    assert sample.body()["gigabytes"] == "1200.5"
    with pytest.raises(InvalidInput) as err:
        parse(base(type="STORAGE_SAMPLE", storage_kind="NETWORK_VOLUME", gigabytes=12.5))
    assert fields(err) == {"events[0].volume_id", "events[0].gigabytes"}
    with pytest.raises(InvalidInput) as err:
        parse(base(type="STORAGE_SAMPLE", storage_kind="CONTAINER_DISK", gigabytes="-1"))
    assert fields(err) == {"events[0].gigabytes"}


def test_type_specific_fields_are_required_and_confined() -> None:
    with pytest.raises(InvalidInput) as err:
        parse(base(type="REQUEST_STARTED"))
    assert fields(err) == {"events[0].request_id"}
    with pytest.raises(InvalidInput) as err:
        parse(base(type="WORKLOAD_STOPPED"))
    assert fields(err) == {"events[0].stop_reason"}
    with pytest.raises(InvalidInput) as err:
        parse(base(request_id="r-1", gigabytes="3"))
    assert fields(err) == {"events[0].request_id", "events[0].gigabytes"}


@pytest.mark.parametrize("bad", ["a b", "x" * 129, "'; DROP TABLE entries; --", "\u0000", "-leading-dash", "ü"])
def test_identifiers_are_restricted_to_a_documented_character_set(bad: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse(base(endpoint_id=bad))
    assert fields(err) == {"events[0].endpoint_id"}


def test_unknown_fields_are_refused_rather_than_silently_dropped() -> None:
    with pytest.raises(InvalidInput) as err:
        parse(base(occured_at="2026-10-05T09:00:00Z"))
    assert fields(err) == {"events[0].occured_at"}


_IDENTIFIERS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,20}", fullmatch=True)
_OPTIONAL_TEXT = st.one_of(st.none(), st.just(""), _IDENTIFIERS)


@st.composite
def _well_formed_events(draw: st.DrawFn) -> dict[str, Any]:
    # A HEARTBEAT (org-level, R28) never takes the fast path: its own test is above.
    event_type = draw(st.sampled_from([t for t in EventType if t is not EventType.HEARTBEAT]))
    raw: dict[str, Any] = {
        "event_id": draw(_IDENTIFIERS),
        "org_id": draw(_IDENTIFIERS),
        "endpoint_id": draw(_IDENTIFIERS),
        "workload_id": draw(_IDENTIFIERS),
        "workload_kind": draw(st.sampled_from(["SERVING", "BUILD", "TRAINING"])),
        "instance_type": draw(st.sampled_from(sorted(BOOK.rates))),
        "type": event_type.value,
        "occurred_at": draw(
            st.one_of(
                st.integers(parse_rfc3339_micros("2000-01-01T00:00:00Z"), NOW),
                st.integers(parse_rfc3339_micros("2000-01-01T00:00:00Z"), NOW).map(format_micros),
            )
        ),
    }
    for name, values in (
        ("workspace_id", _OPTIONAL_TEXT),
        ("development", st.sampled_from([True, False, None])),
        ("worker_type", st.sampled_from([None, "", "FLEX", "ACTIVE"])),
    ):
        value = draw(values)
        if value is not None or draw(st.booleans()):
            raw[name] = value
    if event_type in (EventType.REQUEST_STARTED, EventType.REQUEST_FINISHED):
        raw["request_id"] = draw(_IDENTIFIERS)
    if event_type is EventType.WORKLOAD_STOPPED:
        raw["stop_reason"] = draw(st.sampled_from(["SCALED_DOWN", "OOM", "CRASH", "COMPLETED", "BUILD_FAILED"]))
    if event_type is EventType.STORAGE_SAMPLE:
        raw["storage_kind"] = draw(st.sampled_from(["CONTAINER_DISK", "NETWORK_VOLUME"]))
        raw["volume_id"] = draw(_IDENTIFIERS if raw["storage_kind"] == "NETWORK_VOLUME" else _OPTIONAL_TEXT)
        raw["gigabytes"] = draw(
            st.one_of(
                st.integers(0, 10**9),
                # Plain notation: the one decimal grammar (docs/events.md) has no exponent and no sign.
                st.decimals(0, 10**9, places=draw(st.integers(0, 9)), allow_nan=False).map(lambda d: f"{abs(d):f}"),
            )
        )
        if draw(st.booleans()):
            raw["interval_seconds"] = draw(st.integers(1, 31 * 24 * 3600))
    return raw


@settings(max_examples=400, deadline=None)
@given(_well_formed_events())
def test_the_ingest_fast_path_builds_the_canonical_body_byte_for_byte(raw: dict[str, Any]) -> None:
    """well_formed_fields + canonical_event_body (ingest) == parse_event + canonical_body (the reference)."""
    event = parse(raw)
    fields = well_formed_fields(raw, NOW, lambda t: t in BOOK.rates)
    assert fields is not None
    assert UsageEvent(*fields) == event
    assert canonical_event_body(fields) == canonical_body(event.body())


def test_the_ingest_fast_path_leaves_anything_unusual_to_the_full_checks() -> None:
    class Text(str):
        pass

    for raw in (base(event_id=Text("e-1")), base(extra=1), base(type="REQUEST_STARTED"), base(event_id="e\n")):
        assert well_formed_fields(raw, NOW, lambda t: t in BOOK.rates) is None


def test_r28_a_heartbeat_is_org_level_and_its_body_holds_only_org_fields() -> None:
    event = parse({"event_id": "hb-1", "org_id": "acme", "type": "HEARTBEAT", "occurred_at": "2026-10-05T09:00:00Z"})
    assert event.is_heartbeat and event.workload_id == ""
    assert event.body() == {
        "event_id": "hb-1",
        "org_id": "acme",
        "type": "HEARTBEAT",
        "occurred_at": "2026-10-05T09:00:00.000000Z",
    }
    from ledger.events import event_from_body

    assert event_from_body(event.body()) == event


def test_r28_a_heartbeat_naming_workload_fields_is_refused_field_by_field() -> None:
    with pytest.raises(InvalidInput) as err:
        parse(base(type="HEARTBEAT", event_id="hb-1", gigabytes="5"))
    assert fields(err) == {
        "events[0].endpoint_id",
        "events[0].workload_id",
        "events[0].workload_kind",
        "events[0].instance_type",
        "events[0].gigabytes",
    }
    assert all("R28" in v.description for v in err.value.violations)
