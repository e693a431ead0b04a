"""What each workload is worth on each GPU, in US$ per hour. Pure arithmetic.

This is DESIGN.md's "Economics" turned into numbers, one GPU and one candidate workload at a
time. The planner adds the parts that need the whole fleet (contract ceilings, SLA
penalties, the site power cap); everything per GPU lives here so that the planner, the
explanations and the brute-force tests price a GPU the same way.

- mining revenue = hashrate x hashprice ($ per H/s per day) / 24 x (1 - pool fee); the
  hashrate and power are the fleet's smoothed measurement when there is one, else the
  profile's benchmark for the GPU model. Measurements are rounded to 1 % buckets first:
  smoothed telemetry is noisier than that, and it lets the planner treat GPUs with the
  same bucket as interchangeable (see planner.py).
- AI revenue = the contract's rate per GPU (on-demand: x expected utilisation). It is paid
  at contract level, only for GPUs up to the commitment or ceiling, so an option carries
  `paid_by` and the planner does the counting.
- power cost = power_w / 1000 x $/kWh.
- switching = (downtime x the net revenue lost meanwhile + the fixed cost per switch),
  spread over the planning horizon so that it reads as $/h like everything else.
- hysteresis = a further margin a switch must beat staying by: the larger of a fixed $/h
  and a fraction of what staying earns.

A hashprice that is missing, NaN, infinite or negative is not a price: that algorithm is
offered only to GPUs already running it (as "stay", with unknown revenue) and never
attracts a switch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from orchestrator.domain import IDLE, ai_workload, mine_workload
from orchestrator.policy.model import (
    Contracts,
    GpuState,
    Market,
    MeasuredRate,
    MiningProfile,
    PlannerSettings,
)

HOURS_PER_DAY = 24.0
SECONDS_PER_HOUR = 3600.0
BUCKET_RATIO = 1.01


@dataclass(frozen=True, slots=True)
class Option:
    """One candidate workload for one GPU, priced."""

    workload: str
    revenue_usd_per_hour: float  # gross, per GPU; for `paid_by` only while within the ceiling
    paid_by: str | None  # contract id whose count decides whether the revenue is paid
    power_w: float
    power_cost_usd_per_hour: float
    switch_cost_usd_per_hour: float  # 0 when staying
    margin_usd_per_hour: float  # hysteresis, 0 when staying or when nothing runs now
    is_stay: bool
    price_known: bool = True

    @property
    def net_usd_per_hour(self) -> float:
        """Revenue less power less the switch spread over the horizon (if paid)."""
        return (
            self.revenue_usd_per_hour - self.power_cost_usd_per_hour - self.switch_cost_usd_per_hour
        )

    @property
    def score_usd_per_hour(self) -> float:
        """`net_usd_per_hour` less the hysteresis margin: what the planner compares."""
        return self.net_usd_per_hour - self.margin_usd_per_hour

    @property
    def own_score_usd_per_hour(self) -> float:
        """The score without contract-paid revenue (the planner adds that per contract)."""
        paid = 0.0 if self.paid_by is not None else self.revenue_usd_per_hour
        return (
            paid
            - self.power_cost_usd_per_hour
            - self.switch_cost_usd_per_hour
            - self.margin_usd_per_hour
        )


def bucketed(value: float) -> float:
    """`value` rounded to the nearest 1 % logarithmic bucket (0 and below stay as they are)."""
    if value <= 0 or not math.isfinite(value):
        return value
    return float(BUCKET_RATIO ** round(math.log(value) / math.log(BUCKET_RATIO)))


def valid_hashprice(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value >= 0


def mining_revenue_usd_per_hour(
    hashrate_hs: float, hashprice_usd_per_hs_day: float, pool_fee_fraction: float
) -> float:
    return hashrate_hs * hashprice_usd_per_hs_day / HOURS_PER_DAY * (1.0 - pool_fee_fraction)


def power_cost_usd_per_hour(power_w: float, power_price_usd_per_kwh: float) -> float:
    return power_w / 1000.0 * power_price_usd_per_kwh


def switch_cost_usd_per_hour(
    downtime_s: float, lost_net_usd_per_hour: float, fixed_cost_usd: float, horizon_s: float
) -> float:
    """A switch's cost spread over the horizon: downtime earns nothing, plus the fixed cost."""
    lost_usd = downtime_s / SECONDS_PER_HOUR * max(lost_net_usd_per_hour, 0.0)
    return (lost_usd + fixed_cost_usd) * SECONDS_PER_HOUR / horizon_s


