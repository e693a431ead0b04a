"""Per-GPU economics: DESIGN.md's formulas, in numbers a person can check by hand."""

from __future__ import annotations

import math
from dataclasses import replace

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


def test_switch_cost_is_lost_revenue_during_downtime_plus_fixed_cost_over_the_horizon() -> None:
    """5 min down at $1.20/h revenue loses $0.10; + $0.20 fixed = $0.30 over 1 h = $0.30/h."""
    assert switch_cost_usd_per_hour(300.0, 1.2, 0.2, 3600.0) == pytest.approx(0.30)
    assert switch_cost_usd_per_hour(300.0, 1.2, 0.2, 7200.0) == pytest.approx(0.15)
    assert switch_cost_usd_per_hour(300.0, -1.0, 0.0, 3600.0) == 0.0  # a loss is not lost


def _switch_to_spot(power_price_usd_per_kwh: float) -> tuple[float, float]:
    """(net $/h, switch cost $/h) of an idle GPU moving to on-demand AI paying $0.50/h at
    300 W with 30 min to load, over a 1 h horizon."""
    spot = OnDemandContract("spot", 0.5, 1.0, None, Eligibility(), 1800.0, AiPower(default_w=300.0))
    options = gpu_options(
        _gpu("idle"),
        market=Market({}, power_price_usd_per_kwh),
        contracts=Contracts(on_demand=(spot,)),
        profiles=[],
        settings=PlannerSettings(horizon_s=3600.0, hysteresis_margin_usd_per_gpu_hour=0.0),
        active_reserved=frozenset(),
    )
    option = next(o for o in options if o.workload == "ai:spot")
    return option.net_usd_per_hour, option.switch_cost_usd_per_hour


def test_a_switch_pays_power_while_the_workload_loads_as_the_backtest_books_it() -> None:
    """Over the 1 h horizon the GPU earns for 30 min ($0.25) and draws 300 W for the whole
    hour ($0.03 at $0.10/kWh): $0.22 net, so the switch costs the $0.25 of revenue the
    load loses, not the $0.235 of net revenue (which would leave the load's power unpaid)."""
    net, switch = _switch_to_spot(0.10)
    assert switch == pytest.approx(0.25)
    assert net == pytest.approx(0.5 * 0.5 - 0.03)


def test_a_switch_into_a_net_loss_still_loses_its_revenue_while_loading() -> None:
    """At $2/kWh the AI option loses money ($0.50 - $0.60 a hour); its 30 min load still
    forgoes $0.25 of revenue while the power is paid: net $0.25 - $0.60 = -$0.35."""
    net, switch = _switch_to_spot(2.0)
    assert switch == pytest.approx(0.25)
    assert net == pytest.approx(-0.35)


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


def _stay_revenue(measured: MeasuredRate, profile: MiningProfile = PROFILE) -> float:
    """$/h the GPU earns staying on `profile` at 4e-8 $/H/s/day with `measured`."""
    options = gpu_options(
        _gpu("mine:kawpow", {"kawpow": measured}),
        market=Market({"kawpow": 4e-8}, 0.1),
        contracts=Contracts(),
        profiles=[profile],
        settings=PlannerSettings(),
        active_reserved=frozenset(),
    )
    return next(o for o in options if o.is_stay).revenue_usd_per_hour


def _usd_per_hour(hashrate_hs: float, fees: float = 0.99) -> float:
    return hashrate_hs * 4e-8 / 24 * fees


def test_a_measurement_replaces_the_benchmark_gradually_by_its_readings() -> None:
    """Benchmark 30 MH/s, measured 20 MH/s, full trust at 10 readings (the default): one
    reading moves the value a tenth of the way (29 MH/s), five half way (25), ten and more
    all the way (20). A ramping miner's first low reading cannot undervalue the GPU."""
    for samples, expected_hs in ((1, 29e6), (5, 25e6), (10, 20e6), (40, 20e6)):
        revenue = _stay_revenue(MeasuredRate(20e6, 200.0, hashrate_samples=samples))
        assert revenue == pytest.approx(_usd_per_hour(expected_hs), rel=0.006), samples
    trusting = replace(PROFILE, hashrate_trust_samples=1)
    assert _stay_revenue(MeasuredRate(20e6, 200.0, 1), trusting) == pytest.approx(
        _usd_per_hour(20e6), rel=0.006
    )


def test_a_measurement_without_a_benchmark_is_taken_as_it_is() -> None:
    """Nothing to blend with: a model missing from the table earns on its measurement."""
    no_table = replace(PROFILE, benchmarks={})
    revenue = _stay_revenue(MeasuredRate(20e6, 200.0, hashrate_samples=1), no_table)
    assert revenue == pytest.approx(_usd_per_hour(20e6), rel=0.006)


def test_revenue_counts_accepted_shares_only_and_the_miners_dev_fee() -> None:
    """20 MH/s reported with 96 % of shares accepted earns on 19.2 MH/s; a 2 % dev fee is
    taken like the 1 % pool fee: x 0.99 x 0.98."""
    measured = MeasuredRate(20e6, 200.0, accepted_fraction=0.96)
    assert _stay_revenue(measured) == pytest.approx(_usd_per_hour(19.2e6), rel=0.006)
    with_fee = replace(PROFILE, dev_fee_fraction=0.02)
    assert _stay_revenue(measured, with_fee) == pytest.approx(
        _usd_per_hour(19.2e6, 0.99 * 0.98), rel=0.006
    )
    assert mining_revenue_usd_per_hour(30e6, 4e-8, 0.01, 0.02) == pytest.approx(0.0495 * 0.98)
