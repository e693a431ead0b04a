"""Invariants on small random histories (hypothesis).

1. The hindsight optimum is >= every strategy's net revenue (the proof is in
   strategies.py; this checks it on random fleets, contracts, prices and settings).
2. The hindsight optimum is exact: each of its steps equals the brute-force best
   assignment (every GPU on every workload) of that step's value.
3. The live policy never plans a shortfall on a feasible SLA (commitment <= eligible GPUs,
   no power cap in the way), and with a lead time covering the switch it serves it fully.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.backtest.engine import (
    FleetGroup,
    Scenario,
    StrategyResult,
    all_workloads,
    make_scenario,
    run_strategy,
    step_value_usd,
    workload_rates,
)
from orchestrator.backtest.strategies import (
    AlwaysAi,
    AlwaysMine,
    Hindsight,
    LivePolicy,
    StaticSplit,
)
from orchestrator.policy.model import (
    AiPower,
    Benchmark,
    Contracts,
    Eligibility,
    MiningProfile,
    OnDemandContract,
    PlannerSettings,
    PolicyInputs,
    ReservedContract,
    ScheduleWindow,
)
from tests.backtest.helpers import START_S

MODELS = ("big", "small")


@st.composite
def scenarios(draw: st.DrawFn, *, power_cap: bool = True) -> Scenario:
    counts = [draw(st.integers(0, 3)) for _ in MODELS]
    if sum(counts) == 0:
        counts[0] = 1
    groups = [
        FleetGroup(m, n, 24.0 if m == "big" else 8.0)
        for m, n in zip(MODELS, counts, strict=True)
        if n
    ]
    profiles = tuple(
        MiningProfile(
            f"p{k}",
            f"algo{k}",
            draw(st.sampled_from([0.0, 0.01])),
            draw(st.sampled_from([0.0, 60.0, 1800.0])),
            {m: Benchmark(draw(st.floats(1e6, 1e8)), draw(st.floats(50, 350))) for m in MODELS},
        )
        for k in range(draw(st.integers(1, 2)))
    )
    big = Eligibility(frozenset({"big"}))
    eligible = counts[0]
    reserved: tuple[ReservedContract, ...] = ()
    if eligible and draw(st.booleans()):
        window = draw(st.sampled_from([None, (ScheduleWindow(frozenset(range(7)), 60, 240),)]))
        reserved = (
            ReservedContract(
                "res",
                draw(st.floats(0.0, 2.0)),
                draw(st.integers(1, eligible)),
                big,
                window,
                0.99,
                draw(st.floats(0.0, 5.0)),
                draw(st.sampled_from([0.0, 600.0, 7200.0])),
                draw(st.sampled_from([0.0, 300.0, 5400.0])),
                AiPower(default_w=draw(st.floats(100, 400))),
            ),
        )
    on_demand: tuple[OnDemandContract, ...] = ()
    if draw(st.booleans()):
        on_demand = (
            OnDemandContract(
                "od",
                draw(st.floats(0.0, 2.0)),
                draw(st.floats(0.1, 1.0)),
                draw(st.sampled_from([None, 1, 2])),
                Eligibility(),
                draw(st.sampled_from([0.0, 300.0])),
                AiPower(default_w=250.0),
            ),
        )
    n_gpus = sum(counts)
    cap = None
    if power_cap and draw(st.booleans()):
        cap = n_gpus * draw(st.floats(0.05, 0.4))  # kW: >= the idle draw of 20 W a GPU
    settings_ = PlannerSettings(
        horizon_s=draw(st.sampled_from([1800.0, 3600.0, 21600.0])),
        hysteresis_margin_usd_per_gpu_hour=draw(st.sampled_from([0.0, 0.02, 0.2])),
        min_dwell_s=draw(st.sampled_from([0.0, 3600.0, 7200.0])),
        switch_fixed_cost_usd=draw(st.sampled_from([0.0, 0.05])),
        site_power_cap_kw=cap,
        idle_power_w=20.0,
    )
    n_steps = draw(st.integers(2, 6))
    step_s = draw(st.sampled_from([1800.0, 3600.0]))
    prices = {
        p.algorithm: draw(st.lists(st.floats(0.0, 1e-6), min_size=n_steps, max_size=n_steps))
        for p in profiles
    }
    power = draw(st.lists(st.floats(0.0, 0.3), min_size=n_steps, max_size=n_steps))
    return make_scenario(
        groups,
        PolicyInputs(profiles, Contracts(reserved, on_demand), settings_),
        steps_s=[START_S + step_s * i for i in range(n_steps)],
        step_s=step_s,
        hashprice_usd_per_hs_day=prices,
        power_usd_per_kwh=power,
    )


def _brute_force_best(scenario: Scenario, step: int) -> float:
    """The best step value over every assignment that fits the power cap."""
    gpus = [k for k, g in enumerate(scenario.groups) for _ in range(g.count)]
    choices = [
        [
            w
            for w in all_workloads(scenario)
            if workload_rates(scenario, scenario.groups[k], w, step)
        ]
        for k in gpus
    ]
    cap_kw = scenario.policy.settings.site_power_cap_kw
    best = -float("inf")
    for combo in itertools.product(*choices):
        if cap_kw is not None:
            draw_w = 0.0
            for k, w in zip(gpus, combo, strict=True):
                rates = workload_rates(scenario, scenario.groups[k], w, step)
                assert rates is not None
                draw_w += rates.power_w
            if draw_w > cap_kw * 1000.0 + 1e-6:
                continue
        counts = Counter(zip(gpus, combo, strict=True))
        best = max(best, step_value_usd(scenario, step, counts))
    return best


TOLERANCE = 1e-6


def _assert_bounded(result: StrategyResult, bound: StrategyResult) -> None:
    assert result.net_revenue_usd <= bound.net_revenue_usd + TOLERANCE, result.name
    for mine, best in zip(result.net_by_step_usd, bound.net_by_step_usd, strict=True):
        assert mine <= best + TOLERANCE, result.name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_hindsight_is_an_upper_bound_on_every_strategy(scenario: Scenario) -> None:
    """Every strategy holding the configured contracts stays under the hindsight optimum,
    step by step and in total. Always-mine holds no contracts (it owes no penalty), so its
    bound is the hindsight optimum of the same history without contracts."""
    bound = run_strategy(scenario, Hindsight())
    for strategy in (LivePolicy(), AlwaysAi(), StaticSplit(0.5)):
        _assert_bounded(run_strategy(scenario, strategy), bound)
    uncontracted = replace(scenario, policy=replace(scenario.policy, contracts=Contracts()))
    _assert_bounded(run_strategy(scenario, AlwaysMine()), run_strategy(uncontracted, Hindsight()))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_hindsight_equals_the_brute_force_optimum_of_each_step(scenario: Scenario) -> None:
    bound = run_strategy(scenario, Hindsight())
    for step in range(len(scenario.steps_s)):
        assert bound.net_by_step_usd[step] == pytest.approx(
            _brute_force_best(scenario, step), abs=TOLERANCE
        )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(power_cap=False))
def test_live_policy_never_plans_a_shortfall_on_a_feasible_sla(scenario: Scenario) -> None:
    """Feasible: the commitment fits the eligible GPUs and there is no power cap. A
    contract that is always on, or whose lead time covers its switch downtime plus a
    step, is then also served in full (availability 1)."""
    result = run_strategy(scenario, LivePolicy())
    assert result.planned_shortfall_gpus == [0] * len(scenario.steps_s)
    for contract in scenario.policy.contracts.reserved:
        ahead = contract.lead_time_s >= contract.switch_downtime_s + scenario.step_s
        if contract.windows is None or ahead:
            assert result.sla_availability(contract.id) in (None, pytest.approx(1.0))
