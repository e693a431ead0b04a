"""Schedule windows on the nights the clocks change: each edge is where the local clock reads
it; a skipped edge opens at the first instant after the gap, a repeated one at its first
occurrence; the planner's `open_or_opening`, its next edge and the SLA ledger agree."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from orchestrator.config.local_time import resolve_local
from orchestrator.policy.model import AiPower, Eligibility, ReservedContract, ScheduleWindow
from orchestrator.policy.sla_ledger import SlaLedger

CHICAGO = ZoneInfo("America/Chicago")
SUNDAY, SATURDAY = 6, 5
SPRING = date(2024, 3, 10)  # US clocks jump 02:00 CST -> 03:00 CDT (08:00 UTC)
FALL = date(2024, 11, 3)  # US clocks go back 02:00 CDT -> 01:00 CST (07:00 UTC)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def window(start: str, end: str, *, days: int = SUNDAY) -> ScheduleWindow:
    def minute(text: str) -> int:
        hours, minutes = text.split(":")
        return int(hours) * 60 + int(minutes)

    return ScheduleWindow(frozenset({days}), minute(start), minute(end) % 1440, "America/Chicago")


def contract(windows: tuple[ScheduleWindow, ...], *, lead_time_s: float = 0.0) -> ReservedContract:
    return ReservedContract(
        id="night",
        rate_usd_per_gpu_hour=2.0,
        committed_gpus=2,
        eligibility=Eligibility(),
        windows=windows,
        availability_target_fraction=1.0,
        penalty_usd_per_gpu_hour=5.0,
        lead_time_s=lead_time_s,
        switch_downtime_s=0.0,
        power=AiPower(),
    )


def test_a_skipped_time_means_the_first_instant_after_the_gap() -> None:
    assert resolve_local(SPRING, 150, CHICAGO).instant_s == utc("2024-03-10T08:00:00")
    assert resolve_local(SPRING, 150, CHICAGO).kind == "skipped"
    assert resolve_local(SPRING, 120, CHICAGO).instant_s == utc("2024-03-10T08:00:00")
    assert resolve_local(SPRING, 180, CHICAGO).kind == "exists"


def test_a_repeated_time_means_its_first_occurrence() -> None:
    moment = resolve_local(FALL, 90, CHICAGO)
    assert (moment.instant_s, moment.kind) == (utc("2024-11-03T06:30:00"), "repeated")
    assert (moment.jump_from, moment.jump_to) == ("02:00", "01:00")


def test_a_window_starting_at_0230_on_the_spring_forward_night_opens_at_0300_cdt() -> None:
    """(The code before used fold=0 and opened at 03:30 CDT, the time shifted by the gap.)"""
    slot = window("02:30", "06:00")
    assert slot.bounds_s(SPRING) == (utc("2024-03-10T08:00:00"), utc("2024-03-10T11:00:00"))
    assert not slot.open_or_opening(utc("2024-03-10T07:59:59"), 0.0)
    assert slot.open_or_opening(utc("2024-03-10T08:00:00"), 0.0)
    assert slot.open_or_opening(utc("2024-03-10T08:15:00"), 0.0)  # 03:15 CDT
    # ten minutes' lead time counts back from the real opening, across the jump
    assert slot.open_or_opening(utc("2024-03-10T07:50:00"), 600.0)
    assert not slot.open_or_opening(utc("2024-03-10T07:49:59"), 600.0)


def test_a_window_across_the_jump_lasts_one_real_hour_and_closes_at_0300_cdt() -> None:
    """01:00-03:00 on the spring-forward night: one hour (it used to close at 04:00 CDT)."""
    slot = window("01:00", "03:00")
    assert slot.bounds_s(SPRING) == (utc("2024-03-10T07:00:00"), utc("2024-03-10T08:00:00"))
    assert slot.open_or_opening(utc("2024-03-10T07:59:59"), 0.0)
    assert not slot.open_or_opening(utc("2024-03-10T08:00:00"), 0.0)
    assert slot.duration_s == 7200.0  # the nominal length is still by the clock
    ordinary = slot.bounds_s(date(2024, 3, 17))
    assert ordinary is not None
    assert ordinary[1] - ordinary[0] == 7200.0


def test_a_window_inside_the_gap_does_not_open_that_day() -> None:
    slot = window("02:15", "02:45")
    assert slot.bounds_s(SPRING) is None
    night = utc("2024-03-10T06:00:00")
    assert not any(slot.open_or_opening(night + 60.0 * m, 0.0) for m in range(240))
    # the next edge is a week later, not inside the gap
    assert slot.next_edge_s(night, 0.0, 8 * 86_400) == utc("2024-03-17T07:15:00")


def test_a_window_ending_in_the_repeated_hour_closes_at_its_first_occurrence() -> None:
    """00:00-01:30 on the fall-back night: closes at 01:30 CDT and stays closed through the
    second 01:00-01:30 (CST)."""
    slot = window("00:00", "01:30")
    assert slot.bounds_s(FALL) == (utc("2024-11-03T05:00:00"), utc("2024-11-03T06:30:00"))
    assert slot.open_or_opening(utc("2024-11-03T06:29:59"), 0.0)
    assert not slot.open_or_opening(utc("2024-11-03T06:30:00"), 0.0)
    assert not slot.open_or_opening(utc("2024-11-03T07:15:00"), 0.0)  # 01:15 CST


def test_a_window_across_the_fall_back_ends_where_the_clock_reads_its_end() -> None:
    """00:00-03:00 lasts four real hours; 01:30-02:30 starts at the first 01:30 and runs
    two (both used to close an hour early, at 02:00 CST and at the second 01:30)."""
    across = window("00:00", "03:00")
    assert across.bounds_s(FALL) == (utc("2024-11-03T05:00:00"), utc("2024-11-03T09:00:00"))
    assert across.open_or_opening(utc("2024-11-03T08:30:00"), 0.0)  # 02:30 CST
    repeated_start = window("01:30", "02:30")
    assert repeated_start.bounds_s(FALL) == (
        utc("2024-11-03T06:30:00"),
        utc("2024-11-03T08:30:00"),
    )
    assert repeated_start.open_or_opening(utc("2024-11-03T08:00:00"), 0.0)  # 02:00 CST


def test_a_window_past_midnight_into_the_jump_ends_by_the_clock() -> None:
    """Saturday 22:00 to Sunday 02:30: 02:30 is skipped, so it closes at 03:00 CDT."""
    slot = window("22:00", "02:30", days=SATURDAY)
    assert slot.bounds_s(date(2024, 3, 9)) == (
        utc("2024-03-10T04:00:00"),
        utc("2024-03-10T08:00:00"),
    )
    assert slot.next_edge_s(utc("2024-03-10T05:00:00"), 0.0, 86_400) == utc("2024-03-10T08:00:00")


# windows with no edge in the repeated hour: open exactly while the local clock reads
# between start and end, minute by minute across both nights
BY_THE_CLOCK = [
    ("01:00", "03:00"),
    ("00:00", "04:00"),
    ("02:15", "02:45"),
    ("02:30", "06:00"),
    ("03:00", "05:00"),
    ("23:00", "02:30"),
    ("22:00", "00:30"),
    ("00:30", "02:00"),
    ("02:00", "03:00"),
]


@pytest.mark.parametrize(("start", "end"), BY_THE_CLOCK)
@pytest.mark.parametrize("night", [SPRING, FALL])
def test_a_window_is_open_exactly_while_the_clock_reads_inside_it(
    start: str, end: str, night: date
) -> None:
    slot = window(start, end, days=SUNDAY)
    eve = window(start, end, days=SATURDAY)  # the one starting the evening before
    first_s = datetime(night.year, night.month, night.day, tzinfo=CHICAGO).timestamp() - 4 * 3600
    for minute in range(12 * 60):
        now_s = first_s + 60.0 * minute
        local = datetime.fromtimestamp(now_s, CHICAGO)
        clock = local.hour * 60 + local.minute
        in_range = (
            slot.start_minute <= clock < slot.end_minute
            if slot.start_minute < slot.end_minute
            else clock >= slot.start_minute or clock < slot.end_minute
        )
        wrapping = slot.end_minute <= slot.start_minute
        expected = in_range and (
            (local.weekday() == SUNDAY and (not wrapping or clock >= slot.start_minute))
            or (local.weekday() == SATURDAY and wrapping and clock >= slot.start_minute)
            or (local.weekday() == SUNDAY and wrapping and clock < slot.end_minute)
        )
        opened = slot.open_or_opening(now_s, 0.0) or eve.open_or_opening(now_s, 0.0)
        assert opened == expected, (start, end, local.isoformat())


def test_the_sla_ledger_owes_the_real_hour_of_a_window_across_the_jump() -> None:
    """Two GPUs committed 01:00-03:00 on the spring-forward night: 2 GPU-hours owed, as the
    planner's `active` says (it used to owe 4)."""
    reserved = contract((window("01:00", "03:00"),))
    ledger = SlaLedger((reserved,), period="day", max_gap_s=120.0)
    start_s = utc("2024-03-10T06:00:00")
    active_minutes = 0
    for minute in range(4 * 60 + 1):
        now_s = start_s + 60.0 * minute
        ledger.accrue(now_s, {"night": 2})
        active_minutes += reserved.active(now_s)
    (entry,) = ledger.current(start_s)
    assert entry.committed_gpu_hours == pytest.approx(2.0)
    assert entry.delivered_gpu_hours == pytest.approx(2.0)
    assert active_minutes == 60


def test_the_planner_learns_the_real_edges_as_the_next_change() -> None:
    reserved = contract((window("01:00", "03:00"),), lead_time_s=600.0)
    before_s = utc("2024-03-10T06:00:00")
    assert reserved.next_change_s(before_s, 86_400) == utc("2024-03-10T06:50:00")
    assert reserved.next_change_s(utc("2024-03-10T07:00:00"), 86_400) == utc("2024-03-10T08:00:00")
