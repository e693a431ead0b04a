"""Unit normalisation: every hashprice becomes US$ per H/s per day, every power price US$/kWh.

A "hash" here is the algorithm's unit of work: a hash, or a solution for Equihash-like
algorithms. Prefixes are decimal SI (k = 1e3 ... E = 1e18), as mining software uses them.

A price per larger unit converts down by dividing: 0.10 US$/TH/day is 0.10 / 1e12 US$/H/day.
BTC-denominated prices are multiplied by a BTC price (US$/BTC) the caller supplies; the
caller records which price it used, so the conversion stays explainable.
"""

from __future__ import annotations

import re
from typing import Final, get_args

from orchestrator.config.market import HashpriceUnit, PowerPriceUnit

SI_PREFIX_FACTOR: Final[dict[str, float]] = {
    "": 1.0,
    "k": 1e3,
    "m": 1e6,
    "g": 1e9,
    "t": 1e12,
    "p": 1e15,
    "e": 1e18,
}

_HASHPRICE_UNIT = re.compile(r"^(usd|btc)_per_([kmgtpe]?)hs?_day$")

HASHPRICE_UNITS: Final[tuple[str, ...]] = get_args(HashpriceUnit)
POWER_UNITS: Final[tuple[str, ...]] = get_args(PowerPriceUnit)

NORMALISED_HASHPRICE_UNIT: Final = "usd_per_hs_day"
NORMALISED_POWER_UNIT: Final = "usd_per_kwh"


def hashes_per_unit(unit: str) -> float:
    """How many H/s the unit's rate is quoted per: `usd_per_th_day` -> 1e12."""
    match = _HASHPRICE_UNIT.match(unit)
    if match is None:
        raise ValueError(f"unknown hashprice unit {unit!r}; expected one of {HASHPRICE_UNITS}")
    return SI_PREFIX_FACTOR[match.group(2)]


def is_btc_unit(unit: str) -> bool:
    """True for units priced in BTC, which need a BTC price to normalise."""
    return unit.startswith("btc_")


def to_usd_per_hs_day(value: float, unit: str, *, usd_per_btc: float | None = None) -> float:
    """Normalise a hashprice to US$ per H/s per day.

    >>> to_usd_per_hs_day(0.05, "usd_per_th_day")
    5e-14
    >>> to_usd_per_hs_day(2.0, "btc_per_ph_day", usd_per_btc=50_000.0)
    1e-10
    """
    per_hashes = hashes_per_unit(unit)
    if is_btc_unit(unit):
        if usd_per_btc is None:
            raise ValueError(f"unit {unit} needs a BTC price")
        return value * usd_per_btc / per_hashes
    return value / per_hashes


def to_usd_per_kwh(value: float, unit: str) -> float:
    """Normalise a power price to US$/kWh: 45 US$/MWh is 0.045 US$/kWh."""
    if unit == "usd_per_kwh":
        return value
    if unit == "usd_per_mwh":
        return value / 1000.0
    raise ValueError(f"unknown power price unit {unit!r}; expected one of {POWER_UNITS}")


def si_prefix_factor(display: str) -> float | None:
    """The factor of a display unit like `TH`, `MSol`, `kH`, `GH/s`; None if unrecognised
    (then the caller trusts the API's numeric factor alone).

    >>> si_prefix_factor("TH")
    1000000000000.0
    >>> si_prefix_factor("H")
    1.0
    """
    text = display.strip().lower().removesuffix("/s")
    for suffix in ("sol", "h"):
        if text.endswith(suffix):
            prefix = text[: -len(suffix)]
            return SI_PREFIX_FACTOR.get(prefix)
    return None
