"""A live BTC price: hashprices converted with it expire with it, and it is judged like any
other price (not a number, stale at the source, a jump of the outlier factor)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from orchestrator.config import load_config
from orchestrator.config.market import BtcPriceHttpJson, MarketConfig, NiceHashFeed
from orchestrator.markets import MarketBook, NiceHashSource, build_sources, run_feed_once
from orchestrator.markets.nicehash import ALGORITHMS_PATH, PAYING_PATH
from tests.feeds.conftest import Serve
from tests.feeds.payloads import (
    Handler,
    coinbase_spot_price,
    coingecko_simple_price,
    html_error,
    json_answer,
    nicehash_algorithms,
    nicehash_paying,
)

ROOT = Path(__file__).resolve().parents[2]
NOW_S = 1_733_350_000.0
METADATA = nicehash_algorithms(("KAWPOW", "1000000000000.00000000", "TH", True))
PAYING = nicehash_paying(KAWPOW="0.21000000")
TICKER_PATH = "/api/v3/simple/price"


def changing(answer: Callable[[], Handler]) -> Handler:
    """A handler that answers whatever `answer()` says now."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await answer()(request)

    return handler


async def nicehash_with_live_btc(
    serve: Serve,
    session: aiohttp.ClientSession,
    ticker: list[Handler],
    **btc: object,
) -> NiceHashSource:
    """A NiceHash feed built from config, its BTC price from a CoinGecko-shaped ticker whose
    answer is `ticker[0]`; NiceHash's own staleness (3600 s) outlasts the BTC price's."""
    base = await serve(
        {
            f"GET {PAYING_PATH}": json_answer(PAYING),
            f"GET {ALGORITHMS_PATH}": json_answer(METADATA),
            f"GET {TICKER_PATH}": changing(lambda: ticker[0]),
        }
    )
    market = MarketConfig.model_validate(
        {
            "feeds": [
                {
                    "type": "nicehash",
                    "base_url": base,
                    "algorithms": {"KAWPOW": "kawpow"},
                    "staleness_s": 3600.0,
                    "btc_price": {
                        "type": "http_json",
                        "url": base
                        + TICKER_PATH
                        + "?ids=bitcoin&vs_currencies=usd&include_last_updated_at=true",
                        "json_path": "bitcoin.usd",
                        "timestamp_path": "bitcoin.last_updated_at",
                        "staleness_s": 300.0,
                        **btc,
                    },
                }
            ]
        }
    )
    (source,) = build_sources(market, session)
    assert isinstance(source, NiceHashSource)
    return source


