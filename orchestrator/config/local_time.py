"""Wall-clock times in a named zone: which instant a local date and time of day means.

Schedule windows are written as local times ("02:30" in America/Chicago), and twice a year
in most zones with daylight saving some of them are not one instant. A local time that does
not exist (the clocks jump over it: 02:30 on a US spring-forward night) is *skipped*; one
that happens twice (the clocks go back over it: 01:30 on a US fall-back night) is
*repeated*. The rule, the same everywhere a window edge is turned into an instant:

- a skipped time means the first instant after the gap, the moment the clocks jump (02:30
  on 2024-03-10 in America/Chicago is 03:00 CDT), so a window is open exactly while the
  local clock reads between its start and its end;
- a repeated time means its first occurrence (01:30 on 2024-11-03 in America/Chicago is
  01:30 CDT, not the 01:30 CST an hour later).

Pure and deterministic: a zone database lookup, no clock read. The config layer uses it to
warn about edges in such an hour (`orchestrator.config.policy.window_clock_notices`); the
planner's `ScheduleWindow` (orchestrator.policy.model) to place its edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60

LocalTimeKind = Literal["exists", "skipped", "repeated"]


@dataclass(frozen=True, slots=True)
class LocalInstant:
    """A local date and time of day resolved to one instant (`instant_s`, Unix seconds).

    `kind` says whether the local time exists once, is skipped or is repeated; for the two
    last, `jump_from` and `jump_to` are the local clock readings either side of the change
    ("02:00" -> "03:00" springing forward, "02:00" -> "01:00" falling back).
    """

    instant_s: float
    kind: LocalTimeKind
    jump_from: str = ""
    jump_to: str = ""


def _transition_s(low_s: int, high_s: int, zone: ZoneInfo) -> int:
    """The first whole second in (low_s, high_s] whose UTC offset differs from low_s's."""
    before = datetime.fromtimestamp(low_s, zone).utcoffset()
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == before:
            low_s = middle
        else:
            high_s = middle
    return high_s


def _jump(transition_s: int, zone: ZoneInfo) -> tuple[str, str]:
    before = datetime.fromtimestamp(transition_s - 1, zone).utcoffset() or timedelta()
    after = datetime.fromtimestamp(transition_s, zone).utcoffset() or timedelta()
    moment = datetime.fromtimestamp(transition_s, UTC).replace(tzinfo=None)
    return (moment + before).strftime("%H:%M"), (moment + after).strftime("%H:%M")


def resolve_local(day: date, minute: int, zone: ZoneInfo) -> LocalInstant:
    """The instant of `minute` past local midnight of `day` in `zone` (the rule above).

    `minute` may reach past the day (1440 is the next midnight).
    """
    day, minute = day + timedelta(days=minute // MINUTES_PER_DAY), minute % MINUTES_PER_DAY
    hours, minutes = divmod(minute, 60)
    wall = datetime(day.year, day.month, day.day, hours, minutes)  # noqa: DTZ001  (naive on purpose)
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return LocalInstant(first.timestamp(), "exists")
    earlier_s, later_s = sorted((first.timestamp(), second.timestamp()))
    transition_s = _transition_s(int(earlier_s), int(later_s), zone)
    if datetime.fromtimestamp(first.timestamp(), zone).replace(tzinfo=None) == wall:
        # both readings exist: the clocks went back over this time; fold=0 is the first
        return LocalInstant(first.timestamp(), "repeated", *_jump(transition_s, zone))
    # no reading exists: the clocks jumped over it; the edge moves to the jump itself
    return LocalInstant(float(transition_s), "skipped", *_jump(transition_s, zone))
