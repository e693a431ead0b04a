"""The planner's rules, one scenario each: SLA, lead time, fixed GPUs, prices, power, flapping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import pytest

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
    Override,
    Plan,
    PlannerSettings,
    ReservedContract,
    ScheduleWindow,
)
from orchestrator.policy.planner import plan

NOW_S = 1_767_600_000.0  # 2026-01-05 08:00 UTC, a Monday
MODEL = "NVIDIA GeForce RTX 3090"
GIB = 1024**3
KAWPOW = MiningProfile("kawpow", "kawpow", 0.0, 30.0, {MODEL: Benchmark(30e6, 300.0)})
# 30 MH/s at 2.4e-8 $/H/s/day = $0.03/h gross; at 0.1 $/kWh and 300 W the power is $0.03/h
SETTINGS = PlannerSettings(
    horizon_s=3600.0,
    hysteresis_margin_usd_per_gpu_hour=0.05,
    min_dwell_s=600.0,
    switch_fixed_cost_usd=0.0,
)


def gpu(
    index: int,
    workload: str | None = "mine:kawpow",
    *,
    since_s: float = NOW_S - 86_400,
    online: bool = True,
    healthy: bool = True,
    measured: Mapping[str, MeasuredRate] | None = None,
) -> GpuState:
    return GpuState(
        key=f"n{index // 8}:{index % 8}",
        uuid=f"GPU-{index}",
        model=MODEL,
        memory_total_bytes=24 * GIB,
        online=online,
        healthy=healthy,
        current_workload=workload,
        since_s=since_s,
        measured=measured or {},
    )


def market(kawpow_usd_per_hs_day: float | None) -> Market:
    return Market({"kawpow": kawpow_usd_per_hs_day}, 0.1)


def spot(rate: float, max_gpus: int | None = None) -> OnDemandContract:
    return OnDemandContract(
        "spot",
        rate,
        1.0,
        max_gpus,
        Eligibility(),
        switch_downtime_s=0.0,
        power=AiPower(default_w=300.0),
    )


def reserved(
    committed: int,
    *,
    windows: tuple[ScheduleWindow, ...] | None = None,
    lead_time_s: float = 0.0,
    rate: float = 0.2,
) -> ReservedContract:
    return ReservedContract(
        id="acme",
        rate_usd_per_gpu_hour=rate,
        committed_gpus=committed,
        eligibility=Eligibility(models=frozenset({MODEL})),
        windows=windows,
        availability_target_fraction=0.99,
        penalty_usd_per_gpu_hour=5.0,
        lead_time_s=lead_time_s,
        switch_downtime_s=300.0,
        power=AiPower(default_w=250.0),
    )


def run(
    fleet: Sequence[GpuState],
    prices: Market,
    contracts: Contracts | None = None,
    *,
    overrides: Mapping[str, Override] | None = None,
    settings: PlannerSettings = SETTINGS,
    now_s: float = NOW_S,
) -> Plan:
    return plan(
        fleet,
        prices,
        contracts=contracts or Contracts(),
        profiles=[KAWPOW],
        overrides=overrides or {},
        settings=settings,
        now_s=now_s,
    )


def feed_back(fleet: Sequence[GpuState], result: Plan, now_s: float) -> list[GpuState]:
    """The fleet after the plan was carried out: changed GPUs start their new workload now."""
    return [
        replace(g, current_workload=result.assignments[g.key].workload, since_s=now_s)
        if result.assignments[g.key].changed
        else g
        for g in fleet
    ]


# ---------------------------------------------------------------- anti-flapping


def test_prices_wobbling_inside_the_margin_never_switch_a_gpu() -> None:
    """Mining vs spot near break-even, moving by less than the margin: 50 re-plans, no switch."""
    fleet = [gpu(i, "mine:kawpow" if i % 2 else "ai:spot") for i in range(8)]
    # spot nets 0.06 - 0.03 = $0.03/h; mining at p nets 30e6 * p / 24 - 0.03 (break-even 4.8e-8)
    switches = 0
    now_s = NOW_S
    for step in range(50):
        wobble = 0.03e-8 if step % 2 else -0.03e-8  # +-$0.004/h, inside the $0.05/h margin
        contracts = Contracts(on_demand=(spot(0.06),))
        result = run(fleet, market(4.8e-8 + wobble), contracts, now_s=now_s)
        switches += result.switches
        fleet = feed_back(fleet, result, now_s)
        now_s += 60.0
    assert switches == 0


def test_a_sustained_move_beyond_the_margin_switches_within_one_replan() -> None:
    """Once mining pays $0.10/h more than spot for good, every spot GPU moves on the next plan."""
    fleet = [gpu(i, "ai:spot") for i in range(4)]
    contracts = Contracts(on_demand=(spot(0.06),))
    before = run(fleet, market(4.8e-8), contracts)
    assert before.switches == 0
    after = run(fleet, market(4.8e-8 + 8e-8), contracts, now_s=NOW_S + 60)  # +$0.10/h
    assert after.switches == 4
    assert all(a.workload == "mine:kawpow" for a in after.assignments.values())
    reason = after.assignments["n0:0"].reason
    assert reason.startswith("switch to mine:kawpow: +$")
    assert reason.endswith("over ai:spot after switch cost")


def test_min_dwell_holds_a_gpu_that_just_switched_and_says_how_long() -> None:
    """A GPU that switched 120 s ago stays for the rest of its 600 s dwell, whatever pays more."""
    fleet = [gpu(0, "ai:spot", since_s=NOW_S - 120)]
    result = run(fleet, market(1e-6), Contracts(on_demand=(spot(0.06),)))
    assignment = result.assignments["n0:0"]
    assert assignment.workload == "ai:spot"
    assert not assignment.changed
    assert assignment.reason == "held: min dwell 600 s, 480 s left"


# ---------------------------------------------------------------- SLA


def test_sla_is_a_hard_constraint_even_when_mining_pays_more() -> None:
    """Three GPUs committed to acme are served although mining pays far more."""
    fleet = [gpu(i) for i in range(5)]
    result = run(fleet, market(1e-6), Contracts(reserved=(reserved(3),)))
    on_acme = [a for a in result.assignments.values() if a.workload == "ai:acme"]
    assert len(on_acme) == 3
    assert all(a.reason.startswith("switch to ai:acme: SLA acme needs 3, has 3") for a in on_acme)
    (status,) = result.sla
    assert (status.committed_gpus, status.assigned_gpus, status.shortfall_gpus) == (3, 3, 0)
    assert result.problems == ()


def test_sla_beats_min_dwell_and_the_reason_says_so() -> None:
    """Every GPU is inside its dwell, yet two move to meet the SLA; the reason names the dwell."""
    fleet = [gpu(i, since_s=NOW_S - 60 * (i + 1)) for i in range(3)]
    result = run(fleet, market(4.8e-8), Contracts(reserved=(reserved(2),)))
    moved = [a for a in result.assignments.values() if a.changed]
    assert len(moved) == 2
    assert result.dwell_breaks == 2
    assert all("overrides min dwell" in a.reason and "SLA acme" in a.reason for a in moved)
    # the GPU that switched most recently (60 s ago, the most dwell left) is the one kept
    assert not result.assignments["n0:0"].changed


def test_an_infeasible_sla_serves_what_it_can_and_reports_the_shortfall() -> None:
    """Five committed at a 99 % target (4.95 GPUs, so 5 required), three eligible GPUs: all
    three serve, shortfall 2, and the $5/h penalty is charged on the 1.95 GPUs below the
    target."""
    fleet = [gpu(i) for i in range(3)]
    result = run(fleet, market(1e-6), Contracts(reserved=(reserved(5),)))
    assert all(a.workload == "ai:acme" for a in result.assignments.values())
    (status,) = result.sla
    assert (status.assigned_gpus, status.required_gpus, status.shortfall_gpus) == (3, 5, 2)
    assert status.penalty_usd_per_hour == pytest.approx(5.0 * 1.95)
    assert any("SLA acme: 3 of 5" in p and "shortfall 2" in p for p in result.problems)


def test_the_sla_is_met_at_its_availability_target_not_above_it() -> None:
    """Four committed at a 75 % target: three GPUs meet the SLA. Mining pays far more than
    the contract's $0.20/h, so the fourth GPU mines, with no shortfall and no penalty."""
    fleet = [gpu(i) for i in range(5)]
    contract = replace(reserved(4), availability_target_fraction=0.75)
    result = run(fleet, market(1e-6), Contracts(reserved=(contract,)))
    on_acme = [a for a in result.assignments.values() if a.workload == "ai:acme"]
    assert len(on_acme) == 3
    assert all(a.reason.startswith("switch to ai:acme: SLA acme needs 3, has 3") for a in on_acme)
    (status,) = result.sla
    assert (status.committed_gpus, status.required_gpus, status.assigned_gpus) == (4, 3, 3)
    assert (status.shortfall_gpus, status.penalty_usd_per_hour) == (0, 0.0)
    assert result.problems == ()


