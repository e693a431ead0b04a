"""Curtailment in the pure core: a window lowers the cap, the strike sheds, reasons say so.

Fleet: 8 RTX 3090s. Mining pays well (kawpow at a rich hashprice), the reserved contract
`acme` pays less than mining per GPU, so nothing but the SLA tier keeps it whole when the
cap binds: mining must go first.
"""

from __future__ import annotations

from dataclasses import replace

from orchestrator.policy.curtailment import (
    CurtailmentWindow,
    binding_window,
    curtailed_settings,
    effective_cap_kw,
    next_edge_s,
    window_edges,
)
from orchestrator.policy.model import Contracts, GpuState, Market, Override, Plan, PlannerSettings
from orchestrator.policy.planner import plan
from tests.policy.test_planner import KAWPOW, NOW_S, gpu, reserved, spot

RICH = 1.0e-7  # 30 MH/s -> $0.125/h gross, well above acme's $0.02/h and spot's $0.05/h
SETTINGS = PlannerSettings(
    horizon_s=3600.0, hysteresis_margin_usd_per_gpu_hour=0.0, min_dwell_s=600.0
)
ACME = reserved(2, rate=0.02)
CONTRACTS = Contracts(reserved=(ACME,), on_demand=(spot(0.05),))


def fleet() -> list[GpuState]:
    # two GPUs on acme, six mining, all past their dwell
    return [gpu(i, "ai:acme" if i < 2 else "mine:kawpow") for i in range(8)]


def window(
    cap_kw: float, *, name: str = "w1", start_s: float = NOW_S - 60, end_s: float = NOW_S + 3600
) -> CurtailmentWindow:
    return CurtailmentWindow(name, cap_kw, start_s, end_s, "ERCOT EEA", "operator")


def run(settings: PlannerSettings, price_usd_per_kwh: float = 0.1) -> Plan:
    return plan(
        fleet(),
        Market({"kawpow": RICH}, price_usd_per_kwh),
        contracts=CONTRACTS,
        profiles=(KAWPOW,),
        overrides={},
        settings=settings,
        now_s=NOW_S,
    )


def test_the_binding_window_is_the_lowest_cap_in_force_from_ahead_of_its_start() -> None:
    a = window(50.0, name="a", start_s=NOW_S + 100, end_s=NOW_S + 200)
    b = window(20.0, name="b", start_s=NOW_S + 150, end_s=NOW_S + 300)
    assert binding_window([a, b], NOW_S) is None
    assert binding_window([a, b], NOW_S + 40, ahead_s=60) == a
    assert binding_window([a, b], NOW_S + 160) == b
    assert binding_window([a, b], NOW_S + 300) is None  # the end is exclusive
    assert effective_cap_kw(30.0, [a, b], NOW_S + 120) == 30.0  # configured is lower
    assert effective_cap_kw(30.0, [a, b], NOW_S + 160) == 20.0
    assert effective_cap_kw(None, [a], NOW_S + 120) == 50.0
    assert effective_cap_kw(None, [a], NOW_S) is None
    assert window_edges([a, b], ahead_s=60, lead_time_s=100) == [
        NOW_S + 0,
        NOW_S + 40,
        NOW_S + 50,
        NOW_S + 90,
        NOW_S + 200,
        NOW_S + 300,
    ]
    assert next_edge_s([a, b], NOW_S + 90, ahead_s=60, lead_time_s=100) == NOW_S + 200
    assert next_edge_s([a, b], NOW_S + 300) is None


def test_a_window_above_the_configured_cap_changes_nothing() -> None:
    settings = replace(SETTINGS, site_power_cap_kw=1.0)
    assert curtailed_settings(settings, [window(2.0)], NOW_S) == (settings, None)
    lowered, binding = curtailed_settings(settings, [window(0.6)], NOW_S)
    assert binding is not None
    assert lowered.site_power_cap_kw == 0.6
    assert lowered.power_cap_reason == "curtailment window w1 (cap 0.6 kW)"


def test_without_a_window_the_fleet_mines_at_full_power() -> None:
    result = run(SETTINGS)
    workloads = [a.workload for a in result.assignments.values()]
    assert workloads == ["ai:acme"] * 2 + ["mine:kawpow"] * 6
    assert result.total_power_w == 2 * 250 + 6 * 300


