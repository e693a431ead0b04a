"""The strategies a backtest compares: the live policy, three baselines and the hindsight bound.

- `LivePolicy`: the daemon's planner, `orchestrator.policy.planner.plan`, called once per
  step with the step's market, `now_s` = the step's time and the fleet as the previous
  steps left it (each GPU's workload and since when). Hysteresis margin, minimum dwell,
  horizon, switch costs, SLA tiers and the power cap all act exactly as live; a sweep
  passes other `PlannerSettings`.
- `AlwaysMine`: mining only (no contracts): each step the best algorithm per GPU, idle
  where nothing covers the power, within the site power cap.
- `AlwaysAi`: contracts only: every active reserved commitment filled (when it can be),
  the rest on-demand where it pays, else idle.
- `StaticSplit(ai_fraction)`: in each fleet group that some contract admits, the first
  round(fraction x count) GPUs behave as `AlwaysAi`, the others (and every GPU of a group
  no contract admits) as `AlwaysMine`, with one power cap for both. Commitments the AI
  share cannot cover cost their penalty: that is what a too-small split costs.
- `Hindsight`: each step, the best assignment of every GPU among every workload it could
  run, knowing that step's prices, with no switching cost, no downtime, no dwell and no
  margin; SLA shortfall is allowed at its penalty; the power cap holds.

Why `Hindsight` bounds every strategy that holds the same contracts from above
(tests/backtest check it; `AlwaysMine` holds none and owes no penalty, so its bound is the
hindsight optimum of the same history without contracts). Take any strategy's step: GPUs
on workloads, some of them still switching. Count every switching GPU as productive:
mining revenue cannot fall (hashprices are >= 0), contract pay cannot fall (it grows with
served GPUs) and penalties cannot rise; power is unchanged, and the
strategy's own fixed switch costs only lowered its value. So the step is worth at most
the same assignment without downtime, and `Hindsight` maximises exactly that value
(`engine.step_value_usd`) over a set of assignments that contains it: every workload is
offered to every GPU, the SLA is soft, and the power cap is the same one every strategy
meets. Summed over steps, Hindsight >= strategy. (The one exception is a site power cap
below the fleet's idle draw, where the planner plans at the lowest possible draw
instead; every strategy here does the same, but the lowest draw of split fleets can
differ.)

The stateless strategies (all but `LivePolicy`) solve one small MILP per step over
(fleet group, workload) counts with the planner's solver (`orchestrator.policy.milp`),
the same model as the planner's but without per-GPU state; the solution depends only on
the prices and the active contracts, so it is cached on them (provably identical inputs,
identical answer). Counts become moves keeping as many GPUs in place as possible, lowest
GPU index first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from orchestrator.backtest.engine import (
    WARM_START_AGE_S,
    Decision,
    FleetState,
    Scenario,
    all_workloads,
    contract_terms,
    every_contract,
    workload_rates,
)
from orchestrator.domain import WorkloadKind, workload_kind
from orchestrator.policy.economics import power_cost_usd_per_hour
from orchestrator.policy.milp import INF, Milp
from orchestrator.policy.model import GpuState, PlannerSettings
from orchestrator.policy.planner import plan

_FEASIBILITY_W = 1e-6
TIE_BREAK_USD_PER_GPU_HOUR = 1e-6


class LivePolicy:
    """The real planner, step by step, with its assignment fed back as the fleet's state."""

    def __init__(self, settings: PlannerSettings | None = None, name: str = "live policy") -> None:
        self._settings = settings
        self._name = name
        self._gpus: list[GpuState] | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def free_switching(self) -> bool:
        return False

    @property
    def signs_contracts(self) -> bool:
        return True

    def decide(self, scenario: Scenario, step: int, state: FleetState) -> Decision:
        settings = self._settings or scenario.policy.settings
        now_s = scenario.steps_s[step]
        if self._gpus is None or step == 0:
            keys = scenario.gpu_keys()
            self._gpus = [
                GpuState(
                    key=key,
                    uuid=f"GPU-backtest-{key}",
                    model=scenario.groups[state.group_of[i]].model,
                    memory_total_bytes=scenario.groups[state.group_of[i]].memory_bytes,
                    online=True,
                    healthy=True,
                    current_workload=None,
                )
                for i, key in enumerate(keys)
            ]
        gpus = self._gpus
        result = plan(
            gpus,
            scenario.markets[step],
            contracts=scenario.policy.contracts,
            profiles=scenario.policy.profiles,
            overrides={},
            settings=settings,
            now_s=now_s,
        )
        moves: list[tuple[int, str]] = []
        if result.switches or step == 0:
            since_s = now_s - WARM_START_AGE_S if step == 0 else now_s
            for i, gpu in enumerate(gpus):
                assignment = result.assignments[gpu.key]
                if assignment.changed and assignment.workload is not None:
                    moves.append((i, assignment.workload))
                    gpus[i] = replace(gpu, current_workload=assignment.workload, since_s=since_s)
        shortfall = sum(s.shortfall_gpus for s in result.sla if s.active)
        return Decision(moves, shortfall)


