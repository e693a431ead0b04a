"""`[market]` config: the discriminated feed union, its checks, and building sources from it;
and the demo's recorded market."""

from __future__ import annotations

import tomllib

import aiohttp
import pytest
from pydantic import ValidationError

from orchestrator.config.market import MarketConfig
from orchestrator.markets import (
    LuxorSource,
    NiceHashSource,
    PowerTouSource,
    RecordedMarketSource,
    StaticSource,
    WhatToMineSource,
    build_book,
    build_runners,
    build_sources,
    run_feed_once,
)
from orchestrator.markets import _recorded_data as recorded

NOW_S = 1_714_560_000.0

EXAMPLE = """
max_jump_factor = 500

[[feeds]]
type = "nicehash"
algorithms = { KAWPOW = "kawpow", ETCHASH = "etchash" }
btc_price = { type = "http_json", url = "https://api.example.com/btc", json_path = "bitcoin.usd" }

[[feeds]]
type = "whattomine"
btc_price = { type = "static", usd_per_btc = 62000 }

[[feeds.coins]]
tag = "RVN"
algorithm = "kawpow"
basis = "difficulty"
difficulty_to_hashes_factor = 4294967296

[[feeds.coins]]
tag = "ERG"
algorithm = "autolykos"

[[feeds]]
type = "luxor"
api_key_env = "LUXOR_API_KEY"

[[feeds]]
type = "static"
name = "fallback-kawpow"
algorithm = "kawpow"
value = 0.011
unit = "usd_per_mh_day"

[[feeds]]
type = "power_tou"
timezone = "America/Chicago"
default_usd_per_kwh = 0.045

[[feeds.periods]]
days = ["mon", "tue", "wed", "thu", "fri"]
start_hour = 17
end_hour = 21
usd_per_kwh = 0.12
"""


async def test_example_config_builds_one_source_per_feed_in_order() -> None:
    market = MarketConfig.model_validate(tomllib.loads(EXAMPLE))
    async with aiohttp.ClientSession() as session:
        sources = build_sources(market, session)
    assert [type(s) for s in sources] == [
        NiceHashSource,
        WhatToMineSource,
        LuxorSource,
        StaticSource,
        PowerTouSource,
    ]
    assert [s.name for s in sources] == [
        "nicehash",
        "whattomine",
        "luxor",
        "fallback-kawpow",
        "power_tou",
    ]
    assert sources[0].interval_s == 60.0
    assert sources[1].interval_s == 300.0
    assert sources[2].staleness_s == 3600.0
    book = build_book(market)
    runners = build_runners(market, sources, book)
    assert [r.source.name for r in runners] == [s.name for s in sources]


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        ({"type": "bogus"}, "does not match any of the expected tags"),
        ({"type": "static", "algorithm": "kawpow", "value": 1, "colour": "red"}, "colour"),
        ({"type": "static", "algorithm": "kawpow", "value": -1}, "greater than 0"),
        (
            {
                "type": "static",
                "algorithm": "kawpow",
                "value": 1,
                "interval_s": 60,
                "staleness_s": 30,
            },
            "must exceed",
        ),
        (
            {
                "type": "http_json",
                "url": "https://x",
                "json_path": "a",
                "unit": "btc_per_th_day",
                "algorithm": "x",
            },
            "btc_price",
        ),
        (
            {
                "type": "http_json",
                "url": "https://x",
                "json_path": "a",
                "unit": "usd_per_furlong",
                "algorithm": "x",
            },
            "unit",
        ),
        (
            {"type": "power_tou", "default_usd_per_kwh": 0.05, "timezone": "Mars/Olympus"},
            "unknown time zone",
        ),
        (
            {
                "type": "power_tou",
                "default_usd_per_kwh": 0.05,
                "periods": [{"start_hour": 22, "end_hour": 6, "usd_per_kwh": 0.1}],
            },
            "wraps midnight",
        ),
    ],
)
def test_bad_feeds_fail_naming_the_problem(feed: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MarketConfig.model_validate({"feeds": [feed]})


def test_feed_names_must_be_unique() -> None:
    static = {"type": "static", "algorithm": "kawpow", "value": 1e-8}
    with pytest.raises(ValidationError, match="two feeds are named 'static'"):
        MarketConfig.model_validate({"feeds": [static, static]})
    MarketConfig.model_validate({"feeds": [static, dict(static, name="other")]})


def test_recorded_series_has_realistic_magnitudes() -> None:
    """2024-like GPU hashprices (about 0.003-0.03 US$ per MH/s per day) and power prices
    (0.03-0.2 US$/kWh); the rally stays far inside the book's 100x outlier limit."""
    for _offset, kawpow, etchash, autolykos, power in recorded.ROWS:
        assert 5e-9 < kawpow < 4e-8
        assert 3e-9 < etchash < 2e-8
        assert 1e-9 < autolykos < 1e-8
        assert 0.03 < power < 0.2
    assert len(recorded.ROWS) == 48
    assert [row[0] for row in recorded.ROWS] == [hour * 3600 for hour in range(48)]


async def test_recorded_market_replays_offline_through_the_book() -> None:
    market = MarketConfig.model_validate({"feeds": [{"type": "recorded", "time_scale": 3600}]})
    async with aiohttp.ClientSession() as session:
        (source,) = build_sources(market, session)
    assert isinstance(source, RecordedMarketSource)
    book = build_book(market)
    seen_kawpow: list[float] = []
    for second in range(48):  # one recorded hour per real second
        outcome = await run_feed_once(source, book, NOW_S + second)
        assert outcome.ok
        assert outcome.rejected == ()
        snapshot = book.snapshot(NOW_S + second)
        assert set(snapshot.hashprice_usd_per_hs_day) == {"kawpow", "etchash", "autolykos"}
        assert snapshot.power_price_usd_per_kwh == recorded.ROWS[second][4]
        seen_kawpow.append(snapshot.hashprice_usd_per_hs_day["kawpow"])
        assert snapshot.quotes["kawpow"].provenance.url == f"recorded:{second}"
    assert max(seen_kawpow) > 2 * min(seen_kawpow)  # the rally is there
    # the series loops
    await run_feed_once(source, book, NOW_S + 48)
    assert book.snapshot(NOW_S + 48).quotes["kawpow"].provenance.url == "recorded:0"