def hysteresis_margin_usd_per_hour(
    stay_net_usd_per_hour: float, settings: PlannerSettings
) -> float:
    """The margin each moving GPU must clear on its own.

    With `hysteresis_scope = "fleet"` the fixed $/GPU-hour part is not charged per GPU
    but on the net change of the fleet's mix (the planner does that); only the fraction
    of what staying earns stays per GPU.
    """
    if settings.hysteresis_scope == "fleet":
        return settings.hysteresis_margin_fraction * abs(stay_net_usd_per_hour)
    return max(
        settings.hysteresis_margin_usd_per_gpu_hour,
        settings.hysteresis_margin_fraction * abs(stay_net_usd_per_hour),
    )


def mining_rate(gpu: GpuState, profile: MiningProfile) -> MeasuredRate | None:
    """Hashrate and power of `gpu` on `profile`: measured (bucketed), else benchmark."""
    measured = gpu.measured.get(profile.id)
    if measured is not None:
        return MeasuredRate(bucketed(measured.hashrate_hs), bucketed(measured.power_w))
    benchmark = profile.benchmarks.get(gpu.model)
    if benchmark is None:
        return None
    return MeasuredRate(benchmark.hashrate_hs, benchmark.power_w)


@dataclass(frozen=True, slots=True)
class _Raw:
    workload: str
    revenue_usd_per_hour: float
    paid_by: str | None
    power_w: float
    downtime_s: float
    price_known: bool


def _raw_options(  # noqa: PLR0912  (one branch per kind of workload, read top to bottom)
    gpu: GpuState,
    *,
    market: Market,
    contracts: Contracts,
    profiles: Sequence[MiningProfile],
    settings: PlannerSettings,
    active_reserved: frozenset[str],
    only_current: bool,
) -> list[_Raw]:
    current = gpu.current_workload
    raw = []
    if not only_current or current == IDLE:
        raw.append(_Raw(IDLE, 0.0, None, settings.idle_power_w, 0.0, price_known=True))
    for profile in profiles:
        workload = mine_workload(profile.id)
        if only_current and workload != current:
            continue
        rate = mining_rate(gpu, profile)
        price = market.hashprice_usd_per_hs_day.get(profile.algorithm)
        if rate is not None and price is not None and valid_hashprice(price):
            revenue = mining_revenue_usd_per_hour(
                rate.hashrate_hs, price, profile.pool_fee_fraction
            )
            raw.append(
                _Raw(
                    workload,
                    revenue,
                    None,
                    rate.power_w,
                    profile.switch_downtime_s,
                    price_known=True,
                )
            )
        elif workload == current:
            power_w = rate.power_w if rate is not None else settings.idle_power_w
            raw.append(
                _Raw(workload, 0.0, None, power_w, profile.switch_downtime_s, price_known=False)
            )
    for reserved in contracts.reserved:
        workload = ai_workload(reserved.id)
        if only_current and workload != current:
            continue
        power_w = reserved.power.for_model(gpu.model)
        eligible = reserved.eligibility.admits(gpu.model, gpu.memory_total_bytes)
        if eligible and reserved.id in active_reserved:
            rate_usd = reserved.rate_usd_per_gpu_hour
            raw.append(
                _Raw(
                    workload,
                    rate_usd,
                    reserved.id,
                    power_w,
                    reserved.switch_downtime_s,
                    price_known=True,
                )
            )
        elif workload == current:  # staying earns nothing outside the window or eligibility
            paid_by = reserved.id if eligible else None
            raw.append(
                _Raw(workload, 0.0, paid_by, power_w, reserved.switch_downtime_s, price_known=True)
            )
    for demand in contracts.on_demand:
        workload = ai_workload(demand.id)
        if only_current and workload != current:
            continue
        power_w = demand.power.for_model(gpu.model)
        if demand.eligibility.admits(gpu.model, gpu.memory_total_bytes):
            rate_usd = demand.rate_usd_per_gpu_hour * demand.expected_utilisation_fraction
            raw.append(
                _Raw(
                    workload,
                    rate_usd,
                    demand.id,
                    power_w,
                    demand.switch_downtime_s,
                    price_known=True,
                )
            )
        elif workload == current:
            raw.append(
                _Raw(workload, 0.0, None, power_w, demand.switch_downtime_s, price_known=True)
            )
    return raw


