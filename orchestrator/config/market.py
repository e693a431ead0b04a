"""The `[market]` section: which price feeds the central daemon polls, and how it judges them.

Every feed is one entry of `[[market.feeds]]`, told apart by `type`:

- hashprice feeds, each giving US$ per H/s per day for one or more algorithms:
  `nicehash`, `whattomine`, `luxor`, `http_json`, `static`, and `recorded` (the demo's
  built-in replay, which also gives a power price);
- power-price feeds, giving US$/kWh for the site: `power_static`, `power_tou`, `power_http_json`.

Each feed has its own `interval_s` (how often it is polled), `timeout_s` (one fetch, all its
requests together) and `staleness_s` (how long an accepted value may be used). A value older
than its feed's `staleness_s` is dropped from the market snapshot, so a dead feed makes the
planner hold rather than act on yesterday's price. `staleness_s` must exceed `interval_s`,
or every value would expire before the next fetch.

Feeds listed earlier win when two of them price the same algorithm: order is priority.

Secrets (the Luxor API key) never sit in the file: `api_key_file` (relative paths are looked up
under `$CREDENTIALS_DIRECTORY`, as systemd credentials are) or `api_key_env` name where the key
is, and `resolve_api_key()` reads it when a fetch needs it, so a rotated key is picked up
without a restart. This module only models config; the feeds themselves live in
`orchestrator.markets`, which builds them from these sections.
"""

from __future__ import annotations

import os
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from orchestrator.config._base import Section

#: Units a hashprice can arrive in. "h" is a hash (or, for Equihash-like algorithms, a solution).
HashpriceUnit = Literal[
    "usd_per_hs_day",
    "usd_per_kh_day",
    "usd_per_mh_day",
    "usd_per_gh_day",
    "usd_per_th_day",
    "usd_per_ph_day",
    "usd_per_eh_day",
    "btc_per_hs_day",
    "btc_per_kh_day",
    "btc_per_mh_day",
    "btc_per_gh_day",
    "btc_per_th_day",
    "btc_per_ph_day",
    "btc_per_eh_day",
]
#: Units a power price can arrive in.
PowerPriceUnit = Literal["usd_per_kwh", "usd_per_mwh"]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_ALGORITHM_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
Algorithm = Annotated[str, Field(min_length=1, max_length=64, pattern=_ALGORITHM_PATTERN)]
HttpUrl = Annotated[str, Field(min_length=1, pattern=r"^https?://")]

#: The default `max_jump_factor`. The largest moves between two observations in the real
#: price history the project was checked against (docs/runbook.md, "Outlier prices"): ERCOT
#: hub real-time prices 2024-2025 in 15-minute steps, 31.3x (51.99 to 1628.84 US$/MWh) once
#: magnitudes are floored at 0.01 US$/kWh; GPU-coin hashprices day over day, 14.1x (Bitcoin
#: Gold, 2018-07-03); BTC/USD day over day, 2.2x (2013-04-11). 100 clears every one of them
#: by 3x and still rejects a unit slip (1000x).
DEFAULT_MAX_JUMP_FACTOR = 100.0
#: Power prices are compared by magnitude, never below this (US$/kWh = 10 US$/MWh).
DEFAULT_POWER_JUMP_FLOOR_USD_PER_KWH = 0.01


class SecretUnavailableError(LookupError):
    """A secret named in config cannot be read now. Fix the file or the environment; retrying
    without that will not help."""

    def __init__(self, key: str, where: str, why: str) -> None:
        super().__init__(f"{key}: {why} ({where})")
        self.key = key
        self.where = where
        self.why = why


# ------------------------------------------------------------------ building blocks


