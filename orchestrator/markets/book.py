"""The market book: the latest accepted quote per algorithm and for power, judged on arrival.

Every quote passes the sanity checks before it is kept; a failure becomes a `Rejection` with
a reason (counted per feed and reason, logged by the runner) and the previous value stays:

- `not_finite`: NaN or an infinity;
- `non_positive`: a hashprice of zero or less (no market pays nothing for work), or a power
  price below zero unless `allow_negative_power_price` (real-time ISO prices do go negative);
- `outlier`: `max_jump_factor` times (or 1/`max_jump_factor` of) the feed's own last accepted
  value for that key or more, or, for a feed's first value, the value another feed currently
  gives. The factor itself is an outlier: a unit slip (kH/MH/GH, kWh/MWh) is exactly 1000x.
  This is the guard against unit bugs and garbage. Power prices are compared by magnitude
  with a floor, `max(|price|, power_jump_floor_usd_per_kwh)`, because real-time prices pass
  through zero and change sign: 0.01 to 15.51 US$/MWh within 15 minutes is a real ERCOT move
  (1551x), a move from -0.05 to -50 US$/kWh is a unit slip. See `DEFAULT_MAX_JUMP_FACTOR` for
  the real moves behind the default factor (100);
- `stale_at_source`: the upstream timestamp is already older than the feed's staleness limit.

Staleness: a quote is usable until `fetched_at_s + staleness_s`. `snapshot(now_s)` returns
only fresh values; keys the book knows but cannot price freshly are listed in `stale_keys`,
so the planner can hold the current plan and say why. When several feeds price one key, the
first in priority order (config order) with a fresh quote wins; a lower one is the fallback.

The book is plain state without I/O or clocks; the caller passes `now_s`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from orchestrator.config.market import (
    DEFAULT_MAX_JUMP_FACTOR,
    DEFAULT_POWER_JUMP_FLOOR_USD_PER_KWH,
)
from orchestrator.markets.quote import POWER_KEY, Quote, QuoteKind, Rejection

# a ratio this close to the factor counts as reaching it (a slip computed in floating point)
_RATIO_TOLERANCE = 1e-9


def jump_ratio(value: float, reference: float, *, floor: float = 0.0) -> float | None:
    """How many times one value is the other (always >= 1), comparing magnitudes floored at
    `floor`; None when there is nothing to compare (a zero or negative value without a floor).
    """
    if floor > 0.0:
        new, old = max(abs(value), floor), max(abs(reference), floor)
    elif value > 0.0 and reference > 0.0:
        new, old = value, reference
    else:
        return None
    return max(new / old, old / new)


def is_jump(ratio: float, max_jump_factor: float) -> bool:
    """Whether `ratio` (from `jump_ratio`) reaches the factor: the factor itself is a jump."""
    return ratio >= max_jump_factor * (1.0 - _RATIO_TOLERANCE)


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """The fresh market at `taken_at_s`: what the planner may act on."""

    taken_at_s: float
    hashprice_usd_per_hs_day: Mapping[str, float]
    power_price_usd_per_kwh: float | None
    quotes: Mapping[str, Quote]
    stale_keys: frozenset[str] = field(default_factory=frozenset)

    def hashprice_quote(self, algorithm: str) -> Quote | None:
        return self.quotes.get(algorithm)

    @property
    def power_quote(self) -> Quote | None:
        return self.quotes.get(POWER_KEY)


class MarketBook:
    """Latest accepted quote per (key, feed); see the module docstring for the rules."""

    def __init__(
        self,
        *,
        max_jump_factor: float = DEFAULT_MAX_JUMP_FACTOR,
        allow_negative_power_price: bool = False,
        source_priority: Sequence[str] = (),
        power_jump_floor_usd_per_kwh: float = DEFAULT_POWER_JUMP_FLOOR_USD_PER_KWH,
    ) -> None:
        if max_jump_factor <= 1.0:
            raise ValueError("max_jump_factor must exceed 1")
        if power_jump_floor_usd_per_kwh <= 0.0:
            raise ValueError("power_jump_floor_usd_per_kwh must be above zero")
        self._max_jump_factor = max_jump_factor
        self._power_floor = power_jump_floor_usd_per_kwh
        self._allow_negative_power = allow_negative_power_price
        self._priority = {name: rank for rank, name in enumerate(source_priority)}
        self._accepted: dict[str, dict[str, Quote]] = {}
        self._kinds: dict[str, QuoteKind] = {}
        self._rejections: Counter[tuple[str, str]] = Counter()
        self._last_rejection: dict[tuple[str, str], Rejection] = {}

    # ------------------------------------------------------------------ intake

    def offer(self, quote: Quote, now_s: float) -> Rejection | None:
        """Judge `quote`; keep it and return None, or count and return the rejection."""
        rejection = self._judge(quote, now_s)
        if rejection is not None:
            self.count_rejection(rejection)
            return rejection
        self._accepted.setdefault(quote.key, {})[quote.source] = quote
        self._kinds[quote.key] = quote.kind
        return None

    def count_rejection(self, rejection: Rejection) -> None:
        """Count a rejection made here or by a source (unpriceable items)."""
        self._rejections[(rejection.source, rejection.reason)] += 1
        self._last_rejection[(rejection.source, rejection.key)] = rejection

    def _judge(self, quote: Quote, now_s: float) -> Rejection | None:
        value = quote.value

        def reject(reason: str, detail: str) -> Rejection:
            return Rejection(
                source=quote.source,
                key=quote.key,
                reason=reason,
                detail=detail,
                raw_value=quote.provenance.raw_value,
            )

        if not math.isfinite(value):
            return reject("not_finite", f"value is {value}")
        if quote.kind is QuoteKind.HASHPRICE and value <= 0.0:
            return reject("non_positive", f"hashprice {value} {quote.unit} must be above zero")
        if quote.kind is QuoteKind.POWER and value < 0.0 and not self._allow_negative_power:
            return reject("non_positive", f"power price {value} {quote.unit} is negative")
        source_time_s = quote.provenance.source_time_s
        if source_time_s is not None and now_s - source_time_s > quote.staleness_s:
            return reject(
                "stale_at_source",
                f"upstream timestamp is {now_s - source_time_s:.0f} s old, "
                f"over the {quote.staleness_s:.0f} s limit",
            )
        reference = self._reference_for(quote, now_s)
        if reference is not None:
            floor = self._power_floor if quote.kind is QuoteKind.POWER else 0.0
            ratio = jump_ratio(value, reference.value, floor=floor)
            if ratio is not None and is_jump(ratio, self._max_jump_factor):
                return reject(
                    "outlier",
                    f"{value:.6g} is {ratio:.3g}x away from the last accepted "
                    f"{reference.value:.6g} from {reference.source}; "
                    f"the limit is {self._max_jump_factor:g}x",
                )
        return None

    def _reference_for(self, quote: Quote, now_s: float) -> Quote | None:
        """The feed's own last accepted value, else the best fresh value from another feed."""
        by_source = self._accepted.get(quote.key, {})
        own = by_source.get(quote.source)
        if own is not None:
            return own
        return self._best(by_source, now_s)

    # ------------------------------------------------------------------ reading

    def _rank(self, source: str) -> tuple[int, str]:
        return (self._priority.get(source, len(self._priority)), source)

    def _best(self, by_source: Mapping[str, Quote], now_s: float) -> Quote | None:
        fresh = [q for q in by_source.values() if q.is_fresh(now_s)]
        if not fresh:
            return None
        return min(fresh, key=lambda q: self._rank(q.source))

    def snapshot(self, now_s: float) -> MarketSnapshot:
        """Fresh values only: one per key, the highest-priority feed's."""
        hashprices: dict[str, float] = {}
        chosen: dict[str, Quote] = {}
        power: float | None = None
        stale: set[str] = set()
        for key, by_source in self._accepted.items():
            best = self._best(by_source, now_s)
            if best is None:
                stale.add(key)
                continue
            chosen[key] = best
            if best.kind is QuoteKind.POWER:
                power = best.value
            else:
                hashprices[key] = best.value
        return MarketSnapshot(
            taken_at_s=now_s,
            hashprice_usd_per_hs_day=MappingProxyType(hashprices),
            power_price_usd_per_kwh=power,
            quotes=MappingProxyType(chosen),
            stale_keys=frozenset(stale),
        )

    def latest(self, key: str, source: str | None = None) -> Quote | None:
        """The last accepted quote for `key` (from `source`, else the top-priority one),
        fresh or not."""
        by_source = self._accepted.get(key, {})
        if source is not None:
            return by_source.get(source)
        if not by_source:
            return None
        return min(by_source.values(), key=lambda q: self._rank(q.source))

    @property
    def rejection_counts(self) -> Mapping[tuple[str, str], int]:
        """Rejections so far by (feed, reason)."""
        return MappingProxyType(dict(self._rejections))

    def last_rejection(self, source: str, key: str) -> Rejection | None:
        return self._last_rejection.get((source, key))
