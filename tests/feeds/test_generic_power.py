"""Generic HTTP JSON and static sources, and the power prices: paths, units, bad values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypedDict

import aiohttp
import pytest
from aiohttp import web

from orchestrator.config.market import TouPeriod
from orchestrator.markets import (
    HttpJsonSource,
    MarketBook,
    PowerHttpJsonSource,
    PowerTouSource,
    StaticSource,
    run_feed_once,
)
from orchestrator.markets.btcprice import BtcPriceSource, HttpJsonBtcPrice
from tests.feeds.conftest import Serve
from tests.feeds.payloads import html_error, json_answer, raw_json_answer

NOW_S = 1_714_560_000.0


class _Timing(TypedDict):
    interval_s: float
    timeout_s: float
    staleness_s: float


TIMING: _Timing = {"interval_s": 60.0, "timeout_s": 2.0, "staleness_s": 600.0}


def http_json(
    session: aiohttp.ClientSession, url: str, unit: str, btc_price: BtcPriceSource | None = None
) -> HttpJsonSource:
    return HttpJsonSource(
        name="gen",
        **TIMING,
        session=session,
        url=url,
        json_path="data.items[0].price",
        unit=unit,
        algorithm="etchash",
        btc_price=btc_price,
    )


async def test_json_path_and_unit(serve: Serve, session: aiohttp.ClientSession) -> None:
    base = await serve(
        {"GET /p": json_answer({"data": {"items": [{"price": "0.0062"}, {"price": 9}]}})}
    )
    result = await http_json(session, base + "/p", "usd_per_mh_day").fetch(NOW_S)
    (quote,) = result.quotes
    assert quote.value == pytest.approx(6.2e-9)
    assert quote.provenance.raw_unit == "usd_per_mh_day"


async def test_btc_units_use_the_btc_price_feed(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    base = await serve(
        {
            "GET /p": json_answer({"data": {"items": [{"price": 1e-7}]}}),
            "GET /btc": json_answer({"bitcoin": {"usd": 62_000}}),
        }
    )
    btc = HttpJsonBtcPrice(
        session=session,
        url=base + "/btc",
        json_path="bitcoin.usd",
        timeout_s=2.0,
        staleness_s=600.0,
    )
    result = await http_json(session, base + "/p", "btc_per_mh_day", btc_price=btc).fetch(NOW_S)
    (quote,) = result.quotes
    assert quote.value == pytest.approx(1e-7 * 62_000 / 1e6)
    assert base + "/btc" in quote.provenance.note


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"data": {"items": [{"price": NaN}]}}', "not_finite"),
        ('{"data": {"items": [{"price": "NaN"}]}}', "not_finite"),
        ('{"data": {"items": [{"price": Infinity}]}}', "not_finite"),
        ('{"data": {"items": [{"price": -0.006}]}}', "non_positive"),
        ('{"data": {"items": [{"price": "n/a"}]}}', "bad_payload"),
    ],
)
async def test_bad_values_are_rejected_with_reasons(
    serve: Serve, session: aiohttp.ClientSession, body: str, reason: str
) -> None:
    base = await serve({"GET /p": raw_json_answer(body)})
    book = MarketBook()
    outcome = await run_feed_once(http_json(session, base + "/p", "usd_per_mh_day"), book, NOW_S)
    assert outcome.ok
    assert [r.reason for r in outcome.rejected] == [reason]
    assert book.snapshot(NOW_S).hashprice_usd_per_hs_day == {}


@pytest.mark.parametrize(
    ("handler_body", "result"),
    [
        ('{"data": {}}', "bad_payload"),
        ("<html>not json</html>", "bad_json"),
    ],
)
async def test_wrong_shapes_fail_the_fetch(
    serve: Serve, session: aiohttp.ClientSession, handler_body: str, result: str
) -> None:
    base = await serve({"GET /p": raw_json_answer(handler_body)})
    outcome = await run_feed_once(
        http_json(session, base + "/p", "usd_per_mh_day"), MarketBook(), NOW_S
    )
    assert outcome.result == result


async def test_static_source_restamps_each_fetch() -> None:
    source = StaticSource(
        name="s", **TIMING, algorithm="kawpow", value=0.012, unit="usd_per_mh_day"
    )
    first = (await source.fetch(NOW_S)).quotes[0]
    later = (await source.fetch(NOW_S + 5000)).quotes[0]
    assert first.value == pytest.approx(1.2e-8)
    assert later.is_fresh(NOW_S + 5000)


async def test_power_http_json_in_usd_per_mwh(serve: Serve, session: aiohttp.ClientSession) -> None:
    base = await serve({"GET /lmp": json_answer([{"interval": "2024-05-01T18:00Z", "lmp": 41.5}])})
    source = PowerHttpJsonSource(
        name="ercot",
        **TIMING,
        session=session,
        url=base + "/lmp",
        json_path="[0].lmp",
        unit="usd_per_mwh",
    )
    book = MarketBook()
    await run_feed_once(source, book, NOW_S)
    assert book.snapshot(NOW_S).power_price_usd_per_kwh == pytest.approx(0.0415)


async def test_power_error_page_leaves_the_old_price_until_it_expires(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    answers = iter([json_answer({"price": 45.0}), html_error(502)])

    async def first_good_then_broken(request: web.Request) -> web.StreamResponse:
        return await next(answers)(request)

    base = await serve({"GET /lmp": first_good_then_broken})
    source = PowerHttpJsonSource(
        name="ercot",
        **TIMING,
        session=session,
        url=base + "/lmp",
        json_path="price",
        unit="usd_per_mwh",
    )
    book = MarketBook()
    assert (await run_feed_once(source, book, NOW_S)).ok
    failed = await run_feed_once(source, book, NOW_S + 60)
    assert failed.result == "http_error"
    assert book.snapshot(NOW_S + 60).power_price_usd_per_kwh == pytest.approx(0.045)
    assert book.snapshot(NOW_S + 600).power_price_usd_per_kwh is None
    assert book.snapshot(NOW_S + 600).stale_keys == frozenset({"power"})


async def test_time_of_use_follows_local_weekday_and_hour() -> None:
    peak = TouPeriod(
        days=["mon", "tue", "wed", "thu", "fri"], start_hour=17, end_hour=21, usd_per_kwh=0.12
    )
    source = PowerTouSource(
        name="tou",
        **TIMING,
        timezone="America/Chicago",
        periods=[peak],
        default_usd_per_kwh=0.045,
    )

    def at(text: str) -> float:
        return datetime.fromisoformat(text).astimezone(UTC).timestamp()

    # Wednesday 2024-05-01 18:30 CDT is 23:30 UTC: on peak
    assert (await source.fetch(at("2024-05-01T23:30:00+00:00"))).quotes[0].value == 0.12
    # the same UTC hour on Saturday is off peak
    assert (await source.fetch(at("2024-05-04T23:30:00+00:00"))).quotes[0].value == 0.045
    # 21:00 local is the end of the period (exclusive)
    assert (await source.fetch(at("2024-05-02T02:00:00+00:00"))).quotes[0].value == 0.045