class FeedBase(Section):
    """What every feed has: a unique name and its timing."""

    name: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$"
    )
    interval_s: float = Field(default=60.0, gt=0, le=86_400)
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    staleness_s: float = Field(default=900.0, gt=0, le=7 * 86_400)

    @model_validator(mode="after")
    def _staleness_covers_interval(self) -> Self:
        if self.staleness_s <= self.interval_s:
            raise ValueError(
                f"staleness_s ({self.staleness_s}) must exceed interval_s ({self.interval_s}), "
                "or every value expires before the next fetch"
            )
        return self

    @property
    def feed_name(self) -> str:
        """The name used in metrics and logs: `name`, else the feed's type."""
        return self.name or str(getattr(self, "type", "feed"))


class BtcPriceStatic(Section):
    """A fixed BTC price, for tests, the demo, or a site that hedges at a fixed rate.

    It never goes stale, so hashprices converted with it drift from the market as BTC moves:
    `serve` warns at start, `config check` says so, and the plan's market marks such quotes.
    """

    type: Literal["static"] = "static"
    usd_per_btc: float = Field(gt=0)


class BtcPriceHttpJson(Section):
    """A live BTC price read from any JSON endpoint at each fetch of its feed.

    For example CoinGecko's `https://api.coingecko.com/api/v3/simple/price?ids=bitcoin&
    vs_currencies=usd&include_last_updated_at=true` answers `{"bitcoin": {"usd": 97000.5,
    "last_updated_at": 1733350000}}`: `json_path = "bitcoin.usd"`, `timestamp_path =
    "bitcoin.last_updated_at"`. A hashprice converted with it stops being a price
    `staleness_s` after the BTC price's own time (the upstream's timestamp, else the fetch),
    whatever its feed's staleness; a BTC price already that old, or `max_jump_factor` away
    from the last accepted one, fails the fetch.
    """

    type: Literal["http_json"] = "http_json"
    url: HttpUrl
    json_path: str = Field(min_length=1)
    # where the upstream says when its price was true (unix seconds, or ISO 8601 with a zone)
    timestamp_path: str | None = Field(default=None, min_length=1)
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    # a hashprice converted with this BTC price is valid this long after the price's time
    staleness_s: float = Field(default=900.0, gt=0, le=86_400)


BtcPriceConfig = Annotated[BtcPriceStatic | BtcPriceHttpJson, Field(discriminator="type")]


# ------------------------------------------------------------------ hashprice feeds


class NiceHashFeed(FeedBase):
    """NiceHash's public paying rates (BTC per market-factor unit per day) for each algorithm.

    `algorithms` maps NiceHash algorithm names (e.g. `KAWPOW`) to ours (e.g. `kawpow`); empty
    means every enabled algorithm, named in lower case.
    """

    type: Literal["nicehash"]
    base_url: HttpUrl = "https://api2.nicehash.com"
    algorithms: dict[str, Algorithm] = Field(default_factory=dict)
    btc_price: BtcPriceConfig
    interval_s: float = Field(default=60.0, gt=0, le=86_400)
    staleness_s: float = Field(default=600.0, gt=0, le=7 * 86_400)


class WhatToMineCoin(Section):
    """One coin of a WhatToMine-style payload and how to turn it into revenue per H/s.

    basis "network_hashrate":  coins/(H/s)/day = block_reward * (86400 / block_time_s) / nethash_hs
    basis "difficulty":        coins/(H/s)/day = block_reward * 86400 / (difficulty * k)

    with k = `difficulty_to_hashes_factor`.

    `difficulty_to_hashes_factor` is the expected number of hashes per unit of difficulty:
    2**32 for Bitcoin-derived targets (SHA-256d, Scrypt, KawPoW on Ravencoin), 1 for
    Ethash/Etchash and Autolykos, whose difficulty already counts hashes per block.
    """

    tag: str = Field(min_length=1, max_length=16)
    algorithm: Algorithm
    basis: Literal["network_hashrate", "difficulty"] = "network_hashrate"
    difficulty_to_hashes_factor: float = Field(default=1.0, gt=0)
    block_time_s: float | None = Field(default=None, gt=0)


