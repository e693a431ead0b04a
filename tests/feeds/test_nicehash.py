"""NiceHash: the paying unit comes from the API's own metadata, proven on a worked example."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from orchestrator.markets import FeedMetrics, MarketBook, NiceHashSource, run_feed_once
from orchestrator.markets.btcprice import StaticBtcPrice
from orchestrator.markets.nicehash import ALGORITHMS_PATH, PAYING_PATH
from tests.feeds.conftest import Serve
from tests.feeds.payloads import (
    html_error,
    json_answer,
    nicehash_algorithms,
    nicehash_paying,
    slow_answer,
)

NOW_S = 1_714_560_000.0
METADATA = nicehash_algorithms(
    ("KAWPOW", "1000000000000.00000000", "TH", True),
    ("AUTOLYKOS", "1000000000000.00000000", "TH", True),
    ("SHA256ASICBOOST", "1000000000000000.00000000", "PH", True),
    ("EQUIHASH", "1000000.00000000", "MSol", True),
    ("BROKEN", "1000000000.00000000", "TH", True),  # says GH numerically, TH on screen
    ("DEADALGO", "1000000000.00000000", "GH", False),
)


def source(
    base_url: str,
    session: aiohttp.ClientSession,
    *,
    algorithms: dict[str, str] | None = None,
    timeout_s: float = 2.0,
) -> NiceHashSource:
    return NiceHashSource(
        name="nicehash",
        interval_s=60.0,
        timeout_s=timeout_s,
        staleness_s=600.0,
        session=session,
        btc_price=StaticBtcPrice(60_000.0),
        base_url=base_url,
        algorithms=algorithms or {},
    )


async def test_worked_example_kawpow_paying_per_th_day(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """KAWPOW: marketFactor 1e12 ("TH"), paying 0.21 BTC/TH/day, 60,000 US$/BTC.

    By hand: 0.21 BTC / 1e12 H/s / day = 2.1e-13 BTC per H/s per day; times 60,000 US$/BTC
    = 1.26e-8 US$ per H/s per day. A 50 MH/s GPU earns 5e7 * 1.26e-8 = 0.63 US$/day, which is
    what KawPoW paid in 2024. Dividing `paying` by 1e8 or 1e9 instead would be 1e4 or 1e3 times
    too much: the metadata, not a folklore constant, fixes the unit.
    """
    base = await serve(
        {
            f"GET {PAYING_PATH}": json_answer(nicehash_paying(KAWPOW="0.21000000")),
            f"GET {ALGORITHMS_PATH}": json_answer(METADATA),
        }
    )
    result = await source(base, session, algorithms={"KAWPOW": "kawpow"}).fetch(NOW_S)
    assert result.rejected == ()
    (quote,) = result.quotes
    assert quote.key == "kawpow"
    assert quote.value == pytest.approx(1.26e-8, rel=1e-12)
    assert 5e7 * quote.value == pytest.approx(0.63)
    assert quote.provenance.raw_value == "0.21000000"
    assert quote.provenance.raw_unit == "btc_per_TH_day"
    assert "marketFactor=1e+12" in quote.provenance.note
    assert quote.provenance.url == base + PAYING_PATH


async def test_each_algorithm_uses_its_own_factor(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """SHA-256 is paid per PH, Equihash per MSol: one constant divisor cannot be right."""
    base = await serve(
        {
            f"GET {PAYING_PATH}": json_answer(
                nicehash_paying(SHA256ASICBOOST="0.00000090", EQUIHASH="0.00030000", ZHASH="0")
            ),
            f"GET {ALGORITHMS_PATH}": json_answer(METADATA),
        }
    )
    result = await source(base, session).fetch(NOW_S)
    values = {quote.key: quote.value for quote in result.quotes}
    # 9e-7 BTC/PH/day * 60,000 / 1e15 = 5.4e-17 US$/(H/s)/day = 0.054 US$/TH/day
    assert values["sha256asicboost"] == pytest.approx(5.4e-17)
    # 3e-4 BTC/MSol/day * 60,000 / 1e6 = 1.8e-5 US$ per Sol/s per day
    assert values["equihash"] == pytest.approx(1.8e-5)
    assert "zhash" not in values  # zero and unconfigured: skipped silently


async def test_units_that_disagree_are_rejected_not_guessed(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    base = await serve(
        {
            f"GET {PAYING_PATH}": json_answer(
                nicehash_paying(BROKEN="0.5", DEADALGO="0.1", NEWALGO="0.2")
            ),
            f"GET {ALGORITHMS_PATH}": json_answer(METADATA),
        }
    )
    algorithms = {"BROKEN": "broken", "DEADALGO": "dead", "NEWALGO": "new"}
    result = await source(base, session, algorithms=algorithms).fetch(NOW_S)
    assert result.quotes == ()
    reasons = {rejection.key: rejection.reason for rejection in result.rejected}
    assert reasons == {"broken": "unit_mismatch", "dead": "disabled", "new": "unknown_unit"}


async def test_an_html_error_page_fails_the_fetch_and_is_counted(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    base = await serve(
        {f"GET {PAYING_PATH}": html_error(500), f"GET {ALGORITHMS_PATH}": json_answer(METADATA)}
    )
    registry = CollectorRegistry()
    book = MarketBook()
    metrics = FeedMetrics(registry, book=book, clock=lambda: NOW_S)
    outcome = await run_feed_once(source(base, session), book, NOW_S, metrics=metrics)
    assert outcome.result == "http_error"
    assert outcome.error is not None
    assert "HTTP 500" in outcome.error
    assert "Internal Server Error" in outcome.error
    assert (
        registry.get_sample_value(
            "orchestrator_feed_fetch_total", {"feed": "nicehash", "result": "http_error"}
        )
        == 1.0
    )
    assert (
        registry.get_sample_value(
            "orchestrator_feed_last_success_timestamp_seconds", {"feed": "nicehash"}
        )
        is None
    )


async def test_a_slow_answer_times_out(serve: Serve, session: aiohttp.ClientSession) -> None:
    base = await serve(
        {
            f"GET {PAYING_PATH}": slow_answer(nicehash_paying(KAWPOW="0.21"), delay_s=0.6),
            f"GET {ALGORITHMS_PATH}": json_answer(METADATA),
        }
    )
    outcome = await run_feed_once(source(base, session, timeout_s=0.2), MarketBook(), NOW_S)
    assert outcome.result == "timeout"
