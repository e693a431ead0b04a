"""`agent`: the node daemon. Samples its GPUs, publishes snapshots, answers /healthz.

Every `telemetry.interval_s` the agent samples all GPUs at once (NVML calls run in a
worker thread, so a slow driver never stalls the loop) and publishes the whole node as
one `NodeTelemetry` on `nodes/<node>/telemetry`. It announces `online` (retained) on its
status topic at every (re)connect, and leaves `offline` as its last will; a clean stop
publishes `offline` itself, since the broker sends a will only on an unclean drop.

Without a broker the agent keeps sampling (its /metrics stays live) and the snapshots
it cannot publish are counted and dropped: the next snapshot supersedes them anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orchestrator import __version__
from orchestrator.agents.gpu import GpuBackend, build_backend
from orchestrator.agents.gpu.base import WorkloadSettable
from orchestrator.config import AgentConfig
from orchestrator.config.common import resolve_secret
from orchestrator.domain import NodeStatus
from orchestrator.httpserver import HttpListener, metrics_handler, start_http
from orchestrator.lifecycle import StopRequested, forever, guarded
from orchestrator.mqtt import MqttLink, Will
from orchestrator.protocol import (
    GpuTelemetry,
    NodeStatusMessage,
    NodeTelemetry,
    Topics,
    WorkloadReport,
    encode,
)

log = structlog.get_logger(__name__)


class _SampleCollector(Collector):
    """Per-GPU gauges from the agent's latest sample, read at scrape time."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["gpu", "UUID", "modelName", "Hostname"]
        power = GaugeMetricFamily(
            "orchestrator_agent_gpu_power_watts", "GPU power draw", labels=labels
        )
        temp = GaugeMetricFamily(
            "orchestrator_agent_gpu_temperature_celsius", "GPU temperature", labels=labels
        )
        healthy = GaugeMetricFamily(
            "orchestrator_agent_gpu_healthy", "1 when NVML reports the GPU healthy", labels=labels
        )
        for gpu in self.agent.last_sample:
            values = [str(gpu.index), gpu.uuid or "", gpu.name or "", self.agent.node]
            healthy.add_metric(values, 1.0 if gpu.health.value == "ok" else 0.0)
            if gpu.power_draw_w is not None:
                power.add_metric(values, gpu.power_draw_w)
            if gpu.temperature_c is not None:
                temp.add_metric(values, gpu.temperature_c)
        yield power
        yield temp
        yield healthy


class NodeAgent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        backend: GpuBackend | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.node = config.node.name
        self.clock = clock
        self.topics = Topics(config.mqtt.prefix)
        self.backend = backend or build_backend(config.gpu, node=self.node)
        self.registry = registry or CollectorRegistry()
        self.seq = 0
        self.last_sample: list[GpuTelemetry] = []
        self.last_sample_at_s: float | None = None
        self.published = Counter(
            "orchestrator_agent_telemetry_published",
            "Telemetry snapshots, by result (sent, dropped while the broker is away)",
            ["result"],
            registry=self.registry,
        )
        self.sample_seconds = Histogram(
            "orchestrator_agent_sample_duration_seconds",
            "Time to sample every GPU of the node",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.registry.register(_SampleCollector(self))
        password = (
            resolve_secret(config.mqtt.password, key="mqtt.password")
            if config.mqtt.password
            else None
        )
        self.link = MqttLink(
            config.mqtt,
            client_id=config.mqtt.client_id or f"orchestrator-agent-{self.node}",
            password=password,
            will=Will(self.topics.status(self.node), self._status_payload(NodeStatus.OFFLINE)),
            on_connect=self._announce_online,
        )
        self.http: HttpListener | None = None

    def _status_payload(self, status: NodeStatus) -> bytes:
        return encode(NodeStatusMessage(node=self.node, status=status, at_s=self.clock()))

    async def _announce_online(self, link: MqttLink) -> None:
        await link.publish(
            self.topics.status(self.node),
            self._status_payload(NodeStatus.ONLINE),
            qos=1,
            retain=True,
        )

    def snapshot(self, gpus: list[GpuTelemetry]) -> NodeTelemetry:
        self.seq += 1
        return NodeTelemetry(
            node=self.node,
            seq=self.seq,
            sent_at_s=self.clock(),
            agent_version=__version__,
            nvml_backend=self.backend.name,
            driver_version=self.backend.driver_version(),
            gpus=tuple(gpus),
        )

    async def publish_once(self) -> bool:
        """Sample every GPU and publish one snapshot; False if it could not be sent."""
        started = time.perf_counter()
        gpus = self._with_workloads(await asyncio.to_thread(self.backend.sample))
        self.sample_seconds.observe(time.perf_counter() - started)
        self.last_sample = gpus
        self.last_sample_at_s = self.clock()
        sent = await self.link.publish(
            self.topics.telemetry(self.node), encode(self.snapshot(gpus))
        )
        self.published.labels("sent" if sent else "dropped").inc()
        return sent

    def _with_workloads(self, gpus: list[GpuTelemetry]) -> list[GpuTelemetry]:
        """Attach what each GPU runs, where this agent knows it.

        Until the switch executor reports its own state, only a simulated node knows:
        its fake backend holds the workloads. On real GPUs the workload stays unreported
        (the central daemon shows it as unknown) rather than guessed.
        """
        backend = self.backend
        if not isinstance(backend, WorkloadSettable):
            return gpus
        return [
            gpu.model_copy(
                update={"workload": WorkloadReport(workload=backend.workload_of(gpu.index))}
            )
            for gpu in gpus
        ]

    async def healthz(self, _request: web.Request) -> web.Response:
        age_s = None if self.last_sample_at_s is None else self.clock() - self.last_sample_at_s
        sampling = age_s is not None and age_s < max(5.0, 5 * self.config.telemetry.interval_s)
        body = {
            "status": "ok" if sampling else "starting",
            "node": self.node,
            "broker_connected": self.link.connected.is_set(),
            "gpus": len(self.last_sample),
            "last_sample_age_s": None if age_s is None else round(age_s, 3),
        }
        return web.json_response(body, status=200 if sampling else 503)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", metrics_handler(self.registry))
        return app

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(self.backend.open)
        self.http = await start_http(
            self.build_app(), host=self.config.http.host, port=self.config.http.port
        )
        log.info("agent started", node=self.node, backend=self.backend.name, http=self.http.url)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(guarded("mqtt", self.link.run()), name="mqtt")
                tasks.create_task(
                    guarded(
                        "telemetry",
                        forever(
                            "telemetry",
                            self.publish_once,
                            interval_s=self.config.telemetry.interval_s,
                        ),
                    ),
                    name="telemetry",
                )
                tasks.create_task(self._stop_when_asked(stop), name="stop")
        except* StopRequested:
            log.info("agent stopping", node=self.node)
        finally:
            await self.http.stop()
            await asyncio.to_thread(self.backend.close)
            log.info("agent stopped", node=self.node)

    async def _stop_when_asked(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await self._say_goodbye()
        raise StopRequested

    async def _say_goodbye(self) -> None:
        """A clean stop leaves no will behind, so publish `offline` ourselves."""
        try:
            async with asyncio.timeout(2.0):
                await self.link.publish(
                    self.topics.status(self.node),
                    self._status_payload(NodeStatus.OFFLINE),
                    qos=1,
                    retain=True,
                )
        except TimeoutError:
            log.warning("could not publish offline status before stopping", node=self.node)