def test_the_penalty_applies_only_below_the_target_when_shortfall_is_allowed() -> None:
    """Two committed at a 75 % target (1.5 GPUs) and one eligible GPU that mines, shortfall
    allowed: the penalty is $5/h x 1.5, not x 2 (the commitment) or x 1 (whole GPUs)."""
    settings = replace(SETTINGS, allow_sla_shortfall=True)
    contract = replace(reserved(2), availability_target_fraction=0.75)
    result = run([gpu(0)], market(1e-5), Contracts(reserved=(contract,)), settings=settings)
    assert result.assignments["n0:0"].workload == "mine:kawpow"  # $12.5/h > $0.20 + $7.50
    (status,) = result.sla
    assert (status.required_gpus, status.shortfall_gpus) == (2, 2)
    assert status.penalty_usd_per_hour == pytest.approx(7.5)
    # the objective counts the same penalty: mining $12.5 - power $0.03 - penalty $7.50
    assert result.net_usd_per_hour == pytest.approx(12.5 - 0.03 - 7.5)


def test_allowed_shortfall_is_an_economic_choice() -> None:
    """With allow_sla_shortfall, a $5/h penalty is paid when mining nets more than that."""
    fleet = [gpu(0)]
    settings = replace(SETTINGS, allow_sla_shortfall=True)
    rich = run(fleet, market(1e-5), Contracts(reserved=(reserved(1),)), settings=settings)
    assert rich.assignments["n0:0"].workload == "mine:kawpow"  # 30e6 * 1e-5 / 24 = $12.5/h
    assert rich.sla[0].shortfall_gpus == 1
    poor = run(fleet, market(4.8e-8), Contracts(reserved=(reserved(1),)), settings=settings)
    assert poor.assignments["n0:0"].workload == "ai:acme"


