"""The planner's words: what goes into `plan()` and what comes out.

Frozen, slotted dataclasses and nothing else that matters: the planner is a pure function
from these values to a `Plan`, so a test, the central loop and a backtest all build the
same inputs. Units live in the names (`_s` seconds since the Unix epoch or a duration,
`_w` watts, `_usd_per_hour`, `_usd_per_hs_day` for hashprice).

Workload ids are strings shared with the dispatcher and the agent: `mine:<profile>`,
`ai:<contract>`, `idle`, built and read by `orchestrator.domain` (`mine_workload`,
`ai_workload`, `Workload`). A GPU whose workload is not known carries `None`.

Schedule windows are the one piece of calendar logic here: a window is a weekly slot in a
named time zone (a zone database lookup, deterministic for a given `now_s`, no clock read).
`policy_from_config` turns the pydantic config sections into these values; it lives on this
side because the config layer sits below the policy layer and must not import it. That is
the only reason this module knows pydantic models exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from orchestrator.config.policy import (
    DAY_NAMES,
    GIB,
    PolicySection,
    ReservedContractSection,
    ServingSection,
    clock_minutes,
)

MINUTES_PER_DAY = 24 * 60


# ---------------------------------------------------------------- fleet and market


@dataclass(frozen=True, slots=True)
class MeasuredRate:
    """What the fleet measured (smoothed) for one GPU running one mining profile."""

    hashrate_hs: float
    power_w: float


@dataclass(frozen=True, slots=True)
class GpuState:
    """One GPU as the central daemon last saw it."""

    key: str  # "node:index"
    uuid: str
    model: str  # NVML name, e.g. "NVIDIA GeForce RTX 3090"
    memory_total_bytes: int
    online: bool
    healthy: bool
    current_workload: str | None  # None: not known
    since_s: float | None = None  # when the current workload started
    measured: Mapping[str, MeasuredRate] = field(default_factory=dict)  # by profile id


@dataclass(frozen=True, slots=True)
class Market:
    """Prices at one instant. A missing or invalid hashprice is `None`."""

    hashprice_usd_per_hs_day: Mapping[str, float | None]  # by algorithm
    power_price_usd_per_kwh: float


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's fixed assignment for one GPU."""

    gpu_key: str
    workload: str
    by: str = "operator"
    until_s: float | None = None  # None: until removed
    note: str = ""


# ---------------------------------------------------------------- workloads on offer


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A GPU model's expected hashrate and power on one mining profile."""

    hashrate_hs: float
    power_w: float


@dataclass(frozen=True, slots=True)
class MiningProfile:
    id: str
    algorithm: str
    pool_fee_fraction: float
    switch_downtime_s: float
    benchmarks: Mapping[str, Benchmark]  # by GPU model name


