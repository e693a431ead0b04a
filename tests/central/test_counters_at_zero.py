"""Counters that alert rules read with increase() exist at 0 from the daemon's start.

A series that first appears at 1 has no increase to Prometheus: the first switch failure or
the first failed fetch would go unseen. So each known label value is created at 0.
"""

from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry

from orchestrator.central.dispatch import Dispatcher
from orchestrator.config.common import MqttSection
from orchestrator.config.market import MarketConfig
from orchestrator.markets import FeedMetrics, build_book, build_runners, build_sources
from orchestrator.mqtt import MqttLink
from orchestrator.protocol import Topics


def test_switch_and_command_counters_start_at_zero() -> None:
    registry = CollectorRegistry()
    link = MqttLink(MqttSection(host="127.0.0.1", port=1, site="test"), client_id="c")
    Dispatcher(
        link=link,
        topics=Topics("fleet/v1/test"),
        registry=registry,
        command_timeout_s=60.0,
        command_ttl_s=60.0,
    )
    for result in ("ok", "failed", "rolled_back", "refused", "timeout"):
        assert registry.get_sample_value("orchestrator_switches_total", {"result": result}) == 0
    for kind in ("mining", "ai", "idle"):
        value = registry.get_sample_value("orchestrator_switches_planned_total", {"to_kind": kind})
        assert value == 0
    for result in ("sent", "unsent", "retried"):
        value = registry.get_sample_value(
            "orchestrator_commands_published_total", {"result": result}
        )
        assert value == 0


async def test_each_feeds_fetch_counters_start_at_zero() -> None:
    market = MarketConfig.model_validate(
        {"feeds": [{"type": "static", "name": "fixed", "algorithm": "kawpow", "value": 1e-8}]}
    )
    registry = CollectorRegistry()
    metrics = FeedMetrics(registry)
    async with aiohttp.ClientSession() as session:
        build_runners(market, build_sources(market, session), build_book(market), metrics=metrics)
    for result in ("ok", "timeout", "error"):
        value = registry.get_sample_value(
            "orchestrator_feed_fetch_total", {"feed": "fixed", "result": result}
        )
        assert value == 0
