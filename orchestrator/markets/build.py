"""Building the feeds from the `[market]` config section: the one place they are wired.

`build_sources(market, session)` returns one source per `[[market.feeds]]` entry, in config
order (which is also the book's priority order). `build_book(market)` makes a `MarketBook`
with the section's sanity limits and that priority; `build_runners(...)` one `FeedRunner`
per source with the section's backoff. Nothing here starts a task or opens a connection:
the caller owns the aiohttp session and the TaskGroup.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TypedDict

import aiohttp

from orchestrator.config.market import (
    DEFAULT_MAX_JUMP_FACTOR,
    FeedConfig,
    HttpJsonFeed,
    LuxorFeed,
    MarketConfig,
    NiceHashFeed,
    PowerHttpJsonFeed,
    PowerStaticFeed,
    PowerTouFeed,
    RecordedFeed,
    StaticFeed,
    WhatToMineFeed,
)
from orchestrator.markets.book import MarketBook
from orchestrator.markets.btcprice import build_btc_price
from orchestrator.markets.generic import HttpJsonSource, StaticSource
from orchestrator.markets.luxor import LuxorSource
from orchestrator.markets.metrics import FeedMetrics
from orchestrator.markets.nicehash import NiceHashSource
from orchestrator.markets.power import PowerHttpJsonSource, PowerStaticSource, PowerTouSource
from orchestrator.markets.quote import Source
from orchestrator.markets.recorded import RecordedMarketSource
from orchestrator.markets.runner import Backoff, FeedRunner
from orchestrator.markets.whattomine import WhatToMineSource


class _Timing(TypedDict):
    name: str
    interval_s: float
    timeout_s: float
    staleness_s: float


def build_source(
    feed: FeedConfig,
    session: aiohttp.ClientSession,
    *,
    max_jump_factor: float = DEFAULT_MAX_JUMP_FACTOR,
) -> Source:
    """One source from its config section; a live BTC price in it judges its jumps by
    `max_jump_factor`, as the book does every other price."""
    timing: _Timing = {
        "name": feed.feed_name,
        "interval_s": feed.interval_s,
        "timeout_s": feed.timeout_s,
        "staleness_s": feed.staleness_s,
    }
    match feed:
        case NiceHashFeed():
            return NiceHashSource(
                **timing,
                session=session,
                btc_price=build_btc_price(feed.btc_price, session, max_jump_factor=max_jump_factor),
                base_url=feed.base_url,
                algorithms=dict(feed.algorithms),
            )
        case WhatToMineFeed():
            return WhatToMineSource(
                **timing,
                session=session,
                btc_price=build_btc_price(feed.btc_price, session, max_jump_factor=max_jump_factor),
                url=feed.url,
                coins=tuple(feed.coins),
            )
        case LuxorFeed():
            return LuxorSource(**timing, session=session, config=feed)
        case HttpJsonFeed():
            return HttpJsonSource(
                **timing,
                session=session,
                url=feed.url,
                json_path=feed.json_path,
                timestamp_path=feed.timestamp_path,
                unit=feed.unit,
                algorithm=feed.algorithm,
                btc_price=None
                if feed.btc_price is None
                else build_btc_price(feed.btc_price, session, max_jump_factor=max_jump_factor),
            )
        case StaticFeed():
            return StaticSource(
                **timing,
                algorithm=feed.algorithm,
                value=feed.value,
                unit=feed.unit,
                usd_per_btc=None if feed.btc_price is None else feed.btc_price.usd_per_btc,
            )
        case RecordedFeed():
            return RecordedMarketSource(
                **timing,
                time_scale=feed.time_scale,
                hashprice_scale=feed.hashprice_scale,
                start_offset_s=feed.start_offset_s,
            )
        case PowerStaticFeed():
            return PowerStaticSource(**timing, usd_per_kwh=feed.usd_per_kwh)
        case PowerTouFeed():
            return PowerTouSource(
                **timing,
                timezone=feed.timezone,
                periods=tuple(feed.periods),
                default_usd_per_kwh=feed.default_usd_per_kwh,
            )
        case PowerHttpJsonFeed():
            return PowerHttpJsonSource(
                **timing, session=session, url=feed.url, json_path=feed.json_path, unit=feed.unit
            )


def build_sources(market: MarketConfig, session: aiohttp.ClientSession) -> list[Source]:
    """Every configured feed as a source, in config (= priority) order."""
    return [
        build_source(feed, session, max_jump_factor=market.max_jump_factor) for feed in market.feeds
    ]


def build_book(market: MarketConfig) -> MarketBook:
    """A book with the section's sanity limits; earlier feeds win ties."""
    return MarketBook(
        max_jump_factor=market.max_jump_factor,
        allow_negative_power_price=market.allow_negative_power_price,
        power_jump_floor_usd_per_kwh=market.power_jump_floor_usd_per_kwh,
        source_priority=[feed.feed_name for feed in market.feeds],
    )


def build_runners(
    market: MarketConfig,
    sources: Sequence[Source],
    book: MarketBook,
    *,
    metrics: FeedMetrics | None = None,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> list[FeedRunner]:
    """One runner per source, with the section's backoff; its counters start at 0."""
    if metrics is not None:
        for source in sources:
            metrics.start_feed(source.name)
    backoff = Backoff(
        initial_s=market.backoff_initial_s, max_s=market.backoff_max_s, jitter=market.backoff_jitter
    )
    return [
        FeedRunner(source=source, book=book, metrics=metrics, backoff=backoff, clock=clock, rng=rng)
        for source in sources
    ]
