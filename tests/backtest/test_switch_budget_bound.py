"""bench/switch_budget_bound.py bounds every strategy at its own switch rate.

On a fortnight of the shipped ERCOT scenario: without a budget the bound is the hindsight
optimum, and no strategy the command runs nets more than the bound at the number of
switches it made.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from types import ModuleType

from orchestrator.backtest.cli import build_scenario, main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "backtest-ercot-2024.toml"
DATA = ROOT / "orchestrator" / "backtest" / "data"
PRICES = DATA / "hashprice-randomx-equihash-on-2024.csv"
POWER = DATA / "power-ercot-hubavg-dam-2024.csv"
CUT = ("2024-07-01", "2024-07-08")


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "switch_budget_bound", ROOT / "bench" / "switch_budget_bound.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bound_holds_every_strategy_at_its_switch_count(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["backtest", "--config", str(CONFIG), "--prices", str(PRICES), "--power", str(POWER)]
    args += ["--from", CUT[0], "--to", CUT[1], "--json", str(out)]
    assert main(args) == 0
    strategies = json.loads(out.read_text())["strategies"]
    namespace = argparse.Namespace(
        config=CONFIG,
        prices=PRICES,
        power=POWER,
        start=CUT[0],
        end=CUT[1],
        step=None,
        max_gap=None,
        fleet=None,
        fill_gaps=False,
    )
    scenario, _, _ = build_scenario(namespace)
    bench = _bench()
    highs, budget_row = bench.build_lp(scenario)
    by_name = {s["name"]: s for s in strategies}
    unbounded = bench.bound_usd(highs, budget_row, 1e9)
    hindsight = by_name["hindsight optimum"]["net_revenue_usd"]
    assert abs(unbounded - hindsight) <= 1e-6 * abs(hindsight)
    for s in strategies:
        if s["name"] == "always mine":  # signs no contracts: another problem
            continue
        bound = bench.bound_usd(highs, budget_row, float(s["switches"]))
        assert s["net_revenue_usd"] <= bound + 1e-6 * abs(bound), s["name"]