def test_lead_time_starts_serving_before_the_window_opens() -> None:
    """A window opening at 09:00 with 15 min lead: served at 08:50, not at 08:30."""
    window = ScheduleWindow(frozenset({0}), 9 * 60, 17 * 60, "UTC")
    contracts = Contracts(reserved=(reserved(2, windows=(window,), lead_time_s=900.0),))
    fleet = [gpu(i) for i in range(3)]
    early = run(fleet, market(4.8e-8), contracts, now_s=NOW_S + 30 * 60)
    assert early.sla[0].active is False
    assert early.switches == 0
    lead = run(fleet, market(4.8e-8), contracts, now_s=NOW_S + 50 * 60)
    assert lead.sla[0].active is True
    assert sum(a.workload == "ai:acme" for a in lead.assignments.values()) == 2


def test_offline_gpus_are_neither_counted_nor_reassigned() -> None:
    """An offline GPU on acme keeps its workload, does not count, and an online one replaces it."""
    fleet = [gpu(0, "ai:acme", online=False), gpu(1), gpu(2, healthy=False)]
    result = run(fleet, market(1e-6), Contracts(reserved=(reserved(1),)))
    offline = result.assignments["n0:0"]
    assert (offline.workload, offline.changed, offline.reason) == (
        "ai:acme",
        False,
        "fixed: node offline",
    )
    assert result.assignments["n0:1"].workload == "ai:acme"
    assert result.assignments["n0:2"].reason == "fixed: GPU unhealthy"
    assert result.sla[0].assigned_gpus == 1


