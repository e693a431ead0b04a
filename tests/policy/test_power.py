"""The power model: learnt board power with provenance, and power at the wall in the plan."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.policy.model import (
    AiPower,
    Benchmark,
    Contracts,
    Eligibility,
    GpuState,
    Market,
    MiningProfile,
    OnDemandContract,
    Plan,
    PlannerSettings,
)
from orchestrator.policy.planner import plan
from orchestrator.policy.power import (
    LearntPower,
    NodePower,
    PowerEstimate,
    PowerTable,
    SitePower,
    fold,
)

NOW_S = 1_767_600_000.0
MODEL = "NVIDIA H200"
KAWPOW = MiningProfile("kawpow", "kawpow", 0.0, 0.0, {MODEL: Benchmark(30e6, 600.0)})
SETTINGS = PlannerSettings(hysteresis_margin_usd_per_gpu_hour=0.0, min_dwell_s=0.0)
# mining pays $1.00/h gross at 8e-7 $/H/s/day (30 MH/s)
HASHPRICE = 8e-7


def gpu(
    index: int,
    workload: str | None = "idle",
    *,
    node: str = "n0",
    online: bool = True,
    healthy: bool = True,
    power_draw_w: float | None = None,
    power_limit_w: float | None = None,
) -> GpuState:
    return GpuState(
        key=f"{node}:{index}",
        uuid=f"GPU-{node}-{index}",
        model=MODEL,
        memory_total_bytes=141 * 1024**3,
        online=online,
        healthy=healthy,
        current_workload=workload,
        since_s=NOW_S - 86_400,
        power_draw_w=power_draw_w,
        power_limit_w=power_limit_w,
    )


def run(
    fleet: list[GpuState],
    *,
    settings: PlannerSettings = SETTINGS,
    contracts: Contracts | None = None,
    power: PowerTable | None = None,
    power_price: float = 0.1,
) -> Plan:
    return plan(
        fleet,
        Market({"kawpow": HASHPRICE}, power_price),
        contracts=contracts or Contracts(),
        profiles=(KAWPOW,),
        overrides={},
        settings=settings,
        now_s=NOW_S,
        power=power or PowerTable(),
    )


# ---------------------------------------------------------------- the pure model


def test_the_first_round_is_its_mean_and_later_rounds_are_smoothed() -> None:
    """A round is averaged; the next one weighs `smoothing` against the past; samples add up."""
    first = fold(None, [(100.0, None), (140.0, None)], 0.2)
    assert (first.mean_w, first.samples) == (120.0, 2)
    second = first.folded([(220.0, None)], 0.2)
    assert second.mean_w == pytest.approx(0.2 * 220 + 0.8 * 120)
    assert second.samples == 3


def test_invalid_readings_are_skipped_not_learnt() -> None:
    """NaN, infinite and negative watts are not readings."""
    learnt = fold(None, [(float("nan"), None), (-5.0, None), (90.0, None)], 0.2)
    assert (learnt.mean_w, learnt.samples) == (90.0, 1)
    assert learnt.folded([(math.inf, 50.0)], 0.2) == learnt
    with pytest.raises(ValueError, match="no valid power reading"):
        fold(None, [(float("nan"), None)], 0.2)


def test_ai_power_follows_utilisation_along_the_learnt_line() -> None:
    """Readings on 122 W + 5 W per point: the estimate at 70 % is 472 W, at 0 % 122 W."""
    readings = [(122.0 + 5.0 * u, u) for u in (10.0, 40.0, 60.0, 90.0)]
    learnt = fold(None, readings, 0.2)
    assert learnt.slope_w_per_pct == pytest.approx(5.0)
    assert learnt.at(70.0) == pytest.approx(472.0)
    assert learnt.at(0.0) == pytest.approx(122.0)
    assert learnt.at(None) == pytest.approx(learnt.mean_w)


def test_no_slope_is_invented_from_one_utilisation() -> None:
    """Readings all at ~50 % carry no slope: every utilisation reads the mean."""
    learnt = fold(None, [(300.0, 50.0), (320.0, 51.0), (310.0, 49.0)], 0.2)
    assert learnt.slope_w_per_pct is None
    assert learnt.at(100.0) == pytest.approx(310.0)


@given(
    rounds=st.lists(
        st.lists(st.floats(0, 2000, allow_nan=False), min_size=1, max_size=5),
        min_size=1,
        max_size=8,
    ),
    smoothing=st.floats(0.01, 1.0),
)
def test_the_smoothed_mean_stays_within_the_readings(
    rounds: list[list[float]], smoothing: float
) -> None:
    """Whatever the readings, the learnt mean lies between the lowest and highest of them."""
    learnt: LearntPower | None = None
    for watts in rounds:
        learnt = fold(learnt, [(w, None) for w in watts], smoothing)
    assert learnt is not None
    everything = [w for watts in rounds for w in watts]
    assert min(everything) - 1e-6 <= learnt.mean_w <= max(everything) + 1e-6
    assert learnt.samples == len(everything)


@given(
    prior=st.floats(0, 1000),
    measured=st.floats(0, 1000),
    samples=st.integers(1, 10_000),
    k=st.floats(0, 100),
)
def test_the_estimate_blends_prior_and_measurement_by_their_weights(
    prior: float, measured: float, samples: int, k: float
) -> None:
    """(k x prior + n x measured) / (k + n), said to be measured, with n readings."""
    table = PowerTable({(MODEL, "idle"): LearntPower(measured, samples)}, prior_samples=k)
    estimate = table.estimate(MODEL, "idle", PowerEstimate(prior, "config"))
    assert estimate.board_w == pytest.approx((k * prior + samples * measured) / (k + samples))
    assert (estimate.source, estimate.samples) == ("measured", samples)
    unknown = table.estimate("other", "idle", PowerEstimate(prior, "config"))
    assert unknown == PowerEstimate(prior, "config")


def test_wall_power_is_board_over_efficiency_plus_host_times_pue() -> None:
    """(board / psu_efficiency + host_overhead_w) x pue, a node's own figures first."""
    site = SitePower(
        pue=1.25, default=NodePower(200.0, 0.8), nodes={"big": NodePower(1000.0, 0.95)}
    )
    assert site.wall_w(800.0) == pytest.approx((800 / 0.8 + 200) * 1.25)
    assert site.wall_w(950.0, "big") == pytest.approx((950 / 0.95 + 1000) * 1.25)
    assert site.gpu_wall_w(800.0, "n0") + site.host_wall_w("n0") == pytest.approx(
        site.wall_w(800.0, "n0")
    )
    assert site.site_wall_w({"n0": 800.0, "big": 950.0}) == pytest.approx(
        site.wall_w(800.0) + site.wall_w(950.0, "big")
    )


