"""Prometheus metrics of the market feeds, on a registry the caller injects (STYLE 18).

Counters are events, updated by the runner:
- `orchestrator_feed_fetch_total{feed,result}`: one per fetch; `result` is `ok` or the
  failure reason (`timeout`, `http_error`, `connection_error`, `bad_json`, `bad_payload`, ...);
- `orchestrator_feed_rejected_total{feed,reason}`: one per value not used (`not_finite`,
  `non_positive`, `outlier`, `stale_at_source`, `unit_mismatch`, ...);
- `orchestrator_feed_last_success_timestamp_seconds{feed}`: Unix time of the last good fetch.

Prices are gauges read at scrape time from the book's fresh snapshot (STYLE 20), so a price
that has gone stale disappears from `/metrics` instead of lingering at its last value:
- `orchestrator_hashprice_usd_per_hs_day{algorithm}`;
- `orchestrator_power_price_usd_per_kwh`;
- `orchestrator_market_stale{key}`: 1 for each key the book knows but cannot price freshly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orchestrator.markets.book import MarketBook


class FeedMetrics:
    """The feed counters, and optionally the scrape-time price gauges of `book`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        book: MarketBook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fetch_total = Counter(
            "orchestrator_feed_fetch",
            "Market feed fetches by outcome.",
            ["feed", "result"],
            registry=registry,
        )
        self.rejected_total = Counter(
            "orchestrator_feed_rejected",
            "Market values not used, by reason.",
            ["feed", "reason"],
            registry=registry,
        )
        self.last_success_timestamp = Gauge(
            "orchestrator_feed_last_success_timestamp_seconds",
            "Unix time of the feed's last successful fetch.",
            ["feed"],
            registry=registry,
        )
        if book is not None:
            registry.register(MarketBookCollector(book, clock))

    def start_feed(self, feed: str) -> None:
        """Create a feed's fetch counters at 0 (`ok`, `timeout`, `error`), so that the
        alert's increase() counts its first failure; other reasons appear when they occur."""
        for result in ("ok", "timeout", "error"):
            self.fetch_total.labels(feed=feed, result=result)


class MarketBookCollector(Collector):
    """Price gauges computed from `book.snapshot(clock())` at each scrape."""

    def __init__(self, book: MarketBook, clock: Callable[[], float]) -> None:
        self._book = book
        self._clock = clock

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        snapshot = self._book.snapshot(self._clock())
        hashprice, power, stale = self._families()
        for algorithm, value in sorted(snapshot.hashprice_usd_per_hs_day.items()):
            hashprice.add_metric([algorithm], value)
        if snapshot.power_price_usd_per_kwh is not None:
            power.add_metric([], snapshot.power_price_usd_per_kwh)
        for key in sorted(snapshot.stale_keys):
            stale.add_metric([key], 1.0)
        return [hashprice, power, stale]

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "orchestrator_hashprice_usd_per_hs_day",
                "Fresh hashprice per algorithm, US$ per H/s per day.",
                labels=["algorithm"],
            ),
            GaugeMetricFamily(
                "orchestrator_power_price_usd_per_kwh", "Fresh site power price, US$/kWh."
            ),
            GaugeMetricFamily(
                "orchestrator_market_stale",
                "1 for each market key whose every quote has expired.",
                labels=["key"],
            ),
        ]
