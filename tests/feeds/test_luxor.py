"""Luxor Hashrate Index: GraphQL POST, key from a file or the environment, never logged."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import structlog
from aiohttp import web

from orchestrator.config.market import LuxorFeed
from orchestrator.markets import LuxorSource, MarketBook, run_feed_once
from orchestrator.markets.luxor import API_KEY_HEADER
from tests.feeds.conftest import Serve
from tests.feeds.payloads import json_answer, luxor_overview

NOW_S = 1_714_565_000.0  # 2024-05-01T12:03:20Z
SECRET = "hi.0123456789abcdef-test-key"  # noqa: S105  (a test key, not a credential)


def make(session: aiohttp.ClientSession, config: LuxorFeed) -> LuxorSource:
    return LuxorSource(
        name="luxor",
        interval_s=config.interval_s,
        timeout_s=config.timeout_s,
        staleness_s=config.staleness_s,
        session=session,
        config=config,
    )


async def test_hashprice_per_th_day_is_normalised_and_the_key_sent(
    serve: Serve, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}

    async def graphql(request: web.Request) -> web.Response:
        seen["key"] = request.headers.get(API_KEY_HEADER)
        seen["body"] = await request.json()
        return web.json_response(luxor_overview("0.0521", "2024-05-01T12:00:00+00:00"))

    base = await serve({"POST /graphql": graphql})
    key_file = tmp_path / "luxor.key"
    key_file.write_text(SECRET + "\n")
    config = LuxorFeed(type="luxor", url=base + "/graphql", api_key_file=key_file)
    result = await make(session, config).fetch(NOW_S)
    (quote,) = result.quotes
    assert quote.key == "sha256"
    assert quote.value == pytest.approx(5.21e-14)  # 0.0521 US$/TH/day / 1e12
    assert quote.provenance.raw_unit == "usd_per_th_day"
    assert quote.provenance.source_time_s == 1_714_564_800.0
    assert seen["key"] == SECRET
    body = seen["body"]
    assert isinstance(body, dict)
    assert "hashpriceUsd" in body["query"]
    assert body["variables"] == {"last": 1}


async def test_key_from_environment_and_graphql_errors(
    serve: Serve, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LUXOR_KEY", SECRET)
    base = await serve(
        {
            "POST /graphql": json_answer(
                {"errors": [{"message": "Invalid API key provided"}], "data": None}
            )
        }
    )
    config = LuxorFeed(type="luxor", url=base + "/graphql", api_key_env="TEST_LUXOR_KEY")
    with structlog.testing.capture_logs() as logs:
        outcome = await run_feed_once(make(session, config), MarketBook(), NOW_S)
    assert outcome.result == "graphql_error"
    assert outcome.needs_operator
    assert logs[-1]["event"] == "feed_fetch_failed"
    assert logs[-1]["log_level"] == "error"
    assert SECRET not in repr(logs)


async def test_a_missing_key_is_a_config_error_that_names_where_not_what(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_LUXOR_KEY_ABSENT", raising=False)
    config = LuxorFeed(
        type="luxor", url="http://127.0.0.1:9/graphql", api_key_env="TEST_LUXOR_KEY_ABSENT"
    )
    outcome = await run_feed_once(make(session, config), MarketBook(), NOW_S)
    assert outcome.result == "missing_secret"
    assert outcome.needs_operator
    assert outcome.error is not None
    assert "TEST_LUXOR_KEY_ABSENT" in outcome.error


def test_config_wants_exactly_one_key_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        LuxorFeed(type="luxor")
    with pytest.raises(ValueError, match="exactly one"):
        LuxorFeed(type="luxor", api_key_env="A", api_key_file=tmp_path / "k")
    config = LuxorFeed(type="luxor", api_key_env="A")
    assert "A" in repr(config)
    assert config.model_dump()["api_key_env"] == "A"
