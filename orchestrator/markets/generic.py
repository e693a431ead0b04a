"""The generic hashprice sources: any HTTP JSON endpoint, and a static value.

`HttpJsonSource` reads one number at a JSON path (`data.items[0].price`) and normalises it
from the configured unit (`usd_per_th_day`, `usd_per_mh_day`, `btc_per_th_day`, ...); BTC
units are converted with the feed's BTC price. A value that is not a number at all is a
`bad_payload` rejection; NaN, negative and absurd values go to the book, which rejects them
with their own reasons. With `timestamp_path`, the upstream's own time of the value (unix
seconds or ISO 8601 with a zone) goes with the quote, and the book rejects a value older than
the feed's `staleness_s` (`stale_at_source`): an upstream that keeps answering the same old
value is a dead feed, not a calm market. An unreadable timestamp is a `bad_payload`.
`StaticSource` always answers the same value, re-stamped at each fetch, so it never goes
stale while the daemon runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from orchestrator.markets._http import extract, parse_time, request_json
from orchestrator.markets.btcprice import BtcPrice, BtcPriceSource, btc_provenance
from orchestrator.markets.quote import FetchResult, SourceBase, parse_number
from orchestrator.markets.units import is_btc_unit, to_usd_per_hs_day


@dataclass(kw_only=True)
class HttpJsonSource(SourceBase):
    session: aiohttp.ClientSession
    url: str
    json_path: str
    unit: str
    algorithm: str
    btc_price: BtcPriceSource | None = None
    timestamp_path: str | None = None

    async def fetch(self, now_s: float) -> FetchResult:
        document = await request_json(
            self.session, feed=self.name, url=self.url, timeout_s=self.timeout_s
        )
        raw = extract(document, self.json_path, feed=self.name, url=self.url)
        try:
            value = parse_number(raw)
        except ValueError as error:
            return FetchResult((), (self.reject(self.algorithm, "bad_payload", str(error)),))
        source_time_s: float | None = None
        if self.timestamp_path is not None:
            stamp = extract(document, self.timestamp_path, feed=self.name, url=self.url)
            source_time_s = parse_time(stamp)
            if source_time_s is None:
                detail = f"timestamp {str(stamp)[:40]!r} is neither unix seconds nor ISO 8601"
                return FetchResult((), (self.reject(self.algorithm, "bad_payload", detail),))
        btc: BtcPrice | None = None
        if is_btc_unit(self.unit):
            assert self.btc_price is not None  # noqa: S101  (config requires it for BTC units)
            btc = await self.btc_price.usd_per_btc(feed=self.name, now_s=now_s)
        quote = self.hashprice(
            self.algorithm,
            to_usd_per_hs_day(value, self.unit, usd_per_btc=btc.usd_per_btc if btc else None),
            now_s=now_s,
            url=self.url,
            raw_value=value,
            raw_unit=self.unit,
            note=btc.note if btc else "",
            source_time_s=source_time_s,
            **btc_provenance(btc),
        )
        return FetchResult((quote,), ())


@dataclass(kw_only=True)
class StaticSource(SourceBase):
    algorithm: str
    value: float
    unit: str = "usd_per_hs_day"
    usd_per_btc: float | None = None

    async def fetch(self, now_s: float) -> FetchResult:
        btc = (
            None if self.usd_per_btc is None else BtcPrice(self.usd_per_btc, "static", static=True)
        )
        quote = self.hashprice(
            self.algorithm,
            to_usd_per_hs_day(self.value, self.unit, usd_per_btc=self.usd_per_btc),
            now_s=now_s,
            url="static:",
            raw_value=self.value,
            raw_unit=self.unit,
            note=btc.note if btc else "",
            **btc_provenance(btc),
        )
        return FetchResult((quote,), ())
