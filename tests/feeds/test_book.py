"""The market book: sanity checks with reasons, staleness, priority, and unit normalisation."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import pytest

from orchestrator.config.market import (
    DEFAULT_MAX_JUMP_FACTOR,
    DEFAULT_POWER_JUMP_FLOOR_USD_PER_KWH,
)
from orchestrator.markets import POWER_KEY, MarketBook, Provenance, Quote, QuoteKind
from orchestrator.markets.book import is_jump, jump_ratio
from orchestrator.markets.units import hashes_per_unit, to_usd_per_hs_day, to_usd_per_kwh

NOW_S = 1_714_560_000.0
ERCOT_RTM = Path(
    "/work/shared/data/market-history/electricity/ercot_hb_hubavg_rtm_15min_2024-2025.csv"
)


def hashprice(
    value: float,
    *,
    source: str = "a",
    algorithm: str = "kawpow",
    at_s: float = NOW_S,
    staleness_s: float = 600.0,
    source_time_s: float | None = None,
) -> Quote:
    provenance = Provenance(source, "http://x", at_s, value, "usd_per_hs_day", source_time_s)
    return Quote(QuoteKind.HASHPRICE, algorithm, value, provenance, staleness_s)


def power(value: float, *, source: str = "p", at_s: float = NOW_S) -> Quote:
    provenance = Provenance(source, "static:", at_s, value, "usd_per_kwh")
    return Quote(QuoteKind.POWER, POWER_KEY, value, provenance, 600.0)


@pytest.mark.parametrize(
    ("unit", "value", "expected"),
    [
        ("usd_per_hs_day", 1.2e-8, 1.2e-8),
        ("usd_per_mh_day", 0.012, 1.2e-8),
        ("usd_per_th_day", 0.05, 5e-14),
        ("usd_per_ph_day", 50.0, 5e-14),
    ],
)
def test_usd_units_normalise_to_usd_per_hs_day(unit: str, value: float, expected: float) -> None:
    assert to_usd_per_hs_day(value, unit) == pytest.approx(expected, rel=1e-12)


def test_btc_units_need_and_use_a_btc_price() -> None:
    assert to_usd_per_hs_day(1e-6, "btc_per_th_day", usd_per_btc=60_000.0) == pytest.approx(6e-14)
    with pytest.raises(ValueError, match="BTC price"):
        to_usd_per_hs_day(1e-6, "btc_per_th_day")
    assert hashes_per_unit("btc_per_eh_day") == 1e18


def test_power_units() -> None:
    assert to_usd_per_kwh(45.0, "usd_per_mwh") == pytest.approx(0.045)
    assert to_usd_per_kwh(0.05, "usd_per_kwh") == 0.05


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (math.nan, "not_finite"),
        (math.inf, "not_finite"),
        (-1.0e-8, "non_positive"),
        (0.0, "non_positive"),
    ],
)
def test_absurd_hashprices_are_rejected_with_a_reason(value: float, reason: str) -> None:
    book = MarketBook()
    rejection = book.offer(hashprice(value), NOW_S)
    assert rejection is not None
    assert rejection.reason == reason
    assert book.rejection_counts == {("a", reason): 1}
    assert book.snapshot(NOW_S).hashprice_usd_per_hs_day == {}


def test_a_1000x_jump_is_an_outlier_and_the_last_value_stays() -> None:
    book = MarketBook(max_jump_factor=1000.0)
    assert book.offer(hashprice(1.2e-8), NOW_S) is None
    up = book.offer(hashprice(1.2e-8 * 1001, at_s=NOW_S + 60), NOW_S + 60)
    down = book.offer(hashprice(1.2e-8 / 1001, at_s=NOW_S + 60), NOW_S + 60)
    assert up is not None
    assert up.reason == "outlier"
    assert down is not None
    assert down.reason == "outlier"
    assert "limit is 1000x" in up.detail
    assert book.snapshot(NOW_S + 60).hashprice_usd_per_hs_day == {"kawpow": 1.2e-8}
    # a real move within the factor is accepted
    assert book.offer(hashprice(1.2e-8 * 3, at_s=NOW_S + 120), NOW_S + 120) is None
    assert book.snapshot(NOW_S + 120).hashprice_usd_per_hs_day["kawpow"] == pytest.approx(3.6e-8)


def test_a_jump_of_exactly_the_factor_is_an_outlier() -> None:
    """A kH/MH unit slip is exactly 1000x: with the factor at 1000 it must be rejected."""
    book = MarketBook(max_jump_factor=1000.0)
    assert book.offer(hashprice(to_usd_per_hs_day(0.012, "usd_per_mh_day")), NOW_S) is None
    slipped = to_usd_per_hs_day(0.012, "usd_per_kh_day")
    rejection = book.offer(hashprice(slipped, at_s=NOW_S + 60), NOW_S + 60)
    assert rejection is not None
    assert rejection.reason == "outlier"
    down = book.offer(hashprice(1.2e-8 / 1000, at_s=NOW_S + 60), NOW_S + 60)
    assert down is not None
    assert down.reason == "outlier"


def test_the_default_factor_rejects_a_unit_slip_and_keeps_the_largest_real_moves() -> None:
    """100x by default: the largest real moves (ERCOT real-time 51.99 to 1628.84 US$/MWh in
    15 minutes, a GPU coin's hashprice 14x in a day) pass; a 1000x slip does not."""
    assert DEFAULT_MAX_JUMP_FACTOR == 100.0
    book = MarketBook()
    assert book.offer(power(0.05199), NOW_S) is None
    assert book.offer(power(1.62884, at_s=NOW_S + 900), NOW_S + 900) is None
    assert book.offer(hashprice(1.0e-8), NOW_S) is None
    assert book.offer(hashprice(1.41e-7, at_s=NOW_S + 60), NOW_S + 60) is None
    slip = book.offer(hashprice(1.41e-4, at_s=NOW_S + 120), NOW_S + 120)
    assert slip is not None
    assert slip.reason == "outlier"
    assert "limit is 100x" in slip.detail
    power_slip = book.offer(power(1628.84, at_s=NOW_S + 1800), NOW_S + 1800)
    assert power_slip is not None
    assert power_slip.reason == "outlier"


def test_power_prices_near_zero_and_negative_are_judged_by_magnitude_with_a_floor() -> None:
    """0.01 to 15.51 US$/MWh is a real 15-minute ERCOT move (1551x as a ratio), while -0.05 to
    -50 US$/kWh is a unit slip that the ratio of two positive prices never saw."""
    book = MarketBook(allow_negative_power_price=True)
    assert book.offer(power(0.00001), NOW_S) is None
    assert book.offer(power(0.01551, at_s=NOW_S + 900), NOW_S + 900) is None
    assert book.offer(power(-0.05, at_s=NOW_S + 1800), NOW_S + 1800) is None
    slip = book.offer(power(-50.0, at_s=NOW_S + 2700), NOW_S + 2700)
    assert slip is not None
    assert slip.reason == "outlier"
    kept = book.latest(POWER_KEY)
    assert kept is not None
    assert kept.value == -0.05


@pytest.mark.skipif(not ERCOT_RTM.is_file(), reason="the shared market history is not present")
def test_two_years_of_real_ercot_prices_pass_and_their_unit_slips_do_not() -> None:
    """Every 15-minute ERCOT hub price of 2024-2025 is accepted by a default book, one after
    the other. The same price read as US$/kWh instead of US$/MWh (1000x), judged against the
    price before it, is rejected at 99.9 % of the steps where it is at least 1 US$/MWh (below
    that a slip stays under 1 US$/kWh, and the floor lets it through), 97 % of all steps."""
    with ERCOT_RTM.open(newline="") as handle:
        prices = [
            to_usd_per_kwh(float(row["price_usd_per_mwh"]), "usd_per_mwh")
            for row in csv.DictReader(handle)
        ]
    assert len(prices) == 67_200
    book = MarketBook(allow_negative_power_price=True)
    for step, usd_per_kwh in enumerate(prices):
        at_s = NOW_S + 900.0 * step
        assert book.offer(power(usd_per_kwh, at_s=at_s), at_s) is None, (step, usd_per_kwh)
    caught = {"all": 0, "from 1 US$/MWh": 0}
    tried = dict.fromkeys(caught, 0)
    for before, price in itertools.pairwise(prices):
        ratio = jump_ratio(price * 1000.0, before, floor=DEFAULT_POWER_JUMP_FLOOR_USD_PER_KWH)
        rejected = ratio is not None and is_jump(ratio, DEFAULT_MAX_JUMP_FACTOR)
        for label in ("all", "from 1 US$/MWh") if abs(price) >= 0.001 else ("all",):
            tried[label] += 1
            caught[label] += rejected
    assert caught["from 1 US$/MWh"] / tried["from 1 US$/MWh"] > 0.999
    assert caught["all"] / tried["all"] > 0.97


def test_a_new_feeds_first_value_is_checked_against_the_other_feeds() -> None:
    book = MarketBook(source_priority=["a", "b"])
    book.offer(hashprice(1.2e-8, source="a"), NOW_S)
    rejection = book.offer(hashprice(1.2e-8 * 1e9, source="b"), NOW_S)
    assert rejection is not None
    assert rejection.reason == "outlier"


def test_quotes_expire_after_their_staleness_limit() -> None:
    book = MarketBook()
    book.offer(hashprice(1.2e-8, staleness_s=600.0), NOW_S)
    assert book.snapshot(NOW_S + 599.0).hashprice_usd_per_hs_day == {"kawpow": 1.2e-8}
    expired = book.snapshot(NOW_S + 600.0)
    assert expired.hashprice_usd_per_hs_day == {}
    assert expired.stale_keys == frozenset({"kawpow"})
    assert book.latest("kawpow") is not None  # kept for explanations, not for planning


def test_data_already_old_at_the_source_is_rejected() -> None:
    book = MarketBook()
    rejection = book.offer(hashprice(1.2e-8, source_time_s=NOW_S - 3600.0), NOW_S)
    assert rejection is not None
    assert rejection.reason == "stale_at_source"


def test_priority_picks_the_first_fresh_feed_and_falls_back() -> None:
    book = MarketBook(source_priority=["primary", "backup"])
    book.offer(hashprice(1.0e-8, source="backup", staleness_s=3600.0), NOW_S)
    book.offer(hashprice(1.2e-8, source="primary", staleness_s=300.0), NOW_S)
    snapshot = book.snapshot(NOW_S + 10)
    assert snapshot.hashprice_usd_per_hs_day == {"kawpow": 1.2e-8}
    assert snapshot.quotes["kawpow"].source == "primary"
    later = book.snapshot(NOW_S + 400)
    assert later.hashprice_usd_per_hs_day == {"kawpow": 1.0e-8}
    assert later.quotes["kawpow"].source == "backup"
    assert later.stale_keys == frozenset()


def test_power_price_zero_is_fine_negative_only_when_allowed() -> None:
    strict = MarketBook()
    assert strict.offer(power(0.0), NOW_S) is None
    rejection = strict.offer(power(-0.01), NOW_S)
    assert rejection is not None
    assert rejection.reason == "non_positive"
    lenient = MarketBook(allow_negative_power_price=True)
    assert lenient.offer(power(-0.01), NOW_S) is None
    assert lenient.snapshot(NOW_S).power_price_usd_per_kwh == -0.01


def test_snapshot_separates_power_from_hashprices() -> None:
    book = MarketBook()
    book.offer(hashprice(1.2e-8), NOW_S)
    book.offer(power(0.045), NOW_S)
    snapshot = book.snapshot(NOW_S)
    assert snapshot.hashprice_usd_per_hs_day == {"kawpow": 1.2e-8}
    assert snapshot.power_price_usd_per_kwh == 0.045
    assert snapshot.power_quote is not None
    assert snapshot.power_quote.unit == "usd_per_kwh"
    assert snapshot.taken_at_s == NOW_S
