"""A node agent with simulated GPUs and workloads, and the central side's view of it over MQTT.

`CentralView` is what the central daemon would see: it publishes `SwitchCommand`s on the
node's command topic and collects every event and telemetry snapshot from a real mosquitto.
`sim_profile` / `agent_document` build agent configs with sim profiles whose delays are
scaled down (`time_scale`), so a model "loads" in milliseconds and tests wait for conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.agents.agent import NodeAgent
from orchestrator.agents.executor import SwitchExecutor
from orchestrator.config import AgentConfig, parse_config
from orchestrator.config.common import MqttSection
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.drivers import Driver, Handle, HandleError, WorkloadSpec
from orchestrator.mqtt import MqttLink
from orchestrator.protocol import (
    GpuHealthEvent,
    GpuTelemetry,
    NodeTelemetry,
    SwitchCommand,
    SwitchEvent,
    Topics,
    decode_event,
    decode_telemetry,
    encode,
)
from tests.central.harness import agent_document as base_document
from tests.central.harness import running
from tests.waiting import eventually

PREFIX = "fleet/v1/test"
FINAL = {"done", "rolled_back", "failed", "refused"}


def sim_profile(profile_id: str, kind: str = "mining", **extra: Any) -> dict[str, Any]:
    """A sim profile: a miner shows hashrate after 1 s, a model loads in 10 s (before scaling)."""
    profile: dict[str, Any] = {
        "id": profile_id,
        "kind": kind,
        "driver": "sim",
        "expected_power_w": 250.0,
        "start_timeout_s": 5.0,
        "stop_timeout_s": 5.0,
        "sim": {"start_delay_s": 1.0 if kind == "mining" else 10.0, "stop_delay_s": 1.0},
    }
    if kind == "mining":
        profile |= {"algorithm": "kawpow", "expected_hashrate_hs": 25e6}
    else:
        profile["drain_timeout_s"] = 5.0
    sim = extra.pop("sim", {})
    profile["sim"] |= sim
    return profile | extra


DEFAULT_PROFILES = [
    sim_profile("miner-a"),
    sim_profile("miner-b", sim={"hashrate_hs": 40e6}),
    sim_profile("miner-bad", sim={"fail_start": True}),
    sim_profile("llm", "ai", serves_contracts=["acme"]),
]


def agent_document(
    broker: MosquittoBroker,
    node: str,
    *,
    profiles: list[dict[str, Any]] | None = None,
    gpus: int = 2,
    time_scale: float = 0.01,
    watchdog: dict[str, Any] | None = None,
) -> dict[str, Any]:
    document = base_document(broker, node, gpus=gpus, interval_s=0.1)
    document["executor"] |= {"sim_time_scale": time_scale, "verify_free_timeout_s": 3.0}
    document["profiles"] = DEFAULT_PROFILES if profiles is None else profiles
    document["watchdog"] = watchdog or {"enabled": False}
    return document


def agent_config(broker: MosquittoBroker, node: str, **kwargs: Any) -> AgentConfig:
    return parse_config(agent_document(broker, node, **kwargs), "agent", source="<test>")


def command(
    node: str,
    gpu_index: int,
    workload: str,
    *,
    generation: int = 1,
    ttl_s: float = 60.0,
    issued_at_s: float | None = None,
    command_id: str | None = None,
) -> SwitchCommand:
    issued = time.time() if issued_at_s is None else issued_at_s
    return SwitchCommand(
        command_id=command_id or uuid.uuid4().hex,
        generation=generation,
        node=node,
        gpu_index=gpu_index,
        workload=workload,
        issued_at_s=issued,
        expires_at_s=issued + ttl_s,
        reason="test",
    )


@dataclass
class CentralView:
    """Commands out, events and telemetry in, through a real broker."""

    broker: MosquittoBroker
    node: str
    events: list[SwitchEvent | GpuHealthEvent] = field(default_factory=list)
    telemetry: list[NodeTelemetry] = field(default_factory=list)
    link: MqttLink | None = None

    def _on_message(self, topic: str, payload: bytes) -> None:
        topics = Topics(PREFIX)
        if topic == topics.events(self.node):
            self.events.append(decode_event(payload, topic_node=self.node))
        elif topic == topics.telemetry(self.node):
            self.telemetry.append(decode_telemetry(payload, topic_node=self.node))

    async def send(self, switch: SwitchCommand) -> None:
        assert self.link is not None
        topic = Topics(PREFIX).commands(self.node)
        assert await self.link.publish(topic, encode(switch), qos=1)

    def switch_events(self, command_id: str) -> list[SwitchEvent]:
        return [e for e in self.events if isinstance(e, SwitchEvent) and e.command_id == command_id]

    def health_events(self, state: str | None = None) -> list[GpuHealthEvent]:
        return [
            e
            for e in self.events
            if isinstance(e, GpuHealthEvent) and (state is None or e.state == state)
        ]

    async def final(self, switch: SwitchCommand, *, count: int = 1) -> SwitchEvent:
        """Send nothing; wait for the `count`-th final event of `switch` and return it."""

        def finals() -> list[SwitchEvent] | None:
            found = [e for e in self.switch_events(switch.command_id) if e.state in FINAL]
            return found if len(found) >= count else None

        found = await eventually(finals, timeout_s=10, what=f"final event of {switch.workload}")
        return found[count - 1]

    async def run(self, switch: SwitchCommand) -> SwitchEvent:
        """Send `switch` and wait for its (first) final event."""
        await self.send(switch)
        return await self.final(switch)

    def gpu(self, index: int) -> GpuTelemetry | None:
        if not self.telemetry:
            return None
        return next((g for g in self.telemetry[-1].gpus if g.index == index), None)

    async def reported(self, index: int, workload: str) -> GpuTelemetry:
        """Wait until telemetry reports GPU `index` running `workload`."""

        def probe() -> GpuTelemetry | None:
            gpu = self.gpu(index)
            ok = gpu is not None and gpu.workload is not None and gpu.workload.workload == workload
            return gpu if ok else None

        return await eventually(probe, timeout_s=10, what=f"telemetry: GPU {index} {workload}")


@contextlib.asynccontextmanager
async def central_view(broker: MosquittoBroker, node: str) -> AsyncIterator[CentralView]:
    view = CentralView(broker, node)
    topics = Topics(PREFIX)
    view.link = MqttLink(
        MqttSection(host=broker.host, port=broker.port, site="test"),
        client_id=f"test-central-{node}",
        subscriptions=[(topics.events(node), 1), (topics.telemetry(node), 0)],
        on_message=view._on_message,
    )
    task = asyncio.create_task(view.link.run(), name="central-view")
    try:
        await asyncio.wait_for(view.link.connected.wait(), 5)
        yield view
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def started(
    agent: NodeAgent, *, keep_workloads: bool = False
) -> AsyncIterator[SwitchExecutor]:
    """Run `agent` until it has recovered and subscribed; yield its executor. Afterwards
    its workload processes are killed, unless `keep_workloads` (for a test that restarts
    the agent): they outlive their agent by design (fail-static), but a test's must not
    outlive the test."""
    try:
        async with running(agent):
            await eventually(
                lambda: agent.executor is not None and agent.link.connected.is_set(),
                timeout_s=10,
                what="agent recovered and connected",
            )
            assert agent.executor is not None
            yield agent.executor
    finally:
        if agent.executor is not None and not keep_workloads:
            await _destroy_processes(agent, agent.executor)


async def _destroy_processes(agent: NodeAgent, executor: SwitchExecutor) -> None:
    """Kill the agent's process-driver workloads through their driver, which also reaps
    them (a bare kill left asyncio's transport to be collected with a ResourceWarning)."""
    profiles = {p.id: p for p in agent.config.profiles}
    for slot in executor.slots.values():
        handle = slot.handle
        if handle is None or handle.driver != "process" or handle.profile_id not in profiles:
            continue
        with contextlib.suppress(OSError, HandleError):
            await agent.drivers.for_profile(profiles[handle.profile_id]).destroy(handle)


class StartCounter:
    """Counts a driver's `start` calls (a spy on the real driver, which still runs)."""

    def __init__(self, driver: Driver) -> None:
        self.calls: list[str] = []
        self._start = driver.start

        async def counted(spec: WorkloadSpec) -> Handle:
            self.calls.append(spec.workload_id)
            return await self._start(spec)

        driver.start = counted  # type: ignore[method-assign]


def state_dir(agent: NodeAgent) -> Path:
    return agent.config.executor.state_dir