@dataclass(frozen=True, slots=True)
class _Class:
    group: int
    kind: str  # "all", "mine", "ai"
    gpus: tuple[int, ...]


_KINDS_ALLOWED = {
    "mine": frozenset({WorkloadKind.IDLE, WorkloadKind.MINING}),
    "ai": frozenset({WorkloadKind.IDLE, WorkloadKind.AI}),
}  # "all": any workload


def _allowed(kind: str, workload: str) -> bool:
    allowed = _KINDS_ALLOWED.get(kind)
    return allowed is None or workload_kind(workload) in allowed


class _PerStepBest:
    """Each step, the best counts per (class, workload); no memory of the past but the cache."""

    def __init__(
        self, name: str, *, hard_reserved: bool, free_switching: bool = False, signs: bool = True
    ) -> None:
        # Hindsight knows when windows open and switches for free: it decides on what is
        # owed. The baselines decide ahead, as the planner does, from the lead time on.
        self._owed = free_switching
        self._name = name
        self._hard_reserved = hard_reserved
        self._free_switching = free_switching
        self._signs = signs
        self._classes: list[_Class] | None = None
        self._members: list[dict[str | None, set[int]]] = []
        self._cache: dict[tuple[object, ...], list[list[int]]] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def free_switching(self) -> bool:
        return self._free_switching

    @property
    def signs_contracts(self) -> bool:
        return self._signs

    def _partition(self, scenario: Scenario, state: FleetState) -> list[_Class]:
        raise NotImplementedError

    def decide(self, scenario: Scenario, step: int, state: FleetState) -> Decision:
        if self._classes is None or step == 0:
            self._classes = self._partition(scenario, state)
            self._members = [{None: set(c.gpus)} for c in self._classes]
            self._cache = {}
        classes = self._classes
        options = [
            [
                w
                for w in all_workloads(scenario)
                if _allowed(c.kind, w)
                and workload_rates(scenario, scenario.groups[c.group], w, step, owed=self._owed)
                is not None
            ]
            for c in classes
        ]
        market = scenario.markets[step]
        # Baselines break ties toward what runs now (see `best_counts`), so what runs now
        # is part of the key; the hindsight bound switches for free and needs no tie-break.
        running: tuple[tuple[str, ...], ...] = ()
        if not self._free_switching:
            running = tuple(
                tuple(sorted(w for w, gpus in m.items() if w is not None and gpus))
                for m in self._members
            )
        key = (
            tuple(sorted(market.hashprice_usd_per_hs_day.items())),
            market.power_price_usd_per_kwh,
            scenario.owed_reserved[step] if self._owed else scenario.active_reserved[step],
            running,
        )
        counts = self._cache.get(key)
        if counts is None:
            counts = self._cache[key] = best_counts(
                scenario,
                step,
                classes,
                options,
                hard_reserved=self._hard_reserved,
                owed=self._owed,
                running=[set(r) for r in running] if running else None,
            )
        moves: list[tuple[int, str]] = []
        for k, cls_options in enumerate(options):
            moves.extend(self._moves(k, cls_options, counts[k]))
        return Decision(moves, 0)

    def _moves(self, k: int, workloads: list[str], target: list[int]) -> list[tuple[int, str]]:
        members = self._members[k]
        movers: list[int] = []
        wanted: list[tuple[str, int]] = []
        for workload, n in zip(workloads, target, strict=True):
            have = members.get(workload, set())
            if len(have) > n:
                movers.extend(sorted(have)[n:])
            elif len(have) < n:
                wanted.append((workload, n - len(have)))
        for current, have in members.items():
            if current not in workloads and have:
                movers.extend(have)
        movers.sort()
        moves: list[tuple[int, str]] = []
        position = 0
        for workload, n in wanted:
            moves.extend((gpu, workload) for gpu in movers[position : position + n])
            position += n
        for gpu, workload in moves:
            for have in members.values():
                have.discard(gpu)
            members.setdefault(workload, set()).add(gpu)
        return moves


