"""Warnings about a valid config: settings that load but that an operator should know about.

A config either fails with the exact key and reason, or loads; some settings that load are
still worth a word. `config_notices(config, now_s=...)` lists them as (key, message) pairs: `config
check` prints them and the daemons log each at start (`config_notice`). Today:

- a static BTC price (`btc_price = { type = "static", ... }`): it never goes stale, so
  hashprices converted with it drift from the market as BTC moves, silently;
- `expected_power_w` in an agent's profile: accepted so that older files still load, but
  nothing reads it (`serve` learns power from telemetry and its own `[[mining_profiles]]`
  benchmarks and contract figures);
- a reserved contract's schedule window with an edge at a local time the clocks skip or
  repeat within a year (`config.policy.window_clock_notices`): it opens or closes at a
  shifted or first-occurrence instant that day, which the customer may not expect.

`now_s` decides "within a year"; the real clock is read only when a caller gives none.
"""

from __future__ import annotations

from orchestrator.config.market import BtcPriceStatic, MarketConfig
from orchestrator.config.policy import window_clock_notices
from orchestrator.config.profiles import ProfileSection
from orchestrator.config.roots import AgentConfig, ServeConfig

Notice = tuple[str, str]


def static_btc_price_notices(market: MarketConfig) -> list[Notice]:
    notices: list[Notice] = []
    for index, feed in enumerate(market.feeds):
        btc_price = getattr(feed, "btc_price", None)
        if isinstance(btc_price, BtcPriceStatic):
            message = (
                f"feed {feed.feed_name!r} converts with a static BTC price "
                f"({btc_price.usd_per_btc:g} US$/BTC) that never goes stale: its hashprices "
                'drift from the market as BTC moves; use type = "http_json" for a live price'
            )
            notices.append((f"market.feeds.{index}.btc_price", message))
    return notices


def deprecated_profile_notices(profiles: list[ProfileSection]) -> list[Notice]:
    return [
        (
            f"profiles.{index}.expected_power_w",
            (
                f"profile {profile.id!r}: expected_power_w is deprecated and ignored (serve learns "
                "power from telemetry); remove it"
            ),
        )
        for index, profile in enumerate(profiles)
        if profile.expected_power_w is not None
    ]


def config_notices(config: ServeConfig | AgentConfig, *, now_s: float) -> list[Notice]:
    """What an operator should know about a config that loads; empty when nothing.

    `now_s`: when "now" is for the schedule windows' clock changes (the caller's clock).
    """
    if isinstance(config, ServeConfig):
        return [
            *static_btc_price_notices(config.market),
            *window_clock_notices(config.contracts, now_s),
        ]
    return deprecated_profile_notices(list(config.profiles))
