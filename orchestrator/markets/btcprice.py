"""BTC prices for converting BTC-denominated hashprices to US$.

NiceHash pays in BTC and WhatToMine quotes coins in BTC, so those feeds need a US$/BTC price
at the time of the fetch. It is read once per fetch of the parent feed and travels with each
converted quote (`BtcPrice.provenance()`: the price, whether it is static, and how long it
stays valid), so a converted value can always be traced back and expires with its BTC price.

A live price (`HttpJsonBtcPrice`, any JSON endpoint) is judged like every other price:

- not a finite positive number: the parent fetch fails (`bad_btc_price`); converting with
  garbage would produce plausible-looking garbage that no later check could catch;
- `max_jump_factor` times the last accepted BTC price or more (or 1/that): the fetch fails
  (`outlier_btc_price`) and the last accepted price stays the reference;
- older than `staleness_s` by the upstream's own timestamp (`timestamp_path`) when fetched:
  the fetch fails (`stale_btc_price`). A converted quote is valid until the BTC price's time
  plus `staleness_s` (`valid_until_s`), however long its own feed's staleness is: when the
  BTC feed dies, the converted hashprices stop being prices, as the market book's own stale
  values do.

A static price (`StaticBtcPrice`) never goes stale: revenue converted with it drifts silently
as BTC moves. It is allowed (tests, the demo, a site that hedges at a fixed rate), but `serve`
warns at start, `config check` says so, and every quote converted with it is marked
`btc_price_static`, which the plan's market shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, TypedDict

import aiohttp

from orchestrator.config.market import DEFAULT_MAX_JUMP_FACTOR, BtcPriceHttpJson, BtcPriceStatic
from orchestrator.markets._http import extract, parse_time, request_json
from orchestrator.markets.book import is_jump, jump_ratio
from orchestrator.markets.errors import FeedPayloadError
from orchestrator.markets.quote import parse_number


class BtcProvenance(TypedDict):
    """The keyword arguments of `SourceBase.hashprice` that a BTC price fills."""

    usd_per_btc: float | None
    btc_price_static: bool
    valid_until_s: float | None


def btc_provenance(btc: BtcPrice | None) -> BtcProvenance:
    """What a quote carries of the BTC price it was converted with (None: not converted)."""
    if btc is None:
        return {"usd_per_btc": None, "btc_price_static": False, "valid_until_s": None}
    return btc.provenance()


@dataclass(frozen=True, slots=True)
class BtcPrice:
    """A US$/BTC price, where it came from, and until when a conversion with it is valid
    (None: static, never stale)."""

    usd_per_btc: float
    origin: str
    static: bool = False
    valid_until_s: float | None = None

    def provenance(self) -> BtcProvenance:
        return {
            "usd_per_btc": self.usd_per_btc,
            "btc_price_static": self.static,
            "valid_until_s": self.valid_until_s,
        }

    @property
    def note(self) -> str:
        return f"usd_per_btc={self.usd_per_btc:g} ({self.origin})"


class BtcPriceSource(Protocol):
    async def usd_per_btc(self, *, feed: str, now_s: float) -> BtcPrice: ...


@dataclass(frozen=True, slots=True)
class StaticBtcPrice:
    value_usd_per_btc: float

    async def usd_per_btc(self, *, feed: str, now_s: float) -> BtcPrice:  # noqa: ARG002  (the protocol's signature)
        _check_number(feed, self.value_usd_per_btc, "static")
        return BtcPrice(self.value_usd_per_btc, "static", static=True)


class HttpJsonBtcPrice:
    """A live BTC price from a JSON endpoint, with staleness and outlier checks."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        json_path: str,
        timeout_s: float,
        staleness_s: float,
        timestamp_path: str | None = None,
        max_jump_factor: float = DEFAULT_MAX_JUMP_FACTOR,
    ) -> None:
        self.session = session
        self.url = url
        self.json_path = json_path
        self.timeout_s = timeout_s
        self.staleness_s = staleness_s
        self.timestamp_path = timestamp_path
        self.max_jump_factor = max_jump_factor
        self.last_accepted_usd_per_btc: float | None = None

    async def usd_per_btc(self, *, feed: str, now_s: float) -> BtcPrice:
        document = await request_json(
            self.session, feed=feed, url=self.url, timeout_s=self.timeout_s
        )
        raw = extract(document, self.json_path, feed=feed, url=self.url)
        try:
            value = parse_number(raw)
        except ValueError as error:
            raise FeedPayloadError(feed, "bad_btc_price", f"{self.url}: {error}") from None
        _check_number(feed, value, self.url)
        observed_at_s = now_s
        if self.timestamp_path is not None:
            stamp = extract(document, self.timestamp_path, feed=feed, url=self.url)
            parsed = parse_time(stamp)
            if parsed is None:
                detail = (
                    f"{self.url}: BTC price timestamp {str(stamp)[:40]!r} is neither unix "
                    "seconds nor ISO 8601"
                )
                raise FeedPayloadError(feed, "bad_btc_price", detail)
            observed_at_s = min(parsed, now_s)
            if now_s - observed_at_s > self.staleness_s:
                raise FeedPayloadError(
                    feed,
                    "stale_btc_price",
                    f"BTC price from {self.url} is {now_s - observed_at_s:.0f} s old, over "
                    f"the {self.staleness_s:.0f} s limit",
                )
        last = self.last_accepted_usd_per_btc
        if last is not None:
            ratio = jump_ratio(value, last)
            if ratio is not None and is_jump(ratio, self.max_jump_factor):
                raise FeedPayloadError(
                    feed,
                    "outlier_btc_price",
                    f"BTC price {value:.6g} from {self.url} is {ratio:.3g}x away from the last "
                    f"accepted {last:.6g}; the limit is {self.max_jump_factor:g}x",
                )
        self.last_accepted_usd_per_btc = value
        return BtcPrice(value, self.url, valid_until_s=observed_at_s + self.staleness_s)


def _check_number(feed: str, value: float, origin: str) -> None:
    if not math.isfinite(value) or value <= 0.0:
        raise FeedPayloadError(
            feed, "bad_btc_price", f"BTC price {value} from {origin} is unusable"
        )


def build_btc_price(
    config: BtcPriceStatic | BtcPriceHttpJson,
    session: aiohttp.ClientSession,
    *,
    max_jump_factor: float = DEFAULT_MAX_JUMP_FACTOR,
) -> BtcPriceSource:
    if isinstance(config, BtcPriceStatic):
        return StaticBtcPrice(config.usd_per_btc)
    return HttpJsonBtcPrice(
        session=session,
        url=config.url,
        json_path=config.json_path,
        timeout_s=config.timeout_s,
        staleness_s=config.staleness_s,
        timestamp_path=config.timestamp_path,
        max_jump_factor=max_jump_factor,
    )
