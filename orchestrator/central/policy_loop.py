"""The policy loop: deciding when to plan, and planning. Nothing else.

`PolicyLoop.due(now_s)` names the trigger that makes a plan due, or None:

- `start`    the first plan, once every node known to be online has reported since
             `serve` started, or the warm-up (`ingest.node_offline_after_s`) has passed
             and the silent ones are offline; planning a half-reported fleet would move
             GPUs merely because `serve` restarted;
- `fleet`    a node came or went (the fleet's presence version changed);
- `override` an operator's override changed;
- `curtailment` a curtailment window was created, changed or cancelled, or one of its
             edges passed (its cap starts to bind `shed_ahead_s` before its start, and
             stops at its end): `run` sleeps no later than the next edge, so the plan
             comes at the edge itself, not at the next timer;
- `strike`   the power price crossed `planner.curtail_price_strike_usd_per_kwh`;
- `market`   a power price arrived after the loop held for want of one;
- `price`    a price moved by more than `planner.price_move_replan_fraction` (a power
             price's move is measured against max(|old|, 0.01 US$/kWh), so moves around
             zero and between negative prices count: `economics.significant_price_move`);
- `timer`    `planner.interval_s` passed.

`plan_once(trigger)` observes the fleet (each GPU's actual workload by the agent's latest
word, its command in flight, its dwell: `observe`), reads the fresh market, runs the pure
planner in a worker thread (so ingest keeps flowing) and hands the plan to the dispatcher,
which owns every command from there (`Dispatcher.order`). Without a valid power price it
holds: no plan, no switch, a counted reason. Each plan logs one summary line.

Not here: command state and its persistence (`dispatch`, `gpubook`), SLA accrual (`sla`),
saving quotes (`market_memory`) and the overrides' store (`overrides`); each is its own
object, and the accrual and the quotes run as named tasks of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orchestrator.central.dispatch import Dispatcher, PlanEntry
from orchestrator.central.fleet import FleetState
from orchestrator.central.observe import FleetObserver
from orchestrator.central.power_learning import PowerLearner
from orchestrator.central.store import CommandRecord
from orchestrator.config.policy import ContractsSection, contract_problems
from orchestrator.domain import UNKNOWN, NodeStatus, ai_workload
from orchestrator.lifecycle import raise_if_cancelling
from orchestrator.markets import MarketBook, MarketSnapshot
from orchestrator.policy.curtailment import (
    CurtailmentWindow,
    curtailed_settings,
    next_edge_s,
    strike_applies,
)
from orchestrator.policy.economics import significant_price_move
from orchestrator.policy.model import GpuState, Market, Override, Plan, PolicyInputs
from orchestrator.policy.planner import plan
from orchestrator.policy.power import NO_LEARNING, PowerTable

log = structlog.get_logger(__name__)

_WARMUP_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class PlanRecord:
    generation: int
    trigger: str
    planned_at_s: float
    duration_s: float
    plan: Plan
    market: Market
    snapshot: MarketSnapshot
    gpus: dict[str, GpuState]
    commands: tuple[CommandRecord, ...]
    problems: tuple[str, ...]
    curtailment: CurtailmentWindow | None = None  # the window whose cap the plan held
    power: PowerTable = NO_LEARNING  # what the fleet had learnt of board power, as planned


@dataclass(slots=True)
class _Metrics:
    registry: CollectorRegistry
    duration: Histogram = field(init=False)
    plans: Counter = field(init=False)
    held: Counter = field(init=False)
    generation: Gauge = field(init=False)
    problems: Gauge = field(init=False)

    def __post_init__(self) -> None:
        self.duration = Histogram(
            "orchestrator_plan_duration_seconds",
            "Wall time of one plan (observe, solve, explain)",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.plans = Counter(
            "orchestrator_plans", "Plans made, by trigger", ["trigger"], registry=self.registry
        )
        self.held = Counter(
            "orchestrator_plan_held",
            "Plans not made: the current assignment was held, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.generation = Gauge(
            "orchestrator_plan_generation", "Generation of the newest plan", registry=self.registry
        )
        self.problems = Gauge(
            "orchestrator_contract_problems",
            "Contracts that cannot be met as configured or as planned",
            registry=self.registry,
        )


def _summary(result: Plan) -> dict[str, object]:
    """What a plan generation is remembered by (per-GPU detail lives in the commands)."""
    return {
        "objective_usd_per_hour": round(result.objective_usd_per_hour, 6),
        "total_power_w": round(result.total_power_w, 1),
        "switches": result.switches,
        "problems": list(result.problems),
        "sla": [
            {"contract": s.contract_id, "assigned": s.assigned_gpus, "shortfall": s.shortfall_gpus}
            for s in result.sla
        ],
        "workloads": dict(
            sorted(Tally(a.workload or UNKNOWN for a in result.assignments.values()).items())
        ),
        **({"power_cap_reason": result.power_cap_reason} if result.power_cap_reason else {}),
        **({"shed_by_strike": True} if result.shed_by_strike else {}),
    }


def market_of(snapshot: MarketSnapshot, algorithms: set[str]) -> Market | None:
    """The planner's market, or None without a power price (then nothing may be planned)."""
    if snapshot.power_price_usd_per_kwh is None:
        return None
    prices: dict[str, float | None] = dict.fromkeys(algorithms)
    prices.update(snapshot.hashprice_usd_per_hs_day)
    return Market(
        hashprice_usd_per_hs_day=prices, power_price_usd_per_kwh=snapshot.power_price_usd_per_kwh
    )