def _by_group(scenario: Scenario, state: FleetState, kind: str) -> list[_Class]:
    gpus: list[list[int]] = [[] for _ in scenario.groups]
    for i, k in enumerate(state.group_of):
        gpus[k].append(i)
    return [_Class(k, kind, tuple(members)) for k, members in enumerate(gpus)]


class Hindsight(_PerStepBest):
    """Perfect foresight of each step's prices, no switching cost: the upper bound."""

    def __init__(self, name: str = "hindsight optimum") -> None:
        super().__init__(name, hard_reserved=False, free_switching=True)

    def _partition(self, scenario: Scenario, state: FleetState) -> list[_Class]:
        return _by_group(scenario, state, "all")


class AlwaysMine(_PerStepBest):
    def __init__(self, name: str = "always mine") -> None:
        super().__init__(name, hard_reserved=False, signs=False)

    def _partition(self, scenario: Scenario, state: FleetState) -> list[_Class]:
        return _by_group(scenario, state, "mine")


class AlwaysAi(_PerStepBest):
    def __init__(self, name: str = "always AI") -> None:
        super().__init__(name, hard_reserved=True)

    def _partition(self, scenario: Scenario, state: FleetState) -> list[_Class]:
        return _by_group(scenario, state, "ai")


class StaticSplit(_PerStepBest):
    """A fixed share of each group for AI, the rest for mining."""

    def __init__(self, ai_fraction: float, name: str | None = None) -> None:
        if not 0.0 <= ai_fraction <= 1.0:
            raise ValueError(f"ai_fraction {ai_fraction} is not between 0 and 1")
        self.ai_fraction = ai_fraction
        label = name or f"static split {ai_fraction:.0%} AI"
        super().__init__(label, hard_reserved=True)

    def _partition(self, scenario: Scenario, state: FleetState) -> list[_Class]:
        classes = []
        for cls in _by_group(scenario, state, "all"):
            group = scenario.groups[cls.group]
            capable = any(
                c.eligibility.admits(group.model, group.memory_bytes)
                for c in every_contract(scenario)
            )
            n_ai = round(self.ai_fraction * len(cls.gpus)) if capable else 0
            classes.append(_Class(cls.group, "ai", cls.gpus[:n_ai]))
            classes.append(_Class(cls.group, "mine", cls.gpus[n_ai:]))
        return [c for c in classes if c.gpus]


# ---------------------------------------------------------------- the per-step MILP


