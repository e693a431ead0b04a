"""What each workload is worth on each GPU, in US$ per hour. Pure arithmetic.

This is DESIGN.md's "Economics" turned into numbers, one GPU and one candidate workload at a
time. The planner adds the parts that need the whole fleet (contract ceilings, SLA
penalties, the site power cap); everything per GPU lives here so that the planner, the
explanations and the brute-force tests price a GPU the same way.

- mining revenue = hashrate x hashprice ($ per H/s per day) / 24 x (1 - pool fee) x
  (1 - the miner's dev fee). The hashrate and power are the fleet's smoothed measurement
  when there is one, else the profile's benchmark for the GPU model. A measured hashrate
  replaces the benchmark gradually: after n readings (past the profile's warm-up, which
  central/observe.py skips) the hashrate is n/N of the measurement and the rest of the
  benchmark, N = `hashrate_trust_samples`, so one low reading from a miner still ramping
  cannot undervalue a GPU. It is then scaled by the GPU's accepted share fraction, once
  enough shares exist: the pool pays for accepted work, not for reported hashes. The
  results are rounded to 1 % buckets: smoothed telemetry is noisier than that, and it
  lets the planner treat GPUs with the same bucket as interchangeable (see planner.py).
- AI revenue = the contract's rate per GPU (on-demand: x expected utilisation). It is paid
  at contract level, only for GPUs up to the commitment or ceiling, so an option carries
  `paid_by` and the planner does the counting.
- power cost = wall power / 1000 x $/kWh. A GPU's board power on a workload is the
  fleet's learnt figure for its model (`orchestrator.policy.power.PowerTable`) blended with
  the prior (the mining profile's figure for the GPU as before: its own smoothed
  measurement, else the benchmark; the contract's `power_w`; `idle_power_w` or a share of
  the power limit), AI power read at the contract's expected utilisation where it has one;
  the wall power is that over the node's PSU efficiency, times the site's PUE. Options
  carry both figures and the board figure's provenance.
- switching = (downtime x the revenue lost meanwhile + the fixed cost per switch), spread
  over the planning horizon so that it reads as $/h like everything else. While a workload
  loads, the GPU earns nothing but already draws the target's power (the backtest books it
  so), and the option's power cost covers the whole horizon: what the downtime loses is
  the target's gross revenue, not its net.
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
    AiPower,
    Benchmark,
    Contracts,
    GpuState,
    Market,
    MeasuredRate,
    MiningProfile,
    PlannerSettings,
)
from orchestrator.policy.power import NO_LEARNING, PowerEstimate, PowerTable, node_of

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
    board_w: float | None = None  # NVML's figure; `power_w` is at the wall (None: equal)
    power_source: str = ""
    power_samples: int = 0

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
    hashrate_hs: float,
    hashprice_usd_per_hs_day: float,
    pool_fee_fraction: float,
    dev_fee_fraction: float = 0.0,
) -> float:
    """What a hashrate earns an hour, after the pool's fee and the miner's dev fee."""
    kept = (1.0 - pool_fee_fraction) * (1.0 - dev_fee_fraction)
    return hashrate_hs * hashprice_usd_per_hs_day / HOURS_PER_DAY * kept


def power_cost_usd_per_hour(power_w: float, power_price_usd_per_kwh: float) -> float:
    return power_w / 1000.0 * power_price_usd_per_kwh


def switch_cost_usd_per_hour(
    downtime_s: float, lost_revenue_usd_per_hour: float, fixed_cost_usd: float, horizon_s: float
) -> float:
    """A switch's cost spread over the horizon: downtime earns nothing, plus the fixed cost.

    `lost_revenue_usd_per_hour` is the target's gross revenue: its power is paid during the
    downtime as well (counted in the option's power cost over the whole horizon).
    """
    lost_usd = downtime_s / SECONDS_PER_HOUR * max(lost_revenue_usd_per_hour, 0.0)
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
    """Hashrate and power of `gpu` on `profile`: measured (bucketed), else benchmark.

    The measured hashrate is blended with the benchmark until it has
    `profile.hashrate_trust_samples` readings behind it, then scaled by the accepted share
    fraction when one is known (see the module docstring).
    """
    measured = gpu.measured.get(profile.id)
    benchmark = profile.benchmarks.get(gpu.model)
    if measured is not None:
        return MeasuredRate(
            bucketed(_paid_hashrate_hs(measured, benchmark, profile)), bucketed(measured.power_w)
        )
    if benchmark is None:
        return None
    return MeasuredRate(benchmark.hashrate_hs, benchmark.power_w)


def _paid_hashrate_hs(
    measured: MeasuredRate, benchmark: Benchmark | None, profile: MiningProfile
) -> float:
    hashrate_hs = measured.hashrate_hs
    samples = measured.hashrate_samples
    if benchmark is not None and samples is not None:
        trust = min(1.0, max(samples, 0) / profile.hashrate_trust_samples)
        hashrate_hs = trust * hashrate_hs + (1.0 - trust) * benchmark.hashrate_hs
    if measured.accepted_fraction is not None:
        hashrate_hs *= measured.accepted_fraction
    return hashrate_hs


def mining_power_prior(
    gpu: GpuState, profile: MiningProfile, rate: MeasuredRate | None
) -> PowerEstimate | None:
    """The figure a mining option's board power starts from: `rate` (`mining_rate(gpu,
    profile)`, which the caller has), named by where it came from."""
    if rate is None:
        return None
    source = "measured" if profile.id in gpu.measured else "benchmark"
    return PowerEstimate(rate.power_w, source)


def ai_power_prior(gpu: GpuState, power: AiPower) -> PowerEstimate:
    """A contract's configured serving power for `gpu`; the unconfigured default never
    exceeds the GPU's own power limit (300 W is more than a 170 W card can draw)."""
    prior = power.prior(gpu.model)
    if prior.source == "default" and gpu.power_limit_w and prior.board_w > gpu.power_limit_w:
        return PowerEstimate(gpu.power_limit_w, "default")
    return prior


def board_power(
    gpu: GpuState,
    workload: str,
    prior: PowerEstimate,
    power: PowerTable,
    utilisation_pct: float | None = None,
) -> PowerEstimate:
    """`gpu`'s board power on `workload`: what its model measured, blended with `prior`."""
    return power.estimate(gpu.model, workload, prior, utilisation_pct)


@dataclass(frozen=True, slots=True)
class _Raw:
    workload: str
    revenue_usd_per_hour: float
    paid_by: str | None
    power: PowerEstimate
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
    power: PowerTable,
) -> list[_Raw]:
    current = gpu.current_workload
    raw = []
    idle_prior = settings.idle_prior(gpu.power_limit_w)
    if not only_current or current == IDLE:
        idle = board_power(gpu, IDLE, idle_prior, power)
        raw.append(_Raw(IDLE, 0.0, None, idle, 0.0, price_known=True))
    for profile in profiles:
        workload = mine_workload(profile.id)
        if only_current and workload != current:
            continue
        rate = mining_rate(gpu, profile)
        price = market.hashprice_usd_per_hs_day.get(profile.algorithm)
        prior = mining_power_prior(gpu, profile, rate) or idle_prior
        if rate is not None and price is not None and valid_hashprice(price):
            revenue = mining_revenue_usd_per_hour(
                rate.hashrate_hs, price, profile.pool_fee_fraction, profile.dev_fee_fraction
            )
            raw.append(
                _Raw(
                    workload,
                    revenue,
                    None,
                    board_power(gpu, workload, prior, power),
                    profile.switch_downtime_s,
                    price_known=True,
                )
            )
        elif workload == current:
            drawn = board_power(gpu, workload, prior, power)
            raw.append(
                _Raw(workload, 0.0, None, drawn, profile.switch_downtime_s, price_known=False)
            )
    for reserved in contracts.reserved:
        workload = ai_workload(reserved.id)
        if only_current and workload != current:
            continue
        drawn = board_power(gpu, workload, ai_power_prior(gpu, reserved.power), power)
        eligible = reserved.eligibility.admits(gpu.model, gpu.memory_total_bytes)
        if eligible and reserved.id in active_reserved:
            rate_usd = reserved.rate_usd_per_gpu_hour
            raw.append(
                _Raw(
                    workload,
                    rate_usd,
                    reserved.id,
                    drawn,
                    reserved.switch_downtime_s,
                    price_known=True,
                )
            )
        elif workload == current:  # staying earns nothing outside the window or eligibility
            paid_by = reserved.id if eligible else None
            raw.append(
                _Raw(workload, 0.0, paid_by, drawn, reserved.switch_downtime_s, price_known=True)
            )
    for demand in contracts.on_demand:
        workload = ai_workload(demand.id)
        if only_current and workload != current:
            continue
        utilisation_pct = demand.expected_utilisation_fraction * 100.0
        prior = ai_power_prior(gpu, demand.power)
        drawn = board_power(gpu, workload, prior, power, utilisation_pct)
        if demand.eligibility.admits(gpu.model, gpu.memory_total_bytes):
            rate_usd = demand.rate_usd_per_gpu_hour * demand.expected_utilisation_fraction
            raw.append(
                _Raw(
                    workload,
                    rate_usd,
                    demand.id,
                    drawn,
                    demand.switch_downtime_s,
                    price_known=True,
                )
            )
        elif workload == current:
            raw.append(_Raw(workload, 0.0, None, drawn, demand.switch_downtime_s, price_known=True))
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
    power: PowerTable = NO_LEARNING,
) -> tuple[Option, ...]:
    """Every workload `gpu` could run next, priced, in a stable order (idle, mining, AI).

    `only_current` prices staying alone (an empty tuple when there is nothing to stay on).
    A current workload that names no known profile or contract counts as unknown: every
    option is then a switch, and no hysteresis applies (there is nothing to stay on).
    Power is priced at the wall (`settings.site_power`, the GPU's node); `power` holds what
    the fleet has learnt (without it, the priors alone).
    """
    raw = _raw_options(
        gpu,
        market=market,
        contracts=contracts,
        profiles=profiles,
        settings=settings,
        active_reserved=active_reserved,
        only_current=only_current,
        power=power,
    )
    price = market.power_price_usd_per_kwh
    wall_factor = settings.site_power.wall_factor(node_of(gpu.key))
    current = gpu.current_workload
    stay = next((r for r in raw if r.workload == current), None)
    stay_net = 0.0
    if stay is not None:
        stay_wall_w = stay.power.board_w * wall_factor
        stay_net = stay.revenue_usd_per_hour - power_cost_usd_per_hour(stay_wall_w, price)
    margin = hysteresis_margin_usd_per_hour(stay_net, settings) if stay is not None else 0.0
    options = []
    for r in raw:
        wall_w = r.power.board_w * wall_factor
        power_cost = power_cost_usd_per_hour(wall_w, price)
        is_stay = stay is not None and r.workload == current
        switch = 0.0
        if not is_stay:
            switch = switch_cost_usd_per_hour(
                r.downtime_s,
                r.revenue_usd_per_hour,
                settings.switch_fixed_cost_usd,
                settings.horizon_s,
            )
        options.append(
            Option(
                workload=r.workload,
                revenue_usd_per_hour=r.revenue_usd_per_hour,
                paid_by=r.paid_by,
                power_w=wall_w,
                power_cost_usd_per_hour=power_cost,
                switch_cost_usd_per_hour=switch,
                margin_usd_per_hour=0.0 if is_stay else margin,
                is_stay=is_stay,
                price_known=r.price_known,
                board_w=r.power.board_w,
                power_source=r.power.source,
                power_samples=r.power.samples,
            )
        )
    return tuple(options)


def measured_stay(
    stay: Option,
    gpu: GpuState,
    profile: MiningProfile,
    market: Market,
    *,
    settings: PlannerSettings,
    power: PowerTable = NO_LEARNING,
) -> Option:
    """`stay` (mining with `profile`, priced for another GPU) repriced for `gpu`.

    A shortcut for the planner, equal to the stay option `gpu_options` gives `gpu`: only
    the stay option depends on what a GPU measured on the profile it runs, so GPUs that
    differ only there share every other option.
    """
    rate = mining_rate(gpu, profile)
    price = market.hashprice_usd_per_hs_day.get(profile.algorithm)
    prior = mining_power_prior(gpu, profile, rate) or settings.idle_prior(gpu.power_limit_w)
    board = board_power(gpu, mine_workload(profile.id), prior, power)
    if rate is None:
        revenue, known = 0.0, False
    elif price is not None and valid_hashprice(price):
        known = True
        revenue = mining_revenue_usd_per_hour(
            rate.hashrate_hs, price, profile.pool_fee_fraction, profile.dev_fee_fraction
        )
    else:
        revenue, known = 0.0, False
    wall_w = board.board_w * settings.site_power.wall_factor(node_of(gpu.key))
    return replace(
        stay,
        revenue_usd_per_hour=revenue,
        power_w=wall_w,
        power_cost_usd_per_hour=power_cost_usd_per_hour(wall_w, market.power_price_usd_per_kwh),
        price_known=known,
        board_w=board.board_w,
        power_source=board.source,
        power_samples=board.samples,
    )


#: Power price moves are judged on max(|old price|, this), in US$/kWh: around zero a relative
#: move means nothing (0 to 0.0001 is "infinite", -0.05 to -0.5 is below zero for both).
POWER_MOVE_FLOOR_USD_PER_KWH = 0.01


def significant_price_move(
    previous: Market,
    current: Market,
    fraction: float,
    *,
    power_floor_usd_per_kwh: float = POWER_MOVE_FLOOR_USD_PER_KWH,
) -> bool:
    """Whether any price moved by more than `fraction` (or appeared or vanished) since `previous`.

    A hashprice moves by `fraction` of its old value. A power price may be zero or negative
    (real-time markets), so it moves by `fraction` of max(|old|, `power_floor_usd_per_kwh`):
    -0.05 to -0.5 US$/kWh is a move, 0 to 0.0001 is not. The central loop re-plans early on
    such a move; the planner itself does not need it.
    """

    def moved(old: float | None, new: float | None, *, power: bool) -> bool:
        valid = _valid_power_price if power else valid_hashprice
        old_ok, new_ok = valid(old), valid(new)
        if old_ok != new_ok:
            return True
        if old is None or new is None or not old_ok:
            return False
        scale = max(abs(old), power_floor_usd_per_kwh if power else 0.0)
        if scale == 0:
            return new != old
        return abs(new - old) > fraction * scale

    if moved(previous.power_price_usd_per_kwh, current.power_price_usd_per_kwh, power=True):
        return True
    algorithms = set(previous.hashprice_usd_per_hs_day) | set(current.hashprice_usd_per_hs_day)
    return any(
        moved(
            previous.hashprice_usd_per_hs_day.get(a),
            current.hashprice_usd_per_hs_day.get(a),
            power=False,
        )
        for a in sorted(algorithms)
    )


def _valid_power_price(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
