"""Answers in each upstream API's real shape, written for these tests from the documented
field names and units (not copied from anywhere), plus error pages and slow handlers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_answer(payload: object) -> Handler:
    async def handler(_request: web.Request) -> web.Response:
        return web.json_response(payload)

    return handler


def raw_json_answer(text: str) -> Handler:
    """A body written verbatim: for NaN and other things `json.dumps` would not produce."""

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="application/json")

    return handler


def html_error(status: int = 500) -> Handler:
    async def handler(_request: web.Request) -> web.Response:
        body = (
            "<html><head><title>500 Internal Server Error</title></head>"
            "<body><h1>Internal Server Error</h1><p>upstream hiccup</p></body></html>"
        )
        return web.Response(status=status, text=body, content_type="text/html")

    return handler


def slow_answer(payload: object, delay_s: float) -> Handler:
    async def handler(_request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        return web.json_response(payload)

    return handler


def nicehash_algorithms(*rows: tuple[str, str, str, bool]) -> dict[str, object]:
    """`/main/api/v2/mining/algorithms`: (algorithm, marketFactor, displayMarketFactor, enabled)."""
    return {
        "miningAlgorithms": [
            {
                "algorithm": name,
                "title": name.title(),
                "enabled": enabled,
                "order": index,
                "displayMiningFactor": display.rstrip("H") + "H" if display else "",
                "miningFactor": market_factor,
                "displayMarketFactor": display,
                "marketFactor": market_factor,
                "minimalOrderAmount": "0.00100000",
                "minSpeedLimit": "0.01000000",
                "maxSpeedLimit": "10000.00000000",
                "priceDownStep": "-0.00010000",
                "minimalPoolDifficulty": "1.00000000",
                "port": 3300 + index,
                "color": "#123456",
                "ordersEnabled": True,
            }
            for index, (name, market_factor, display, enabled) in enumerate(rows)
        ]
    }


def nicehash_paying(**paying: str) -> dict[str, object]:
    """`/main/api/v2/public/simplemultialgo/info`: algorithm -> paying (a decimal string)."""
    return {
        "miningAlgorithms": [
            {"algorithm": name, "title": name.title(), "speed": "12.34567890", "paying": value}
            for name, value in paying.items()
        ]
    }


def whattomine_coin(
    tag: str,
    algorithm: str,
    *,
    block_time: str,
    block_reward: float,
    difficulty: float,
    nethash: float,
    exchange_rate: float,
    lagging: bool = False,
    timestamp: int = 1_714_560_000,
    coin_id: int = 1,
) -> dict[str, object]:
    """One coin as WhatToMine's `coins/<id>.json` answers it."""
    return {
        "id": coin_id,
        "name": tag.title(),
        "tag": tag,
        "algorithm": algorithm,
        "block_time": block_time,
        "block_reward": block_reward,
        "block_reward24": block_reward,
        "last_block": 3_300_000,
        "difficulty": difficulty,
        "difficulty24": difficulty,
        "nethash": nethash,
        "exchange_rate": exchange_rate,
        "exchange_rate24": exchange_rate,
        "exchange_rate_vol": 12.5,
        "exchange_rate_curr": "BTC",
        "market_cap": "$290,000,000",
        "estimated_rewards": "1.234",
        "estimated_rewards24": "1.234",
        "btc_revenue": "0.00000040",
        "btc_revenue24": "0.00000040",
        "profitability": 100,
        "profitability24": 100,
        "lagging": lagging,
        "timestamp": timestamp,
    }


def luxor_overview(hashprice_usd: str, timestamp: str) -> dict[str, object]:
    """Luxor Hashrate Index `bitcoinOverviews` answer."""
    return {
        "data": {
            "bitcoinOverviews": {
                "nodes": [
                    {
                        "timestamp": timestamp,
                        "hashpriceUsd": hashprice_usd,
                        "networkHashrate7D": "612345678.12",
                        "networkDiff": "86388558925171",
                        "estDiffAdj": "1.23",
                        "coinbaseRewards24H": "3.3",
                        "feesBlocks24H": "0.18",
                        "marketcap": "1230.5",
                        "nextHalvingCount": 190000,
                        "nextHalvingDate": "2028-04-10T00:00:00+00:00",
                        "txRateAvg7D": "7.1",
                    }
                ]
            }
        }
    }


def dumps(payload: object) -> str:
    return json.dumps(payload)


def coingecko_simple_price(usd: float, last_updated_at: int) -> dict[str, object]:
    """CoinGecko's `/api/v3/simple/price`, asked for `ids=bitcoin&vs_currencies=usd&
    include_last_updated_at=true`."""
    return {"bitcoin": {"usd": usd, "last_updated_at": last_updated_at}}


def coinbase_spot_price(amount: str) -> dict[str, object]:
    """Coinbase `/v2/prices/BTC-USD/spot`: the amount is a decimal string, no timestamp."""
    return {"data": {"amount": amount, "base": "BTC", "currency": "USD"}}
