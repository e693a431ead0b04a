"""Holes in the price files: judged inside the replayed period, for both files, and
repaired only visibly, per file, with --fill-gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.backtest.cli import main

CONFIG = """
[backtest]
step = "1h"
{extra}
[[backtest.fleet]]
model = "NVIDIA GeForce RTX 3090"
count = 2
memory_gib = 24

[[policy.mining_profiles]]
id = "xmr"
algorithm = "randomx"
benchmarks."NVIDIA GeForce RTX 3090" = {{ hashrate_hs = 1800, power_w = 250 }}
"""
HOURS = [f"2020-01-{1 + h // 24:02d}T{h % 24:02d}:00Z" for h in range(48)]  # Jan 1 and 2


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(CONFIG.format(extra=extra), encoding="utf-8")
    return path


def _prices(tmp_path: Path, *, skip: range = range(0), empty: int | None = None) -> Path:
    """Hourly hashprices over Jan 1 and 2, without the hours in `skip`, with an empty
    cell at hour `empty`."""
    rows = ["timestamp,hashprice_usd_per_hs_day:randomx"]
    rows += [
        f"{time},{'' if h == empty else '6e-5'}" for h, time in enumerate(HOURS) if h not in skip
    ]
    path = tmp_path / "prices.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _power(tmp_path: Path, *, skip: range = range(0), empty: int | None = None) -> Path:
    rows = ["timestamp,power_usd_per_kwh"]
    rows += [
        f"{time},{'' if h == empty else '0.05'}" for h, time in enumerate(HOURS) if h not in skip
    ]
    path = tmp_path / "power.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], config: Path, *args: str | Path) -> tuple[int, str]:
    code = main(["backtest", "-c", str(config), *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_max_gap_reaches_the_power_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 4 h hole in the hourly power file (lines 28 and 32: hours 26 to 30) is over its
    default limit of 1.5 h; the error names the power file's line and a --max-gap that
    admits it, and that flag, or `[backtest] max_gap`, then lets the run through."""
    prices = _prices(tmp_path)
    power = _power(tmp_path, skip=range(27, 30))
    code, output = _run(capsys, _config(tmp_path), "--prices", prices, "--power", power)
    assert code == 2
    assert "error: power.csv:29: gap of 4 h since line 28 (2020-01-02T02:00Z)" in output
    assert "pass --max-gap 4h" in output
    code, output = _run(
        capsys, _config(tmp_path), "--prices", prices, "--power", power, "--max-gap", "4h"
    )
    assert code == 0, output
    code, output = _run(
        capsys, _config(tmp_path, 'max_gap = "4h"'), "--prices", prices, "--power", power
    )
    assert code == 0, output
    code, output = _run(
        capsys, _config(tmp_path), "--prices", prices, "--power", power, "--max-gap", "3h"
    )
    assert code == 2
    assert "power.csv:29: gap of 4 h" in output


def test_gaps_and_empty_cells_outside_the_period_are_not_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hole on Jan 1 (hours 3 to 5 missing, an empty cell at hour 10) stops a run that
    replays Jan 1, and not one that replays Jan 2 or the morning before the hole."""
    prices = _prices(tmp_path, skip=range(3, 6), empty=10)
    power = _power(tmp_path)
    code, output = _run(capsys, _config(tmp_path), "--prices", prices, "--power", power)
    assert code == 2
    assert "error: prices.csv:5: gap of 4 h since line 4 (2020-01-01T02:00Z)" in output
    args = ("--prices", prices, "--power", power)
    code, output = _run(capsys, _config(tmp_path), *args, "--from", "2020-01-01T06:00Z")
    assert code == 2
    assert "error: prices.csv:9: hashprice_usd_per_hs_day:randomx is empty" in output
    code, output = _run(capsys, _config(tmp_path), *args, "--from", "2020-01-02")
    assert code == 0, output
    code, output = _run(capsys, _config(tmp_path), *args, "--to", "2020-01-01T03:00Z")
    assert code == 0, output


def test_fill_gaps_counts_replayed_steps_per_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file's note counts the replayed steps that used a carried-over price: the
    power file's steps at hours 28 and 29 (2 and 3 h old, over 1.5 h) and its empty
    cell at hour 40; the prices file's empty cell at hour 2 and its hole lie before
    --from, so it used none."""
    prices = _prices(tmp_path, skip=range(5, 9), empty=2)
    power = _power(tmp_path, skip=range(27, 30), empty=40)
    args = ("--prices", prices, "--power", power, "--from", "2020-01-02", "--fill-gaps")
    code, output = _run(capsys, _config(tmp_path), *args)
    assert code == 0, output
    assert "--fill-gaps: 0 of 24 steps used a carried-over price from prices.csv" in output
    assert "--fill-gaps: 3 of 24 steps used a carried-over price from power.csv" in output
