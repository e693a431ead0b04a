"""WhatToMine-style coin data: both formulas, worked by hand, and the coin-level rejections."""

from __future__ import annotations

import aiohttp
import pytest

from orchestrator.config.market import WhatToMineCoin
from orchestrator.markets import MarketBook, WhatToMineSource, run_feed_once
from orchestrator.markets.btcprice import StaticBtcPrice
from tests.feeds.conftest import Serve
from tests.feeds.payloads import json_answer, whattomine_coin

NOW_S = 1_714_560_100.0

# RVN: 2500 RVN a block, 60 s blocks, 5 TH/s network, 3.2e-7 BTC a coin (0.02 US$ at 62,500).
# Difficulty chosen consistent with the hashrate: D * 2**32 / 60 s = 5e12 H/s.
RVN_DIFFICULTY = 5e12 * 60 / 2**32
RVN = whattomine_coin(
    "RVN",
    "KawPow",
    block_time="60.0",
    block_reward=2500.0,
    difficulty=RVN_DIFFICULTY,
    nethash=5e12,
    exchange_rate=3.2e-7,
    coin_id=234,
)
# ERG (Autolykos2): difficulty already counts hashes per block (factor 1).
ERG = whattomine_coin(
    "ERG",
    "Autolykos",
    block_time="120.0",
    block_reward=6.0,
    difficulty=2.4e15,
    nethash=2.0e13,
    exchange_rate=1.9e-5,
    coin_id=340,
)


def make(url: str, session: aiohttp.ClientSession, coins: list[WhatToMineCoin]) -> WhatToMineSource:
    return WhatToMineSource(
        name="wtm",
        interval_s=300.0,
        timeout_s=2.0,
        staleness_s=1800.0,
        session=session,
        btc_price=StaticBtcPrice(62_500.0),
        url=url,
        coins=coins,
    )


async def test_network_hashrate_basis_worked_example(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """By hand: 2500 RVN * 1440 blocks/day / 5e12 H/s = 7.2e-7 RVN per H/s per day;
    at 3.2e-7 BTC * 62,500 US$/BTC = 0.02 US$ per RVN that is 1.44e-8 US$ per H/s per day."""
    base = await serve({"GET /coins/234.json": json_answer(RVN)})
    spec = WhatToMineCoin(tag="RVN", algorithm="kawpow", basis="network_hashrate")
    result = await make(base + "/coins/234.json", session, [spec]).fetch(NOW_S)
    (quote,) = result.quotes
    assert quote.key == "kawpow"
    assert quote.value == pytest.approx(1.44e-8, rel=1e-9)
    assert quote.provenance.source_time_s == 1_714_560_000.0


async def test_difficulty_basis_agrees_when_the_factor_is_right(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """With k = 2**32 (Bitcoin-derived target) the difficulty basis gives the same 1.44e-8;
    with k = 1 it would be 2**32 times too much, which is why k is configuration."""
    base = await serve({"GET /coins.json": json_answer({"coins": {"Ravencoin": RVN, "Ergo": ERG}})})
    specs = [
        WhatToMineCoin(
            tag="RVN", algorithm="kawpow", basis="difficulty", difficulty_to_hashes_factor=2**32
        ),
        WhatToMineCoin(
            tag="ERG", algorithm="autolykos", basis="difficulty", difficulty_to_hashes_factor=1
        ),
    ]
    result = await make(base + "/coins.json", session, specs).fetch(NOW_S)
    values = {quote.key: quote.value for quote in result.quotes}
    assert values["kawpow"] == pytest.approx(1.44e-8, rel=1e-9)
    # ERG by hand: 6 * 86400 / 2.4e15 = 2.16e-10 ERG/(H/s)/day; * 1.9e-5 * 62,500 = 1.1875 US$
    # -> 2.565e-10 US$ per H/s per day
    assert values["autolykos"] == pytest.approx(2.565e-10, rel=1e-9)


async def test_lagging_and_missing_coins_are_rejected(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    lagging = dict(RVN, lagging=True)
    base = await serve({"GET /coins.json": json_answer({"coins": {"Ravencoin": lagging}})})
    specs = [
        WhatToMineCoin(tag="RVN", algorithm="kawpow"),
        WhatToMineCoin(tag="ETC", algorithm="etchash"),
    ]
    book = MarketBook()
    outcome = await run_feed_once(make(base + "/coins.json", session, specs), book, NOW_S)
    assert outcome.ok
    assert outcome.accepted == 0
    assert {(r.key, r.reason) for r in outcome.rejected} == {
        ("kawpow", "source_lagging"),
        ("etchash", "missing"),
    }
    assert book.rejection_counts == {("wtm", "source_lagging"): 1, ("wtm", "missing"): 1}


async def test_a_negative_reward_reaches_the_book_and_is_rejected(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    broken = dict(RVN, block_reward=-2500.0)
    base = await serve({"GET /coins/234.json": json_answer(broken)})
    outcome = await run_feed_once(
        make(base + "/coins/234.json", session, [WhatToMineCoin(tag="RVN", algorithm="kawpow")]),
        MarketBook(),
        NOW_S,
    )
    assert [r.reason for r in outcome.rejected] == ["non_positive"]
