"""A frozen price feed: a local HTTP server feeding an `http_json` hashprice feed first
answers a price whose upstream timestamp stays old, then stops answering at all. Neither may
move a GPU: a stale price is no reason to switch (DESIGN: stale inputs never trigger one).

The site's GPUs are not pinned here: the planner decides, from a fresh price that makes
mining pay, then from the frozen feed, which would make AI pay were it believed."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from orchestrator.demo.broker import MosquittoBroker, free_port
from tests.faults.conftest import record
from tests.faults.site import MINE, EventLog, Site, ai_stopped_without_order, duplicate_switches
from tests.faults.test_process_faults import converged
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
# US$/(H/s)/day; the stub miners report 25 MH/s: mining pays at HIGH, AI at LOW
HIGH, LOW = 1.0e-6, 1.0e-8


class FeedServer:
    """`GET /price` -> {"price": ..., "at": unix seconds}; can freeze or hang."""

    def __init__(self) -> None:
        self.price, self.age_s, self.hang = HIGH, 0.0, False
        self.requests = 0
        self.port = free_port()

    async def handle(self, _request: web.Request) -> web.Response:
        self.requests += 1
        if self.hang:
            await asyncio.Event().wait()  # never answers; the feed's timeout ends it
        return web.json_response({"price": self.price, "at": time.time() - self.age_s})


@pytest.fixture
async def feed() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    app = web.Application()
    app.router.add_get("/price", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    yield server
    await runner.cleanup()


async def test_a_frozen_price_feed_never_causes_a_switch(
    tmp_path: Path, broker: MosquittoBroker, feed: FeedServer, events: EventLog
) -> None:
    market = {
        "feeds": [
            {
                "type": "http_json",
                "name": "frozen",
                "url": f"http://127.0.0.1:{feed.port}/price",
                "json_path": "price",
                "timestamp_path": "at",
                "unit": "usd_per_hs_day",
                "algorithm": "kawpow",
                "interval_s": 0.5,
                "timeout_s": 0.5,
                "staleness_s": 3.0,
            },
            {"type": "power_static", "usd_per_kwh": 0.05},
        ]
    }
    node = f"node-f-{os.urandom(3).hex()}"  # unique: see Site
    site = Site(tmp_path, broker, nodes=(node,), gpus=2, serve_extra={"market": market})
    try:
        site.start()
        want = {f"{node}:0": MINE, f"{node}:1": MINE}
        await converged(site, want)  # the fresh price made mining pay
        commands = len(site.store_rows("commands"))

        # 1. the feed answers a price that would make AI pay, stamped an hour ago
        feed.price, feed.age_s = LOW, 3600.0
        rejected = site.metric("orchestrator_feed_rejected_total", reason="stale_at_source")
        await eventually(
            lambda: (
                site.metric("orchestrator_feed_rejected_total", reason="stale_at_source")
                >= rejected + 3
            ),
            timeout_s=15,
            what="the stale price rejected",
        )
        plans = len(site.store_rows("plans"))
        await eventually(
            lambda: len(site.store_rows("plans")) >= plans + 3, timeout_s=15, what="more plans"
        )
        stale_switches = len(site.store_rows("commands")) - commands

        # 2. the feed stops answering: the last good price ages out, nothing replaces it
        feed.hang = True
        hung_at = feed.requests
        await eventually(lambda: feed.requests >= hung_at + 2, timeout_s=20, what="hung requests")
        plans = len(site.store_rows("plans"))
        await eventually(
            lambda: len(site.store_rows("plans")) >= plans + 3, timeout_s=15, what="more plans"
        )
        silent_switches = len(site.store_rows("commands")) - commands - stale_switches
        await converged(site, want, timeout_s=5)
        counts = {
            "faults_injected": 2,
            "switches_on_stale_price": stale_switches,
            "switches_on_silent_feed": silent_switches,
            "duplicate_switches": duplicate_switches(site, events),
            "ai_stopped_without_order": ai_stopped_without_order(site),
        }
    finally:
        feed.hang = False
        site.close()
    record("price feed frozen (stale timestamp, then no answer)", **counts)
    assert counts == {**counts, "switches_on_stale_price": 0, "switches_on_silent_feed": 0,
                      "duplicate_switches": 0, "ai_stopped_without_order": 0}  # fmt: skip
