"""`agent`: the node daemon. Samples its GPUs, switches their workloads, keeps them alive.

Every `telemetry.interval_s` the agent samples all GPUs at once (NVML calls run in a worker
thread, so a slow driver never stalls the loop) and publishes the whole node as one
`NodeTelemetry` on `nodes/<node>/telemetry`, and one more at once whenever a switch ends or
the broker connection is (re)made. Snapshots and switch events are numbered by one counter
(`ReportOrder`), which is how `serve` orders them. Each GPU carries what the executor knows
runs there (`WorkloadReport`: workload, since when, and the hashrate the watchdog last read
for that GPU, joined by PCI bus id); a quarantined GPU is reported `unhealthy` with the
reason "quarantined: ...". It announces `online` (retained) on its status topic at every
(re)connect, and leaves `offline` as its last will; a clean stop publishes `offline` itself,
since the broker sends a will only on an unclean drop.

Commands arrive on `nodes/<node>/commands` (QoS 1) and go to the switch executor; its events
and the watchdog's go out on `nodes/<node>/events` (QoS 1). Start order: open the GPUs,
recover the persisted workloads (`recovery`), then HTTP, then the broker link, so the first
command meets a recovered state. The HTTP app adds `POST /api/v1/gpus/{index}/clear-quarantine`
(loopback callers only unless `[watchdog] clear_quarantine_remote`).

Without a broker the agent keeps sampling (its /metrics stays live), its workloads keep
running (fail-static), and the snapshots it cannot publish are counted and dropped: the next
snapshot supersedes them anyway. Final switch events wait in a bounded outbox instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Callable, Iterator

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from orchestrator import __version__
from orchestrator.agents.executor import SwitchExecutor
from orchestrator.agents.gpu import GpuBackend, build_backend
from orchestrator.agents.gpu.base import WorkloadSettable
from orchestrator.agents.recovery import recover_slots
from orchestrator.agents.state import ReportOrder, StateStore
from orchestrator.agents.switching import GpuSlot, Switcher
from orchestrator.agents.watchdog import Watchdog
from orchestrator.agents.workload_health import WorkloadObserver
from orchestrator.config import AgentConfig
from orchestrator.config.common import resolve_secret
from orchestrator.domain import IDLE, Health, NodeStatus, WorkloadKind, workload_kind
from orchestrator.drivers import DriverRegistry
from orchestrator.errors import PayloadError
from orchestrator.httpserver import HttpListener, metrics_handler, start_http
from orchestrator.lifecycle import StopRequested, forever, guarded, raise_if_cancelling
from orchestrator.mqtt import MqttLink, Will
from orchestrator.protocol import (
    GpuHealthEvent,
    GpuTelemetry,
    NodeStatusMessage,
    NodeTelemetry,
    SwitchEvent,
    Topics,
    WorkloadReport,
    decode_command,
    encode,
)
from orchestrator.sdnotify import Notifier, keep_alive

log = structlog.get_logger(__name__)


class _SampleCollector(Collector):
    """Per-GPU gauges from the agent's latest sample, read at scrape time."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
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
        yield from self._switching()

    def _switching(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        executor, watchdog = self.agent.executor, self.agent.watchdog
        if executor is None or watchdog is None:
            return
        results = CounterMetricFamily(
            "orchestrator_agent_switch_results",
            "Switch commands by final state (done, rolled_back, failed, refused)",
            labels=["state"],
        )
        for state, count in sorted(executor.results_total.items()):
            results.add_metric([state], count)
        yield results
        yield CounterMetricFamily(
            "orchestrator_agent_watchdog_restarts",
            "Workloads the watchdog restarted",
            value=watchdog.restarts_total,
        )
        quarantined = GaugeMetricFamily(
            "orchestrator_agent_gpu_quarantined",
            "1 while the watchdog holds the GPU in quarantine",
            labels=["gpu", "UUID", "Hostname"],
        )
        for index, slot in sorted(executor.slots.items()):
            values = [str(index), slot.gpu.uuid, self.agent.node]
            quarantined.add_metric(values, 1.0 if slot.record.quarantined else 0.0)
        yield quarantined


class NodeAgent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        backend: GpuBackend | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier(None)
        self.node = config.node.name
        self.clock = clock
        self.topics = Topics(config.mqtt.prefix)
        self.backend = backend or build_backend(config.gpu, node=self.node)
        self.registry = registry or CollectorRegistry()
        # one order for telemetry and switch events: (the process's start, a counter)
        self.order = ReportOrder(boot_s=clock())
        self._snapshot_now = asyncio.Event()  # a switch ended: publish without waiting
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
        self.commands_dropped = Counter(
            "orchestrator_agent_commands_dropped",
            "Command payloads dropped unread, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.store = StateStore(config.executor.state_dir, node=self.node)
        self.drivers = DriverRegistry(
            log_dir=config.executor.log_dir,
            gpu_backend=self.backend if isinstance(self.backend, WorkloadSettable) else None,
            time_scale=config.executor.sim_time_scale,
            clock=clock,
        )
        self.executor: SwitchExecutor | None = None  # built by `run`, after recovery
        self.watchdog: Watchdog | None = None
        self.registry.register(_SampleCollector(self))
        password = (
            resolve_secret(config.mqtt.password, key="mqtt.password")
            if config.mqtt.password
            else None
        )
        if config.mqtt.username is not None and config.mqtt.username != self.node:
            # the shipped ACL (deploy/mosquitto/acl) lets a node publish as `%u` only
            log.warning(
                "mqtt username differs from the node name: with the shipped ACL the broker "
                "drops everything this agent publishes",
                node=self.node,
                username=config.mqtt.username,
            )
        self.link = MqttLink(
            config.mqtt,
            client_id=config.mqtt.client_id or f"orchestrator-agent-{self.node}",
            password=password,
            will=Will(self.topics.status(self.node), self._status_payload(NodeStatus.OFFLINE)),
            subscriptions=[(self.topics.commands(self.node), 1)],
            on_message=self._on_command,
            on_connect=self._announce_online,
            registry=self.registry,
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
        if self.executor is not None and self.executor.outbox:
            sent = await self.executor.flush_outbox()
            log.info("kept switch events sent", count=sent)
        self._snapshot_now.set()  # serve hears the node's state now, not an interval later

    def _on_command(self, topic: str, payload: bytes) -> None:
        """The MQTT callback: validate and queue; never blocks, never raises."""
        if topic != self.topics.commands(self.node):
            return
        try:
            command = decode_command(
                payload, topic_node=self.node, max_bytes=self.config.mqtt.max_payload_bytes
            )
        except PayloadError as error:
            self.commands_dropped.labels(error.reason).inc()
            log.warning("command dropped", reason=error.reason, detail=error.detail)
            return
        if self.executor is None:
            self.commands_dropped.labels("not_ready").inc()
            return
        self.executor.submit(command)

    async def _publish_event(self, event: SwitchEvent | GpuHealthEvent) -> bool:
        return await self.link.publish(self.topics.events(self.node), encode(event), qos=1)

    async def prepare(self, session: aiohttp.ClientSession) -> SwitchExecutor:
        """Recover every GPU's workload from the state dir and build executor and watchdog."""
        config = self.config
        node_record = self.store.load_node()
        observer = WorkloadObserver(session=session, node=self.node)
        switcher = Switcher(
            node=self.node,
            profiles=config.profiles,
            registry=self.drivers,
            backend=self.backend,
            store=self.store,
            observer=observer,
            session=session,
            settings=config.executor,
            clock=self.clock,
        )
        interrupted: list[SwitchEvent] = []  # commands a restart cut short: said at connect
        slots = await recover_slots(
            node=self.node,
            backend=self.backend,
            store=self.store,
            switcher=switcher,
            profiles=config.profiles,
            remembered_results_per_gpu=config.executor.remembered_results_per_gpu,
            clock=self.clock,
            order=self.order,
            interrupted=interrupted,
        )
        self.executor = SwitchExecutor(
            node=self.node,
            slots=slots,
            node_record=node_record,
            switcher=switcher,
            store=self.store,
            profiles=config.profiles,
            settings=config.executor,
            publish=self._publish_event,
            clock=self.clock,
            order=self.order,
            on_final=self._snapshot_now.set,
        )
        self.executor.outbox.extend(interrupted)
        self.watchdog = Watchdog(
            node=self.node,
            executor=self.executor,
            settings=config.watchdog,
            publish=self._publish_event,
            wall_clock=self.clock,
        )
        return self.executor

    @property
    def seq(self) -> int:
        """The number of the newest report (snapshot or event)."""
        return self.order.last

    def snapshot(self, gpus: list[GpuTelemetry]) -> NodeTelemetry:
        """Number and wrap a sample; called in the same step as `_with_workloads` read the
        executor's records, so the number orders the content against switch events."""
        return NodeTelemetry(
            node=self.node,
            seq=self.order.next(),
            boot_s=self.order.boot_s,
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
        first = self.last_sample_at_s is None
        self.last_sample_at_s = self.clock()
        if first and self.http is not None:
            # ready means sampling and answering /healthz; the broker may come later
            self.notifier.ready(status=f"sampling {len(gpus)} GPUs")
        sent = await self.link.publish(
            self.topics.telemetry(self.node), encode(self.snapshot(gpus))
        )
        self.published.labels("sent" if sent else "dropped").inc()
        return sent

    def _with_workloads(self, gpus: list[GpuTelemetry]) -> list[GpuTelemetry]:
        """Attach what each GPU runs, as the executor knows it, and its quarantine.

        Before recovery has run (or for a GPU the executor does not know), a simulated node
        still reports its fake backend's workload; on real GPUs the workload stays unreported
        (the central daemon shows it as unknown) rather than guessed.
        """
        executor = self.executor
        backend = self.backend
        reported: list[GpuTelemetry] = []
        for gpu in gpus:
            slot = executor.slots.get(gpu.index) if executor is not None else None
            if slot is not None:
                reported.append(_report(gpu, slot))
            elif isinstance(backend, WorkloadSettable):
                report = WorkloadReport(workload=backend.workload_of(gpu.index))
                reported.append(gpu.model_copy(update={"workload": report}))
            else:
                reported.append(gpu)
        return reported

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

    async def clear_quarantine(self, request: web.Request) -> web.Response:
        """`POST /api/v1/gpus/{index}/clear-quarantine`: an operator lifts a quarantine."""
        if not self.config.watchdog.clear_quarantine_remote and not _is_loopback(request.remote):
            return web.json_response({"error": "allowed from loopback only"}, status=403)
        try:
            index = int(request.match_info["index"])
        except ValueError:
            return web.json_response({"error": "GPU index must be an integer"}, status=400)
        watchdog, executor = self.watchdog, self.executor
        if watchdog is None or executor is None:
            return web.json_response({"error": "agent is starting"}, status=503)
        if index not in executor.slots:
            return web.json_response({"error": f"no GPU {index} on {self.node}"}, status=404)
        if not await watchdog.clear(index):
            return web.json_response({"error": f"GPU {index} is not quarantined"}, status=409)
        return web.json_response({"node": self.node, "gpu_index": index, "cleared": True})

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", metrics_handler(self.registry))
        app.router.add_post("/api/v1/gpus/{index}/clear-quarantine", self.clear_quarantine)
        return app

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(self.backend.open)
        try:
            async with aiohttp.ClientSession() as session:
                executor = await self.prepare(session)  # recover before the first command
                await self._run_tasks(stop, executor)
        finally:
            await self.drivers.close()  # connections only: workloads keep running
            await asyncio.to_thread(self.backend.close)
            log.info("agent stopped", node=self.node)

    async def _run_tasks(self, stop: asyncio.Event, executor: SwitchExecutor) -> None:
        assert self.watchdog is not None  # noqa: S101  (built by prepare)
        watchdog = self.watchdog
        self.http = await start_http(
            self.build_app(), host=self.config.http.host, port=self.config.http.port
        )
        log.info("agent started", node=self.node, backend=self.backend.name, http=self.http.url)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(guarded("mqtt", self.link.run()), name="mqtt")
                tasks.create_task(guarded("telemetry", self._telemetry_loop()), name="telemetry")
                tasks.create_task(guarded("executor", executor.run()), name="executor")
                if self.config.watchdog.enabled:
                    loop = forever(
                        "watchdog", watchdog.check_once, interval_s=self.config.watchdog.interval_s
                    )
                    tasks.create_task(guarded("watchdog", loop), name="watchdog")
                tasks.create_task(
                    guarded("sd-watchdog", keep_alive(self.notifier, alive=self._sampling)),
                    name="sd-watchdog",
                )
                tasks.create_task(self._stop_when_asked(stop), name="stop")
        except* StopRequested:
            log.info("agent stopping", node=self.node)
        finally:
            await self.http.stop()

    async def _telemetry_loop(self) -> None:
        """A snapshot every interval, and one at once whenever a switch ends (several
        switches ending together share one)."""
        interval_s = self.config.telemetry.interval_s
        while True:
            raise_if_cancelling()
            self._snapshot_now.clear()
            try:
                await self.publish_once()
            except Exception:
                log.exception("loop step failed", loop="telemetry", retry_in_s=5.0)
                await asyncio.sleep(5.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._snapshot_now.wait()

    def _sampling(self) -> bool:
        """The telemetry loop turns: a sample was taken within a few intervals."""
        if self.last_sample_at_s is None:
            return False
        return self.clock() - self.last_sample_at_s < max(5.0, 5 * self.config.telemetry.interval_s)

    async def _stop_when_asked(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.notifier.stopping()
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


def _report(gpu: GpuTelemetry, slot: GpuSlot) -> GpuTelemetry:
    """`gpu` with the executor's workload report and, if quarantined, unhealthy."""
    record = slot.record
    update: dict[str, object] = {}
    if record.workload is not None:
        observation = slot.observation
        hashrate_hs = accepted = rejected = None
        if (
            observation is not None
            and record.workload != IDLE
            and workload_kind(record.workload) is WorkloadKind.MINING
        ):
            hashrate_hs = observation.hashrate_hs
            accepted, rejected = observation.accepted_shares, observation.rejected_shares
        update["workload"] = WorkloadReport(
            workload=record.workload,
            since_s=record.since_s,
            hashrate_hs=hashrate_hs,
            accepted_shares=accepted,
            rejected_shares=rejected,
        )
    if record.quarantined:
        if gpu.health is not Health.LOST:
            update["health"] = Health.UNHEALTHY
        reasons = (*gpu.health_reasons, f"quarantined: {record.quarantine_reason}")
        update["health_reasons"] = reasons[-32:]
    return gpu.model_copy(update=update) if update else gpu


def _is_loopback(remote: str | None) -> bool:
    if remote is None:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False
