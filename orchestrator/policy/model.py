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
An edge is where the local clock reads that time, on days the clocks change too; a time the
clocks skip means the first instant after the gap, one they repeat its first occurrence
(`ScheduleWindow`, `orchestrator.config.local_time`).
`policy_from_config` turns the pydantic config sections into these values; it lives on this
side because the config layer sits below the policy layer and must not import it. That is
the only reason this module knows pydantic models exist.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from orchestrator.config.local_time import resolve_local
from orchestrator.config.policy import (
    DAY_NAMES,
    GIB,
    PolicySection,
    ReservedContractSection,
    ServingSection,
    clock_minutes,
)
from orchestrator.config.power import PowerSection
from orchestrator.policy.power import (
    NEUTRAL_SITE,
    NodePower,
    PowerEstimate,
    PowerLearning,
    SitePower,
)

MINUTES_PER_DAY = 24 * 60
DEFAULT_HASHRATE_WARMUP_S = 120.0  # the config's defaults, for profiles built without one
DEFAULT_MIN_SHARES = 20


# ---------------------------------------------------------------- fleet and market


@dataclass(frozen=True, slots=True)
class MeasuredRate:
    """What the fleet measured (smoothed) for one GPU running one mining profile.

    `hashrate_samples`: readings (after the profile's warm-up) behind `hashrate_hs`; the
    economics blends the benchmark into it until `MiningProfile.hashrate_trust_samples`
    (None: a figure to take as it is). `accepted_fraction`: accepted / (accepted + rejected)
    shares once enough exist, else None; revenue counts only accepted work.
    """

    hashrate_hs: float
    power_w: float
    hashrate_samples: int | None = None
    accepted_fraction: float | None = None


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
    # the GPU's latest board power reading and its NVML power limit (None: not known); a GPU
    # whose workload is unknown counts at the one, else the other, against the site cap
    power_draw_w: float | None = None
    power_limit_w: float | None = None


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
    dev_fee_fraction: float = 0.0  # the miner's own fee, taken like the pool's
    hashrate_warmup_s: float = DEFAULT_HASHRATE_WARMUP_S  # readings this soon after a start
    hashrate_trust_samples: int = 10  # readings until a measurement replaces the benchmark
    min_shares: int = DEFAULT_MIN_SHARES  # shares before the accepted fraction is used


