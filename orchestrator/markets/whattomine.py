"""WhatToMine-style coin data turned into revenue in US$ per H/s per day.

Accepts both shapes WhatToMine serves: `coins.json` (`{"coins": {"Ravencoin": {"tag": "RVN",
...}, ...}}`) and `coins/<id>.json` (one coin object at the top). Fields used, per coin:
`tag`, `block_reward` (coins per block), `block_time` (seconds, a string in WhatToMine's
answers), `difficulty`, `nethash` (network H/s), `exchange_rate` (coin price, in
`exchange_rate_curr`, normally BTC), `lagging` and `timestamp` (Unix seconds).

The formulas, for a miner with a hashrate share h / H of the network:

    network_hashrate basis:  coins/(H/s)/day = block_reward * (86400 / block_time_s) / nethash_hs
    difficulty basis:        coins/(H/s)/day = block_reward * 86400 / (difficulty * k)

where `k` (`difficulty_to_hashes_factor`) is the expected hashes per unit of difficulty: 2**32
for Bitcoin-derived targets (SHA-256d, Scrypt, Ravencoin's KawPoW), 1 for Ethash/Etchash and
Autolykos, whose difficulty already counts hashes per block. Both give the same answer when
nethash = difficulty * k / block_time; the difficulty basis avoids the noise of a network
hashrate estimate, the hashrate basis avoids knowing `k`.

    usd_per_hs_day = coins/(H/s)/day * exchange_rate * usd_per_btc   (exchange_rate in BTC)

Worked example (a test): RVN, reward 2500, block time 60 s, nethash 5e12 H/s, 3.2e-7 BTC per
RVN at 62,500 US$/BTC (= 0.02 US$): 2500 * 1440 / 5e12 = 7.2e-7 RVN per H/s per day, times
0.02 US$ = 1.44e-8 US$ per H/s per day.

A coin WhatToMine marks `lagging` (its data behind the chain) is rejected (`source_lagging`);
a coin missing from the answer is rejected (`missing`). Revenue excludes pool fees, which the
planner applies per profile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from orchestrator.config.market import WhatToMineCoin
from orchestrator.markets._http import request_json
from orchestrator.markets.btcprice import BtcPrice, BtcPriceSource, btc_provenance
from orchestrator.markets.errors import FeedPayloadError
from orchestrator.markets.quote import FetchResult, Quote, Rejection, SourceBase, parse_number

SECONDS_PER_DAY = 86_400.0


class _CoinError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def coins_per_hs_day(coin: Mapping[str, object], spec: WhatToMineCoin) -> float:
    """Expected coins per (H/s) per day for one coin object, by `spec.basis`."""
    reward = _number(coin, "block_reward")
    if spec.basis == "difficulty":
        difficulty = _number(coin, "difficulty")
        hashes_per_block = difficulty * spec.difficulty_to_hashes_factor
        if hashes_per_block <= 0.0:
            raise _CoinError("non_positive", f"difficulty {difficulty} gives no hashes per block")
        return reward * SECONDS_PER_DAY / hashes_per_block
    block_time_s = (
        spec.block_time_s if spec.block_time_s is not None else _number(coin, "block_time")
    )
    nethash_hs = _number(coin, "nethash")
    if block_time_s <= 0.0 or nethash_hs <= 0.0:
        raise _CoinError(
            "non_positive", f"block_time {block_time_s} s / nethash {nethash_hs} H/s unusable"
        )
    return reward * (SECONDS_PER_DAY / block_time_s) / nethash_hs


def _number(coin: Mapping[str, object], name: str) -> float:
    if name not in coin:
        raise _CoinError("bad_payload", f"field {name!r} missing")
    try:
        return parse_number(coin[name])
    except ValueError as error:
        raise _CoinError("bad_payload", f"field {name!r}: {error}") from None


def _coins_by_tag(document: object, *, feed: str, url: str) -> dict[str, Mapping[str, object]]:
    if not isinstance(document, dict):
        raise FeedPayloadError(feed, "bad_payload", f"{url}: expected a JSON object")
    if "coins" in document:
        coins = document["coins"]
        if not isinstance(coins, dict):
            raise FeedPayloadError(feed, "bad_payload", f"{url}: 'coins' is not an object")
        rows = [row for row in coins.values() if isinstance(row, dict)]
    else:
        rows = [document]
    return {str(row["tag"]).upper(): row for row in rows if "tag" in row}


@dataclass(kw_only=True)
class WhatToMineSource(SourceBase):
    session: aiohttp.ClientSession
    btc_price: BtcPriceSource
    url: str
    coins: Sequence[WhatToMineCoin]

    async def fetch(self, now_s: float) -> FetchResult:
        document = await request_json(
            self.session, feed=self.name, url=self.url, timeout_s=self.timeout_s
        )
        by_tag = _coins_by_tag(document, feed=self.name, url=self.url)
        btc = await self.btc_price.usd_per_btc(feed=self.name, now_s=now_s)
        quotes: list[Quote] = []
        rejected: list[Rejection] = []
        for spec in self.coins:
            coin = by_tag.get(spec.tag.upper())
            if coin is None:
                rejected.append(
                    self.reject(spec.algorithm, "missing", f"no coin {spec.tag} in {self.url}")
                )
                continue
            try:
                quotes.append(self._quote(coin, spec, btc, now_s))
            except _CoinError as error:
                rejected.append(self.reject(spec.algorithm, error.reason, f"{spec.tag}: {error}"))
        return FetchResult(tuple(quotes), tuple(rejected))

    def _quote(
        self,
        coin: Mapping[str, object],
        spec: WhatToMineCoin,
        btc: BtcPrice,
        now_s: float,
    ) -> Quote:
        if coin.get("lagging") is True:
            raise _CoinError("source_lagging", "WhatToMine marks this coin's data as lagging")
        rate = _number(coin, "exchange_rate")
        currency = str(coin.get("exchange_rate_curr", "BTC")).upper()
        converted_with: BtcPrice | None = None
        if currency == "BTC":
            usd_per_coin = rate * btc.usd_per_btc
            converted_with = btc
        elif currency in ("USD", "USDT", "USDC"):
            usd_per_coin = rate
        else:
            raise _CoinError("unknown_unit", f"exchange_rate_curr {currency!r} is not BTC or USD")
        coins = coins_per_hs_day(coin, spec)
        source_time_s: float | None = None
        if "timestamp" in coin:
            stamp = _number(coin, "timestamp")
            source_time_s = stamp if math.isfinite(stamp) and stamp > 0 else None
        return self.hashprice(
            spec.algorithm,
            coins * usd_per_coin,
            now_s=now_s,
            url=self.url,
            raw_value=f"{coins:.6g} {spec.tag}/(H/s)/day at {rate:g} {currency}",
            raw_unit=f"{spec.tag.lower()}_per_hs_day",
            source_time_s=source_time_s,
            note=f"basis={spec.basis}; {btc.note}"
            if converted_with
            else f"basis={spec.basis}; priced in {currency}",
            **btc_provenance(converted_with),
        )