def _unended(windows: tuple[CurtailmentWindow, ...], now_s: float) -> tuple[CurtailmentWindow, ...]:
    return tuple(w for w in windows if w.end_s > now_s)


class PolicyLoop:
    def __init__(
        self,
        *,
        fleet: FleetState,
        book: MarketBook,
        dispatcher: Dispatcher,
        policy: PolicyInputs,
        contracts: ContractsSection,
        registry: CollectorRegistry,
        warmup_s: float,
        tick_s: float = 0.25,
        clock: Callable[[], float] = time.time,
        shed_ahead_s: float = 0.0,
    ) -> None:
        self.fleet = fleet
        self.book = book
        self.dispatcher = dispatcher
        self.policy = policy
        self.contracts_section = contracts
        self.warmup_s = warmup_s
        self.tick_s = tick_s
        self.clock = clock
        self.observer = FleetObserver(
            profiles={p.id: p for p in policy.profiles},
            power=PowerLearner(policy.power_learning),
        )
        self.overrides: dict[str, Override] = {}
        self.overrides_version = 0
        self.generation = 0  # raised above earlier terms' by serve at start (`Store.begin_term`)
        self.last: PlanRecord | None = None
        self.metrics = _Metrics(registry)
        self.algorithms = {p.algorithm for p in policy.profiles}
        # GPUs on these are held from first sight when their start is unknown (`observe`)
        self.sla_workloads = frozenset(ai_workload(c.id) for c in policy.contracts.reserved)
        self._planned_fleet_version = -1
        self._planned_overrides_version = 0
        self._last_attempt_s: float | None = None
        self._last_market: Market | None = None
        self._held_reason: str | None = None
        self._problems: tuple[str, ...] = ()
        # curtailment windows not ended (`central.curtailment` replaces them on each change)
        self.curtailments: tuple[CurtailmentWindow, ...] = ()
        self.curtailments_version = 0
        self.shed_ahead_s = shed_ahead_s
        self._planned_curtailments_version = 0

    def replace_overrides(self, overrides: dict[str, Override]) -> None:
        """The operators' overrides by GPU; a change makes a plan due."""
        if overrides != self.overrides:
            self.overrides = overrides
            self.overrides_version += 1

    def replace_curtailments(self, windows: tuple[CurtailmentWindow, ...]) -> None:
        """The curtailment windows not ended yet; a change makes a plan due (a window
        dropped because it ended does not: its end was an edge, planned already)."""
        now_s = self.clock()
        if _unended(windows, now_s) != _unended(self.curtailments, now_s):
            self.curtailments_version += 1
        self.curtailments = windows

    def next_edge_s(self, after_s: float) -> float | None:
        """The next instant a curtailment window starts or stops binding, or None."""
        return next_edge_s(self.curtailments, after_s, ahead_s=self.shed_ahead_s)

    def due(self, now_s: float) -> str | None:
        if self._last_attempt_s is None:
            return "start" if self._warmed_up(now_s) else None
        if self.fleet.version != self._planned_fleet_version:
            return "fleet"
        if self.overrides_version != self._planned_overrides_version:
            return "override"
        if self.curtailments_version != self._planned_curtailments_version:
            return "curtailment"
        edge_s = self.next_edge_s(self._last_attempt_s)
        if edge_s is not None and edge_s <= now_s:
            return "curtailment"
        fresh = market_of(self.book.snapshot(now_s), self.algorithms)
        if fresh is not None and self._held_reason == "no_power_price":
            return "market"
        strike = self.policy.settings.curtail_price_strike_usd_per_kwh
        if (
            strike is not None
            and self._last_market is not None
            and fresh is not None
            and strike_applies(self.policy.settings, fresh.power_price_usd_per_kwh)
            != strike_applies(self.policy.settings, self._last_market.power_price_usd_per_kwh)
        ):
            return "strike"
        if (
            self._last_market is not None
            and fresh is not None
            and significant_price_move(
                self._last_market, fresh, self.policy.settings.price_move_replan_fraction
            )
        ):
            return "price"
        if now_s - self._last_attempt_s >= self.policy.settings.interval_s:
            return "timer"
        return None

    def _warmed_up(self, now_s: float) -> bool:
        """The first plan waits until every node known to be online (by its retained status
        or its telemetry) has reported since this daemon started, or `warmup_s` has passed
        (by then a silent node is offline). A short grace first lets the broker's retained
        statuses arrive, so the first node to report is not taken for the whole fleet."""
        started_s = self.fleet.started_at_s
        if started_s is None:
            return False
        waited_s = now_s - started_s
        if waited_s >= self.warmup_s:
            return True
        if waited_s < min(_WARMUP_GRACE_S, self.warmup_s):
            return False
        online = [r for r in self.fleet.nodes.values() if r.status is NodeStatus.ONLINE]
        return bool(online) and all(
            r.received_at_s is not None and r.received_at_s >= started_s for r in online
        )

    async def plan_once(self, trigger: str) -> PlanRecord | None:
        now_s = self.clock()
        self._last_attempt_s = now_s
        self._planned_fleet_version = self.fleet.version
        self._planned_overrides_version = self.overrides_version
        self._planned_curtailments_version = self.curtailments_version
        snapshot = self.book.snapshot(now_s)
        market = market_of(snapshot, self.algorithms)
        if market is None:
            self._hold("no_power_price", "no fresh power price: holding the current assignment")
            return None
        self._last_market = market
        self.dispatcher.expire_overdue()
        gpus = self.observer.observe(
            self.fleet, now_s=now_s, book=self.dispatcher.book, sla_workloads=self.sla_workloads
        )
        if not gpus:
            self._hold("empty_fleet", "no GPU has reported yet")
            return None
        self._held_reason = None
        overrides = {
            k: o for k, o in self.overrides.items() if o.until_s is None or o.until_s > now_s
        }
        settings, window = curtailed_settings(
            self.policy.settings, self.curtailments, now_s, ahead_s=self.shed_ahead_s
        )
        power = self.observer.power.table()
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(
                plan,
                gpus,
                market,
                contracts=self.policy.contracts,
                profiles=self.policy.profiles,
                overrides=overrides,
                settings=settings,
                now_s=now_s,
                power=power,
            )
        except Exception:  # a planner failure holds the plan; it never stops serve
            log.exception("planner failed: holding the current assignment")
            self._hold("planner_error", "the planner failed: holding the current assignment")
            return None
        duration_s = time.perf_counter() - started
        self.generation += 1
        entry = PlanEntry(
            generation=self.generation,
            at_s=now_s,
            trigger=trigger,
            net_usd_per_hour=result.net_usd_per_hour,
            summary=_summary(result),
        )
        commands = await self.dispatcher.order(result, entry, uuids={g.key: g.uuid for g in gpus})
        problems = self._contract_problems(gpus, result)
        self.last = PlanRecord(
            generation=self.generation,
            trigger=trigger,
            planned_at_s=now_s,
            duration_s=duration_s,
            plan=result,
            market=market,
            snapshot=snapshot,
            gpus={g.key: g for g in gpus},
            commands=tuple(commands),
            problems=problems,
            curtailment=window,
            power=power,
        )
        self.metrics.duration.observe(duration_s)
        self.metrics.plans.labels(trigger).inc()
        self.metrics.generation.set(self.generation)
        self.metrics.problems.set(len(problems))
        by_workload = Tally(a.workload or UNKNOWN for a in result.assignments.values())
        log.info(
            "plan",
            generation=self.generation,
            trigger=trigger,
            gpus=len(gpus),
            switches=len(commands),
            held=len(self.dispatcher.held),
            net_usd_per_hour=round(result.net_usd_per_hour, 2),
            duration_ms=round(duration_s * 1000, 1),
            workloads=dict(sorted(by_workload.items())),
            **({"curtailment": window.id, "cap_kw": window.cap_kw} if window else {}),
        )
        return self.last

    def _contract_problems(self, gpus: list[GpuState], result: Plan) -> tuple[str, ...]:
        models = Tally(g.model for g in gpus)
        problems = (*contract_problems(self.contracts_section, dict(models)), *result.problems)
        if problems != self._problems:
            for line in problems:
                log.warning("contract problem", problem=line)
            self._problems = problems
        return problems

    def _hold(self, reason: str, message: str) -> None:
        self.metrics.held.labels(reason).inc()
        if self._held_reason != reason:
            log.warning("plan held", reason=reason, detail=message)
            self._held_reason = reason

    async def step(self) -> None:
        trigger = self.due(self.clock())
        if trigger is not None:
            await self.plan_once(trigger)
        elif self.dispatcher.in_flight:
            self.dispatcher.expire_overdue()
            await self.dispatcher.retry_unacknowledged()

    def sleep_s(self, now_s: float) -> float:
        """How long `run` waits: a tick, or less when a curtailment edge comes first."""
        edge_s = self.next_edge_s(now_s)
        if edge_s is None:
            return self.tick_s
        return min(self.tick_s, max(0.0, edge_s - now_s))

    async def run(self) -> None:
        while True:
            raise_if_cancelling()
            await self.step()
            await asyncio.sleep(self.sleep_s(self.clock()))
