"""R11's admission check reads the price history it last read instead of the system log on every append (#26).

That is safe only because adding a price-book version never takes a rate away from any instant (R12: each version
is stored whole, the rates in force at its effective_from plus the update). These tests hold the ledger to that,
and to seeing a price book another server appended without a restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from ledger.intake import Ledger
from ledger.log.entry import SYSTEM_LOG
from ledger.ports import LogHead
from ledger.timeutil import format_micros, parse_rfc3339_micros
from storage.memory import MemoryStore
from storage.sql import SqlStore
from tests.conftest import EventFactory, FixedClock

RATE = {"flex_per_second": "0.0002", "active_per_second": "0.0001"}


class CountingStore(MemoryStore):
    """The memory store, counting reads of the system log's head (what each append used to cost)."""

    def __init__(self, clock: FixedClock) -> None:
        super().__init__(clock=clock)
        self.system_head_reads = 0

    def head(self, log_id: str) -> LogHead:
        if log_id == SYSTEM_LOG:
            self.system_head_reads += 1
        return super().head(log_id)


@pytest.fixture
def two_servers(tmp_path: Path, clock: FixedClock) -> Iterator[tuple[Ledger, Ledger]]:
    """Two ledgers on one SQLite file, as two server processes on one database."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    first, second = SqlStore(url, clock=clock), SqlStore(url, clock=clock)
    yield Ledger(first, clock=clock), Ledger(second, clock=clock)
    first.close()
    second.close()


def test_r11_an_accepted_append_reads_no_system_log_once_prices_are_known(
    clock: FixedClock, make_event: EventFactory
) -> None:
    store = CountingStore(clock)
    ledger = Ledger(store, clock=clock)
    ledger.append_events([make_event()])  # the first append reads the price history
    before = store.system_head_reads
    for _ in range(5):
        ledger.append_events([make_event()])
    assert store.system_head_reads == before


def test_r11_r12_a_type_another_server_priced_is_accepted_without_a_restart(
    two_servers: tuple[Ledger, Ledger], make_event: EventFactory
) -> None:
    serving, pricing = two_servers
    serving.append_events([make_event()])  # this server has read the price history: A100 and the default GPUs
    pricing.set_price_book({"effective_from": "2026-10-01T00:00:00Z", "rates": {"CPU-8": RATE}})
    [appended] = serving.append_events([make_event(instance_type="CPU-8")])
    assert not appended.duplicate and appended.sequence == 1  # the org log's second entry


def test_r11_a_type_no_version_prices_is_still_refused_on_a_fresh_read(
    two_servers: tuple[Ledger, Ledger], make_event: EventFactory
) -> None:
    serving, pricing = two_servers
    serving.append_events([make_event()])
    pricing.set_price_book({"effective_from": "2026-10-06T00:00:00Z", "rates": {"CPU-8": RATE}})
    # Priced only from 2026-10-06: an event of 2026-10-05 is refused, naming the version and when its rate starts.
    with pytest.raises(InvalidInput) as refused:
        serving.append_events([make_event(instance_type="CPU-8")])
    [violation] = refused.value.violations
    assert violation.field == "events[0].instance_type"
    assert "R11" in violation.description and "2026-10-06T00:00:00" in violation.description
    with pytest.raises(InvalidInput):
        serving.append_events([make_event(instance_type="TPU-1")])


INSTANTS = [parse_rfc3339_micros(f"2026-10-{day:02d}T00:00:00Z") for day in range(1, 8)]
TYPES = ["A100", "CPU-8", "CPU-16", "TPU-1"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(INSTANTS), st.sets(st.sampled_from(TYPES), min_size=1)),
        min_size=1,
        max_size=6,
    )
)
def test_r12_adding_a_price_version_never_takes_a_rate_away_from_any_instant(
    updates: list[tuple[int, set[str]]],
) -> None:
    """What the cached admission check relies on: whatever was priced at an instant stays priced there."""
    clock = FixedClock(INSTANTS[0])
    ledger = Ledger(MemoryStore(clock=clock), clock=clock)
    probes = [instant + offset for instant in INSTANTS for offset in (-1, 0, 3_600_000_000)]

    def priced() -> set[tuple[str, int]]:
        prices = ledger.price_history()
        return {(name, t) for name in TYPES for t in probes if prices.prices_at(name, t)}

    seen = priced()
    for effective_from, names in updates:
        ledger.set_price_book({"effective_from": format_micros(effective_from), "rates": dict.fromkeys(names, RATE)})
        now = priced()
        assert seen <= now
        seen = now
