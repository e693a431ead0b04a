"""The `[backtest]` section: what `orchestrator backtest` needs beyond the policy sections.

It lives with the other config sections so that one file can serve both the daemon and
the backtest: `serve` ignores it, `orchestrator config check` validates it.

The command's arguments (`add_backtest_parser`) are here too, not beside the command:
`orchestrator.cli` builds every subcommand's parser at start, and importing
`orchestrator.backtest` loads the planner, HiGHS and numpy (about 17 MiB resident) that
`agent` and `serve`'s other commands never use.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import Field

from orchestrator.config._base import Section


class FleetGroupSection(Section):
    """`[[backtest.fleet]]`: GPUs of one model in the simulated fleet."""

    model: str = Field(min_length=1)  # NVML name, as in the benchmark tables
    count: int = Field(ge=1)
    memory_gib: float = Field(default=24.0, gt=0)


class BacktestSection(Section):
    step: str | None = None  # "1h", "15m", "3600"
    power_usd_per_kwh: float | None = Field(default=None, ge=0, le=10)  # constant, without --power
    static_split_ai_fraction: float = Field(default=0.5, ge=0, le=1)
    # longest gap between rows, in every price file, judged inside the replayed period;
    # unset: 1.5 x each file's median interval
    max_gap: str | None = None
    fleet: list[FleetGroupSection] = Field(default_factory=list)


def add_backtest_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `backtest` to an argparse subparsers object; returns its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "backtest",
        help="replay recorded prices through the planner and compare strategies",
        description="Replay a price history with the configured fleet and contracts through "
        "the real planner, and compare it with always-mine, always-AI, a static split and "
        "the hindsight optimum. Formats: docs/backtest.md.",
    )
    parser.add_argument("--config", "-c", required=True, type=Path, help="serve config TOML")
    parser.add_argument("--prices", required=True, type=Path, help="hashprice CSV")
    parser.add_argument("--power", type=Path, help="power price CSV (timestamp,power_usd_per_kwh)")
    parser.add_argument(
        "--from", dest="start", help="first step (ISO date or timestamp; UTC without an offset)"
    )
    parser.add_argument(
        "--to", dest="end", help="end, exclusive (ISO date or timestamp; UTC without an offset)"
    )
    parser.add_argument("--step", help="step length: 3600, 15m, 1h, 1d")
    parser.add_argument("--fleet", help='"MODEL=COUNT@GIB;..." instead of [backtest.fleet]')
    parser.add_argument("--split", type=float, help="AI fraction of the static-split baseline")
    parser.add_argument(
        "--max-gap",
        help="largest allowed gap between rows inside the period, in every price file "
        "(duration; default 1.5 x each file's median interval)",
    )
    parser.add_argument(
        "--fill-gaps",
        action="store_true",
        help="carry the last price over gaps and empty cells (and say, per file, how many "
        "steps used a carried-over price)",
    )
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument("--svg", type=Path, help="write the chart as SVG here")
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="sweep margin, dwell or horizon (repeatable; a grid of all given)",
    )
    return parser