def test_an_override_is_fixed_and_its_reason_names_who_and_until_when() -> None:
    """An operator pins a GPU to idle until 18:00 although mining pays."""
    override = Override("n0:0", "idle", by="ops", until_s=NOW_S + 10 * 3600)
    result = run([gpu(0)], market(1e-6), overrides={"n0:0": override})
    assignment = result.assignments["n0:0"]
    assert (assignment.workload, assignment.changed, assignment.lock) == ("idle", True, "override")
    assert assignment.reason == "fixed: override by ops until 18:00"
    expired = run([gpu(0)], market(1e-6), overrides={"n0:0": replace(override, until_s=NOW_S)})
    assert expired.assignments["n0:0"].workload == "mine:kawpow"


# ---------------------------------------------------------------- prices and power


def test_a_missing_price_never_causes_a_switch() -> None:
    """No kawpow price: GPUs on kawpow stay, and idle GPUs are not sent to it."""
    fleet = [gpu(0), gpu(1, "idle")]
    for price in (None, float("nan"), -1.0):
        result = run(fleet, market(price), Contracts(on_demand=(spot(0.05),)))
        assert result.assignments["n0:0"].workload == "mine:kawpow"
        assert result.assignments["n0:0"].reason == "held: no valid price for mine:kawpow"
        assert result.assignments["n0:1"].workload != "mine:kawpow"


def test_the_site_power_cap_is_respected() -> None:
    """1 kW for four 300 W miners: three mine and the reason for the fourth names the cap."""
    fleet = [gpu(i, "idle") for i in range(4)]
    settings = replace(SETTINGS, site_power_cap_kw=1.0)
    result = run(fleet, market(1e-6), settings=settings)
    assert result.total_power_w <= 1000.0
    workloads = sorted(a.workload or "" for a in result.assignments.values())
    assert workloads == ["idle", "mine:kawpow", "mine:kawpow", "mine:kawpow"]
    idle = next(a for a in result.assignments.values() if a.workload == "idle")
    assert "site power cap 1.0 kW" in idle.reason


def test_on_demand_ceiling_limits_paid_gpus_and_explains_it() -> None:
    """A spot contract paying $1/h takes two GPUs; the third mines and says spot is full."""
    fleet = [gpu(i, "idle") for i in range(3)]
    result = run(fleet, market(4.8e-8), Contracts(on_demand=(spot(1.0, max_gpus=2),)))
    workloads = [a.workload for a in result.assignments.values()]
    assert workloads.count("ai:spot") == 2
    other = next(a for a in result.assignments.values() if a.workload != "ai:spot")
    assert "ai:spot is full" in other.reason


def test_measured_rates_replace_the_benchmark_per_gpu() -> None:
    """Two GPUs on the same profile: the one that measures half the hashrate is the one to move."""
    slow = {"kawpow": MeasuredRate(15e6, 300.0)}
    fleet = [gpu(0), gpu(1, measured=slow)]
    result = run(fleet, market(8e-8), Contracts(on_demand=(spot(0.11, max_gpus=1),)))
    # fast nets 0.10 - 0.03 = $0.07/h, slow 0.05 - 0.03 = $0.02/h; spot nets $0.08/h
    assert result.assignments["n0:0"].workload == "mine:kawpow"
    assert result.assignments["n0:1"].workload == "ai:spot"
    slow_row = next(r for r in result.assignments["n0:1"].candidates if r.workload == "mine:kawpow")
    assert abs(slow_row.net_usd_per_hour - 0.02) < 1e-3  # measurements in 1 % buckets


