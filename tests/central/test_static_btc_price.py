"""A static BTC price is allowed but never silent: the plan's market says which prices are
converted with one, in words and per quote, for the API and the status page."""

from __future__ import annotations

import aiohttp
import pytest

from orchestrator.agents.agent import NodeAgent
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.serve import CentralDaemon
from tests.central.harness import agent_config, running, serve_config
from tests.waiting import eventually

pytestmark = pytest.mark.slow

RTX_3090 = "NVIDIA GeForce RTX 3090"
MARKET = {
    "feeds": [
        {
            "type": "static",
            "algorithm": "kawpow",
            "value": 2.0e-7,
            "unit": "btc_per_mh_day",
            "btc_price": {"type": "static", "usd_per_btc": 60_000.0},
        },
        {"type": "power_static", "usd_per_kwh": 0.05},
    ]
}
PROFILES = [
    {
        "id": "kawpow",
        "algorithm": "kawpow",
        "benchmarks": {RTX_3090: {"hashrate_hs": 58e6, "power_w": 310.0}},
    }
]


async def test_the_plans_market_marks_prices_converted_with_a_static_btc_price(
    mosquitto: MosquittoBroker,
) -> None:
    central = CentralDaemon(
        serve_config(mosquitto, market=MARKET, mining_profiles=PROFILES, planner={"interval_s": 1})
    )
    agent = NodeAgent(agent_config(mosquitto, "rig", gpus=1))
    async with running(central), running(agent):
        assert central.http is not None
        await eventually(lambda: central.policy.last is not None, what="the first plan")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{central.http.url}/api/v1/plan") as response,
        ):
            assert response.status == 200
            market = (await response.json())["market"]
    kawpow = market["quotes"]["kawpow"]
    assert kawpow["value"] == pytest.approx(2.0e-7 * 60_000.0 / 1e6)
    assert kawpow["btc_price"] == {"usd_per_btc": 60_000.0, "static": True, "valid_until_s": None}
    assert "btc_price" not in market["quotes"]["power"]
    (warning,) = market["warnings"]
    assert warning.startswith(
        "kawpow (static) is converted with a static BTC price (60000 US$/BTC)"
    )