class WhatToMineFeed(FeedBase):
    """WhatToMine-style coin data: `coins.json` (many coins) or `coins/<id>.json` (one)."""

    type: Literal["whattomine"]
    url: HttpUrl = "https://whattomine.com/coins.json"
    coins: list[WhatToMineCoin] = Field(min_length=1)
    btc_price: BtcPriceConfig
    interval_s: float = Field(default=300.0, gt=0, le=86_400)
    staleness_s: float = Field(default=1800.0, gt=0, le=7 * 86_400)


class LuxorFeed(FeedBase):
    """Luxor Hashrate Index Bitcoin hashprice over GraphQL (`bitcoinOverviews.hashpriceUsd`)."""

    type: Literal["luxor"]
    url: HttpUrl = "https://api.hashrateindex.com/graphql"
    algorithm: Algorithm = "sha256"
    hashprice_unit: HashpriceUnit = "usd_per_th_day"
    api_key_file: Path | None = None
    api_key_env: str | None = Field(default=None, min_length=1)
    interval_s: float = Field(default=300.0, gt=0, le=86_400)
    staleness_s: float = Field(default=3600.0, gt=0, le=7 * 86_400)

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if (self.api_key_file is None) == (self.api_key_env is None):
            raise ValueError("give exactly one of 'api_key_file' or 'api_key_env'")
        return self

    def resolve_api_key(self) -> SecretStr:
        """Read the API key now. Raises `SecretUnavailableError`; the message never has the key."""
        if self.api_key_file is not None:
            path = self.api_key_file
            if not path.is_absolute() and "CREDENTIALS_DIRECTORY" in os.environ:
                path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / path
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise SecretUnavailableError(
                    "api_key_file", str(path), f"cannot read: {error.strerror}"
                ) from None
            if not value:
                raise SecretUnavailableError("api_key_file", str(path), "file is empty")
            return SecretStr(value)
        assert self.api_key_env is not None  # noqa: S101  (guaranteed by the validator)
        env_value = os.environ.get(self.api_key_env, "").strip()
        if not env_value:
            raise SecretUnavailableError(
                "api_key_env", self.api_key_env, "environment variable is not set or empty"
            )
        return SecretStr(env_value)


class HttpJsonFeed(FeedBase):
    """Any JSON endpoint: `json_path` like `data.items[0].price`, in `unit`, for `algorithm`."""

    type: Literal["http_json"]
    url: HttpUrl
    json_path: str = Field(min_length=1)
    # where the upstream says when its value was true (unix seconds, or ISO 8601 with a zone);
    # a value older than staleness_s is rejected, so a frozen upstream cannot move a GPU
    timestamp_path: str | None = Field(default=None, min_length=1)
    unit: HashpriceUnit
    algorithm: Algorithm
    btc_price: BtcPriceConfig | None = None

    @model_validator(mode="after")
    def _btc_units_need_a_price(self) -> Self:
        if self.unit.startswith("btc_") and self.btc_price is None:
            raise ValueError(f"unit {self.unit} needs a 'btc_price' section")
        return self


class StaticFeed(FeedBase):
    """A fixed hashprice: for tests, the demo, or a contract price for hashrate."""

    type: Literal["static"]
    algorithm: Algorithm
    value: float = Field(gt=0)
    unit: HashpriceUnit = "usd_per_hs_day"
    btc_price: BtcPriceStatic | None = None
    staleness_s: float = Field(default=86_400.0, gt=0, le=7 * 86_400)

    @model_validator(mode="after")
    def _btc_units_need_a_price(self) -> Self:
        if self.unit.startswith("btc_") and self.btc_price is None:
            raise ValueError(f"unit {self.unit} needs a static 'btc_price' section")
        return self


