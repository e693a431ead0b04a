"""Config sections for the policy: mining profiles, AI contracts and planner settings.

A site describes what its GPUs can do (mining profiles with a benchmark table per GPU
model), what it has sold (reserved contracts with schedule windows and SLA penalties,
on-demand contracts with a ceiling) and how eagerly the planner may move GPUs (horizon,
hysteresis, minimum dwell, power cap). Each section rejects unknown keys and is frozen.

Two kinds of mistake are told apart. A value that is wrong on its own (a negative rate, an
unknown time zone, "25:00") fails validation naming the key. A set of contracts that is
valid key by key but can never be met (more committed GPUs than eligible ones, duplicate
ids, empty windows) is reported by `contract_problems`, which `orchestrator config check`
and the running daemon both call, so nothing is silently half-served. A window whose start
or end the clocks skip or repeat (a daylight-saving change in its zone) is valid, with a
rule (`orchestrator.config.local_time`), but is worth a word: `window_clock_notices` names
it with the next date, and `config check` and serve at start print it as a warning.

The planner's pure values are built from these sections by
`orchestrator.policy.model.policy_from_config` (the config layer sits below the policy layer).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from orchestrator.config._base import Section
from orchestrator.config.local_time import LocalInstant, resolve_local
from orchestrator.config.power import PowerSection

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^(\d{2}):(\d{2})$")
_ID = r"^[A-Za-z0-9_.-]+$"
GIB = 1024**3


def clock_minutes(text: str) -> int:
    """Minutes since midnight of "HH:MM" ("24:00" allowed as an end time)."""
    match = _CLOCK.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not HH:MM")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes >= 60 or hours > 24 or (hours == 24 and minutes != 0):
        raise ValueError(f"{text!r} is not a time of day")
    return hours * 60 + minutes


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error
    return name


class BenchmarkSection(Section):
    """A GPU model on one mining profile, as benchmarked."""

    hashrate_hs: float = Field(gt=0)
    power_w: float = Field(ge=0)


class MiningProfileSection(Section):
    id: str = Field(pattern=_ID)
    algorithm: str = Field(min_length=1)
    pool_fee_fraction: float = Field(default=0.01, ge=0, lt=1)
    # the miner's own fee (its share of mining time, e.g. 0.01 for 1 %), taken like the
    # pool's: enter the fee your miner publishes for this algorithm; 0 until you do
    dev_fee_fraction: float = Field(default=0.0, ge=0, lt=1)
    switch_downtime_s: float = Field(default=30.0, ge=0)
    benchmarks: dict[str, BenchmarkSection] = Field(default_factory=dict)  # by GPU model
    # hashrate readings this soon after the miner started are ramp-up, not measurements
    # (DAG build, the miner's own averaging window): they are ignored
    hashrate_warmup_s: float = Field(default=120.0, ge=0, le=86_400)
    # measured hashrate replaces the benchmark gradually: after n readings past the warm-up
    # the planner uses n / this of the measurement and the rest of the benchmark
    hashrate_trust_samples: int = Field(default=10, ge=1, le=10_000)
    # accepted / (accepted + rejected) shares is applied once this many shares are counted
    min_shares: int = Field(default=20, ge=1, le=1_000_000)


class ScheduleWindowSection(Section):
    """A weekly window; `end` before `start` runs past midnight.

    Open while the local clock in `timezone` reads from `start` to `end`, also on a day the
    clocks change (01:00-03:00 on a spring-forward night is one real hour). An edge the
    clocks skip (02:30 on a US spring-forward night) moves to the first instant after the
    gap (03:00); one they pass twice (01:30 on a US fall-back night) is the first
    occurrence. `config check` and serve at start warn about such windows, with the date.
    """

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]]
    # local "HH:MM" in `timezone`; a time the clocks skip means the first instant after the
    # gap, one they repeat its first occurrence (config check warns, with the next date)
    start: str
    # as `start`; at or before `start`: the next day
    end: str
    timezone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        clock_minutes(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_timezone(value)


class ServingSection(Section):
    """What every AI contract has: eligibility, model-load downtime, power."""

    id: str = Field(pattern=_ID)
    rate_usd_per_gpu_hour: float = Field(ge=0)
    eligible_models: list[str] = Field(default_factory=list)  # empty: any model
    min_memory_gib: float | None = Field(default=None, ge=0)
    switch_downtime_s: float = Field(default=300.0, ge=0)
    # board power while serving, by GPU model, else the default: priors that the fleet's
    # measurements replace (`[power]`)
    power_w: dict[str, float] = Field(default_factory=dict)
    # unset: 300 W, but never more than the GPU's power limit as NVML reports it
    default_power_w: float = Field(default=300.0, ge=0)


class ReservedContractSection(ServingSection):
    committed_gpus: int = Field(ge=1)
    schedule: Literal["always"] | list[ScheduleWindowSection] = "always"
    # the SLA is met at committed_gpus x this (rounded up to whole GPUs when planning);
    # the customer still pays for up to committed_gpus, and the penalty is charged only on
    # GPU-hours below committed x target (planner, SLA ledger and backtest alike)
    availability_target_fraction: float = Field(default=0.99, gt=0, le=1)
    # per GPU-hour delivered below committed_gpus x availability_target_fraction
    penalty_usd_per_gpu_hour: float = Field(default=0.0, ge=0)
    lead_time_s: float = Field(default=600.0, ge=0)


class OnDemandContractSection(ServingSection):
    expected_utilisation_fraction: float = Field(default=1.0, ge=0, le=1)
    max_gpus: int | None = Field(default=None, ge=0)


class ContractsSection(Section):
    reserved: list[ReservedContractSection] = Field(default_factory=list)
    on_demand: list[OnDemandContractSection] = Field(default_factory=list)


class PlannerSection(Section):
    interval_s: float = Field(default=60.0, gt=0)
    horizon_s: float = Field(default=3600.0, gt=0)
    hysteresis_margin_usd_per_gpu_hour: float = Field(default=0.02, ge=0)
    hysteresis_margin_fraction: float = Field(default=0.0, ge=0, le=1)
    # "gpu": the $/GPU-hour margin is charged on every GPU that moves; "fleet": on the net
    # change of the fleet's mix (GPUs that join a workload no other GPU leaves), so swapping
    # which GPUs do what is judged on switching costs alone (more switches, see
    # docs/backtest.md)
    hysteresis_scope: Literal["gpu", "fleet"] = "gpu"
    # the margin is a rate over horizon_s; when no reserved window opens or closes for
    # longer than that (a Friday evening: the whole weekend), spread it over that time,
    # so a change that will hold that long needs a smaller gain per hour
    hysteresis_until_next_window: bool = False
    min_dwell_s: float = Field(default=600.0, ge=0)
    switch_fixed_cost_usd: float = Field(default=0.0, ge=0)
    site_power_cap_kw: float | None = Field(default=None, gt=0)
    allow_sla_shortfall: bool = False
    price_move_replan_fraction: float = Field(default=0.05, gt=0)
    # board power of an idle GPU, a prior the fleet's measurements replace; unset: 12 % of
    # the GPU's power limit as NVML reports it (an H200: 84 W; measured idle 78-126 W),
    # else 50 W
    idle_power_w: float | None = Field(default=None, ge=0)
    display_timezone: str = "UTC"
    # a plan still searching for a proven optimum after this long takes the best feasible
    # plan found and says so (a binding site power cap can make the search long)
    solver_time_limit_s: float = Field(default=5.0, gt=0, le=600)
    # demand response: while the power price is at or above this (US$/kWh), the site sheds
    # every mining and on-demand AI GPU to idle and keeps only active reserved contracts
    # (overridden GPUs stay as the operator set them); unset: never
    curtail_price_strike_usd_per_kwh: float | None = Field(
        default=None, ge=0, le=1000, allow_inf_nan=False
    )

    @field_validator("display_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_timezone(value)


class PolicySection(Section):
    """Everything the planner needs from config."""

    mining_profiles: list[MiningProfileSection] = Field(default_factory=list)
    contracts: ContractsSection = Field(default_factory=ContractsSection)
    planner: PlannerSection = Field(default_factory=PlannerSection)
    power: PowerSection = Field(default_factory=PowerSection)

    @model_validator(mode="after")
    def _unique_profiles(self) -> PolicySection:
        check_unique_profile_ids(self.mining_profiles)
        return self


def check_unique_profile_ids(profiles: list[MiningProfileSection]) -> None:
    """Raise ValueError naming a mining profile id that appears twice."""
    seen: set[str] = set()
    for profile in profiles:
        if profile.id in seen:
            raise ValueError(f"mining profile id {profile.id!r} appears twice")
        seen.add(profile.id)


def _eligible_count(contract: ServingSection, fleet_models: dict[str, int]) -> int | None:
    """GPUs of the fleet that may serve `contract`; None when memory decides (unknown here)."""
    if contract.eligible_models:
        return sum(fleet_models.get(model, 0) for model in set(contract.eligible_models))
    if contract.min_memory_gib:
        return None
    return sum(fleet_models.values())


def _window_problems(reserved: ReservedContractSection) -> list[str]:
    name = f"reserved contract {reserved.id!r}"
    if not isinstance(reserved.schedule, list):
        return []
    problems = []
    if not reserved.schedule:
        problems.append(f"{name}: schedule has no windows, so it is never active")
    for number, window in enumerate(reserved.schedule, start=1):
        if not window.days:
            problems.append(f"{name}: window {number} has no days")
        if clock_minutes(window.start) % 1440 == clock_minutes(window.end) % 1440:
            problems.append(f"{name}: window {number} starts and ends at {window.start}")
    return problems


def _capacity_problems(
    reserved: ReservedContractSection, fleet_models: dict[str, int]
) -> list[str]:
    name = f"reserved contract {reserved.id!r}"
    problems = []
    eligible = _eligible_count(reserved, fleet_models)
    total = sum(fleet_models.values())
    if eligible is not None and reserved.committed_gpus > eligible:
        problems.append(
            f"{name} commits {reserved.committed_gpus} GPUs but the fleet has only "
            f"{eligible} eligible"
        )
    elif reserved.committed_gpus > total:
        problems.append(
            f"{name} commits {reserved.committed_gpus} GPUs but the fleet has only {total}"
        )
    missing = sorted(set(reserved.eligible_models) - set(fleet_models))
    if missing:
        problems.append(f"{name}: no GPU of model {', '.join(missing)} in the fleet")
    return problems


# how far ahead `window_clock_notices` looks for a skipped or repeated edge: a year and a week
CLOCK_CHANGE_LOOKAHEAD_DAYS = 373


def _edge_notice(
    window: str, edge: str, clock: str, *, moment: LocalInstant, zone: ZoneInfo
) -> str:
    """One warning line; `edge` is "start" or "end", `clock` the configured "HH:MM"."""
    when = datetime.fromtimestamp(moment.instant_s, zone)
    day = when.strftime("%a %Y-%m-%d")
    at = when.strftime("%H:%M %Z")
    verb = "opens" if edge == "start" else "closes"
    edge = "starts" if edge == "start" else "ends"
    if moment.kind == "skipped":
        return (
            f"{window} {edge} at {clock}, which does not exist in {zone.key} "
            f"on {day} (clocks jump from {moment.jump_from} to {moment.jump_to}): "
            f"that day it {verb} at {at}, the first instant after the gap"
        )
    return (
        f"{window} {edge} at {clock}, which happens twice in {zone.key} "
        f"on {day} (clocks go back from {moment.jump_from} to {moment.jump_to}): "
        f"that day it {verb} at the first of the two, {at}"
    )


def _window_clock_notices(
    name: str, window: ScheduleWindowSection, now_s: float
) -> list[tuple[str, str]]:
    """For each edge of `window` ("start", "end") the clocks skip or repeat on or after
    `now_s` within the look-ahead, the edge and a warning about its first such day."""
    zone = ZoneInfo(window.timezone)
    days = {DAY_NAMES.index(day) for day in window.days}
    start_minute = clock_minutes(window.start)
    end_minute = clock_minutes(window.end)
    if end_minute <= start_minute:
        end_minute += 24 * 60
    today = datetime.fromtimestamp(now_s, zone).date()
    notices: list[tuple[str, str]] = []
    for edge, clock, minute in (
        ("start", window.start, start_minute),
        ("end", window.end, end_minute),
    ):
        for offset in range(CLOCK_CHANGE_LOOKAHEAD_DAYS):
            day = today + timedelta(days=offset)
            if day.weekday() not in days:
                continue
            moment = resolve_local(day, minute, zone)
            if moment.kind != "exists" and moment.instant_s >= now_s:
                notices.append((edge, _edge_notice(name, edge, clock, moment=moment, zone=zone)))
                break
    return notices


def window_clock_notices(contracts: ContractsSection, now_s: float) -> list[tuple[str, str]]:
    """Schedule window edges the clocks skip or repeat within a year of `now_s`.

    One (key, message) pair per such edge, naming the window, the next date it happens and
    what the window does then (the rule of `orchestrator.config.local_time`). Not a problem:
    the window still means something; a warning, so an operator can tell the customer.
    `now_s` is a parameter so that the answer is deterministic; callers pass the clock.
    """
    notices: list[tuple[str, str]] = []
    for index, reserved in enumerate(contracts.reserved):
        if not isinstance(reserved.schedule, list):
            continue
        for number, window in enumerate(reserved.schedule, start=1):
            name = f"reserved contract {reserved.id!r}: window {number}"
            key = f"contracts.reserved.{index}.schedule.{number - 1}"
            notices += [
                (f"{key}.{edge}", message)
                for edge, message in _window_clock_notices(name, window, now_s)
            ]
    return notices


def contract_problems(
    contracts: ContractsSection, fleet_models: dict[str, int] | None = None
) -> list[str]:
    """Contracts that can never be met, one readable line each (empty: none found).

    `fleet_models` counts the fleet's GPUs by model name; without it only the contracts
    themselves are checked. A contract selected by memory alone cannot be counted against
    model names, so only its ceiling against the whole fleet is checked.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for contract in [*contracts.reserved, *contracts.on_demand]:
        if contract.id in seen:
            problems.append(f"contract id {contract.id!r} appears more than once")
        seen.add(contract.id)
    for reserved in contracts.reserved:
        problems.extend(_window_problems(reserved))
        if fleet_models is not None:
            problems.extend(_capacity_problems(reserved, fleet_models))
    if fleet_models is not None:
        always = [c for c in contracts.reserved if c.schedule == "always"]
        committed = sum(c.committed_gpus for c in always)
        if committed > sum(fleet_models.values()):
            problems.append(
                f"always-on reserved contracts commit {committed} GPUs together but the fleet "
                f"has only {sum(fleet_models.values())}"
            )
    return problems
