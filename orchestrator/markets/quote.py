"""The observation type of the market: one normalised price with its provenance.

A `Quote` is what a source produced at one fetch: the value already normalised (US$ per H/s
per day for an algorithm, US$/kWh for power), the raw value and unit it came from, where and
when it was fetched, and how long it may be used (`expires_at_s`). Sources return a
`FetchResult`: the quotes, plus `Rejection`s for items they could not price (an algorithm
whose units disagree, a coin the source marks as lagging). The `MarketBook` then judges each
quote (finite, positive, no wild jump) before anyone may use it.

A `Source` is anything with a name, its timing, and `async fetch(now_s) -> FetchResult`. It
raises a `FeedError` subclass when the whole fetch failed. Times are Unix seconds (wall
clock): a quote's age must be comparable with the timestamps that upstream APIs report, and
a time-of-use tariff needs the local hour.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from orchestrator.markets.units import NORMALISED_HASHPRICE_UNIT, NORMALISED_POWER_UNIT


class QuoteKind(enum.StrEnum):
    HASHPRICE = "hashprice"
    POWER = "power"


#: The key of the site's power price among a book's quotes.
POWER_KEY = "power"


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a value came from, enough to explain it to a person and to audit it.

    A hashprice converted from BTC carries the BTC price it was converted with
    (`usd_per_btc`), whether that price is a static one from config (`btc_price_static`: it
    never goes stale, so revenue drifts with BTC unseen), and `valid_until_s`: when that BTC
    price gets too old, the converted value stops being a price even if its own feed is fresh.
    """

    source: str
    url: str
    fetched_at_s: float
    raw_value: float | str
    raw_unit: str
    source_time_s: float | None = None
    note: str = ""
    usd_per_btc: float | None = None
    btc_price_static: bool = False
    valid_until_s: float | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    """One normalised price. `key` is the algorithm name, or `POWER_KEY` for power."""

    kind: QuoteKind
    key: str
    value: float
    provenance: Provenance
    staleness_s: float

    @property
    def unit(self) -> str:
        if self.kind is QuoteKind.HASHPRICE:
            return NORMALISED_HASHPRICE_UNIT
        return NORMALISED_POWER_UNIT

    @property
    def source(self) -> str:
        return self.provenance.source

    @property
    def expires_at_s(self) -> float:
        """The feed's staleness, cut short by an input's (the BTC price's) validity."""
        expires_s = self.provenance.fetched_at_s + self.staleness_s
        valid_until_s = self.provenance.valid_until_s
        return expires_s if valid_until_s is None else min(expires_s, valid_until_s)

    def is_fresh(self, now_s: float) -> bool:
        """Usable at `now_s`: fetched less than `staleness_s` ago."""
        return now_s < self.expires_at_s

    def age_s(self, now_s: float) -> float:
        return max(0.0, now_s - self.provenance.fetched_at_s)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A value that was not used, and why. `reason` is a short label for metrics."""

    source: str
    key: str
    reason: str
    detail: str
    raw_value: float | str | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch produced: candidate quotes and the items the source itself rejected."""

    quotes: tuple[Quote, ...] = ()
    rejected: tuple[Rejection, ...] = ()


@runtime_checkable
class Source(Protocol):
    """An async market-data source with its own timing. See the module docstring."""

    @property
    def name(self) -> str: ...

    @property
    def interval_s(self) -> float: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def staleness_s(self) -> float: ...

    async def fetch(self, now_s: float) -> FetchResult: ...


@dataclass(kw_only=True)
class SourceBase:
    """Shared timing and quote construction for the sources in this package."""

    name: str
    interval_s: float
    timeout_s: float
    staleness_s: float

    def hashprice(
        self,
        algorithm: str,
        usd_per_hs_day: float,
        *,
        now_s: float,
        url: str,
        raw_value: float | str,
        raw_unit: str,
        source_time_s: float | None = None,
        note: str = "",
        usd_per_btc: float | None = None,
        btc_price_static: bool = False,
        valid_until_s: float | None = None,
    ) -> Quote:
        """A hashprice; one converted from BTC passes the BTC price's `BtcPrice.provenance()`."""
        return self._make_quote(
            QuoteKind.HASHPRICE,
            algorithm,
            usd_per_hs_day,
            Provenance(
                self.name,
                url,
                now_s,
                raw_value,
                raw_unit,
                source_time_s,
                note,
                usd_per_btc=usd_per_btc,
                btc_price_static=btc_price_static,
                valid_until_s=valid_until_s,
            ),
        )

    def power(
        self,
        usd_per_kwh: float,
        *,
        now_s: float,
        url: str,
        raw_value: float | str,
        raw_unit: str,
        source_time_s: float | None = None,
        note: str = "",
    ) -> Quote:
        return self._make_quote(
            QuoteKind.POWER,
            POWER_KEY,
            usd_per_kwh,
            Provenance(self.name, url, now_s, raw_value, raw_unit, source_time_s, note),
        )

    def _make_quote(self, kind: QuoteKind, key: str, value: float, provenance: Provenance) -> Quote:
        return Quote(
            kind=kind, key=key, value=value, provenance=provenance, staleness_s=self.staleness_s
        )

    def reject(
        self, key: str, reason: str, detail: str, raw: float | str | None = None
    ) -> Rejection:
        return Rejection(source=self.name, key=key, reason=reason, detail=detail, raw_value=raw)


def parse_number(value: object) -> float:
    """A JSON number or numeric string as float; NaN and infinities pass (the book rejects
    them with a reason). Raises ValueError for anything else, booleans included."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")  # noqa: TRY004  (one "not a number" error for callers)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    raise ValueError(f"expected a number, got {type(value).__name__}")
