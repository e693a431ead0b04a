"""A simulated site for the switch wave: agents that answer commands and draw power over time.

The serve side is the product's own: `Ingest` (the bytes an agent would publish), `FleetState`,
`FleetObserver`, the `Dispatcher` with its wave and a real SQLite `Store`. Only the node side
is simulated: each node runs its queued commands like the agent's executor (accepted at once,
at most `parallel` switches at a time on a node, one at a time per GPU, first come first
served), and each GPU's board power follows the switch: from its old draw down to idle while
the old workload stops, up to the new one while it starts, and, for an inference server, on
from its "ready" draw to its serving draw after the switch is done (traffic arrives after
readiness). A switch `fail` picks rolls back: the old workload starts again. Snapshots go out
once a simulated second per node, numbered with the node's events like a real agent's.

Time is a hand-driven clock advanced in steps; every power change starts and ends on a step,
so the site's power between two steps is linear and its maximum is on a step: checking each
step checks every moment.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from orchestrator.central.dispatch import Dispatcher, PlanEntry
from orchestrator.central.fleet import FleetState
from orchestrator.central.ingest import Ingest
from orchestrator.central.observe import FleetObserver
from orchestrator.central.store import Store
from orchestrator.central.wave import BoardAsWall, WavePower, WaveSettings
from orchestrator.domain import IDLE, GpuKey, Health, gpu_key
from orchestrator.policy.model import Assignment, CandidateValue, Plan
from orchestrator.protocol import (
    GpuTelemetry,
    NodeTelemetry,
    SwitchCommand,
    SwitchEvent,
    Topics,
    WorkloadReport,
    encode,
)
from tests.fakes import Clock

TOPICS = Topics("fleet/v1/wave")
MINE = "mine:etchash"
AI = "ai:spot"
MODEL = "NVIDIA H200"
# steady board power by workload (the measured H200: idle ~90 W, a mining load ~690 W),
# which the plan's candidate tables also say
POWER_W: Mapping[str, float] = {IDLE: 90.0, MINE: 690.0, AI: 300.0}
AI_READY_W = 122.0  # an inference server that is ready but has no traffic yet
POWER_LIMIT_W = 700.0


@dataclass(frozen=True)
class Timing:
    """Seconds each part of a switch takes (multiples of the step)."""

    stop_s: Mapping[str, float] = field(default_factory=lambda: {IDLE: 0.5, MINE: 2.0, AI: 10.0})
    start_s: Mapping[str, float] = field(default_factory=lambda: {IDLE: 0.5, MINE: 5.0, AI: 30.0})
    traffic_ramp_s: float = 20.0  # an inference server's draw, ready -> serving, after done


@dataclass
class _Segment:
    """Board power moving linearly from `w0` at `t0` to `w1` at `t1` (then staying)."""

    t0: float
    w0: float
    t1: float
    w1: float

    def at(self, now_s: float) -> float:
        if now_s >= self.t1 or self.t1 <= self.t0:
            return self.w1
        if now_s <= self.t0:
            return self.w0
        return self.w0 + (self.w1 - self.w0) * (now_s - self.t0) / (self.t1 - self.t0)


@dataclass
class SimGpu:
    index: int
    workload: str
    since_s: float
    power: _Segment
    command: SwitchCommand | None = None
    phase: str = ""  # "stop", "start", "rollback" while a switch runs
    phase_end_s: float = 0.0
    fails: bool = False


@dataclass
class SimNode:
    name: str
    gpus: list[SimGpu]
    queue: deque[SwitchCommand] = field(default_factory=deque)
    seq: int = 0
    boot_s: float = 1.0
    next_report_s: float = 0.0

    def number(self) -> int:
        self.seq += 1
        return self.seq


class SimSite:
    """The node side of a site; `received` holds every command as it arrived."""

    def __init__(
        self,
        *,
        nodes: int,
        gpus_per_node: int,
        initial: Callable[[str], str],
        clock: Clock,
        timing: Timing | None = None,
        parallel: int = 4,
        fail: Callable[[SwitchCommand], bool] = lambda _c: False,
    ) -> None:
        self.clock = clock
        self.timing = timing or Timing()
        self.parallel = parallel
        self.fail = fail
        self.received: list[tuple[float, SwitchCommand]] = []
        self.outbox: list[tuple[str, bytes]] = []
        self.reported: dict[str, float] = {}  # GPU -> the draw its latest snapshot said
        now_s = clock.now_s
        self.nodes: dict[str, SimNode] = {}
        for n in range(nodes):
            name = f"rig{n:03d}"
            gpus = []
            for index in range(gpus_per_node):
                workload = initial(gpu_key(name, index))
                steady = POWER_W[workload]
                gpus.append(SimGpu(index, workload, now_s - 3600.0, _Segment(0, steady, 0, steady)))
            # reports staggered over the second, like real nodes
            self.nodes[name] = SimNode(name, gpus, next_report_s=now_s + (n % 10) / 10)

    # ---------------------------------------------------------------- serve -> nodes

    async def publish_many(self, messages: list[tuple[str, bytes]], *, qos: int = 1) -> list[bool]:
        """The dispatcher's link: commands land in their node's queue."""
        assert qos == 1
        for topic, payload in messages:
            command = SwitchCommand.model_validate_json(payload)
            assert topic == TOPICS.commands(command.node)
            self.received.append((self.clock.now_s, command))
            node = self.nodes[command.node]
            if any(c.command_id == command.command_id for c in node.queue):
                continue  # a re-send of a queued command: the agent answers from its record
            node.queue.append(command)
            self._event(node, command, "accepted")
        return [True] * len(messages)

    # ---------------------------------------------------------------- time

    def step(self) -> list[tuple[str, bytes]]:
        """Advance the nodes to the clock's now; return what they published meanwhile."""
        now_s = self.clock.now_s
        for node in self.nodes.values():
            for gpu in node.gpus:
                if gpu.command is not None and now_s >= gpu.phase_end_s:
                    self._next_phase(node, gpu, now_s)
            self._start_queued(node, now_s)
            if now_s >= node.next_report_s:
                self._report(node, now_s)
                node.next_report_s += 1.0
        out, self.outbox = self.outbox, []
        return out

    def _start_queued(self, node: SimNode, now_s: float) -> None:
        running = sum(1 for g in node.gpus if g.command is not None)
        for command in list(node.queue):
            if running >= self.parallel:
                return
            gpu = node.gpus[command.gpu_index]
            if gpu.command is not None:
                continue  # one switch at a time per GPU
            node.queue.remove(command)
            gpu.command = command
            gpu.fails = self.fail(command)
            running += 1
            self._phase(gpu, "stop", now_s, POWER_W[IDLE], self.timing.stop_s[gpu.workload])

    def _phase(self, gpu: SimGpu, phase: str, now_s: float, to_w: float, took_s: float) -> None:
        gpu.phase = phase
        gpu.phase_end_s = now_s + took_s
        gpu.power = _Segment(now_s, gpu.power.at(now_s), now_s + took_s, to_w)

    def _next_phase(self, node: SimNode, gpu: SimGpu, now_s: float) -> None:
        command = gpu.command
        assert command is not None
        if gpu.phase == "stop":
            target = command.workload
            ready_w = AI_READY_W if target.startswith("ai:") else POWER_W[target]
            self._phase(gpu, "start", now_s, ready_w, self.timing.start_s[target])
            return
        if gpu.phase == "start" and gpu.fails:
            # the health check failed: roll back to what this GPU ran before the switch (the
            # agent's own record, which a superseded plan's `previous_workload` may not be)
            previous = gpu.workload
            self._phase(gpu, "rollback", now_s, POWER_W[previous], self.timing.start_s[previous])
            return
        if gpu.phase == "start":
            gpu.workload = command.workload
            gpu.since_s = now_s
            if gpu.workload.startswith("ai:"):
                ramp_s = self.timing.traffic_ramp_s
                gpu.power = _Segment(now_s, AI_READY_W, now_s + ramp_s, POWER_W[gpu.workload])
            state = "done"
        else:  # rolled back: the old workload runs again
            gpu.since_s = now_s
            state = "rolled_back"
        gpu.command = None
        gpu.phase = ""
        self._event(node, command, state)

    # ---------------------------------------------------------------- nodes -> serve

    def _event(self, node: SimNode, command: SwitchCommand, state: str) -> None:
        gpu = node.gpus[command.gpu_index]
        final = state != "accepted"
        event = SwitchEvent(
            command_id=command.command_id,
            generation=command.generation,
            node=node.name,
            gpu_index=gpu.index,
            workload=command.workload,
            state=state,  # type: ignore[arg-type]
            reason="health check failed" if state == "rolled_back" else "",
            at_s=self.clock.now_s,
            seq=node.number(),
            boot_s=node.boot_s,
            actual=gpu.workload if final else None,
            actual_since_s=gpu.since_s if final else None,
        )
        self.outbox.append((TOPICS.events(node.name), encode(event)))

    def _report(self, node: SimNode, now_s: float) -> None:
        gpus = tuple(
            GpuTelemetry(
                index=gpu.index,
                uuid=f"GPU-{node.name}-{gpu.index}",
                name=MODEL,
                memory_total_bytes=141 * 2**30,
                power_draw_w=round(gpu.power.at(now_s), 1),
                power_limit_w=POWER_LIMIT_W,
                health=Health.OK,
                workload=WorkloadReport(workload=gpu.workload, since_s=gpu.since_s),
            )
            for gpu in node.gpus
        )
        message = NodeTelemetry(
            node=node.name,
            seq=node.number(),
            boot_s=node.boot_s,
            sent_at_s=now_s,
            agent_version="sim",
            nvml_backend="sim",
            gpus=gpus,
        )
        self.outbox.append((TOPICS.telemetry(node.name), encode(message)))
        for gpu in gpus:
            self.reported[gpu_key(node.name, gpu.index)] = gpu.power_draw_w or 0.0

    # ---------------------------------------------------------------- what a meter reads

    def board_w(self) -> dict[str, float]:
        """Each node's GPU board power now."""
        now_s = self.clock.now_s
        return {
            name: sum(gpu.power.at(now_s) for gpu in node.gpus) for name, node in self.nodes.items()
        }

    def workloads(self) -> dict[str, str]:
        return {
            gpu_key(name, gpu.index): gpu.workload
            for name, node in self.nodes.items()
            for gpu in node.gpus
        }

    def idle(self) -> bool:
        """No switch runs or waits on any node."""
        return all(
            not node.queue and all(g.command is None for g in node.gpus)
            for node in self.nodes.values()
        )