@dataclass(frozen=True, slots=True)
class ScheduleWindow:
    """A weekly slot: `days` (0 = Monday) from `start_minute` to `end_minute` local time.

    `end_minute <= start_minute` means the slot runs past midnight into the next day.
    """

    days: frozenset[int]
    start_minute: int
    end_minute: int
    timezone: str = "UTC"

    @property
    def duration_s(self) -> float:
        minutes = self.end_minute - self.start_minute
        if minutes <= 0:
            minutes += MINUTES_PER_DAY
        return minutes * 60.0

    def _start_s(self, day: date, zone: ZoneInfo) -> float:
        hours, minutes = divmod(self.start_minute, 60)
        local = datetime(day.year, day.month, day.day, hours, minutes, tzinfo=zone)
        return local.timestamp()

    def open_or_opening(self, now_s: float, lead_time_s: float) -> bool:
        """Whether the slot is open at `now_s` or opens within `lead_time_s`."""
        zone = ZoneInfo(self.timezone)
        today = datetime.fromtimestamp(now_s, tz=zone).date()
        days_ahead = int(lead_time_s // 86_400) + 1
        for offset in range(-1, days_ahead + 1):
            day = today + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            start_s = self._start_s(day, zone)
            if start_s - lead_time_s <= now_s < start_s + self.duration_s:
                return True
        return False

    def next_edge_s(self, now_s: float, lead_time_s: float, limit_s: float) -> float | None:
        """The first time after `now_s`, within `limit_s`, that the slot opens (less the
        lead time) or closes; None if there is none. (Where slots overlap, an edge may
        change nothing: the caller only learns that nothing changes before it.)"""
        zone = ZoneInfo(self.timezone)
        today = datetime.fromtimestamp(now_s, tz=zone).date()
        days_ahead = int((limit_s + lead_time_s) // 86_400) + 1
        edges = []
        for offset in range(-1, days_ahead + 1):
            day = today + timedelta(days=offset)
            if day.weekday() in self.days:
                start_s = self._start_s(day, zone)
                edges += [start_s - lead_time_s, start_s + self.duration_s]
        later = [e for e in edges if now_s < e <= now_s + limit_s]
        return min(later) if later else None


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Which GPUs may serve a contract: listed models and/or a memory floor (empty: any)."""

    models: frozenset[str] = frozenset()
    min_memory_bytes: int = 0

    def admits(self, model: str, memory_total_bytes: int) -> bool:
        if self.models and model not in self.models:
            return False
        return memory_total_bytes >= self.min_memory_bytes


@dataclass(frozen=True, slots=True)
class AiPower:
    """Power drawn while serving: per GPU model, else a default."""

    by_model_w: Mapping[str, float] = field(default_factory=dict)
    default_w: float = 300.0

    def for_model(self, model: str) -> float:
        return self.by_model_w.get(model, self.default_w)


@dataclass(frozen=True, slots=True)
class ReservedContract:
    """Committed capacity: `committed_gpus` eligible GPUs during the windows."""

    id: str
    rate_usd_per_gpu_hour: float
    committed_gpus: int
    eligibility: Eligibility
    windows: tuple[ScheduleWindow, ...] | None  # None: always
    availability_target_fraction: float
    penalty_usd_per_gpu_hour: float
    lead_time_s: float
    switch_downtime_s: float
    power: AiPower

    def active(self, now_s: float) -> bool:
        """Committed now: inside a window, or a window opens within the lead time."""
        if self.windows is None:
            return True
        return any(w.open_or_opening(now_s, self.lead_time_s) for w in self.windows)

    def next_change_s(self, now_s: float, limit_s: float) -> float | None:
        """When `active` may next change after `now_s` (within `limit_s`); None: not before."""
        if self.windows is None:
            return None
        edges = [w.next_edge_s(now_s, self.lead_time_s, limit_s) for w in self.windows]
        found = [e for e in edges if e is not None]
        return min(found) if found else None


@dataclass(frozen=True, slots=True)
class OnDemandContract:
    """Pays per GPU served, scaled by expected utilisation, up to `max_gpus`."""

    id: str
    rate_usd_per_gpu_hour: float
    expected_utilisation_fraction: float
    max_gpus: int | None
    eligibility: Eligibility
    switch_downtime_s: float
    power: AiPower


@dataclass(frozen=True, slots=True)
class Contracts:
    reserved: tuple[ReservedContract, ...] = ()
    on_demand: tuple[OnDemandContract, ...] = ()


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    interval_s: float = 60.0
    horizon_s: float = 3600.0
    hysteresis_margin_usd_per_gpu_hour: float = 0.02
    hysteresis_margin_fraction: float = 0.0
    hysteresis_scope: str = "gpu"  # "gpu" (per move) or "fleet" (on the mix's net change)
    hysteresis_until_next_window: bool = False  # spread the margin to the next window edge
    min_dwell_s: float = 600.0
    switch_fixed_cost_usd: float = 0.0
    site_power_cap_kw: float | None = None
    allow_sla_shortfall: bool = False
    price_move_replan_fraction: float = 0.05
    idle_power_w: float = 0.0
    display_timezone: str = "UTC"
    solver_time_limit_s: float | None = 5.0  # None: search until proven optimal


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class CandidateValue:
    """One line of a GPU's candidate table: what it would earn net, per hour."""

    workload: str
    net_usd_per_hour: float  # revenue - power - switching cost spread over the horizon
    power_w: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class Assignment:
    gpu_key: str
    workload: str | None  # None only for a GPU whose workload is unknown and fixed
    previous: str | None
    changed: bool
    reason: str
    lock: str  # "free", "dwell", "no-price", "override", "offline", "unhealthy"
    candidates: tuple[CandidateValue, ...]


@dataclass(frozen=True, slots=True)
class SlaStatus:
    contract_id: str
    active: bool
    committed_gpus: int
    assigned_gpus: int
    shortfall_gpus: int
    penalty_usd_per_hour: float


@dataclass(frozen=True, slots=True)
class Plan:
    assignments: Mapping[str, Assignment]  # in fleet order
    objective_usd_per_hour: float  # what was maximised: net - penalties - switching - margins
    net_usd_per_hour: float  # revenue - power - penalties once the switches are done
    total_power_w: float
    power_cap_w: float | None  # the cap planned against (raised to the feasible minimum)
    sla: tuple[SlaStatus, ...]
    switches: int
    dwell_breaks: int
    problems: tuple[str, ...]


# ---------------------------------------------------------------- from config


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    profiles: tuple[MiningProfile, ...]
    contracts: Contracts
    settings: PlannerSettings


def _eligibility(section: ServingSection) -> Eligibility:
    return Eligibility(
        models=frozenset(section.eligible_models),
        min_memory_bytes=int((section.min_memory_gib or 0.0) * GIB),
    )


def _power(section: ServingSection) -> AiPower:
    return AiPower(by_model_w=dict(section.power_w), default_w=section.default_power_w)


def _windows(section: ReservedContractSection) -> tuple[ScheduleWindow, ...] | None:
    if section.schedule == "always":
        return None
    return tuple(
        ScheduleWindow(
            days=frozenset(DAY_NAMES.index(day) for day in window.days),
            start_minute=clock_minutes(window.start),
            end_minute=clock_minutes(window.end) % MINUTES_PER_DAY,
            timezone=window.timezone,
        )
        for window in section.schedule
    )


def policy_from_config(section: PolicySection) -> PolicyInputs:
    """The planner's inputs from the policy config section."""
    profiles = tuple(
        MiningProfile(
            id=p.id,
            algorithm=p.algorithm,
            pool_fee_fraction=p.pool_fee_fraction,
            switch_downtime_s=p.switch_downtime_s,
            benchmarks={m: Benchmark(b.hashrate_hs, b.power_w) for m, b in p.benchmarks.items()},
        )
        for p in section.mining_profiles
    )
    reserved = tuple(
        ReservedContract(
            id=c.id,
            rate_usd_per_gpu_hour=c.rate_usd_per_gpu_hour,
            committed_gpus=c.committed_gpus,
            eligibility=_eligibility(c),
            windows=_windows(c),
            availability_target_fraction=c.availability_target_fraction,
            penalty_usd_per_gpu_hour=c.penalty_usd_per_gpu_hour,
            lead_time_s=c.lead_time_s,
            switch_downtime_s=c.switch_downtime_s,
            power=_power(c),
        )
        for c in section.contracts.reserved
    )
    on_demand = tuple(
        OnDemandContract(
            id=c.id,
            rate_usd_per_gpu_hour=c.rate_usd_per_gpu_hour,
            expected_utilisation_fraction=c.expected_utilisation_fraction,
            max_gpus=c.max_gpus,
            eligibility=_eligibility(c),
            switch_downtime_s=c.switch_downtime_s,
            power=_power(c),
        )
        for c in section.contracts.on_demand
    )
    p = section.planner
    settings = PlannerSettings(
        interval_s=p.interval_s,
        horizon_s=p.horizon_s,
        hysteresis_margin_usd_per_gpu_hour=p.hysteresis_margin_usd_per_gpu_hour,
        hysteresis_margin_fraction=p.hysteresis_margin_fraction,
        hysteresis_scope=p.hysteresis_scope,
        hysteresis_until_next_window=p.hysteresis_until_next_window,
        min_dwell_s=p.min_dwell_s,
        switch_fixed_cost_usd=p.switch_fixed_cost_usd,
        site_power_cap_kw=p.site_power_cap_kw,
        allow_sla_shortfall=p.allow_sla_shortfall,
        price_move_replan_fraction=p.price_move_replan_fraction,
        idle_power_w=p.idle_power_w,
        display_timezone=p.display_timezone,
        solver_time_limit_s=p.solver_time_limit_s,
    )
    return PolicyInputs(profiles, Contracts(reserved, on_demand), settings)
