"""The status page's prices mark a hashprice converted with a static BTC price, which never
goes stale and drifts from the market as BTC moves."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from orchestrator.agents.agent import NodeAgent
from orchestrator.config.market import MarketConfig
from orchestrator.demo import DemoOptions, demo_configs
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.serve import CentralDaemon
from tests.central.harness import running
from tests.statuspage.browser import Page
from tests.statuspage.conftest import OPERATOR, TOKENS, Site

pytestmark = pytest.mark.slow

STATIC_KAWPOW = {
    "type": "static",
    "name": "otc-kawpow",
    "algorithm": "kawpow",
    "value": 2.5e-7,
    "unit": "btc_per_mh_day",
    "btc_price": {"type": "static", "usd_per_btc": 60_000.0},
}


@pytest.fixture
async def static_btc_site(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Site]:
    """The demo's site with a kawpow price ahead of its recorded market, converted from BTC
    at a static 60,000 US$/BTC (1.5e-8 US$ per H/s per day)."""
    serve_config, agent_configs = demo_configs(
        DemoOptions(nodes=1, gpus_per_node=2, telemetry_interval_s=0.5),
        broker_port=mosquitto.port,
        http_port=0,
        state_dir=tmp_path / "demo",
        tokens=TOKENS,
    )
    feeds = [STATIC_KAWPOW, *(feed.model_dump() for feed in serve_config.market.feeds)]
    market = MarketConfig.model_validate({**serve_config.market.model_dump(), "feeds": feeds})
    central = CentralDaemon(serve_config.model_copy(update={"market": market}))
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(central))
        for config in agent_configs:
            await stack.enter_async_context(running(NodeAgent(config)))
        assert central.http is not None
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield Site(central.http.url, session)


async def test_the_prices_mark_a_static_btc_price(static_btc_site: Site, page: Page) -> None:
    await page.open(f"{static_btc_site.url}/#token={OPERATOR}")
    tag = "#market span.tag.warn"
    await page.wait_for(f"document.querySelector('{tag}')", what="the static BTC price tag")
    rows = await page.evaluate(
        "[...document.querySelectorAll('#market tr')]"
        ".filter(r => r.querySelector('span.tag.warn'))"
        ".map(r => [r.querySelector('th').textContent, r.querySelector('span.tag.warn').title])"
    )
    assert rows == [["kawpow", "converted at a static 60000 US$/BTC that never goes stale"]]
    assert "static BTC price" in await page.text("#market")
    plan = await static_btc_site.get("/api/v1/plan")
    assert plan["market"]["quotes"]["kawpow"]["source"] == "otc-kawpow"
