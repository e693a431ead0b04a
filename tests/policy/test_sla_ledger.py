"""The SLA ledger: hand-computed GPU-hours, windows, gaps and billing periods."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from orchestrator.policy.model import AiPower, Eligibility, ReservedContract, ScheduleWindow
from orchestrator.policy.sla_ledger import SlaLedger, period_start


def contract(*, windows: tuple[ScheduleWindow, ...] | None = None) -> ReservedContract:
    return ReservedContract(
        id="acme",
        rate_usd_per_gpu_hour=1.5,
        committed_gpus=4,
        eligibility=Eligibility(),
        windows=windows,
        availability_target_fraction=0.99,
        penalty_usd_per_gpu_hour=6.0,
        lead_time_s=3600.0,
        switch_downtime_s=120.0,
        power=AiPower(),
    )


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_an_hour_with_three_of_four_gpus_serving_owes_what_falls_below_the_target() -> None:
    """4 GPU-hours committed at a 99 % target: 3.96 meet the SLA, 3 were delivered, so
    0.96 GPU-hours are short and cost $6 each."""
    ledger = SlaLedger((contract(),), max_gap_s=120.0)
    start = at("2026-03-10T12:00:00")
    for minute in range(61):
        ledger.accrue(start + minute * 60.0, {"acme": 3})
    (entry,) = ledger.current(start + 3600.0)
    assert entry.committed_gpu_hours == pytest.approx(4.0)
    assert entry.delivered_gpu_hours == pytest.approx(3.0)
    assert entry.target_gpu_hours == pytest.approx(3.96)
    assert entry.shortfall_gpu_hours == pytest.approx(0.96)
    assert entry.penalty_usd == pytest.approx(0.96 * 6.0)
    assert entry.availability_fraction == pytest.approx(0.75)
    assert entry.below_target
    assert entry.to_json()["penalty_usd"] == pytest.approx(5.76)


def test_availability_at_the_target_is_met_and_costs_no_penalty() -> None:
    """At a 75 % target, three of four GPUs for an hour meet the SLA: no shortfall, no
    penalty, not below target."""
    ledger = SlaLedger((replace(contract(), availability_target_fraction=0.75),))
    start = at("2026-03-10T12:00:00")
    for minute in range(61):
        ledger.accrue(start + minute * 60.0, {"acme": 3})
    (entry,) = ledger.current(start + 3600.0)
    assert entry.availability_fraction == pytest.approx(0.75)
    assert entry.shortfall_gpu_hours == pytest.approx(0.0, abs=1e-9)
    assert entry.penalty_usd == pytest.approx(0.0, abs=1e-9)
    assert not entry.below_target


def test_extra_gpus_are_not_credited_beyond_the_commitment() -> None:
    ledger = SlaLedger((contract(),))
    start = at("2026-03-10T12:00:00")
    ledger.accrue(start, {"acme": 9})
    ledger.accrue(start + 60.0, {"acme": 9})
    (entry,) = ledger.current(start + 60.0)
    assert entry.delivered_gpu_hours == pytest.approx(entry.committed_gpu_hours)
    assert not entry.below_target


def test_nothing_is_owed_outside_the_window_even_within_the_lead_time() -> None:
    # Tuesdays 13:00-14:00 UTC; 2026-03-10 is a Tuesday
    window = ScheduleWindow(days=frozenset({1}), start_minute=13 * 60, end_minute=14 * 60)
    ledger = SlaLedger((contract(windows=(window,)),))
    start = at("2026-03-10T12:30:00")
    for minute in range(121):
        ledger.accrue(start + minute * 60.0, {})
    (entry,) = ledger.current(start + 7200.0)
    assert entry.committed_gpu_hours == pytest.approx(4.0, rel=0.02)
    assert entry.delivered_gpu_hours == 0.0


def test_a_gap_while_the_daemon_was_down_is_not_guessed() -> None:
    ledger = SlaLedger((contract(),), max_gap_s=120.0)
    start = at("2026-03-10T12:00:00")
    ledger.accrue(start, {"acme": 4})
    ledger.accrue(start + 3600.0, {"acme": 4})
    (entry,) = ledger.current(start + 3600.0)
    assert entry.committed_gpu_hours == 0.0


def test_each_billing_period_has_its_own_entry() -> None:
    assert period_start(at("2026-03-31T23:59:00"), "month") == datetime(2026, 3, 1, tzinfo=UTC)
    assert period_start(at("2026-03-12T08:00:00"), "week") == datetime(2026, 3, 9, tzinfo=UTC)
    ledger = SlaLedger((contract(),), period="day")
    ledger.accrue(at("2026-03-10T23:59:00"), {"acme": 4})
    ledger.accrue(at("2026-03-11T00:00:30"), {"acme": 4})
    assert len(ledger.entries) == 1
    (entry,) = ledger.current(at("2026-03-11T00:00:30"))
    assert entry.period_start_s == at("2026-03-11T00:00:00")
    assert entry.committed_gpu_hours == pytest.approx(4 * 90 / 3600)
