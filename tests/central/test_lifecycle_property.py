"""The command lifecycle as a state machine, driven by hypothesis.

A model agent and the real serve-side pieces (`FleetState`, `Dispatcher` with its `GpuBook`,
`FleetObserver`, a real SQLite `Store`) are driven through random interleavings of: agent
snapshots, switch outcomes (done, rolled back, failed, refused; a switch to idle reports
idle mid-way, before its verification), messages delivered late, out of order and twice,
plans, timeouts, and restarts of the agent and of serve. The broker is a list of messages
in flight that the test delivers in any order; everything on the serve side is the
product's own code.

Checked after every step:
- never two open commands for one GPU, in memory or in the store;
- a rollback ends its command as a failure, never as a success;
- a plan sees each GPU as the agent's latest word that serve has received, by the agent's
  own order (`(boot_s, seq)`), never a report older than the GPU's last final event;
- so no GPU serving the reserved contract is ordered away on a stale report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from prometheus_client import CollectorRegistry

from orchestrator.central.dispatch import Dispatcher, PlanEntry
from orchestrator.central.fleet import FleetState
from orchestrator.central.observe import FleetObserver
from orchestrator.central.store import Store
from orchestrator.domain import IDLE, Health, SwitchState
from orchestrator.policy.model import Assignment, Plan
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

NODE = "rig"
GPUS = 3
SLA = "ai:reserved"
WORKLOADS = (IDLE, "mine:kawpow", "ai:spot", SLA)
TOPICS = Topics("fleet/v1/prop")
Order = tuple[float, int]


class Wire:
    """Stands in for the MQTT link: what serve publishes lands here, and the test hands
    it to the model agent whenever it likes."""

    def __init__(self) -> None:
        self.commands: list[SwitchCommand] = []

    async def publish_many(self, messages: list[tuple[str, bytes]], *, qos: int = 1) -> list[bool]:
        assert qos == 1
        for _topic, payload in messages:
            self.commands.append(SwitchCommand.model_validate_json(payload))
        return [True] * len(messages)


@dataclass
class Sent:
    """A message from the agent on its way to serve."""

    order: Order
    telemetry: NodeTelemetry | None = None
    event: SwitchEvent | None = None


@dataclass
class Agent:
    """The model agent: what each GPU runs, and its own numbering of what it says."""

    running: dict[int, str | None] = field(default_factory=lambda: dict.fromkeys(range(GPUS), IDLE))
    since: dict[int, float | None] = field(default_factory=lambda: dict.fromkeys(range(GPUS)))
    boot_s: float = 1.0
    seq: int = 0

    def next(self) -> int:
        self.seq += 1
        return self.seq

    def snapshot(self, now_s: float, override: dict[int, str | None] | None = None) -> Sent:
        seq = self.next()
        running = {**self.running, **(override or {})}
        gpus = tuple(
            GpuTelemetry(
                index=index,
                uuid=f"GPU-{index}",
                name="NVIDIA A100",
                health=Health.OK,
                workload=(
                    WorkloadReport(workload=workload, since_s=self.since[index])
                    if workload is not None
                    else None
                ),
            )
            for index, workload in running.items()
        )
        message = NodeTelemetry(
            node=NODE,
            seq=seq,
            boot_s=self.boot_s,
            sent_at_s=now_s,
            agent_version="test",
            nvml_backend="fake",
            gpus=gpus,
        )
        return Sent((self.boot_s, seq), telemetry=message)

    def event(self, command: SwitchCommand, state: str, now_s: float, reason: str = "") -> Sent:
        seq = self.next()
        final = SwitchState(state).final
        index = command.gpu_index
        event = SwitchEvent(
            command_id=command.command_id,
            generation=command.generation,
            node=NODE,
            gpu_index=index,
            workload=command.workload,
            state=state,  # type: ignore[arg-type]
            reason=reason,
            at_s=now_s,
            seq=seq,
            boot_s=self.boot_s,
            actual=self.running[index] if final else None,
            actual_since_s=self.since[index] if final else None,
        )
        return Sent((self.boot_s, seq), event=event)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = TemporaryDirectory()
        self.store = Store(Path(self.tmp.name) / "serve.sqlite3")
        self.loop = asyncio.new_event_loop()
        self.clock = Clock(10_000.0)
        self.wire = Wire()
        self.agent = Agent()
        self.in_transit: list[Sent] = []
        self.generation = 0
        self.rolled_back: set[str] = set()
        # the newest thing serve has received about each GPU, by the agent's order:
        # telemetry since serve's start, final events ever (they are stored)
        self.latest_telemetry: dict[int, tuple[Order, str | None]] = {}
        self.latest_final: dict[int, tuple[Order, str | None]] = {}
        self._start_serve()

    def _start_serve(self) -> None:
        self.fleet = FleetState(offline_after_s=60.0)
        self.observer = FleetObserver()
        self.dispatcher = Dispatcher(
            link=self.wire,  # type: ignore[arg-type]
            topics=TOPICS,
            registry=CollectorRegistry(),
            command_timeout_s=600.0,
            command_ttl_s=120.0,
            failure_cooldown_s=900.0,
            clock=self.clock,
            store=self.store,
        )
        self.dispatcher.restore(self.store.open_commands(), self.store.load_facts())
        self.latest_telemetry = {}

    def teardown(self) -> None:
        self.store.close()
        self.loop.close()
        self.tmp.cleanup()

    # ------------------------------------------------------------------ the agent

    @rule()
    def agent_samples(self) -> None:
        self.in_transit.append(self.agent.snapshot(self.clock.now_s))

    @precondition(lambda self: bool(self.wire.commands))
    @rule(
        pick=st.integers(min_value=0, max_value=50),
        outcome=st.sampled_from(["done", "rolled_back", "failed", "refused"]),
        sample_mid_switch=st.booleans(),
    )
    def agent_runs_a_command(self, pick: int, outcome: str, sample_mid_switch: bool) -> None:
        command = self.wire.commands.pop(pick % len(self.wire.commands))
        index = command.gpu_index
        agent = self.agent
        self.in_transit.append(agent.event(command, "accepted", self.clock.now_s))
        if outcome != "refused" and sample_mid_switch:
            # stopped, not yet verified free: the agent reports the GPU idle for now
            self.in_transit.append(agent.snapshot(self.clock.now_s, {index: IDLE}))
        if outcome == "done":
            agent.running[index] = command.workload
            agent.since[index] = self.clock.now_s
        elif outcome == "failed":
            agent.running[index] = IDLE
            agent.since[index] = self.clock.now_s
        elif outcome == "rolled_back":
            self.rolled_back.add(command.command_id)
        self.in_transit.append(agent.event(command, outcome, self.clock.now_s, "model"))

    @rule(lose=st.booleans())
    def agent_restarts(self, lose: bool) -> None:
        """What the old run said is delivered or lost before the new run connects (the
        broker has nothing of a dead client's left after its successor's first message),
        and the new run's first snapshot, published at its connection, arrives first."""
        old, self.in_transit = self.in_transit, []
        for sent in [] if lose else reversed(old):
            self.in_transit.append(sent)
            self.deliver(0, twice=False)
        self.agent.boot_s += 100.0
        self.agent.seq = 0
        self.in_transit.append(self.agent.snapshot(self.clock.now_s))
        self.deliver(0, twice=False)

    # ------------------------------------------------------------------ the broker

    @precondition(lambda self: bool(self.in_transit))
    @rule(pick=st.integers(min_value=0, max_value=50), twice=st.booleans())
    def deliver(self, pick: int, twice: bool) -> None:
        sent = self.in_transit[pick % len(self.in_transit)]
        if not twice:
            self.in_transit.remove(sent)
        if sent.telemetry is not None:
            self.fleet.apply_telemetry(sent.telemetry, now_s=self.clock.now_s)
            for gpu in sent.telemetry.gpus:
                workload = gpu.workload.workload if gpu.workload else None
                self._newest(self.latest_telemetry, gpu.index, sent.order, workload)
            return
        event = sent.event
        assert event is not None
        before = self.dispatcher.in_flight.get(f"{NODE}:{event.gpu_index}")
        self.dispatcher.on_event(NODE, encode(event))
        state = SwitchState(event.state)
        if state.final:
            self._newest(self.latest_final, event.gpu_index, sent.order, event.actual)
            if before is not None and before.command_id == event.command_id:
                assert f"{NODE}:{event.gpu_index}" not in self.dispatcher.in_flight
                assert self.dispatcher.journal[-1].state == state.value
                if state.failure:
                    assert self.dispatcher.cooling_down(
                        before.gpu, before.workload, self.clock.now_s
                    )

    @staticmethod
    def _newest(
        seen: dict[int, tuple[Order, str | None]], index: int, order: Order, workload: str | None
    ) -> None:
        if index not in seen or seen[index][0] < order:
            seen[index] = (order, workload)

    # ------------------------------------------------------------------ serve

    @rule(seconds=st.sampled_from([1.0, 30.0, 700.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now_s += seconds
        self.dispatcher.expire_overdue()

    @rule()
    def serve_restarts(self) -> None:
        self._start_serve()

    @rule(wanted=st.lists(st.sampled_from(WORKLOADS), min_size=GPUS, max_size=GPUS))
    def plan(self, wanted: list[str]) -> None:
        gpus = self.observer.observe(
            self.fleet, now_s=self.clock.now_s, book=self.dispatcher.book, sla_workloads={SLA}
        )
        assignments: dict[str, Assignment] = {}
        for gpu in gpus:
            index = int(gpu.key.rpartition(":")[2])
            if gpu.key not in self.dispatcher.in_flight:
                assert gpu.current_workload == self._truth(index), (
                    f"{gpu.key}: planned on {gpu.current_workload!r}, the agent's latest word"
                    f" is {self._truth(index)!r}"
                )
            # the stand-in planner keeps the reserved contract's GPUs where they are
            target = gpu.current_workload if gpu.current_workload == SLA else wanted[index]
            assignments[gpu.key] = Assignment(
                gpu_key=gpu.key,
                workload=target,
                previous=gpu.current_workload,
                changed=target != gpu.current_workload,
                reason="property test",
                lock="free",
                candidates=(),
            )
        plan = Plan(
            assignments=assignments,
            objective_usd_per_hour=0.0,
            net_usd_per_hour=0.0,
            total_power_w=0.0,
            power_cap_w=None,
            sla=(),
            switches=sum(a.changed for a in assignments.values()),
            dwell_breaks=0,
            problems=(),
        )
        self.generation += 1
        entry = PlanEntry(self.generation, self.clock.now_s, "test", 0.0, {})
        ordered = self.loop.run_until_complete(self.dispatcher.order(plan, entry, uuids={}))
        for command in ordered:
            index = int(command.gpu.rpartition(":")[2])
            assert self._truth(index) != SLA, f"{command.gpu} moved off the reserved contract"

    def _truth(self, index: int) -> str | None:
        """The newest word serve has received about GPU `index`, by the agent's order."""
        candidates = [
            seen[index] for seen in (self.latest_telemetry, self.latest_final) if index in seen
        ]
        return max(candidates, key=lambda c: c[0])[1] if candidates else None

    # ------------------------------------------------------------------ invariants

    @invariant()
    def one_open_command_per_gpu(self) -> None:
        open_commands = self.store.open_commands()
        gpus = [c.gpu for c in open_commands]
        assert len(gpus) == len(set(gpus)), f"two open commands for one GPU: {gpus}"
        in_memory = {c.command_id for c in self.dispatcher.in_flight.values()}
        assert in_memory == {c.command_id for c in open_commands}

    @invariant()
    def no_rollback_counted_a_success(self) -> None:
        states: dict[str, Any] = {c.command_id: c.state for c in self.store.recent_commands(500)}
        for command_id in self.rolled_back:
            assert states.get(command_id) != SwitchState.DONE.value


Lifecycle.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLifecycle = Lifecycle.TestCase