def test_a_window_sheds_mining_first_keeps_the_reserved_contract_whole_and_says_why() -> None:
    # 1.2 kW: acme's two GPUs (500 W) and two miners (600 W) fit; four miners must stop,
    # although each miner earns more than an acme GPU
    settings, binding = curtailed_settings(SETTINGS, [window(1.2)], NOW_S)
    assert binding is not None
    result = run(settings)
    assignments = result.assignments
    workloads = [a.workload for a in assignments.values()]
    assert workloads.count("ai:acme") == 2
    assert workloads.count("mine:kawpow") == 2
    assert workloads.count("idle") == 4
    assert result.total_power_w <= 1200.0
    assert result.power_cap_w == 1200.0
    assert result.power_cap_reason == "curtailment window w1 (cap 1.2 kW)"
    assert all(s.shortfall_gpus == 0 for s in result.sla)
    shed = [a for a in assignments.values() if a.workload == "idle"]
    assert {a.reason for a in shed} == {
        "switch to idle: shed for curtailment window w1 (cap 1.2 kW)"
    }


def test_the_window_breaks_dwell_locks_of_miners_but_never_the_sla() -> None:
    settings, _ = curtailed_settings(SETTINGS, [window(0.5)], NOW_S)
    young = [gpu(i, "ai:acme" if i < 2 else "mine:kawpow", since_s=NOW_S - 10) for i in range(8)]
    result = plan(
        young,
        Market({"kawpow": RICH}, 0.1),
        contracts=CONTRACTS,
        profiles=(KAWPOW,),
        overrides={},
        settings=settings,
        now_s=NOW_S,
    )
    workloads = [a.workload for a in result.assignments.values()]
    assert workloads == ["ai:acme"] * 2 + ["idle"] * 6
    assert result.total_power_w == 500.0
    assert all(
        "shed for curtailment window w1" in a.reason
        for a in result.assignments.values()
        if a.workload == "idle"
    )


def test_a_shortfall_the_window_forces_is_reported() -> None:
    # 0.3 kW leaves room for one acme GPU: the cap tier wins over the SLA tier
    settings, _ = curtailed_settings(SETTINGS, [window(0.3)], NOW_S)
    result = run(settings)
    workloads = [a.workload for a in result.assignments.values()]
    assert workloads.count("ai:acme") == 1
    assert workloads.count("mine:kawpow") == 0
    (sla,) = result.sla
    assert (sla.contract_id, sla.shortfall_gpus) == ("acme", 1)
    assert any(p.startswith("SLA acme: 1 of 2") for p in result.problems)


def test_at_the_strike_mining_and_on_demand_are_shed_and_reserved_kept() -> None:
    settings = replace(SETTINGS, curtail_price_strike_usd_per_kwh=1.0)
    below = run(settings, price_usd_per_kwh=0.1)
    assert not below.shed_by_strike
    assert [a.workload for a in below.assignments.values()].count("mine:kawpow") == 6

    # at 1 $/kWh exactly; mining at 300 W costs $0.30/h against $0.125/h: it would stop on
    # price alone, but on-demand spot would not (so spot proves the strike sheds it too)
    fleet_on_spot = [gpu(i, "ai:acme" if i < 2 else "ai:spot") for i in range(8)]
    generous = Contracts(reserved=(ACME,), on_demand=(spot(5.0),))
    kept = plan(
        fleet_on_spot,
        Market({"kawpow": RICH}, 1.0),
        contracts=generous,
        profiles=(KAWPOW,),
        overrides={"n0:7": Override("n0:7", "ai:spot", by="ops")},
        settings=replace(settings, hysteresis_margin_usd_per_gpu_hour=0.0),
        now_s=NOW_S,
    )
    assert kept.shed_by_strike
    workloads = {k: a.workload for k, a in kept.assignments.items()}
    assert workloads == {
        "n0:0": "ai:acme",
        "n0:1": "ai:acme",
        **{f"n0:{i}": "idle" for i in range(2, 7)},
        "n0:7": "ai:spot",  # an operator's override is honoured
    }
    reason = kept.assignments["n0:3"].reason
    assert reason == (
        "switch to idle: shed: power price 1.0000 $/kWh at or above the strike 1.0000 $/kWh "
        "(mining and on-demand AI off, reserved contracts kept)"
    )
    assert kept.assignments["n0:0"].reason.startswith("held: SLA acme needs 2")
    without = plan(
        fleet_on_spot,
        Market({"kawpow": RICH}, 1.0),
        contracts=generous,
        profiles=(KAWPOW,),
        overrides={},
        settings=replace(settings, curtail_price_strike_usd_per_kwh=None),
        now_s=NOW_S,
    )
    assert [a.workload for a in without.assignments.values()].count("ai:spot") == 6