@dataclass(frozen=True, slots=True)
class ScheduleWindow:
    """A weekly slot: `days` (0 = Monday) from `start_minute` to `end_minute` local time.

    `end_minute <= start_minute` means the slot runs past midnight into the next day. Each
    edge is the instant the local clock reads that time, so a slot is open exactly while the
    clock reads between start and end, even on a day the clocks change: 01:00-03:00 on a
    spring-forward night lasts one real hour, 00:00-03:00 on a fall-back night four.

    An edge at a local time the clocks skip (02:30 on a US spring-forward night) moves to the
    first instant after the gap (03:00 CDT), so a slot wholly inside the gap (02:15-02:45)
    does not open that day; an edge at a time that happens twice (01:30 on a US fall-back
    night) is its first occurrence (01:30 CDT). (`orchestrator.config.local_time` holds the
    rule; `config check` names the windows it applies to, with the next such date.)
    """

    days: frozenset[int]
    start_minute: int
    end_minute: int
    timezone: str = "UTC"

    @property
    def duration_s(self) -> float:
        """The nominal length, by the clock; on a day the clocks change the real length
        differs by the change (`bounds_s` gives the real edges)."""
        minutes = self.end_minute - self.start_minute
        if minutes <= 0:
            minutes += MINUTES_PER_DAY
        return minutes * 60.0

    def bounds_s(self, day: date, zone: ZoneInfo | None = None) -> tuple[float, float] | None:
        """The instants the slot that starts on local `day` opens and closes, whatever its
        weekday; None when both edges fall on the same instant (a slot inside a skipped hour)."""
        zone = zone or ZoneInfo(self.timezone)
        start = resolve_local(day, self.start_minute, zone).instant_s
        end_minute = self.end_minute
        if end_minute <= self.start_minute:
            end_minute += MINUTES_PER_DAY
        end = resolve_local(day, end_minute, zone).instant_s
        return (start, end) if start < end else None

    def _slots_s(self, now_s: float, days_ahead: int) -> list[tuple[float, float]]:
        """Real (open, close) instants of the slots starting yesterday to `days_ahead` on."""
        zone = ZoneInfo(self.timezone)
        today = datetime.fromtimestamp(now_s, tz=zone).date()
        slots = []
        for offset in range(-1, days_ahead + 1):
            day = today + timedelta(days=offset)
            if day.weekday() in self.days:
                bounds = self.bounds_s(day, zone)
                if bounds is not None:
                    slots.append(bounds)
        return slots

    def open_or_opening(self, now_s: float, lead_time_s: float) -> bool:
        """Whether the slot is open at `now_s` or opens within `lead_time_s`."""
        days_ahead = int(lead_time_s // 86_400) + 1
        return any(
            start_s - lead_time_s <= now_s < end_s
            for start_s, end_s in self._slots_s(now_s, days_ahead)
        )

    def next_edge_s(self, now_s: float, lead_time_s: float, limit_s: float) -> float | None:
        """The first time after `now_s`, within `limit_s`, that the slot opens (less the
        lead time) or closes; None if there is none. (Where slots overlap, an edge may
        change nothing: the caller only learns that nothing changes before it.)"""
        days_ahead = int((limit_s + lead_time_s) // 86_400) + 1
        edges = []
        for start_s, end_s in self._slots_s(now_s, days_ahead):
            edges += [start_s - lead_time_s, end_s]
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
    default_source: str = "config"  # "default" when the config left `default_power_w` unset

    def for_model(self, model: str) -> float:
        return self.by_model_w.get(model, self.default_w)

    def prior(self, model: str) -> PowerEstimate:
        """The configured board power for `model`, as a prior with its source."""
        if model in self.by_model_w:
            return PowerEstimate(self.by_model_w[model], "config")
        return PowerEstimate(self.default_w, self.default_source)


@dataclass(frozen=True, slots=True)
class ReservedContract:
    """Committed capacity: `committed_gpus` eligible GPUs during the windows.

    The customer pays for up to `committed_gpus`; the SLA is met at
    `availability_target_fraction` of them (`target_gpus`), and the penalty is charged per
    GPU-hour below that, the same rule in the planner, the SLA ledger and the backtest.
    """

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

    @property
    def target_gpus(self) -> float:
        """GPUs the SLA is met at: commitment x availability target (the penalty applies
        below it). Rounded to 1e-9 so that 0.07 x 100 is 7, not 7.000000000000001."""
        return round(self.committed_gpus * self.availability_target_fraction, 9)

    @property
    def required_gpus(self) -> int:
        """The fewest whole GPUs that meet the target: what a hard SLA demands."""
        return math.ceil(self.target_gpus)

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
    # what lowered `site_power_cap_kw` below the configured cap ("" : nothing), for reasons
    power_cap_reason: str = ""
    # at or above this power price the site sheds mining and on-demand AI (None: never)
    curtail_price_strike_usd_per_kwh: float | None = None
    # idle board power as a share of the GPU's NVML power limit, where the config sets no
    # `idle_power_w` (None: `idle_power_w` always); `idle_power_source` names the prior
    idle_power_limit_fraction: float | None = None
    idle_power_source: str = "config"
    # board -> wall (neutral here: efficiency 1, no host overhead, PUE 1; config sets real ones)
    site_power: SitePower = NEUTRAL_SITE

    def idle_prior(self, power_limit_w: float | None) -> PowerEstimate:
        """An idle GPU's board power before any measurement."""
        if self.idle_power_limit_fraction is not None and power_limit_w:
            return PowerEstimate(self.idle_power_limit_fraction * power_limit_w, "default")
        return PowerEstimate(self.idle_power_w, self.idle_power_source)


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class CandidateValue:
    """One line of a GPU's candidate table: what it would earn net, per hour."""

    workload: str
    net_usd_per_hour: float  # revenue - power - switching cost spread over the horizon
    power_w: float  # at the wall (what the cap and the power cost use)
    note: str = ""
    board_w: float | None = None  # what NVML would read (None: same as power_w)
    power_source: str = ""  # "measured", "benchmark", "config", "default"
    power_samples: int = 0


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
    shortfall_gpus: int  # short of `required_gpus`
    penalty_usd_per_hour: float  # penalty x GPUs below commitment x availability target
    required_gpus: int = 0  # what the availability target demands (0 while inactive)


@dataclass(frozen=True, slots=True)
class Plan:
    assignments: Mapping[str, Assignment]  # in fleet order
    objective_usd_per_hour: float  # what was maximised: net - penalties - switching - margins
    net_usd_per_hour: float  # revenue - power - penalties once the switches are done
    total_power_w: float  # at the wall, hosts included
    power_cap_w: float | None  # the cap planned against (raised to the feasible minimum)
    sla: tuple[SlaStatus, ...]
    switches: int
    dwell_breaks: int
    problems: tuple[str, ...]
    power_cap_reason: str = ""  # what lowered the cap (a curtailment window), else ""
    shed_by_strike: bool = False  # the power price was at or above the shedding strike
    board_power_w: float = 0.0  # the GPUs' board power, as NVML would read it
    host_power_w: float = 0.0  # the nodes' hosts at the wall (in `total_power_w`)


# ---------------------------------------------------------------- from config


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    profiles: tuple[MiningProfile, ...]
    contracts: Contracts
    settings: PlannerSettings
    power_learning: PowerLearning = PowerLearning()  # noqa: RUF009  (frozen, immutable)


def _eligibility(section: ServingSection) -> Eligibility:
    return Eligibility(
        models=frozenset(section.eligible_models),
        min_memory_bytes=int((section.min_memory_gib or 0.0) * GIB),
    )


def _power(section: ServingSection) -> AiPower:
    source = "config" if "default_power_w" in section.model_fields_set else "default"
    return AiPower(
        by_model_w=dict(section.power_w), default_w=section.default_power_w, default_source=source
    )


# an idle GPU's board power where the config sets none: a share of its power limit (a real
# H200: 78-126 W idle at a 700 W limit), else this when the limit is not known either
IDLE_POWER_LIMIT_FRACTION = 0.12
IDLE_POWER_FALLBACK_W = 50.0


def site_power_from_config(section: PowerSection) -> SitePower:
    """The board -> wall conversion of `[power]`."""
    default = NodePower(section.host_overhead_w, section.psu_efficiency)
    nodes = {
        name: NodePower(
            default.host_overhead_w if n.host_overhead_w is None else n.host_overhead_w,
            default.psu_efficiency if n.psu_efficiency is None else n.psu_efficiency,
        )
        for name, n in section.nodes.items()
    }
    return SitePower(pue=section.pue, default=default, nodes=nodes)


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
            dev_fee_fraction=p.dev_fee_fraction,
            hashrate_warmup_s=p.hashrate_warmup_s,
            hashrate_trust_samples=p.hashrate_trust_samples,
            min_shares=p.min_shares,
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
        idle_power_w=IDLE_POWER_FALLBACK_W if p.idle_power_w is None else p.idle_power_w,
        display_timezone=p.display_timezone,
        solver_time_limit_s=p.solver_time_limit_s,
        curtail_price_strike_usd_per_kwh=p.curtail_price_strike_usd_per_kwh,
        idle_power_limit_fraction=IDLE_POWER_LIMIT_FRACTION if p.idle_power_w is None else None,
        idle_power_source="default" if p.idle_power_w is None else "config",
        site_power=site_power_from_config(section.power),
    )
    learning = PowerLearning(
        settle_s=section.power.settle_s,
        smoothing=section.power.smoothing,
        prior_samples=section.power.prior_samples,
    )
    return PolicyInputs(profiles, Contracts(reserved, on_demand), settings, learning)
