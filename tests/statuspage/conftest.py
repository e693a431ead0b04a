"""Fixtures: the demo's fleet running in this process over a real mosquitto, and Chromium.

The site is `orchestrator demo`'s own configuration (`demo_configs`: its recorded market,
its contracts, its simulated GPUs and workloads), 4 nodes x 2 GPUs so that every model of
the demo is present, with two tokens: an operator and a viewer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from orchestrator.agents.agent import NodeAgent
from orchestrator.demo import DemoOptions, demo_configs
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.serve import CentralDaemon
from orchestrator.web.auth import digest
from tests.central.harness import running
from tests.statuspage.browser import Page, chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "statuspage"
OPERATOR, VIEWER = "page-operator-token-0001", "page-viewer-token-0002"
TOKENS = [
    {"name": "olga", "role": "operator", "sha256": digest(OPERATOR)},
    {"name": "vik", "role": "viewer", "sha256": digest(VIEWER)},
]


@dataclass
class Site:
    url: str
    session: aiohttp.ClientSession

    async def get(self, path: str, token: str = OPERATOR) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.get(self.url + path, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()


@pytest.fixture
async def site(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Site]:
    serve_config, agent_configs = demo_configs(
        DemoOptions(nodes=4, gpus_per_node=2, telemetry_interval_s=0.5),
        broker_port=mosquitto.port,
        http_port=0,
        state_dir=tmp_path / "demo",
        tokens=TOKENS,
    )
    # the SLA ledger accrues every half second, so availability shows within one poll
    sla = serve_config.sla.model_copy(update={"accrual_interval_s": 0.5})
    central = CentralDaemon(serve_config.model_copy(update={"sla": sla}))
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(central))
        for config in agent_configs:
            await stack.enter_async_context(running(NodeAgent(config)))
        assert central.http is not None
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield Site(central.http.url, session)


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with chromium(tmp_path / "chromium-profile") as opened:
        yield opened
    # a page whose scripts threw is a failed test, whatever it asserted
    assert opened.exceptions == []
