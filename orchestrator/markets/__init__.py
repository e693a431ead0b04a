"""Market data: live, pluggable, unit-normalised price feeds with provenance.

This is an I/O adapter, like `mqtt` or `httpserver`: it fetches hashprices and power prices
over HTTP (NiceHash, WhatToMine, Luxor, generic JSON endpoints), replays recorded prices,
and runs one polling loop per feed with backoff. It reads `orchestrator.config.market` and
is wired up by the central daemon (`orchestrator.serve`, `central.policy_loop`). The pure core in
`orchestrator.policy` never imports it (an import-linter contract): the policy loop turns a
`MarketSnapshot` from the book into the planner's plain `Market` values. The backtest does
not use it either; it reads its own price CSVs.

What it offers:
- `Quote`, `Provenance`, `Rejection`, `FetchResult`, `Source`: the observation type and the
  source protocol (`quote`); values are US$ per H/s per day per algorithm, US$/kWh for power.
- `MarketBook` and `MarketSnapshot` (`book`): sanity checks with reasons, staleness, priority.
- the sources: `NiceHashSource`, `WhatToMineSource`, `LuxorSource`, `HttpJsonSource`,
  `StaticSource`, `RecordedMarketSource`, `PowerStaticSource`, `PowerTouSource`,
  `PowerHttpJsonSource`;
- `run_feed_once`, `FeedRunner`, `Backoff`, `FeedOutcome` (`runner`): one iteration, and the loop;
- `FeedMetrics` (`metrics`): counters and scrape-time price gauges on an injected registry;
- `build_sources`, `build_book`, `build_runners` (`build`): wiring from `MarketConfig`;
- `FeedError`, `FeedUnavailable`, `FeedPayloadError`, `FeedConfigError` (`errors`).
"""

from orchestrator.markets._http import parse_time
from orchestrator.markets.book import MarketBook, MarketSnapshot
from orchestrator.markets.build import build_book, build_runners, build_source, build_sources
from orchestrator.markets.errors import (
    FeedConfigError,
    FeedError,
    FeedPayloadError,
    FeedUnavailable,
)
from orchestrator.markets.generic import HttpJsonSource, StaticSource
from orchestrator.markets.luxor import LuxorSource
from orchestrator.markets.metrics import FeedMetrics
from orchestrator.markets.nicehash import NiceHashSource
from orchestrator.markets.power import PowerHttpJsonSource, PowerStaticSource, PowerTouSource
from orchestrator.markets.quote import (
    POWER_KEY,
    FetchResult,
    Provenance,
    Quote,
    QuoteKind,
    Rejection,
    Source,
)
from orchestrator.markets.recorded import RecordedMarketSource
from orchestrator.markets.runner import Backoff, FeedOutcome, FeedRunner, run_feed_once
from orchestrator.markets.whattomine import WhatToMineSource

__all__ = [
    "POWER_KEY",
    "Backoff",
    "FeedConfigError",
    "FeedError",
    "FeedMetrics",
    "FeedOutcome",
    "FeedPayloadError",
    "FeedRunner",
    "FeedUnavailable",
    "FetchResult",
    "HttpJsonSource",
    "LuxorSource",
    "MarketBook",
    "MarketSnapshot",
    "NiceHashSource",
    "PowerHttpJsonSource",
    "PowerStaticSource",
    "PowerTouSource",
    "Provenance",
    "Quote",
    "QuoteKind",
    "RecordedMarketSource",
    "Rejection",
    "Source",
    "StaticSource",
    "WhatToMineSource",
    "build_book",
    "build_runners",
    "build_source",
    "build_sources",
    "parse_time",
    "run_feed_once",
]
