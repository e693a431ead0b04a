"""Market data: live, pluggable, unit-normalised price feeds with provenance.

The only I/O in `orchestrator.policy`; the pure planner never imports this package (an
import-linter contract), it receives a `MarketSnapshot`.

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

from orchestrator.policy.feeds.book import MarketBook, MarketSnapshot
from orchestrator.policy.feeds.build import build_book, build_runners, build_source, build_sources
from orchestrator.policy.feeds.errors import (
    FeedConfigError,
    FeedError,
    FeedPayloadError,
    FeedUnavailable,
)
from orchestrator.policy.feeds.generic import HttpJsonSource, StaticSource
from orchestrator.policy.feeds.luxor import LuxorSource
from orchestrator.policy.feeds.metrics import FeedMetrics
from orchestrator.policy.feeds.nicehash import NiceHashSource
from orchestrator.policy.feeds.power import PowerHttpJsonSource, PowerStaticSource, PowerTouSource
from orchestrator.policy.feeds.quote import (
    POWER_KEY,
    FetchResult,
    Provenance,
    Quote,
    QuoteKind,
    Rejection,
    Source,
)
from orchestrator.policy.feeds.recorded import RecordedMarketSource
from orchestrator.policy.feeds.runner import Backoff, FeedOutcome, FeedRunner, run_feed_once
from orchestrator.policy.feeds.whattomine import WhatToMineSource

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
    "run_feed_once",
]