class RecordedFeed(FeedBase):
    """The demo's built-in recorded market, replayed offline.

    `time_scale` is recorded seconds per real second (3600 makes one recorded hour pass per
    real second); `hashprice_scale` multiplies every hashprice, to stage a bull market.
    """

    type: Literal["recorded"]
    time_scale: float = Field(default=60.0, gt=0, le=1e6)
    hashprice_scale: float = Field(default=1.0, gt=0, le=1e3)
    start_offset_s: float = Field(default=0.0, ge=0)
    interval_s: float = Field(default=5.0, gt=0, le=86_400)
    staleness_s: float = Field(default=60.0, gt=0, le=7 * 86_400)


# ------------------------------------------------------------------ power-price feeds


class PowerStaticFeed(FeedBase):
    """A flat power price, US$/kWh."""

    type: Literal["power_static"]
    usd_per_kwh: float = Field(ge=0, le=10)
    staleness_s: float = Field(default=86_400.0, gt=0, le=7 * 86_400)


class TouPeriod(Section):
    """Hours `[start_hour, end_hour)` local time on `days` cost `usd_per_kwh`."""

    days: list[Weekday] = Field(default_factory=lambda: list(ALL_WEEKDAYS), min_length=1)
    start_hour: int = Field(ge=0, le=23)
    end_hour: int = Field(ge=1, le=24)
    usd_per_kwh: float = Field(ge=0, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end_hour <= self.start_hour:
            raise ValueError(
                "end_hour must be after start_hour (split a period that wraps midnight)"
            )
        return self


class PowerTouFeed(FeedBase):
    """A time-of-use tariff: the first period matching the local weekday and hour wins."""

    type: Literal["power_tou"]
    timezone: str = "UTC"
    default_usd_per_kwh: float = Field(ge=0, le=10)
    periods: list[TouPeriod] = Field(default_factory=list)
    staleness_s: float = Field(default=900.0, gt=0, le=7 * 86_400)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class PowerHttpJsonFeed(FeedBase):
    """A power price from any JSON endpoint (a utility or an ISO price API)."""

    type: Literal["power_http_json"]
    url: HttpUrl
    json_path: str = Field(min_length=1)
    unit: PowerPriceUnit = "usd_per_mwh"
    interval_s: float = Field(default=300.0, gt=0, le=86_400)
    staleness_s: float = Field(default=3600.0, gt=0, le=7 * 86_400)


FeedConfig = Annotated[
    NiceHashFeed
    | WhatToMineFeed
    | LuxorFeed
    | HttpJsonFeed
    | StaticFeed
    | RecordedFeed
    | PowerStaticFeed
    | PowerTouFeed
    | PowerHttpJsonFeed,
    Field(discriminator="type"),
]


class MarketConfig(Section):
    """The `[market]` root: the feeds, in priority order, and the sanity limits."""

    feeds: list[FeedConfig] = Field(default_factory=list)
    # a price this many times (or 1/this) the feed's last accepted one, or more, is rejected
    max_jump_factor: float = Field(default=DEFAULT_MAX_JUMP_FACTOR, gt=1)
    allow_negative_power_price: bool = False
    # power prices are compared by magnitude, floored here: near zero and across a sign change
    # a ratio means nothing (0.01 to 15.51 US$/MWh is a real 15-minute move)
    power_jump_floor_usd_per_kwh: float = Field(
        default=DEFAULT_POWER_JUMP_FLOOR_USD_PER_KWH, gt=0, le=10
    )
    backoff_initial_s: float = Field(default=2.0, gt=0, le=3600)
    backoff_max_s: float = Field(default=300.0, gt=0, le=86_400)
    backoff_jitter: float = Field(default=0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _names_unique(self) -> Self:
        seen: set[str] = set()
        for feed in self.feeds:
            if feed.feed_name in seen:
                raise ValueError(
                    f"two feeds are named {feed.feed_name!r}: give each a distinct 'name'"
                )
            seen.add(feed.feed_name)
        return self

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self