async def test_converted_hashprices_expire_with_their_btc_price(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """The BTC price is 60 s old at the fetch and valid 300 s: the kawpow price converted
    with it is a price until NOW - 60 + 300, not for NiceHash's own hour."""
    ticker = [json_answer(coingecko_simple_price(60_000.0, int(NOW_S) - 60))]
    source = await nicehash_with_live_btc(serve, session, ticker)
    book = MarketBook()
    outcome = await run_feed_once(source, book, NOW_S)
    assert outcome.ok
    quote = book.snapshot(NOW_S).quotes["kawpow"]
    assert quote.value == pytest.approx(0.21 / 1e12 * 60_000.0)
    assert quote.provenance.usd_per_btc == 60_000.0
    assert not quote.provenance.btc_price_static
    assert quote.provenance.valid_until_s == NOW_S - 60 + 300
    assert quote.expires_at_s == NOW_S + 240
    assert "kawpow" in book.snapshot(NOW_S + 239).hashprice_usd_per_hs_day

    # the ticker dies: NiceHash alone cannot be converted, and the old value runs out
    ticker[0] = html_error(502)
    failed = await run_feed_once(source, book, NOW_S + 60)
    assert failed.result == "http_error"
    later = book.snapshot(NOW_S + 240)
    assert later.hashprice_usd_per_hs_day == {}
    assert later.stale_keys == frozenset({"kawpow"})


async def test_a_btc_price_already_stale_at_the_source_fails_the_fetch(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """A ticker that keeps answering a frozen price is a dead feed, not a calm market."""
    ticker = [json_answer(coingecko_simple_price(60_000.0, int(NOW_S) - 301))]
    source = await nicehash_with_live_btc(serve, session, ticker)
    book = MarketBook()
    outcome = await run_feed_once(source, book, NOW_S)
    assert outcome.result == "stale_btc_price"
    assert "301 s old" in (outcome.error or "")
    assert book.snapshot(NOW_S).hashprice_usd_per_hs_day == {}


async def test_a_btc_price_jump_of_the_outlier_factor_fails_the_fetch(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """60,000 then 100x that (the default factor, which is itself an outlier; a price in
    cents is such a slip): the fetch fails, the first price stays the reference and the
    hashprice converted with it stays in the book; a real move is accepted after."""
    ticker = [json_answer(coingecko_simple_price(60_000.0, int(NOW_S)))]
    source = await nicehash_with_live_btc(serve, session, ticker)
    book = MarketBook()
    assert (await run_feed_once(source, book, NOW_S)).ok
    ticker[0] = json_answer(coingecko_simple_price(60_000.0 * 100.0, int(NOW_S) + 30))
    jumped = await run_feed_once(source, book, NOW_S + 30)
    assert jumped.result == "outlier_btc_price"
    assert "limit is 100x" in (jumped.error or "")
    assert book.snapshot(NOW_S + 30).quotes["kawpow"].provenance.usd_per_btc == 60_000.0
    ticker[0] = json_answer(coingecko_simple_price(61_000.0, int(NOW_S) + 60))
    assert (await run_feed_once(source, book, NOW_S + 60)).ok
    assert book.snapshot(NOW_S + 60).quotes["kawpow"].provenance.usd_per_btc == 61_000.0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"bitcoin": {"usd": NaN, "last_updated_at": 1733350000}}', "bad_btc_price"),
        ('{"bitcoin": {"usd": -1, "last_updated_at": 1733350000}}', "bad_btc_price"),
        ('{"bitcoin": {"usd": 60000, "last_updated_at": "yesterday"}}', "bad_btc_price"),
        ('{"bitcoin": {"eur": 55000}}', "bad_payload"),
    ],
)
async def test_a_btc_price_that_is_not_a_price_fails_the_fetch(
    serve: Serve, session: aiohttp.ClientSession, body: str, reason: str
) -> None:
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    source = await nicehash_with_live_btc(serve, session, [answer])
    book = MarketBook()
    outcome = await run_feed_once(source, book, NOW_S)
    assert outcome.result == reason
    assert book.snapshot(NOW_S).hashprice_usd_per_hs_day == {}


async def test_a_ticker_without_a_timestamp_is_valid_from_the_fetch(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """Coinbase's spot price: a decimal string, no time of its own."""
    ticker = [json_answer(coinbase_spot_price("61000.125"))]
    source = await nicehash_with_live_btc(
        serve, session, ticker, json_path="data.amount", timestamp_path=None
    )
    book = MarketBook()
    assert (await run_feed_once(source, book, NOW_S)).ok
    quote = book.snapshot(NOW_S).quotes["kawpow"]
    assert quote.provenance.usd_per_btc == 61_000.125
    assert quote.expires_at_s == NOW_S + 300


async def test_the_example_configs_ticker_reads_a_coingecko_answer(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """config/serve.toml's live BTC price, pointed at a local server answering as CoinGecko
    does, converts NiceHash's rates and expires with the ticker's own timestamp."""
    example = load_config(ROOT / "config" / "serve.toml", "serve")
    nicehash = example.market.feeds[0]
    assert isinstance(nicehash, NiceHashFeed)
    btc = nicehash.btc_price
    assert isinstance(btc, BtcPriceHttpJson)
    url = urlsplit(btc.url)
    assert url.path == TICKER_PATH
    ticker = [json_answer(coingecko_simple_price(97_000.5, int(NOW_S) - 30))]
    source = await nicehash_with_live_btc(
        serve,
        session,
        ticker,
        json_path=btc.json_path,
        timestamp_path=btc.timestamp_path,
        staleness_s=btc.staleness_s,
    )
    book = MarketBook()
    assert (await run_feed_once(source, book, NOW_S)).ok
    quote = book.snapshot(NOW_S).quotes["kawpow"]
    assert quote.provenance.usd_per_btc == 97_000.5
    assert quote.expires_at_s == NOW_S - 30 + btc.staleness_s