def gpu_options(
    gpu: GpuState,
    *,
    market: Market,
    contracts: Contracts,
    profiles: Sequence[MiningProfile],
    settings: PlannerSettings,
    active_reserved: frozenset[str],
    only_current: bool = False,
) -> tuple[Option, ...]:
    """Every workload `gpu` could run next, priced, in a stable order (idle, mining, AI).

    `only_current` prices staying alone (an empty tuple when there is nothing to stay on).
    A current workload that names no known profile or contract counts as unknown: every
    option is then a switch, and no hysteresis applies (there is nothing to stay on).
    """
    raw = _raw_options(
        gpu,
        market=market,
        contracts=contracts,
        profiles=profiles,
        settings=settings,
        active_reserved=active_reserved,
        only_current=only_current,
    )
    price = market.power_price_usd_per_kwh
    current = gpu.current_workload
    stay = next((r for r in raw if r.workload == current), None)
    stay_net = 0.0
    if stay is not None:
        stay_net = stay.revenue_usd_per_hour - power_cost_usd_per_hour(stay.power_w, price)
    margin = hysteresis_margin_usd_per_hour(stay_net, settings) if stay is not None else 0.0
    options = []
    for r in raw:
        power_cost = power_cost_usd_per_hour(r.power_w, price)
        is_stay = stay is not None and r.workload == current
        switch = 0.0
        if not is_stay:
            switch = switch_cost_usd_per_hour(
                r.downtime_s,
                r.revenue_usd_per_hour - power_cost,
                settings.switch_fixed_cost_usd,
                settings.horizon_s,
            )
        options.append(
            Option(
                workload=r.workload,
                revenue_usd_per_hour=r.revenue_usd_per_hour,
                paid_by=r.paid_by,
                power_w=r.power_w,
                power_cost_usd_per_hour=power_cost,
                switch_cost_usd_per_hour=switch,
                margin_usd_per_hour=0.0 if is_stay else margin,
                is_stay=is_stay,
                price_known=r.price_known,
            )
        )
    return tuple(options)


def measured_stay(
    stay: Option, gpu: GpuState, profile: MiningProfile, market: Market, idle_power_w: float
) -> Option:
    """`stay` (mining with `profile`, priced for another GPU) repriced for `gpu`.

    A shortcut for the planner, equal to the stay option `gpu_options` gives `gpu`: only
    the stay option depends on what a GPU measured on the profile it runs, so GPUs that
    differ only there share every other option.
    """
    rate = mining_rate(gpu, profile)
    price = market.hashprice_usd_per_hs_day.get(profile.algorithm)
    if rate is None:
        power_w, revenue, known = idle_power_w, 0.0, False
    elif price is not None and valid_hashprice(price):
        power_w, known = rate.power_w, True
        revenue = mining_revenue_usd_per_hour(rate.hashrate_hs, price, profile.pool_fee_fraction)
    else:
        power_w, revenue, known = rate.power_w, 0.0, False
    return replace(
        stay,
        revenue_usd_per_hour=revenue,
        power_w=power_w,
        power_cost_usd_per_hour=power_cost_usd_per_hour(power_w, market.power_price_usd_per_kwh),
        price_known=known,
    )


def significant_price_move(previous: Market, current: Market, fraction: float) -> bool:
    """Whether any price moved by more than `fraction` (or appeared or vanished) since `previous`.

    The central loop re-plans early on such a move; the planner itself does not need it.
    """

    def moved(old: float | None, new: float | None) -> bool:
        old_ok, new_ok = valid_hashprice(old), valid_hashprice(new)
        if old_ok != new_ok:
            return True
        if old is None or new is None or not old_ok:
            return False
        if old == 0:
            return new != 0
        return abs(new - old) / abs(old) > fraction

    if moved(previous.power_price_usd_per_kwh, current.power_price_usd_per_kwh):
        return True
    algorithms = set(previous.hashprice_usd_per_hs_day) | set(current.hashprice_usd_per_hs_day)
    return any(
        moved(previous.hashprice_usd_per_hs_day.get(a), current.hashprice_usd_per_hs_day.get(a))
        for a in sorted(algorithms)
    )
