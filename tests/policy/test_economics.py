"""Per-GPU economics: DESIGN.md's formulas, in numbers a person can check by hand."""

from __future__ import annotations

import math

import pytest

from orchestrator.policy.economics import (
    bucketed,
    gpu_options,
    hysteresis_margin_usd_per_hour,
    mining_revenue_usd_per_hour,
    power_cost_usd_per_hour,
    significant_price_move,
    switch_cost_usd_per_hour,
)
from orchestrator.policy.model import (
    AiPower,
    Benchmark,
    Contracts,
    Eligibility,
    GpuState,
    Market,
    MeasuredRate,
    MiningProfile,
    OnDemandContract,
    PlannerSettings,
    ReservedContract,
)

MODEL = "NVIDIA GeForce RTX 3090"
PROFILE = MiningProfile("kawpow", "kawpow", 0.01, 30.0, {MODEL: Benchmark(30e6, 300.0)})


def test_mining_revenue_is_hashrate_times_hashprice_per_hour_less_pool_fee() -> None:
    """30 MH/s x 4e-8 $/H/s/day / 24 x 0.99 = $0.0495/h."""
    assert mining_revenue_usd_per_hour(30e6, 4e-8, 0.01) == pytest.approx(0.0495)


def test_power_cost_is_kilowatts_times_price() -> None:
    """300 W at 0.10 $/kWh costs $0.03/h."""
    assert power_cost_usd_per_hour(300.0, 0.10) == pytest.approx(0.03)


def test_switch_cost_is_lost_net_revenue_during_downtime_plus_fixed_cost_over_the_horizon() -> None:
    """5 min down at $1.20/h net loses $0.10; + $0.20 fixed = $0.30 over 1 h = $0.30/h."""
    assert switch_cost_usd_per_hour(300.0, 1.2, 0.2, 3600.0) == pytest.approx(0.30)
    assert switch_cost_usd_per_hour(300.0, 1.2, 0.2, 7200.0) == pytest.approx(0.15)
    assert switch_cost_usd_per_hour(300.0, -1.0, 0.0, 3600.0) == 0.0  # a loss is not lost


def test_hysteresis_margin_is_the_larger_of_absolute_and_fraction() -> None:
    settings = PlannerSettings(
        hysteresis_margin_usd_per_gpu_hour=0.02, hysteresis_margin_fraction=0.1
    )
    assert hysteresis_margin_usd_per_hour(0.1, settings) == pytest.approx(0.02)
    assert hysteresis_margin_usd_per_hour(1.0, settings) == pytest.approx(0.1)


def test_a_fleet_scope_margin_leaves_only_the_fraction_to_each_gpu() -> None:
    """Fleet scope: the $/GPU-hour part is charged on the fleet's mix by the planner."""
    settings = PlannerSettings(
        hysteresis_margin_usd_per_gpu_hour=0.02,
        hysteresis_margin_fraction=0.1,
        hysteresis_scope="fleet",
    )
    assert hysteresis_margin_usd_per_hour(0.1, settings) == pytest.approx(0.01)
    assert hysteresis_margin_usd_per_hour(1.0, settings) == pytest.approx(0.1)


def _gpu(workload: str, measured: dict[str, MeasuredRate] | None = None) -> GpuState:
    return GpuState(
        key="n:0",
        uuid="GPU-0",
        model=MODEL,
        memory_total_bytes=24 * 1024**3,
        online=True,
        healthy=True,
        current_workload=workload,
        since_s=0.0,
        measured=measured or {},
    )


def test_measured_rate_replaces_benchmark_rounded_to_one_percent() -> None:
    """A GPU that measured 20 MH/s earns on 20 MH/s (to its 1 % bucket), not the table's 30."""
    gpu = _gpu("mine:kawpow", {"kawpow": MeasuredRate(20e6, 200.0)})
    (idle, mine) = gpu_options(
        gpu,
        market=Market({"kawpow": 4e-8}, 0.1),
        contracts=Contracts(),
        profiles=[PROFILE],
        settings=PlannerSettings(),
        active_reserved=frozenset(),
    )
    assert idle.workload == "idle"
    assert mine.is_stay
    assert mine.revenue_usd_per_hour == pytest.approx(20e6 * 4e-8 / 24 * 0.99, rel=0.006)
    assert mine.power_w == pytest.approx(200.0, rel=0.006)
    assert bucketed(bucketed(123.0)) == bucketed(123.0)


def test_ai_options_are_paid_by_their_contract_and_respect_eligibility() -> None:
    """On-demand pays rate x utilisation; ineligible or inactive reserved ones are no option."""
    gpu = _gpu("idle")
    spot = OnDemandContract("spot", 1.0, 0.5, None, Eligibility(), 60.0, AiPower(default_w=250.0))
    big = ReservedContract(
        "big",
        2.0,
        1,
        Eligibility(min_memory_bytes=80 * 1024**3),
        None,
        0.99,
        1.0,
        0.0,
        300.0,
        AiPower(),
    )
    off = ReservedContract("off", 2.0, 1, Eligibility(), (), 0.99, 1.0, 0.0, 300.0, AiPower())
    options = gpu_options(
        gpu,
        market=Market({}, 0.1),
        contracts=Contracts((big, off), (spot,)),
        profiles=[PROFILE],
        settings=PlannerSettings(),
        active_reserved=frozenset({"big"}),
    )
    assert [o.workload for o in options] == ["idle", "ai:spot"]  # no kawpow price, no big, no off
    assert options[1].paid_by == "spot"
    assert options[1].revenue_usd_per_hour == pytest.approx(0.5)
    assert options[0].is_stay
    assert options[1].margin_usd_per_hour == pytest.approx(0.02)


def test_significant_price_move_uses_the_fraction_and_notices_missing_prices() -> None:
    before = Market({"kawpow": 1e-8}, 0.1)
    assert not significant_price_move(before, Market({"kawpow": 1.04e-8}, 0.1), 0.05)
    assert significant_price_move(before, Market({"kawpow": 1.06e-8}, 0.1), 0.05)
    assert significant_price_move(before, Market({"kawpow": None}, 0.1), 0.05)
    assert significant_price_move(before, Market({"kawpow": math.nan}, 0.1), 0.05)
    assert significant_price_move(before, Market({"kawpow": 1e-8}, 0.2), 0.05)
