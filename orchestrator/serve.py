"""`serve`: the central daemon, put together.

This is wiring, like `cli` and `demo`: it builds `central`'s parts (store, fleet, ingest,
policy loop, dispatcher, SLA accrual), the market feeds (`markets`) and the HTTP surface
(`web`, handed a `ServeReader` and the `OverrideService`), and runs them. It sits above
both, so `web` reads `central` and `central` never imports `web`.

Start order: the fleet state (loaded), the HTTP listener (healthz answers at once,
readyz says 503 until ready), then the broker link. Ready means connected to the broker
with the state loaded. Every long-running task lives in one TaskGroup and is named;
a stop request cancels them all, intake (MQTT) first and the HTTP listener last.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import aiohttp
import structlog
from prometheus_client import CollectorRegistry

from orchestrator.central.curtailment import CurtailmentService
from orchestrator.central.curtailment_feed import CurtailmentFeed, CurtailmentFeedMetrics
from orchestrator.central.dispatch import Dispatcher
from orchestrator.central.fleet import FleetState
from orchestrator.central.ingest import Ingest
from orchestrator.central.market_memory import MarketMemory
from orchestrator.central.overrides import OverrideService
from orchestrator.central.policy_loop import PolicyLoop
from orchestrator.central.reader import ServeReader
from orchestrator.central.sla import SlaAccrual
from orchestrator.central.store import Store
from orchestrator.central.wave import SiteWavePower, WaveSettings
from orchestrator.config import ServeConfig
from orchestrator.config.common import resolve_secret
from orchestrator.httpserver import HttpListener, start_http
from orchestrator.lifecycle import StopRequested, forever, guarded, wait_for_stop
from orchestrator.markets import FeedMetrics, build_book, build_runners, build_sources
from orchestrator.mqtt import MqttLink
from orchestrator.policy.model import policy_from_config, site_power_from_config
from orchestrator.protocol import Topics
from orchestrator.sdnotify import Notifier, keep_alive
from orchestrator.web.api import build_app
from orchestrator.web.auth import TokenChecker
from orchestrator.web.metrics import FleetMetrics
from orchestrator.web.plan_metrics import PlanCollector

log = structlog.get_logger(__name__)


def wave_settings(config: ServeConfig) -> WaveSettings:
    """The wave's limits from `[dispatch]` (the cap itself is `planner.site_power_cap_kw`)."""
    ramp_kw = config.dispatch.ramp_limit_kw_per_minute
    return WaveSettings(
        ramp_limit_w_per_minute=None if ramp_kw is None else ramp_kw * 1000.0,
        max_starts_per_node=config.dispatch.max_starts_per_node,
    )


