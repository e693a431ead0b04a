"""Small scenarios for the backtest tests, built from the planner's own value types."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.backtest.engine import FleetGroup, Scenario, make_scenario
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
)

MODEL = "NVIDIA GeForce RTX 3090"
START_S = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def two_gpu_scenario(hashprices: Sequence[float]) -> Scenario:
    """2 GPUs; mining 1 MH/s at 200 W; on-demand AI for 1 GPU at 0.50 $/h, 300 W, 30 min
    to load; power 0.10 $/kWh; steps of one hour; no margin, dwell or fixed switch cost."""
    profile = MiningProfile("p", "x", 0.0, 0.0, {MODEL: Benchmark(1e6, 200.0)})
    on_demand = OnDemandContract("od", 0.5, 1.0, 1, Eligibility(), 1800.0, AiPower(default_w=300.0))
    settings = PlannerSettings(
        horizon_s=3600.0,
        hysteresis_margin_usd_per_gpu_hour=0.0,
        min_dwell_s=0.0,
        switch_fixed_cost_usd=0.0,
        idle_power_w=0.0,
    )
    policy = PolicyInputs((profile,), Contracts(on_demand=(on_demand,)), settings)
    steps = [START_S + 3600.0 * i for i in range(len(hashprices))]
    return make_scenario(
        [FleetGroup(MODEL, 2, 24.0)],
        policy,
        steps_s=steps,
        step_s=3600.0,
        hashprice_usd_per_hs_day={"x": list(hashprices)},
        power_usd_per_kwh=[0.10] * len(steps),
    )


def reserved(
    contract_id: str, committed: int, *, rate: float = 1.0, penalty: float = 2.0
) -> ReservedContract:
    return ReservedContract(
        contract_id,
        rate,
        committed,
        Eligibility(),
        None,
        0.99,
        penalty,
        600.0,
        300.0,
        AiPower(default_w=250.0),
    )
