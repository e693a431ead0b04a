"""Backtest: replay recorded prices and contracts through the real planner.

`prices` loads and checks price CSVs; `engine` replays a `Scenario` step by step with
switch downtime and books the money; `strategies` holds the live policy (the daemon's
planner) and the baselines (always mine, always AI, static split) and the hindsight upper
bound; `report` renders table, JSON and SVG; `sweep` varies margin, dwell and horizon;
`cli` is the `orchestrator backtest` command. Format and data sources: docs/backtest.md.
"""

from orchestrator.backtest.engine import (
    FleetGroup,
    Scenario,
    StrategyResult,
    make_scenario,
    run_strategy,
)
from orchestrator.backtest.prices import PriceDataError, read_price_csv
from orchestrator.backtest.strategies import (
    AlwaysAi,
    AlwaysMine,
    Hindsight,
    LivePolicy,
    StaticSplit,
    default_strategies,
)

__all__ = [
    "AlwaysAi",
    "AlwaysMine",
    "FleetGroup",
    "Hindsight",
    "LivePolicy",
    "PriceDataError",
    "Scenario",
    "StaticSplit",
    "StrategyResult",
    "default_strategies",
    "make_scenario",
    "read_price_csv",
    "run_strategy",
]
