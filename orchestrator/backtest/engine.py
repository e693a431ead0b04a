"""The replay: a simulated clock, a fleet that switches with downtime, and honest accounting.

A backtest is a `Scenario` (fleet, policy inputs, one market per step) and a set of
strategies. For each strategy the engine walks the steps in order. At step i (time t,
length `step_s`) the strategy sees the fleet as it is (each GPU's workload and since
when) and answers with moves; the engine applies them and books what the step earned.

Time model. A decision at t holds for [t, t + step_s). A GPU moved at t is in transition
until t + the target's switch downtime (the mining profile's or the contract's
`switch_downtime_s`); a transition may span several steps. In transition it earns nothing
(no hashes, not counted as serving a contract) but draws the target workload's power.
Each switch also costs the planner's `switch_fixed_cost_usd`. The first step is a warm
start: every strategy's first assignment counts as already running (no downtime, no
switch, dwell satisfied), so strategies are compared on how they react, not on how they
boot.

Accounting per step (dt = step_s in hours), with productive GPUs counted fractionally:
- mining revenue = productive GPUs x hashrate (benchmark) x hashprice / 24 x (1 - pool fee)
  x (1 - dev fee) x dt
- AI revenue = rate x min(productive serving GPUs, commitment or ceiling) x dt (on-demand:
  x expected utilisation); a reserved contract pays and is owed only while its window is
  open (the planner starts moving GPUs a lead time earlier; that time is not paid)
- penalty = penalty rate x (commitment x availability target - productive serving GPUs,
  if positive) x dt: the SLA is met at its target, as in the planner and the ledger
- power = every GPU's power under its workload (or its target's, in transition) x $/kWh x dt
- net = mining + AI - power - penalties - fixed switch costs
These are the planner's economics (`orchestrator.policy.economics`), evaluated after the
fact instead of over a horizon. SLA availability is served / committed GPU-hours over
the steps where a reserved contract is active.

Cost. Accounting works on counts per (fleet group, workload) plus the few GPUs in
transition, so a step costs O(groups x workloads + movers), not O(GPUs). The strategies
decide how expensive their own decision is (strategies.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from orchestrator.config.policy import GIB
from orchestrator.domain import IDLE, Workload, WorkloadKind, ai_workload, gpu_key, mine_workload
from orchestrator.policy.economics import (
    mining_revenue_usd_per_hour,
    power_cost_usd_per_hour,
    valid_hashprice,
)
from orchestrator.policy.model import (
    Market,
    OnDemandContract,
    PolicyInputs,
    ReservedContract,
)

SECONDS_PER_HOUR = 3600.0
WARM_START_AGE_S = 10 * 365 * 86_400.0  # "since long ago": dwell is satisfied at the start


@dataclass(frozen=True, slots=True)
class FleetGroup:
    """`count` identical GPUs of one model."""

    model: str
    count: int
    memory_gib: float

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)


@dataclass(frozen=True, slots=True)
class Scenario:
    """What a backtest replays: fleet, policy, and the market at each step."""

    groups: tuple[FleetGroup, ...]
    policy: PolicyInputs
    steps_s: tuple[float, ...]
    step_s: float
    markets: tuple[Market, ...]
    active_reserved: tuple[frozenset[str], ...]  # per step, as the planner sees it (lead time)
    owed_reserved: tuple[frozenset[str], ...]  # per step, window open: paid and owed

    @property
    def gpu_count(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def days(self) -> float:
        return len(self.steps_s) * self.step_s / 86_400.0

    def gpu_keys(self) -> list[str]:
        """Stable GPU names `g<group>:<index>`, in fleet order."""
        return [
            gpu_key(f"g{k}", n) for k, group in enumerate(self.groups) for n in range(group.count)
        ]


def make_scenario(
    groups: Sequence[FleetGroup],
    policy: PolicyInputs,
    *,
    steps_s: Sequence[float],
    step_s: float,
    hashprice_usd_per_hs_day: Mapping[str, Sequence[float]],
    power_usd_per_kwh: Sequence[float],
) -> Scenario:
    """A scenario from per-step price columns (already resampled onto `steps_s`)."""
    if not steps_s:
        raise ValueError("a backtest needs at least one step")
    for name, values in [*hashprice_usd_per_hs_day.items(), ("power", power_usd_per_kwh)]:
        if len(values) != len(steps_s):
            raise ValueError(f"{name}: {len(values)} values for {len(steps_s)} steps")
    markets = tuple(
        Market(
            {a: float(v[i]) for a, v in hashprice_usd_per_hs_day.items()},
            float(power_usd_per_kwh[i]),
        )
        for i in range(len(steps_s))
    )
    reserved = policy.contracts.reserved
    active = tuple(frozenset(c.id for c in reserved if c.active(t)) for t in steps_s)
    in_window = [replace(c, lead_time_s=0.0) for c in reserved]
    owed = tuple(frozenset(c.id for c in in_window if c.active(t)) for t in steps_s)
    return Scenario(tuple(groups), policy, tuple(steps_s), step_s, markets, active, owed)


# ---------------------------------------------------------------- what a workload earns


@dataclass(frozen=True, slots=True)
class Rates:
    """One GPU of a group on one workload during one step, per hour."""

    own_revenue_usd_per_hour: float  # mining; 0 for contracts (paid per contract)
    power_w: float
    paid_by: str | None  # the contract this GPU counts for, when eligible and paying


def workload_rates(
    scenario: Scenario, group: FleetGroup, workload: str, step: int, *, owed: bool = True
) -> Rates | None:
    """What `workload` earns and draws on a GPU of `group` at `step`; None if impossible.

    `owed`: reserved contracts pay inside their windows (the accounting's view); with
    False, from their lead time on (the planner's view, for deciding ahead).
    """
    policy = scenario.policy
    market = scenario.markets[step]
    parsed = Workload.parse(workload)
    kind, name = parsed.kind, parsed.name
    if kind is WorkloadKind.IDLE:
        return Rates(0.0, policy.settings.idle_power_w, None)
    if kind is WorkloadKind.MINING:
        profile = next((p for p in policy.profiles if p.id == name), None)
        if profile is None:
            return None
        bench = profile.benchmarks.get(group.model)
        if bench is None:
            return None
        price = market.hashprice_usd_per_hs_day.get(profile.algorithm)
        revenue = 0.0
        if price is not None and valid_hashprice(price):
            revenue = mining_revenue_usd_per_hour(
                bench.hashrate_hs, price, profile.pool_fee_fraction, profile.dev_fee_fraction
            )
        return Rates(revenue, bench.power_w, None)
    if kind is WorkloadKind.AI:
        contract = _contract(scenario, name)
        if contract is None:
            return None
        eligible = contract.eligibility.admits(group.model, group.memory_bytes)
        reserved = scenario.owed_reserved[step] if owed else scenario.active_reserved[step]
        paying = eligible and (isinstance(contract, OnDemandContract) or contract.id in reserved)
        return Rates(0.0, contract.power.for_model(group.model), contract.id if paying else None)
    return None


def _contract(scenario: Scenario, contract_id: str) -> ReservedContract | OnDemandContract | None:
    for c in every_contract(scenario):
        if c.id == contract_id:
            return c
    return None


def every_contract(scenario: Scenario) -> list[ReservedContract | OnDemandContract]:
    """Reserved contracts, then on-demand ones."""
    contracts = scenario.policy.contracts
    return [*contracts.reserved, *contracts.on_demand]


def all_workloads(scenario: Scenario) -> list[str]:
    """Every workload id the scenario knows, in a stable order (idle, mining, AI)."""
    return [
        IDLE,
        *(mine_workload(p.id) for p in scenario.policy.profiles),
        *(ai_workload(c.id) for c in every_contract(scenario)),
    ]


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """A contract at one step: paid per serving GPU-hour up to `cap`, owed `committed`,
    met at `target_gpus` (commitment x availability target; penalised below it)."""

    paid_usd_per_gpu_hour: float
    cap_gpus: float
    committed_gpus: int
    penalty_usd_per_gpu_hour: float
    target_gpus: float = 0.0

    @property
    def required_gpus(self) -> int:
        """Whole GPUs that meet the target (what a hard SLA demands)."""
        return math.ceil(self.target_gpus)


def contract_terms(scenario: Scenario, step: int, *, owed: bool = True) -> dict[str, ContractTerms]:
    """Each contract's terms at `step` (`owed` as in `workload_rates`)."""
    active = scenario.owed_reserved[step] if owed else scenario.active_reserved[step]
    terms = {}
    for r in scenario.policy.contracts.reserved:
        on = r.id in active
        committed = r.committed_gpus if on else 0
        terms[r.id] = ContractTerms(
            r.rate_usd_per_gpu_hour,
            committed,
            committed,
            r.penalty_usd_per_gpu_hour,
            r.target_gpus if on else 0.0,
        )
    for d in scenario.policy.contracts.on_demand:
        cap = math.inf if d.max_gpus is None else float(d.max_gpus)
        paid = d.rate_usd_per_gpu_hour * d.expected_utilisation_fraction
        terms[d.id] = ContractTerms(paid, cap, 0, 0.0)
    return terms


def downtime_s(scenario: Scenario, workload: str) -> float:
    """Switch downtime into `workload`: the profile's or contract's; idle is immediate."""
    parsed = Workload.parse(workload)
    kind, name = parsed.kind, parsed.name
    if kind is WorkloadKind.MINING:
        for p in scenario.policy.profiles:
            if p.id == name:
                return p.switch_downtime_s
    elif kind is WorkloadKind.AI:
        contract = _contract(scenario, name)
        if contract is not None:
            return contract.switch_downtime_s
    return 0.0


# ---------------------------------------------------------------- fleet state


@dataclass(slots=True)
class FleetState:
    """Each GPU's workload, since when, and until when it is still switching."""

    group_of: list[int]
    workload: list[str | None]
    since_s: list[float]
    busy_until_s: list[float]
    members: list[dict[str, set[int]]]  # per group: workload -> GPU indices

    @classmethod
    def empty(cls, groups: Sequence[FleetGroup]) -> FleetState:
        group_of = [k for k, g in enumerate(groups) for _ in range(g.count)]
        n = len(group_of)
        return cls(group_of, [None] * n, [0.0] * n, [0.0] * n, [{} for _ in groups])

    def move(self, gpu: int, workload: str, *, now_s: float, busy_until_s: float) -> None:
        old = self.workload[gpu]
        by_workload = self.members[self.group_of[gpu]]
        if old is not None:
            by_workload[old].discard(gpu)
        by_workload.setdefault(workload, set()).add(gpu)
        self.workload[gpu] = workload
        self.since_s[gpu] = now_s
        self.busy_until_s[gpu] = busy_until_s


@dataclass(frozen=True, slots=True)
class Decision:
    """A strategy's answer at one step: GPU index -> new workload, and its SLA view."""

    moves: Sequence[tuple[int, str]]
    planned_shortfall_gpus: int = 0  # committed GPUs the plan itself left unassigned


class Strategy(Protocol):
    """Something that decides each step. `decide` may keep state between steps.

    `free_switching`: the strategy is booked without downtime or fixed switch costs (the
    hindsight bound). `signs_contracts`: False for a strategy that never signed the
    contracts (always mine), which then owes no commitment and no penalty.
    """

    @property
    def name(self) -> str: ...

    @property
    def free_switching(self) -> bool: ...

    @property
    def signs_contracts(self) -> bool: ...

    def decide(self, scenario: Scenario, step: int, state: FleetState) -> Decision: ...


# ---------------------------------------------------------------- results


@dataclass(slots=True)
class StrategyResult:
    name: str
    gpu_count: int
    days: float
    mining_revenue_usd: float = 0.0
    ai_revenue_usd: float = 0.0
    power_cost_usd: float = 0.0
    penalties_usd: float = 0.0
    switch_cost_usd: float = 0.0
    switches: int = 0
    committed_gpu_hours: dict[str, float] = field(default_factory=dict)
    served_gpu_hours: dict[str, float] = field(default_factory=dict)
    net_by_step_usd: list[float] = field(default_factory=list)
    gpus_by_workload: list[dict[str, int]] = field(default_factory=list)
    planned_shortfall_gpus: list[int] = field(default_factory=list)

    @property
    def revenue_usd(self) -> float:
        return self.mining_revenue_usd + self.ai_revenue_usd

    @property
    def net_revenue_usd(self) -> float:
        return self.revenue_usd - self.power_cost_usd - self.penalties_usd - self.switch_cost_usd

    @property
    def switches_per_gpu_day(self) -> float:
        if not self.gpu_count or not self.days:
            return 0.0
        return self.switches / self.gpu_count / self.days

    def sla_availability(self, contract_id: str | None = None) -> float | None:
        """Served / committed GPU-hours (all reserved contracts together by default)."""
        ids = [contract_id] if contract_id else list(self.committed_gpu_hours)
        committed = sum(self.committed_gpu_hours.get(c, 0.0) for c in ids)
        if committed <= 0:
            return None
        return sum(self.served_gpu_hours.get(c, 0.0) for c in ids) / committed


def run_strategy(scenario: Scenario, strategy: Strategy) -> StrategyResult:
    """Replay `scenario` with `strategy`; see the module docstring for the accounting."""
    groups = scenario.groups
    state = FleetState.empty(groups)
    result = StrategyResult(strategy.name, scenario.gpu_count, scenario.days)
    if strategy.signs_contracts:
        for r in scenario.policy.contracts.reserved:
            result.committed_gpu_hours[r.id] = 0.0
            result.served_gpu_hours[r.id] = 0.0
    fixed_cost_usd = scenario.policy.settings.switch_fixed_cost_usd
    step_s = scenario.step_s
    dt_h = step_s / SECONDS_PER_HOUR
    in_transition: set[int] = set()
    downtimes = {w: downtime_s(scenario, w) for w in all_workloads(scenario)}
    if strategy.free_switching:
        fixed_cost_usd = 0.0
        downtimes = dict.fromkeys(downtimes, 0.0)
    signed = strategy.signs_contracts
    for step, now_s in enumerate(scenario.steps_s):
        decision = strategy.decide(scenario, step, state)
        warm = step == 0
        switch_cost_usd = 0.0
        for gpu, workload in decision.moves:
            if workload == state.workload[gpu]:
                continue
            if warm:
                state.move(gpu, workload, now_s=now_s - WARM_START_AGE_S, busy_until_s=now_s)
                continue
            busy_until = now_s + downtimes.get(workload, 0.0)
            state.move(gpu, workload, now_s=now_s, busy_until_s=busy_until)
            result.switches += 1
            switch_cost_usd += fixed_cost_usd
            if busy_until > now_s:
                in_transition.add(gpu)
        if warm and any(w is None for w in state.workload):
            raise ValueError(f"strategy {strategy.name!r} left GPUs unassigned at the start")
        # lost productive GPU-steps per (group, workload) from GPUs still switching
        lost: dict[tuple[int, str], float] = {}
        for gpu in list(in_transition):
            left_s = state.busy_until_s[gpu] - now_s
            if left_s <= 0:
                in_transition.discard(gpu)
                continue
            key = (state.group_of[gpu], state.workload[gpu] or IDLE)
            lost[key] = lost.get(key, 0.0) + min(left_s, step_s) / step_s
        result.switch_cost_usd += switch_cost_usd
        booked = _book_step(
            scenario, step, state, lost=lost, result=result, dt_h=dt_h, signed=signed
        )
        result.net_by_step_usd.append(booked - switch_cost_usd)
        result.planned_shortfall_gpus.append(decision.planned_shortfall_gpus)
    return result


def _book_step(
    scenario: Scenario,
    step: int,
    state: FleetState,
    *,
    lost: Mapping[tuple[int, str], float],
    result: StrategyResult,
    dt_h: float,
    signed: bool,
) -> float:
    """Add one step's money to `result`; return the step's net before fixed switch costs."""
    price_kwh = scenario.markets[step].power_price_usd_per_kwh
    terms = contract_terms(scenario, step) if signed else {}
    serving: dict[str, float] = {}
    mining = power = 0.0
    counts: dict[str, int] = {}
    for k, group in enumerate(scenario.groups):
        for workload, gpus in state.members[k].items():
            n = len(gpus)
            if not n:
                continue
            counts[workload] = counts.get(workload, 0) + n
            rates = workload_rates(scenario, group, workload, step)
            if rates is None:
                raise ValueError(f"workload {workload!r} is impossible on {group.model}")
            productive = n - lost.get((k, workload), 0.0)
            mining += productive * rates.own_revenue_usd_per_hour * dt_h
            power += n * power_cost_usd_per_hour(rates.power_w, price_kwh) * dt_h
            if rates.paid_by is not None:
                serving[rates.paid_by] = serving.get(rates.paid_by, 0.0) + productive
    ai = penalties = 0.0
    for contract_id, t in terms.items():
        served = serving.get(contract_id, 0.0)
        ai += t.paid_usd_per_gpu_hour * min(served, t.cap_gpus) * dt_h
        if t.committed_gpus:
            penalties += t.penalty_usd_per_gpu_hour * max(0.0, t.target_gpus - served) * dt_h
            result.committed_gpu_hours[contract_id] += t.committed_gpus * dt_h
            result.served_gpu_hours[contract_id] += min(served, t.committed_gpus) * dt_h
    result.mining_revenue_usd += mining
    result.ai_revenue_usd += ai
    result.power_cost_usd += power
    result.penalties_usd += penalties
    result.gpus_by_workload.append(counts)
    return mining + ai - power - penalties


def step_value_usd(scenario: Scenario, step: int, counts: Mapping[tuple[int, str], int]) -> float:
    """Net of one step for an assignment given as counts per (group, workload), no downtime.

    The hindsight optimum maximises exactly this; tests use it to check that claim.
    """
    dt_h = scenario.step_s / SECONDS_PER_HOUR
    price_kwh = scenario.markets[step].power_price_usd_per_kwh
    serving: dict[str, float] = {}
    value = 0.0
    for (k, workload), n in counts.items():
        rates = workload_rates(scenario, scenario.groups[k], workload, step)
        if rates is None or not n:
            continue
        value += n * (
            rates.own_revenue_usd_per_hour - power_cost_usd_per_hour(rates.power_w, price_kwh)
        )
        if rates.paid_by is not None:
            serving[rates.paid_by] = serving.get(rates.paid_by, 0.0) + n
    for contract_id, t in contract_terms(scenario, step).items():
        served = serving.get(contract_id, 0.0)
        value += t.paid_usd_per_gpu_hour * min(served, t.cap_gpus)
        value -= t.penalty_usd_per_gpu_hour * max(0.0, t.target_gpus - served)
    return value * dt_h