@dataclass
class Serve:
    """The serve side wired as `serve` wires it, over the simulated site."""

    dispatcher: Dispatcher
    ingest: Ingest
    fleet: FleetState
    observer: FleetObserver
    store: Store
    generation: int = 0

    def deliver(self, messages: list[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            self.ingest.handle(topic, payload)

    async def order(self, targets: Mapping[str, str]) -> Plan:
        """Plan `targets` (GPU -> workload; the rest stay) over what serve sees now, in fleet
        order, and hand it to the dispatcher as the policy loop does."""
        now_s = self.dispatcher.clock()
        gpus = self.observer.observe(self.fleet, now_s=now_s, book=self.dispatcher.book)
        assignments = {}
        for gpu in gpus:
            current = gpu.current_workload
            target = targets.get(gpu.key, current)
            assignments[gpu.key] = Assignment(
                gpu_key=gpu.key,
                workload=target,
                previous=current,
                changed=target != current,
                reason=f"switch to {target}" if target != current else "held",
                lock="free",
                candidates=tuple(CandidateValue(w, 0.0, p) for w, p in POWER_W.items()),
            )
        plan = Plan(
            assignments=assignments,
            objective_usd_per_hour=0.0,
            net_usd_per_hour=0.0,
            total_power_w=sum(POWER_W[a.workload or IDLE] for a in assignments.values()),
            power_cap_w=None,
            sla=(),
            switches=sum(a.changed for a in assignments.values()),
            dwell_breaks=0,
            problems=(),
        )
        self.generation += 1
        entry = PlanEntry(self.generation, now_s, "test", 0.0, {})
        await self.dispatcher.order(plan, entry, uuids={g.key: g.uuid for g in gpus})
        return plan


def build_serve(
    site: SimSite,
    clock: Clock,
    store_path: Path,
    *,
    power: WavePower | None = None,
    wave: WaveSettings | None = None,
) -> Serve:
    fleet = FleetState(offline_after_s=30.0)
    registry = CollectorRegistry()
    ingest = Ingest(
        fleet=fleet, topics=TOPICS, registry=registry, max_payload_bytes=256_000, clock=clock
    )
    store = Store(store_path)
    dispatcher = Dispatcher(
        link=site,  # type: ignore[arg-type]
        topics=TOPICS,
        registry=registry,
        command_timeout_s=600.0,
        command_ttl_s=300.0,
        clock=clock,
        store=store,
        power=power or BoardAsWall(),
        wave=wave,
        fleet=fleet,
    )
    ingest.extra_handlers["events"] = dispatcher.on_event
    ingest.telemetry_listener = dispatcher.on_telemetry
    return Serve(dispatcher, ingest, fleet, FleetObserver(), store)


@dataclass
class Trace:
    """What a run saw: the peak of the metered power and of the reported power."""

    peak_w: float = 0.0
    peak_reported_w: float = 0.0
    steps: int = 0


async def run(
    site: SimSite,
    serve: Serve,
    clock: Clock,
    *,
    meter: Callable[[Mapping[str, float]], float],
    until: Callable[[], bool],
    max_s: float,
    step_s: float = 0.5,
    trace: Trace | None = None,
    each_step: Callable[[], None] | None = None,
) -> Trace:
    """Step the site and serve until `until()` or `max_s`: the nodes publish, serve ingests,
    the wave decides (what its task does when woken), and the meter reads the site.
    `meter` turns each node's board power into the site's wall power."""
    trace = trace or Trace()
    deadline_s = clock.now_s + max_s
    while True:
        serve.deliver(site.step())
        serve.dispatcher.expire_overdue()
        await serve.dispatcher.release_held()
        trace.peak_w = max(trace.peak_w, meter(site.board_w()))
        by_node: dict[str, float] = {}
        for key, watts in site.reported.items():
            node = GpuKey.parse(key).node
            by_node[node] = by_node.get(node, 0.0) + watts
        trace.peak_reported_w = max(trace.peak_reported_w, meter(by_node))
        trace.steps += 1
        if each_step is not None:
            each_step()
        if until() or clock.now_s >= deadline_s:
            return trace
        clock.advance(step_s)