class CentralDaemon:
    def __init__(
        self,
        config: ServeConfig,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier(None)
        self._last_staleness_check_s: float | None = None
        self.clock = clock
        self.registry = registry or CollectorRegistry()
        self.topics = Topics(config.mqtt.prefix)
        self.fleet = FleetState(offline_after_s=config.ingest.node_offline_after_s)
        self.ingest = Ingest(
            fleet=self.fleet,
            topics=self.topics,
            registry=self.registry,
            max_payload_bytes=config.mqtt.max_payload_bytes,
            clock=clock,
        )
        self.fleet_metrics = FleetMetrics(self.fleet, clock=clock)
        password = (
            resolve_secret(config.mqtt.password, key="mqtt.password")
            if config.mqtt.password
            else None
        )
        self.link = MqttLink(
            config.mqtt,
            client_id=config.mqtt.client_id or f"orchestrator-serve-{os.getpid()}",
            password=password,
            subscriptions=[
                (self.topics.all_of("status"), 1),
                (self.topics.all_of("telemetry"), 0),
                (self.topics.all_of("events"), 1),
            ],
            on_message=self.ingest.handle,
            registry=self.registry,
        )
        self.store = Store(config.store.path)
        self.book = build_book(config.market)
        self.feed_metrics = FeedMetrics(self.registry, book=self.book, clock=clock)
        self.dispatcher = Dispatcher(
            link=self.link,
            topics=self.topics,
            registry=self.registry,
            command_timeout_s=config.dispatch.command_timeout_s,
            command_ttl_s=config.dispatch.command_ttl_s,
            clock=clock,
            store=self.store,
            # the cap in force is read at each release: the configured one, or a curtailment
            # window's (the service is built below, hence the late lookup)
            power=SiteWavePower(
                site=site_power_from_config(config.power),
                cap_w_at=lambda now_s: self.curtailments.effective_cap_w(now_s),  # noqa: PLW0108
            ),
            wave=wave_settings(config),
            fleet=self.fleet,
        )
        self.ingest.telemetry_listener = self.dispatcher.on_telemetry
        policy = policy_from_config(config.policy())
        self.policy = PolicyLoop(
            fleet=self.fleet,
            book=self.book,
            dispatcher=self.dispatcher,
            policy=policy,
            contracts=config.contracts,
            registry=self.registry,
            warmup_s=config.ingest.node_offline_after_s,
            clock=clock,
            shed_ahead_s=config.curtailment.shed_ahead_s,
        )
        self.sla = SlaAccrual(
            fleet=self.fleet,
            book=self.dispatcher.book,
            contracts=policy.contracts,
            billing_period=config.sla.billing_period,
            interval_s=config.sla.accrual_interval_s,
            clock=clock,
            store=self.store,
        )
        self.market_memory = MarketMemory(book=self.book, store=self.store, clock=clock)
        self.reader = ServeReader(self.fleet, self.policy, self.dispatcher, self.sla, clock)
        self.overrides = OverrideService(loop=self.policy, store=self.store)
        self.curtailments = CurtailmentService(
            loop=self.policy, store=self.store, settings=config.curtailment, registry=self.registry
        )
        self.curtailment_feed_metrics = CurtailmentFeedMetrics(self.registry)
        self.tokens = TokenChecker(config.http.tokens)
        self.plan_metrics = PlanCollector(self.reader)
        self.registry.register(self.plan_metrics)
        self.ingest.extra_handlers["events"] = self.dispatcher.on_event
        self.state_loaded = False
        self.http: HttpListener | None = None
        self.ready = asyncio.Event()

    def _metrics_text(self) -> str:
        """The per-GPU families, written as text after the registry's exposition."""
        return self.fleet_metrics.text() + self.plan_metrics.per_gpu_text(self.fleet_metrics.labels)

    def readiness(self) -> dict[str, bool]:
        return {"broker_connected": self.link.connected.is_set(), "state_loaded": self.state_loaded}

    async def check_staleness_once(self) -> list[str]:
        self._last_staleness_check_s = time.monotonic()
        expired = self.fleet.expire_silent(now_s=self.clock())
        for node in expired:
            log.warning("node offline", node=node, reason="silent")
        return expired

    def _main_loop_alive(self) -> bool:
        """The event loop turns: the once-a-second staleness check ran lately."""
        last_s = self._last_staleness_check_s
        limit_s = max(5.0, 3 * self.config.ingest.staleness_check_interval_s)
        return last_s is not None and time.monotonic() - last_s < limit_s

    async def _announce_ready(self) -> None:
        while True:
            await self.link.connected.wait()
            if self.state_loaded and not self.ready.is_set():
                self.ready.set()
                self.notifier.ready(status="connected to the broker, state loaded")
                log.info("serve ready", http=self.http.url if self.http else None)
            await asyncio.sleep(0.2)

    def restore(self) -> None:
        """Load what a previous run left: the plan generation (a new term above every
        earlier one), open commands and GPU facts, the SLA ledger, and fresh quotes."""
        self.policy.generation = self.store.begin_term()
        self.dispatcher.restore(self.store.open_commands(), self.store.load_facts())
        ledger_entries = self.sla.restore()
        quotes = self.market_memory.restore()
        windows = self.curtailments.restore()
        log.info(
            "state restored",
            generation=self.policy.generation,
            open_commands=len(self.dispatcher.in_flight),
            gpu_facts=len(self.dispatcher.book.facts),
            ledger_entries=ledger_entries,
            quotes=quotes,
            curtailment_windows=windows,
        )

    async def run(self, stop: asyncio.Event) -> None:
        self.fleet.started_at_s = self.clock()
        self.restore()
        self.overrides.rebuild()
        self.state_loaded = True
        app = build_app(
            reader=self.reader,
            overrides=self.overrides,
            tokens=self.tokens,
            registry=self.registry,
            readiness=self.readiness,
            site=self.config.mqtt.site,
            clock=self.clock,
            metrics_text=self._metrics_text,
            curtailments=self.curtailments,
        )
        self.http = await start_http(app, host=self.config.http.host, port=self.config.http.port)
        log.info("http listening", url=self.http.url)
        session = aiohttp.ClientSession()
        runners = build_runners(
            self.config.market,
            build_sources(self.config.market, session),
            self.book,
            metrics=self.feed_metrics,
            clock=self.clock,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(guarded("mqtt", self.link.run()), name="mqtt")
                for runner in runners:
                    name = f"feed:{runner.source.name}"
                    tasks.create_task(guarded(name, runner.run()), name=name)
                tasks.create_task(guarded("policy", self.policy.run()), name="policy")
                for section in self.config.curtailment.feeds:
                    feed = CurtailmentFeed(
                        section=section,
                        service=self.curtailments,
                        session=session,
                        metrics=self.curtailment_feed_metrics,
                        clock=self.clock,
                    )
                    name = f"curtailment-feed:{section.name}"
                    tasks.create_task(guarded(name, feed.run()), name=name)
                tasks.create_task(guarded("wave", self.dispatcher.run_wave()), name="wave")
                for name, step, interval_s in (
                    ("sla", self.sla.step, self.sla.interval_s),
                    ("market-memory", self.market_memory.step, self.market_memory.interval_s),
                    ("curtailment", self.curtailments.step, 1.0),
                ):
                    tasks.create_task(
                        guarded(name, forever(name, step, interval_s=interval_s)), name=name
                    )
                tasks.create_task(
                    guarded(
                        "staleness",
                        forever(
                            "staleness",
                            self.check_staleness_once,
                            interval_s=self.config.ingest.staleness_check_interval_s,
                        ),
                    ),
                    name="staleness",
                )
                tasks.create_task(guarded("ready", self._announce_ready()), name="ready")
                tasks.create_task(
                    guarded("watchdog", keep_alive(self.notifier, alive=self._main_loop_alive)),
                    name="watchdog",
                )
                tasks.create_task(wait_for_stop(stop), name="stop")
        except* StopRequested:
            self.notifier.stopping()
            log.info("serve stopping")
        finally:
            await session.close()
            await self.http.stop()
            self.store.close()
            log.info("serve stopped")