def test_every_gpu_gets_a_candidate_table_best_first() -> None:
    """The table lists each option with its net $/h, sorted, and marks the current one."""
    result = run([gpu(0)], market(4.8e-8), Contracts(on_demand=(spot(0.06),)))
    table = result.assignments["n0:0"].candidates
    assert {row.workload for row in table} == {"idle", "mine:kawpow", "ai:spot"}
    nets = [row.net_usd_per_hour for row in table]
    assert nets == sorted(nets, reverse=True)
    assert next(r for r in table if r.workload == "mine:kawpow").note == "current"


def test_when_nothing_pays_for_a_switch_no_gpu_moves() -> None:
    """Everything worth the same (a reserved contract at rate 0, power free, no margin, no
    dwell): the plan keeps every GPU where it is instead of swapping two of them between
    mining and the contract, which would cost the contract a model load for nothing."""
    settings = replace(SETTINGS, hysteresis_margin_usd_per_gpu_hour=0.0, min_dwell_s=0.0)
    fleet = [gpu(0, "mine:kawpow"), gpu(1, "ai:acme"), gpu(2, "mine:kawpow"), gpu(3, "idle")]
    free = Market({"kawpow": 0.0}, 0.0)
    result = run(fleet, free, Contracts(reserved=(reserved(1, rate=0.0),)), settings=settings)
    assert result.switches == 0
    assert {k: a.workload for k, a in result.assignments.items()} == {
        g.key: g.current_workload for g in fleet
    }


def test_gpus_with_one_measurement_but_different_evidence_are_priced_apart() -> None:
    """Both GPUs measured 20 MH/s (benchmark 30): after one reading the planner counts
    29 MH/s, after ten, 20. Grouping GPUs by their raw measurement would price both alike."""
    fleet = [
        gpu(i, measured={"kawpow": MeasuredRate(20e6, 250.0, hashrate_samples=n)})
        for i, n in enumerate((1, 10))
    ]
    result = run(fleet, market(2.4e-7))  # $0.01/h per MH/s
    stays = [
        next(c for c in result.assignments[g.key].candidates if c.workload == "mine:kawpow")
        for g in fleet
    ]
    power_usd = 0.025  # 250 W at 0.1 $/kWh
    bucket_usd = 0.003  # 1 % buckets of about $0.25/h
    assert stays[0].net_usd_per_hour == pytest.approx(0.29 - power_usd, abs=bucket_usd)
    assert stays[1].net_usd_per_hour == pytest.approx(0.20 - power_usd, abs=bucket_usd)


FLEET_SCOPE = replace(SETTINGS, hysteresis_scope="fleet")


def _swap_fleet() -> tuple[list[GpuState], OnDemandContract]:
    """A 550 W GPU serves a one-GPU on-demand contract while a 250 W GPU of another model
    sits idle: moving the work to the efficient one saves 300 W x 0.1 $/kWh = $0.03/h."""
    on_demand = OnDemandContract(
        "spot",
        0.5,
        1.0,
        1,
        Eligibility(),
        switch_downtime_s=0.0,
        power=AiPower(by_model_w={"hungry": 550.0, "frugal": 250.0}),
    )
    fleet = [
        replace(gpu(0, "ai:spot"), model="hungry"),
        replace(gpu(1, "idle"), model="frugal"),
    ]
    return fleet, on_demand


def test_a_pair_swap_worth_less_than_two_margins_is_made_under_a_fleet_scope_margin() -> None:
    """Fleet scope: swapping which GPU serves changes no workload's count, so only switching
    costs judge it, and the $0.03/h saving is taken although it is below two $0.05 margins."""
    fleet, on_demand = _swap_fleet()
    result = run(fleet, market(None), Contracts(on_demand=(on_demand,)), settings=FLEET_SCOPE)
    assert result.assignments["n0:0"].workload == "idle"
    assert result.assignments["n0:1"].workload == "ai:spot"
    assert result.switches == 2


