"""The shipped ERCOT 2024 scenario, on a fortnight of it: what switch damping buys.

`config/backtest-ercot-2024.toml` on its shipped data, through the command itself. The
fortnight (2024-07-01 .. 07-15) has ten weekday windows of the reserved A100 contract and
summer power prices. Under a per-GPU margin (`hysteresis_scope = "gpu"`) the policy keeps
H100s (550 W) on the on-demand contract after a window closes while A100s (250 W) sit
out, because each leg of the swap pays the margin; charging the margin on the fleet's mix
makes those swaps. The full year's figures are in docs/backtest.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.backtest.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "backtest-ercot-2024.toml"
DATA = ROOT / "orchestrator" / "backtest" / "data"
CUT = ["--from", "2024-07-01", "--to", "2024-07-15"]


def _net_by_strategy(config: Path, out: Path) -> dict[str, tuple[float, float]]:
    """Strategy name -> (net US$, switches per GPU-day) from the command's JSON report."""
    code = main(
        [
            "backtest",
            "--config",
            str(config),
            "--prices",
            str(DATA / "hashprice-randomx-equihash-on-2024.csv"),
            "--power",
            str(DATA / "power-ercot-hubavg-dam-2024.csv"),
            *CUT,
            "--json",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    return {
        s["name"]: (s["net_revenue_usd"], s["switches_per_gpu_day"]) for s in report["strategies"]
    }


def test_a_fleet_scope_margin_earns_what_a_per_gpu_margin_strands(tmp_path: Path) -> None:
    """Same data, same margin: the fleet scope earns more than the per-GPU scope, stays
    within 1 % of the hindsight bound and far above always mining."""
    per_gpu_config = tmp_path / "per-gpu.toml"
    text = CONFIG.read_text()
    assert 'hysteresis_scope = "fleet"' in text
    per_gpu_config.write_text(
        text.replace('hysteresis_scope = "fleet"', 'hysteresis_scope = "gpu"', 1)
    )
    fleet = _net_by_strategy(CONFIG, tmp_path / "fleet.json")
    per_gpu = _net_by_strategy(per_gpu_config, tmp_path / "per-gpu.json")
    live, _ = fleet["live policy"]
    stranded, _ = per_gpu["live policy"]
    bound, _ = fleet["hindsight optimum"]
    assert live > stranded + 300.0  # US$400 in this fortnight
    assert live >= 0.99 * bound
    assert live > fleet["always mine"][0]
