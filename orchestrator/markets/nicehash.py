"""NiceHash public paying rates, with the unit taken from NiceHash's own algorithm metadata.

Two public endpoints, no key:

- `GET /main/api/v2/public/simplemultialgo/info` -> `{"miningAlgorithms": [{"algorithm":
  "KAWPOW", "speed": "...", "paying": "0.21", ...}, ...]}`: what NiceHash pays sellers per day.
- `GET /main/api/v2/mining/algorithms` -> `{"miningAlgorithms": [{"algorithm": "KAWPOW",
  "enabled": true, "marketFactor": "1000000000000.00000000", "displayMarketFactor": "TH", ...}]}`.

Why the metadata: public profit-switchers disagree whether `paying` must be divided by 1e8 or
1e9 to get BTC per H/s per day. Neither constant is right for every algorithm. `paying` is in
BTC per *market-factor unit* per day, and the market factor differs per algorithm (TH for
KawPoW, GH for some, PH for SHA-256, MSol for Equihash...). So, for each algorithm:

    usd_per_hs_day = paying_btc_per_unit_day / marketFactor_hs_per_unit * usd_per_btc

Worked example (also a test): KAWPOW with marketFactor 1e12 ("TH") paying 0.21 BTC/TH/day at
60,000 US$/BTC gives 0.21 / 1e12 * 60,000 = 1.26e-8 US$ per H/s per day; a 50 MH/s GPU then
earns 5e7 * 1.26e-8 = 0.63 US$/day before fees.

The numeric `marketFactor` is cross-checked against the SI prefix of `displayMarketFactor`;
when they disagree the algorithm is rejected (`unit_mismatch`) rather than guessed at. An
algorithm without metadata is rejected (`unknown_unit`). When `algorithms` is configured only
those are priced (a zero rate then counts as a rejection, since someone asked for it);
otherwise every enabled algorithm with a non-zero rate is.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from orchestrator.markets._http import request_json
from orchestrator.markets.btcprice import BtcPriceSource
from orchestrator.markets.errors import FeedPayloadError
from orchestrator.markets.quote import FetchResult, Quote, Rejection, SourceBase, parse_number
from orchestrator.markets.units import si_prefix_factor

PAYING_PATH = "/main/api/v2/public/simplemultialgo/info"
ALGORITHMS_PATH = "/main/api/v2/mining/algorithms"

_FACTOR_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class MarketUnit:
    """An algorithm's market unit: `hs_per_unit` H/s, shown as `display` (e.g. 1e12, "TH")."""

    hs_per_unit: float
    display: str


def market_units(document: object, *, feed: str, url: str) -> dict[str, MarketUnit | str]:
    """Per NiceHash algorithm name: its market unit, or a reason it has none usable."""
    rows = _algorithm_rows(document, feed=feed, url=url)
    units: dict[str, MarketUnit | str] = {}
    for row in rows:
        name = row.get("algorithm")
        if not isinstance(name, str):
            continue
        if row.get("enabled") is False:
            units[name] = "disabled"
            continue
        display = str(row.get("displayMarketFactor", ""))
        try:
            factor = parse_number(row.get("marketFactor"))
        except ValueError:
            units[name] = f"marketFactor {row.get('marketFactor')!r} is not a number"
            continue
        if not math.isfinite(factor) or factor <= 0.0:
            units[name] = f"marketFactor {factor} is unusable"
            continue
        from_display = si_prefix_factor(display) if display else None
        if from_display is not None and not math.isclose(
            from_display, factor, rel_tol=_FACTOR_TOLERANCE
        ):
            units[name] = f"marketFactor {factor:g} disagrees with displayMarketFactor {display!r}"
            continue
        units[name] = MarketUnit(hs_per_unit=factor, display=display or f"{factor:g} H")
    return units


def _algorithm_rows(document: object, *, feed: str, url: str) -> list[Mapping[str, object]]:
    rows = document.get("miningAlgorithms") if isinstance(document, dict) else None
    if not isinstance(rows, list):
        raise FeedPayloadError(feed, "bad_payload", f"{url}: no 'miningAlgorithms' list")
    return [row for row in rows if isinstance(row, dict)]


@dataclass(kw_only=True)
class NiceHashSource(SourceBase):
    session: aiohttp.ClientSession
    btc_price: BtcPriceSource
    base_url: str = "https://api2.nicehash.com"
    algorithms: Mapping[str, str] = field(default_factory=dict)

    async def fetch(self, now_s: float) -> FetchResult:
        base = self.base_url.rstrip("/")
        paying_url, meta_url = base + PAYING_PATH, base + ALGORITHMS_PATH
        paying_doc, meta_doc, btc = await asyncio.gather(
            request_json(self.session, feed=self.name, url=paying_url, timeout_s=self.timeout_s),
            request_json(self.session, feed=self.name, url=meta_url, timeout_s=self.timeout_s),
            self.btc_price.usd_per_btc(feed=self.name, now_s=now_s),
        )
        units = market_units(meta_doc, feed=self.name, url=meta_url)
        quotes: list[Quote] = []
        rejected: list[Rejection] = []
        wanted = {name.upper(): ours for name, ours in self.algorithms.items()}
        for row in _algorithm_rows(paying_doc, feed=self.name, url=paying_url):
            nh_name = row.get("algorithm")
            if not isinstance(nh_name, str):
                continue
            if wanted and nh_name.upper() not in wanted:
                continue
            ours = wanted.get(nh_name.upper(), nh_name.lower())
            raw = row.get("paying")
            try:
                paying = parse_number(raw)
            except ValueError as error:
                rejected.append(self.reject(ours, "bad_payload", f"{nh_name} paying: {error}"))
                continue
            if not wanted and paying == 0.0:
                continue
            unit = units.get(nh_name)
            if unit is None or unit == "disabled":
                if wanted or unit is None:
                    reason = "unknown_unit" if unit is None else "disabled"
                    rejected.append(
                        self.reject(ours, reason, f"{nh_name}: no usable metadata", str(raw))
                    )
                continue
            if isinstance(unit, str):
                rejected.append(self.reject(ours, "unit_mismatch", f"{nh_name}: {unit}", str(raw)))
                continue
            quotes.append(
                self.hashprice(
                    ours,
                    paying / unit.hs_per_unit * btc.usd_per_btc,
                    now_s=now_s,
                    url=paying_url,
                    raw_value=str(raw),
                    raw_unit=f"btc_per_{unit.display}_day",
                    note=f"marketFactor={unit.hs_per_unit:g}; {btc.note}",
                    **btc.provenance(),
                )
            )
        return FetchResult(tuple(quotes), tuple(rejected))