def test_a_per_gpu_margin_strands_the_same_pair_swap() -> None:
    """The default, `hysteresis_scope = "gpu"`: each leg pays the margin, so the swap never
    clears it and the 550 W GPU keeps the work."""
    fleet, on_demand = _swap_fleet()
    result = run(fleet, market(None), Contracts(on_demand=(on_demand,)))
    assert result.assignments["n0:0"].workload == "ai:spot"
    assert result.switches == 0


def test_a_fleet_scope_margin_still_damps_a_change_of_the_mix() -> None:
    """Moving a GPU into a workload no GPU leaves pays the margin, as before: an idle GPU
    does not start mining for a gain of $0.01/h under a $0.05/h margin."""
    # 30 MH/s at 3.2e-8 $/H/s/day = $0.04/h gross - $0.03/h power = $0.01/h net
    result = run([gpu(0, "idle")], market(3.2e-8), Contracts(), settings=FLEET_SCOPE)
    assert result.assignments["n0:0"].workload == "idle"
    assert result.assignments["n0:0"].reason == (
        "held: mine:kawpow would add $0.01/h after switch cost, "
        "below the $0.05/h margin on the fleet's mix"
    )
    result = run([gpu(0, "idle")], market(8e-8), Contracts(), settings=FLEET_SCOPE)  # $0.07/h
    assert result.assignments["n0:0"].workload == "mine:kawpow"


WEEKDAYS = ScheduleWindow(frozenset(range(5)), 8 * 60, 20 * 60, "UTC")
FRIDAY_EVENING_S = NOW_S + 4 * 86_400 + 12.5 * 3600  # 2026-01-09 20:30 UTC
TUESDAY_EVENING_S = NOW_S + 86_400 + 12.5 * 3600  # 2026-01-06 20:30 UTC


def test_the_next_window_edge_after_a_friday_close_is_monday_less_the_lead_time() -> None:
    contract = reserved(1, windows=(WEEKDAYS,), lead_time_s=3600.0)
    monday_s = NOW_S + 7 * 86_400 - 3600.0  # 2026-01-12 07:00 UTC
    assert contract.next_change_s(FRIDAY_EVENING_S, 7 * 86_400) == monday_s
    assert contract.next_change_s(TUESDAY_EVENING_S, 7 * 86_400) == NOW_S + 2 * 86_400 - 3600
    assert contract.next_change_s(NOW_S, 86_400) == NOW_S + 12 * 3600  # closes 20:00
    assert reserved(1).next_change_s(NOW_S, 86_400) is None  # always active


def test_a_margin_spread_to_the_next_window_unloads_a_gpu_for_the_weekend_only() -> None:
    """A GPU still loaded with a weekday contract after its window closed draws 250 W:
    at 0.06 $/kWh unloading saves $0.015/h, below the $0.05/h margin judged over 12 h.
    From Friday 20:30 nothing changes until Monday 07:00 (58.5 h), so the margin becomes
    $0.05 x 12 / 58.5 = $0.010/h and the GPU is unloaded; on Tuesday evening the next edge
    is 10.5 h away, inside the horizon, and the margin (and the GPU) stay as they are."""
    contract = reserved(1, windows=(WEEKDAYS,), lead_time_s=3600.0)
    settings = replace(
        SETTINGS, horizon_s=12 * 3600.0, min_dwell_s=0.0, hysteresis_until_next_window=True
    )
    prices = Market({"kawpow": None}, 0.06)
    loaded = [gpu(0, "ai:acme")]
    friday = run(loaded, prices, Contracts((contract,)), settings=settings, now_s=FRIDAY_EVENING_S)
    assert friday.assignments["n0:0"].workload == "idle"
    tuesday = run(
        loaded, prices, Contracts((contract,)), settings=settings, now_s=TUESDAY_EVENING_S
    )
    assert tuesday.assignments["n0:0"].workload == "ai:acme"
    plain = replace(settings, hysteresis_until_next_window=False)
    held = run(loaded, prices, Contracts((contract,)), settings=plain, now_s=FRIDAY_EVENING_S)
    assert held.assignments["n0:0"].workload == "ai:acme"
