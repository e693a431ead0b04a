"""The most any strategy could earn on a backtest with at most a given switch rate.

Run with the backtest's own arguments plus the switch rates to bound:

    python bench/switch_budget_bound.py -c config/backtest-ercot-2024.toml \\
        --prices orchestrator/backtest/data/hashprice-randomx-equihash-on-2024.csv \\
        --power orchestrator/backtest/data/power-ercot-hubavg-dam-2024.csv \\
        --from 2024-01-01 --to 2025-01-01 --budget 0.222 --budget 0.5

For each budget (switches per GPU-day) it prints an upper bound on the net revenue of
every strategy that holds the same contracts and switches at most that often: one linear
program over the whole history (HiGHS), with, per step, the GPUs of each fleet group on
each workload (fractions allowed) valued exactly as `engine.step_value_usd` values them
(mining and power per GPU, contracts paid up to their ceiling, penalties below the
availability target), and, per step after the first, one variable per (group, workload)
at least the GPUs that joined it. Their sum is at most the budget x GPUs x days.

Why it is an upper bound: any strategy's assignment at each step is a feasible point (a
GPU that joins a workload is a switch, the first step is a warm start as in the engine),
its booked net is at most the LP's value of that point (downtime and fixed switch costs
only subtract), and the LP maximises over a set that contains it; the site power cap is
left out, which can only raise the bound. Without a budget it equals the hindsight
optimum (the same per-step problem, relaxed; the ERCOT scenario gives the same figure).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import highspy
import numpy as np
from highspy._core import _Highs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.backtest.cli import build_scenario  # noqa: E402
from orchestrator.backtest.engine import (  # noqa: E402
    Scenario,
    all_workloads,
    contract_terms,
    every_contract,
    workload_rates,
)
from orchestrator.domain import Workload, WorkloadKind  # noqa: E402
from orchestrator.policy.economics import power_cost_usd_per_hour  # noqa: E402

INF = float(highspy.kHighsInf)
_OPTIONS: dict[str, bool | int] = {"output_flag": False, "threads": 1}


class _Lp:
    def __init__(self) -> None:
        self.cost: list[float] = []
        self.upper: list[float] = []
        self.rows: list[tuple[float, float, list[tuple[int, float]]]] = []

    def column(self, cost: float, upper: float = INF) -> int:
        self.cost.append(cost)
        self.upper.append(upper)
        return len(self.cost) - 1

    def row(self, lower: float, upper: float, entries: list[tuple[int, float]]) -> int:
        self.rows.append((lower, upper, entries))
        return len(self.rows) - 1


def _eligible(scenario: Scenario, group: int, workload: str) -> bool:
    parsed = Workload.parse(workload)
    if parsed.kind is not WorkloadKind.AI:
        return True
    g = scenario.groups[group]
    return any(
        c.id == parsed.name and c.eligibility.admits(g.model, g.memory_bytes)
        for c in every_contract(scenario)
    )


def build_lp(scenario: Scenario) -> tuple[_Highs, int]:
    """The LP with its budget row (index returned) left unbounded."""
    lp = _Lp()
    pairs = [
        (k, w)
        for k in range(len(scenario.groups))
        for w in all_workloads(scenario)
        if _eligible(scenario, k, w) and workload_rates(scenario, scenario.groups[k], w, 0)
    ]
    dt_h = scenario.step_s / 3600.0
    previous: list[int] = []
    joined: list[int] = []
    for step in range(len(scenario.steps_s)):
        price = scenario.markets[step].power_price_usd_per_kwh
        columns: list[int] = []
        serving: dict[str, list[int]] = {}
        for k, w in pairs:
            group = scenario.groups[k]
            rates = workload_rates(scenario, group, w, step)
            if rates is None:
                raise ValueError(f"{w} is impossible on {group.model} at step {step}")
            own = rates.own_revenue_usd_per_hour - power_cost_usd_per_hour(rates.power_w, price)
            column = lp.column(own * dt_h, float(group.count))
            columns.append(column)
            if rates.paid_by is not None:
                serving.setdefault(rates.paid_by, []).append(column)
        for k, group in enumerate(scenario.groups):
            members = [(c, 1.0) for c, (g, _) in zip(columns, pairs, strict=True) if g == k]
            lp.row(group.count, group.count, members)
        for contract_id, terms in contract_terms(scenario, step).items():
            served = [(c, -1.0) for c in serving.get(contract_id, [])]
            paid = lp.column(terms.paid_usd_per_gpu_hour * dt_h, terms.cap_gpus)
            lp.row(-INF, 0.0, [(paid, 1.0), *served])
            if terms.target_gpus > 0:
                short = lp.column(-terms.penalty_usd_per_gpu_hour * dt_h)
                lp.row(terms.target_gpus, INF, [(short, 1.0), *((c, 1.0) for c, _ in served)])
        if previous:
            for now, before in zip(columns, previous, strict=True):
                moved = lp.column(0.0)
                joined.append(moved)
                lp.row(0.0, INF, [(moved, 1.0), (now, -1.0), (before, 1.0)])
        previous = columns
    budget_row = lp.row(-INF, INF, [(c, 1.0) for c in joined])
    highs = _Highs()  # not `highspy.Highs`: its constructor logs (see policy/milp.py)
    for name, setting in _OPTIONS.items():
        highs.setOptionValue(name, setting)
    n = len(lp.cost)
    highs.addVars(n, np.zeros(n), np.array(lp.upper))
    highs.changeColsCost(n, np.arange(n, dtype=np.int32), np.array(lp.cost))
    highs.changeObjectiveSense(highspy.ObjSense.kMaximize)
    starts: list[int] = []
    index: list[int] = []
    value: list[float] = []
    for _, _, entries in lp.rows:
        starts.append(len(index))
        for i, v in entries:
            index.append(i)
            value.append(v)
    highs.addRows(
        len(lp.rows),
        np.array([r[0] for r in lp.rows], dtype=float),
        np.array([r[1] for r in lp.rows], dtype=float),
        len(index),
        np.array(starts, dtype=np.int32),
        np.array(index, dtype=np.int32),
        np.array(value, dtype=float),
    )
    return highs, budget_row


def bound_usd(highs: _Highs, budget_row: int, switches: float) -> float:
    """The LP's optimum with at most `switches` switches in all."""
    highs.changeRowBounds(budget_row, -INF, switches)
    highs.run()
    status = highs.modelStatusToString(highs.getModelStatus())
    if status != "Optimal":
        raise RuntimeError(f"the bound's LP ended {status}")
    return float(highs.getInfo().objective_function_value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, required=True)
    parser.add_argument("--prices", type=Path, required=True)
    parser.add_argument("--power", type=Path)
    parser.add_argument("--from", dest="start")
    parser.add_argument("--to", dest="end")
    parser.add_argument("--step")
    parser.add_argument("--max-gap")
    parser.add_argument("--budget", type=float, action="append", required=True)
    args = parser.parse_args(argv)
    args.fleet = None
    args.fill_gaps = False
    scenario, _, _ = build_scenario(args)
    highs, budget_row = build_lp(scenario)
    scale = scenario.gpu_count * scenario.days
    for budget in args.budget:
        started = time.perf_counter()
        bound = bound_usd(highs, budget_row, budget * scale)
        print(
            f"at most {budget:.3f} switches/GPU-day ({budget * scale:,.0f} switches): "
            f"net <= US${bound:,.0f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
