"""BTC prices for converting BTC-denominated hashprices to US$.

NiceHash pays in BTC and WhatToMine quotes coins in BTC, so those feeds need a US$/BTC price
at the time of the fetch. It is read once per fetch of the parent feed and recorded in each
quote's provenance note, so a converted value can always be traced back. A price that is not
a finite positive number fails the parent fetch (`bad_btc_price`): converting with garbage
would produce plausible-looking garbage that no later check could catch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from orchestrator.config.market import BtcPriceHttpJson, BtcPriceStatic
from orchestrator.markets._http import extract, request_json
from orchestrator.markets.errors import FeedPayloadError
from orchestrator.markets.quote import parse_number


@dataclass(frozen=True, slots=True)
class BtcPrice:
    usd_per_btc: float
    origin: str


class BtcPriceSource(Protocol):
    async def usd_per_btc(self, *, feed: str) -> BtcPrice: ...


@dataclass(frozen=True, slots=True)
class StaticBtcPrice:
    value_usd_per_btc: float

    async def usd_per_btc(self, *, feed: str) -> BtcPrice:
        return _checked(feed, self.value_usd_per_btc, "static")


@dataclass(frozen=True, slots=True)
class HttpJsonBtcPrice:
    session: aiohttp.ClientSession
    url: str
    json_path: str
    timeout_s: float

    async def usd_per_btc(self, *, feed: str) -> BtcPrice:
        document = await request_json(
            self.session, feed=feed, url=self.url, timeout_s=self.timeout_s
        )
        raw = extract(document, self.json_path, feed=feed, url=self.url)
        try:
            value = parse_number(raw)
        except ValueError as error:
            raise FeedPayloadError(feed, "bad_btc_price", f"{self.url}: {error}") from None
        return _checked(feed, value, self.url)


def _checked(feed: str, value: float, origin: str) -> BtcPrice:
    if not math.isfinite(value) or value <= 0.0:
        raise FeedPayloadError(
            feed, "bad_btc_price", f"BTC price {value} from {origin} is unusable"
        )
    return BtcPrice(usd_per_btc=value, origin=origin)


def build_btc_price(
    config: BtcPriceStatic | BtcPriceHttpJson, session: aiohttp.ClientSession
) -> BtcPriceSource:
    if isinstance(config, BtcPriceStatic):
        return StaticBtcPrice(config.usd_per_btc)
    return HttpJsonBtcPrice(session, config.url, config.json_path, config.timeout_s)