# ---------------------------------------------------------------- the plan at the wall

WALL = SitePower(pue=1.25, default=NodePower(host_overhead_w=200.0, psu_efficiency=0.8))


def test_the_power_cost_is_paid_at_the_wall() -> None:
    """600 W on the board is 937.5 W at the wall; the candidate shows both and the cost."""
    settings = replace(SETTINGS, site_power=WALL)
    result = run([gpu(0, "mine:kawpow")], settings=settings)
    (candidate,) = [c for c in result.assignments["n0:0"].candidates if c.workload != "idle"]
    assert candidate.board_w == pytest.approx(600.0)
    assert candidate.power_w == pytest.approx(937.5)
    assert candidate.power_source == "benchmark"
    # $1.00/h revenue - 0.9375 kW x $0.1/kWh
    assert candidate.net_usd_per_hour == pytest.approx(1.0 - 0.09375)
    host_w = 200.0 * 1.25
    assert result.host_power_w == pytest.approx(host_w)
    assert result.total_power_w == pytest.approx(937.5 + host_w)
    assert result.board_power_w == pytest.approx(600.0)
    assert result.net_usd_per_hour == pytest.approx(1.0 - (937.5 + host_w) / 1000 * 0.1)


def test_the_site_cap_holds_at_the_wall_not_the_board() -> None:
    """Two 600 W miners fit a 1.5 kW cap on the board but not at the wall (2 x 937.5 W + host)."""
    fleet = [gpu(0), gpu(1)]
    board_only = run(fleet, settings=replace(SETTINGS, site_power_cap_kw=1.5))
    assert [a.workload for a in board_only.assignments.values()] == ["mine:kawpow"] * 2
    at_wall = run(fleet, settings=replace(SETTINGS, site_power_cap_kw=1.5, site_power=WALL))
    workloads = sorted(a.workload or "" for a in at_wall.assignments.values())
    assert workloads == ["idle", "mine:kawpow"]
    assert at_wall.total_power_w <= 1500.0 + 1e-6


def test_a_gpu_whose_workload_is_unknown_counts_at_its_last_reading() -> None:
    """An offline GPU of unknown workload that last drew 690 W leaves no room for a miner."""
    silent = gpu(1, None, node="n1", online=False, power_draw_w=690.0, power_limit_w=700.0)
    result = run([gpu(0), silent], settings=replace(SETTINGS, site_power_cap_kw=1.2))
    assert result.assignments["n0:0"].workload == "idle"
    assert result.total_power_w >= 690.0