def best_counts(
    scenario: Scenario,
    step: int,
    classes: Sequence[_Class],
    options: Sequence[Sequence[str]],
    *,
    hard_reserved: bool,
    owed: bool = True,
    running: Sequence[set[str]] | None = None,
) -> list[list[int]]:
    """Counts per class and option maximising `engine.step_value_usd` under the power cap.

    Columns: an integer count per (class, option), and per contract two served counts
    with s1 + s2 <= GPUs on the contract: s1 (0..target GPUs) paying rate + penalty, s2
    (up to the ceiling) paying the rate; the constant -penalty x target is left out. With
    `hard_reserved`, s1 + s2 >= the GPUs the target requires where that is feasible (else
    the commitment becomes soft, as the planner does).

    `running` (per class, the workloads its GPUs run now) adds TIE_BREAK_USD_PER_GPU_HOUR
    to those options, so that among equally good answers the one moving fewer GPUs wins;
    without it, HiGHS may answer a tie differently from step to step and a baseline would
    pay downtime for nothing.
    """
    price_kwh = scenario.markets[step].power_price_usd_per_kwh
    terms = contract_terms(scenario, step, owed=owed)
    rates = [
        [workload_rates(scenario, scenario.groups[c.group], w, step, owed=owed) for w in opts]
        for c, opts in zip(classes, options, strict=True)
    ]
    contract_ids = sorted(
        {r.paid_by for row in rates for r in row if r is not None and r.paid_by is not None}
    )
    cap_w: float | None = None
    if scenario.policy.settings.site_power_cap_kw is not None:
        lowest_w = sum(
            len(c.gpus) * min(r.power_w for r in row if r is not None)
            for c, row in zip(classes, rates, strict=True)
        )
        cap_w = max(scenario.policy.settings.site_power_cap_kw * 1000.0, lowest_w)
    for pin in (True, False) if hard_reserved else (False,):
        milp = Milp()
        class_rows = [milp.add_row(len(c.gpus), len(c.gpus)) for c in classes]
        contract_rows = {c: milp.add_row(-INF, 0.0) for c in contract_ids}
        power_row = milp.add_optional_row(cap_w, upper=True, slack=_FEASIBILITY_W)
        for k, row in enumerate(rates):
            for j, r in enumerate(row):
                assert r is not None  # options were filtered on it  # noqa: S101
                own = r.own_revenue_usd_per_hour - power_cost_usd_per_hour(r.power_w, price_kwh)
                if running is not None and options[k][j] in running[k]:
                    own += TIE_BREAK_USD_PER_GPU_HOUR
                entries = [(class_rows[k], 1.0), (power_row, r.power_w)]
                if r.paid_by is not None:
                    entries.append((contract_rows[r.paid_by], -1.0))
                milp.add_column(own, 0.0, float(len(classes[k].gpus)), entries, integer=True)
        for c in contract_ids:
            t = terms[c]
            below = t.target_gpus  # each GPU up to the target also saves the penalty
            above = t.cap_gpus - below if math.isfinite(t.cap_gpus) else INF
            paid = t.paid_usd_per_gpu_hour
            lower = (below, t.required_gpus - below) if pin else (0.0, 0.0)
            for value, low, high in (
                (paid + t.penalty_usd_per_gpu_hour, lower[0], below),
                (paid, lower[1], above),
            ):
                if high > 0:
                    milp.add_column(value, low, high, [(contract_rows[c], 1.0)], integer=False)
        values = milp.solve()
        if values is None:
            continue
        counts: list[list[int]] = []
        position = 0
        for row in rates:
            counts.append([round(v) for v in values[position : position + len(row)]])
            position += len(row)
        return counts
    raise RuntimeError(f"step {step}: no assignment fits (a bug: idle always fits the cap)")


def default_strategies(ai_fraction: float) -> list[LivePolicy | _PerStepBest]:
    """The comparison every backtest prints: live policy, baselines, upper bound."""
    return [LivePolicy(), AlwaysMine(), AlwaysAi(), StaticSplit(ai_fraction), Hindsight()]
