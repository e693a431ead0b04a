"""A backtest small enough to check by hand: 2 GPUs, 3 hourly steps, fixed prices.

Per GPU-hour: mining earns 1e6 H/s x hashprice / 24 and costs 0.02 (200 W at 0.10 $/kWh);
AI (one GPU at most) earns 0.50 and costs 0.03. Hashprice 2.4e-6 gives mining 0.10/h
(net 0.08); 2.4e-5 gives 1.00/h (net 0.98). Mining starts at once; AI takes 30 minutes.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.backtest.engine import make_scenario, run_strategy
from orchestrator.backtest.strategies import (
    AlwaysAi,
    AlwaysMine,
    Hindsight,
    LivePolicy,
    StaticSplit,
)
from orchestrator.policy.model import Contracts
from tests.backtest.helpers import reserved, two_gpu_scenario

LOW, HIGH = 2.4e-6, 2.4e-5


def test_live_policy_books_switch_downtime_exactly() -> None:
    """Step 0: one GPU serves AI, one mines (0.47 + 0.08). Step 1: mining pays 0.98, so
    both mine (a free switch). Step 2: AI is back ahead even after its switch cost (0.47
    less 0.5 h x 0.50 of revenue lost while loading = 0.22 > 0.08), so one GPU switches and
    loads for half an hour: it earns 0.25, draws 0.03 (0.22 net, as the planner priced it).
    Net 0.55 + 1.96 + 0.30 = 2.81, two switches."""
    result = run_strategy(two_gpu_scenario([LOW, HIGH, LOW]), LivePolicy())
    assert result.net_by_step_usd == pytest.approx([0.55, 1.96, 0.30])
    assert result.net_revenue_usd == pytest.approx(2.81)
    assert result.mining_revenue_usd == pytest.approx(2.2)
    assert result.ai_revenue_usd == pytest.approx(0.75)
    assert result.power_cost_usd == pytest.approx(0.14)
    assert result.penalties_usd == 0.0
    assert result.switches == 2
    assert result.switches_per_gpu_day == pytest.approx(2 / 2 / (3 / 24))
    assert result.gpus_by_workload == [
        {"ai:od": 1, "mine:p": 1},
        {"mine:p": 2},
        {"ai:od": 1, "mine:p": 1},
    ]


def test_baselines_and_bound_by_hand() -> None:
    """Always mine 0.16 + 1.96 + 0.16; always AI 3 x 0.47 (the other GPU idles at 0 W);
    a 50 % split 0.55 + 1.45 + 0.55; the hindsight optimum switches for free: 0.55 + 1.96
    + 0.55 = 3.06, above every other strategy."""
    scenario = two_gpu_scenario([LOW, HIGH, LOW])
    nets = {
        s.name: run_strategy(scenario, s).net_revenue_usd
        for s in (AlwaysMine(), AlwaysAi(), StaticSplit(0.5), Hindsight(), LivePolicy())
    }
    assert nets["always mine"] == pytest.approx(2.28)
    assert nets["always AI"] == pytest.approx(1.41)
    assert nets["static split 50% AI"] == pytest.approx(2.55)
    assert nets["hindsight optimum"] == pytest.approx(3.06)
    assert max(nets.values()) == nets["hindsight optimum"]


def test_a_reserved_contract_is_met_at_its_availability_target() -> None:
    """Two GPUs committed at a 50 % target (rate $0.10/h, penalty $2/h): one GPU meets the
    SLA. Mining nets $0.98/h, so the live policy serves one and mines with the other, and
    no penalty is booked; a split that serves neither owes $2/h for the one GPU below the
    target, not for two. Always AI serves both (it never mines)."""
    contract = replace(reserved("acme", 2, rate=0.1, penalty=2.0), availability_target_fraction=0.5)
    base = two_gpu_scenario([HIGH])
    policy = replace(base.policy, contracts=Contracts(reserved=(contract,)))
    scenario = make_scenario(
        base.groups,
        policy,
        steps_s=base.steps_s,
        step_s=base.step_s,
        hashprice_usd_per_hs_day={"x": [HIGH]},
        power_usd_per_kwh=[0.10],
    )
    live = run_strategy(scenario, LivePolicy())
    assert live.gpus_by_workload == [{"ai:acme": 1, "mine:p": 1}]
    assert live.penalties_usd == 0.0
    assert live.net_revenue_usd == pytest.approx(0.98 + 0.1 - 0.025)
    assert live.sla_availability() == pytest.approx(0.5)
    hindsight = run_strategy(scenario, Hindsight())
    assert hindsight.net_revenue_usd == pytest.approx(live.net_revenue_usd)
    mine = StaticSplit(0.0, name="all mining, contract signed")
    none_served = run_strategy(scenario, mine)
    assert none_served.penalties_usd == pytest.approx(2.0)


def test_the_backtest_takes_the_miners_dev_fee_like_the_pool_fee() -> None:
    """A 50 % dev fee halves mining revenue: always mining at 1.00 $/h gross earns 0.50."""
    base = two_gpu_scenario([HIGH])
    (profile,) = base.policy.profiles
    policy = replace(base.policy, profiles=(replace(profile, dev_fee_fraction=0.5),))
    scenario = replace(base, policy=policy)
    result = run_strategy(scenario, AlwaysMine())
    assert result.mining_revenue_usd == pytest.approx(2 * 0.5)