def test_a_gpu_with_no_reading_counts_at_its_power_limit_never_zero() -> None:
    """No reading either: the 700 W limit counts, so a 600 W miner does not fit 1.2 kW."""
    silent = gpu(1, None, node="n1", online=False, power_limit_w=700.0)
    result = run([gpu(0), silent], settings=replace(SETTINGS, site_power_cap_kw=1.2))
    assert result.assignments["n0:0"].workload == "idle"
    roomy = run([gpu(0), silent], settings=replace(SETTINGS, site_power_cap_kw=1.4))
    assert roomy.assignments["n0:0"].workload == "mine:kawpow"


def test_learnt_power_replaces_the_benchmark_and_says_so() -> None:
    """The fleet measured 690 W mining over 500 readings: the plan prices that, with provenance."""
    table = PowerTable({(MODEL, "mine:kawpow"): LearntPower(690.0, 500)})
    result = run([gpu(0, "mine:kawpow")], power=table)
    mining = next(c for c in result.assignments["n0:0"].candidates if c.workload != "idle")
    assert mining.board_w == pytest.approx((3 * 600.0 + 500 * 690.0) / 503)
    assert (mining.power_source, mining.power_samples) == ("measured", 500)


def test_on_demand_power_is_priced_at_its_expected_utilisation() -> None:
    """AI power learnt as 122 W + 5 W per point: a 20 %-utilised contract costs 222 W."""
    readings = [(122.0 + 5.0 * u, u) for u in (0.0, 30.0, 60.0, 90.0)]
    table = PowerTable({(MODEL, "ai:spot"): fold(None, readings, 0.2)}, prior_samples=0.0)
    spot = OnDemandContract(
        "spot", 1.0, 0.2, None, Eligibility(), switch_downtime_s=0.0, power=AiPower()
    )
    result = run([gpu(0)], contracts=Contracts(on_demand=(spot,)), power=table)
    serving = next(c for c in result.assignments["n0:0"].candidates if c.workload == "ai:spot")
    assert serving.board_w == pytest.approx(222.0)


def test_idle_power_defaults_to_a_share_of_the_power_limit() -> None:
    """Without `idle_power_w`, an idle H200 (700 W limit) is priced at 12 % of it, not 0 W."""
    settings = replace(
        SETTINGS, idle_power_w=50.0, idle_power_limit_fraction=0.12, idle_power_source="default"
    )
    result = run([gpu(0, power_limit_w=700.0)], settings=settings, power_price=0.0)
    idle = next(c for c in result.assignments["n0:0"].candidates if c.workload == "idle")
    assert idle.board_w == pytest.approx(84.0)
    assert idle.power_source == "default"
    no_limit = run([gpu(0)], settings=settings, power_price=0.0)
    idle = next(c for c in no_limit.assignments["n0:0"].candidates if c.workload == "idle")
    assert idle.board_w == pytest.approx(50.0)


def test_alike_gpus_on_nodes_with_different_supplies_are_priced_apart() -> None:
    """Two idle H200s, room at the wall for one miner: the one behind the better power
    supply mines (it costs less at the wall), and the cap counts its own wall power."""
    site = SitePower(pue=1.0, default=NodePower(0.0, 0.8), nodes={"good": NodePower(0.0, 0.96)})
    fleet = [gpu(0, node="poor"), gpu(0, node="good")]
    # 600 W on the board: 750 W behind the poor supply, 625 W behind the good one
    settings = replace(SETTINGS, site_power_cap_kw=0.7, site_power=site)
    result = run(fleet, settings=settings, power_price=0.5)
    assert result.assignments["good:0"].workload == "mine:kawpow"
    assert result.assignments["poor:0"].workload == "idle"
    assert result.total_power_w == pytest.approx(625.0)


def test_the_default_ai_power_never_exceeds_the_gpus_limit() -> None:
    """An unconfigured 300 W serving prior on a 170 W card counts 170 W; a configured one
    stays as configured (a config mistake is the operator's to see, not to hide)."""
    default = AiPower(default_w=300.0, default_source="default")
    spot = OnDemandContract(
        "spot", 1.0, 1.0, None, Eligibility(), switch_downtime_s=0.0, power=default
    )
    small = replace(gpu(0, power_limit_w=170.0), model="NVIDIA GeForce RTX 3060")
    result = run([small], contracts=Contracts(on_demand=(spot,)))
    serving = next(c for c in result.assignments["n0:0"].candidates if c.workload == "ai:spot")
    assert (serving.board_w, serving.power_source) == (170.0, "default")
    configured = replace(spot, power=AiPower(default_w=300.0))
    result = run([small], contracts=Contracts(on_demand=(configured,)))
    serving = next(c for c in result.assignments["n0:0"].candidates if c.workload == "ai:spot")
    assert (serving.board_w, serving.power_source) == (300.0, "config")
