"""The command end to end on files: text table columns, JSON keys, SVG series, errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestrator.backtest.cli import load_backtest_config, main
from orchestrator.backtest.report import TABLE_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "orchestrator" / "backtest" / "data"
SVG = "{http://www.w3.org/2000/svg}"
STRATEGIES = ["live policy", "always mine", "always AI", "static split 50% AI", "hindsight optimum"]
CONFIG = """
[mqtt]
host = "ignored.example"

[backtest]
step = "6h"
static_split_ai_fraction = 0.5
[[backtest.fleet]]
model = "NVIDIA GeForce RTX 3090"
count = 4
memory_gib = 24

[[policy.mining_profiles]]
id = "xmr"
algorithm = "randomx"
benchmarks."NVIDIA GeForce RTX 3090" = { hashrate_hs = 1800, power_w = 250 }

[[policy.contracts.reserved]]
id = "acme"
rate_usd_per_gpu_hour = 0.30
committed_gpus = 2
penalty_usd_per_gpu_hour = 1.0

[policy.planner]
min_dwell_s = 3600
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def _prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.csv"
    rows = ["timestamp,hashprice_usd_per_hs_day:randomx,power_usd_per_kwh"]
    rows += [f"2020-01-{d:02d}T00:00Z,{6e-5 + d * 1e-6:.3e},0.04" for d in range(1, 11)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_table_json_and_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_svg = tmp_path / "r.json", tmp_path / "r.svg"
    code = main(
        [
            "backtest",
            "-c",
            str(_config(tmp_path)),
            "--prices",
            str(_prices(tmp_path)),
            "--json",
            str(out_json),
            "--svg",
            str(out_svg),
            "--sweep",
            "margin=0,0.1",
            "--sweep",
            "dwell=0,1d",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("strategy"))
    assert header.split("  ")[0] == "strategy"
    for column in TABLE_COLUMNS:
        assert column in header
    for name in STRATEGIES:
        assert any(line.startswith(name) for line in text.splitlines())
    assert "40 steps of 21600 s, 4 GPUs" in text

    document = json.loads(out_json.read_text())
    assert set(document) == {"period", "fleet", "strategies", "notes", "sweep"}
    assert document["period"]["steps"] == 40
    assert [s["name"] for s in document["strategies"]] == STRATEGIES
    assert set(document["strategies"][0]) == {
        "name",
        "net_revenue_usd",
        "revenue_usd",
        "mining_revenue_usd",
        "ai_revenue_usd",
        "power_cost_usd",
        "penalties_usd",
        "switch_cost_usd",
        "switches",
        "switches_per_gpu_day",
        "sla_availability_fraction",
        "sla_by_contract",
    }
    assert len(document["sweep"]) == 4
    assert {r["min_dwell_s"] for r in document["sweep"]} == {0.0, 86_400.0}
    nets = {s["name"]: s["net_revenue_usd"] for s in document["strategies"]}
    assert nets["hindsight optimum"] == max(nets.values())

    root = ET.fromstring(out_svg.read_text())  # noqa: S314  (our own output: well-formed XML?)
    assert root.tag == f"{SVG}svg"
    lines = root.findall(f".//{SVG}polyline")
    assert [p.get("data-series") for p in lines] == STRATEGIES
    areas = {p.get("data-series") for p in root.findall(f".//{SVG}polygon")}
    assert areas
    assert areas <= {"idle", "mine:xmr", "ai:acme"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--step", "soon"], "is not a duration"),
        (["--fleet", "RTX=lots"], "expected MODEL=COUNT[@GIB]"),
        (["--from", "2020-02-01"], "no steps between"),
        (["--sweep", "speed=1"], "expected NAME=V1,V2"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["backtest", "-c", str(_config(tmp_path)), "--prices", str(_prices(tmp_path))]
    assert main(args + extra) == 2
    assert message in capsys.readouterr().err


def test_a_bad_row_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = _prices(tmp_path)
    lines = prices.read_text().splitlines()
    lines[5] = lines[5].replace("e-05", "e+01")  # a per-MH/s value on line 6
    prices.write_text("\n".join(lines) + "\n")
    assert main(["backtest", "-c", str(_config(tmp_path)), "--prices", str(prices)]) == 2
    assert "error: prices.csv:6: hashprice_usd_per_hs_day:randomx" in capsys.readouterr().err


def test_a_bad_config_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    config.write_text(CONFIG.replace("min_dwell_s", "min_dwell"))
    assert main(["backtest", "-c", str(config), "--prices", str(_prices(tmp_path))]) == 2
    assert "policy.planner.min_dwell: unknown key" in capsys.readouterr().err


def test_shipped_sample_data_loads_with_the_power_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 2020 hashprices and the 2024 ERCOT year pass every check; a 2020 backtest with
    2024 power fails on time, naming the power file, instead of mixing years silently."""
    prices = DATA / "hashprice-randomx-equihash-2020.csv"
    power = DATA / "power-ercot-hubavg-dam-2024.csv"
    config = _config(tmp_path)
    config.write_text(
        CONFIG
        + """
[[policy.mining_profiles]]
id = "zec"
algorithm = "equihash"
benchmarks."NVIDIA GeForce RTX 3090" = { hashrate_hs = 900, power_w = 250 }
"""
    )
    args = ["backtest", "-c", str(config), "--prices", str(prices), "--step", "1d"]
    assert main([*args, "--power", str(power)]) == 2
    assert "power-ercot-hubavg-dam-2024.csv:2: power price starts at 2024-01-01T00:00Z" in (
        capsys.readouterr().err
    )
    assert main(args) == 2  # no power column and no constant: said so
    assert "no power price" in capsys.readouterr().err


def test_merge_config_parses() -> None:
    policy, backtest, _ = load_backtest_config(ROOT / "config" / "backtest-merge.toml")
    assert [p.algorithm for p in policy.profiles] == ["ethash"]
    assert sum(g.count for g in backtest.fleet) == 96
