"""The dispatcher against a real broker: acknowledgements, retries, timeouts, cool-downs.

A stand-in agent (a real MQTT client) answers commands with the events a node agent sends,
so these tests prove the central side of the command protocol on its own.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.central.dispatch import Dispatcher
from orchestrator.central.fleet import FleetState
from orchestrator.central.store import CommandRecord, Store
from orchestrator.config.common import MqttSection
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.mqtt import MqttLink
from orchestrator.policy.model import Assignment, Plan
from orchestrator.protocol import SwitchCommand, SwitchEvent, Topics, encode
from tests.waiting import eventually

pytestmark = pytest.mark.slow

TOPICS = Topics("fleet/v1/test")


class Clock:
    def __init__(self) -> None:
        self.now_s = 5_000.0

    def __call__(self) -> float:
        return self.now_s


def one_switch(gpu: str, workload: str, previous: str = "idle") -> Plan:
    assignment = Assignment(
        gpu_key=gpu,
        workload=workload,
        previous=previous,
        changed=True,
        reason=f"switch to {workload}",
        lock="free",
        candidates=(),
    )
    return Plan(
        assignments={gpu: assignment},
        objective_usd_per_hour=0.0,
        net_usd_per_hour=0.0,
        total_power_w=0.0,
        power_cap_w=None,
        sla=(),
        switches=1,
        dwell_breaks=0,
        problems=(),
    )


@dataclass
class Bench:
    dispatcher: Dispatcher
    agent: MqttLink
    received: list[SwitchCommand]
    clock: Clock
    registry: CollectorRegistry

    async def answer(self, command: SwitchCommand, state: str, reason: str = "") -> None:
        event = SwitchEvent(
            command_id=command.command_id,
            generation=command.generation,
            node=command.node,
            gpu_index=command.gpu_index,
            workload=command.workload,
            state=state,  # type: ignore[arg-type]
            reason=reason,
            at_s=self.clock.now_s,
        )
        assert await self.agent.publish(TOPICS.events(command.node), encode(event), qos=1)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def bench(mosquitto: MosquittoBroker) -> AsyncIterator[Bench]:
    settings = MqttSection(host=mosquitto.host, port=mosquitto.port, site="test")
    clock = Clock()
    registry = CollectorRegistry()
    received: list[SwitchCommand] = []
    dispatchers: list[Dispatcher] = []

    def on_event(topic: str, payload: bytes) -> None:
        node, _ = TOPICS.split(topic) or ("", "")
        dispatchers[0].on_event(node, payload)

    central = MqttLink(
        settings,
        client_id="central",
        subscriptions=[(TOPICS.all_of("events"), 1)],
        on_message=on_event,
    )
    dispatcher = Dispatcher(
        link=central,
        topics=TOPICS,
        registry=registry,
        command_timeout_s=600.0,
        command_ttl_s=120.0,
        ack_timeout_s=5.0,
        failure_cooldown_s=900.0,
        clock=clock,
    )
    dispatchers.append(dispatcher)
    agent = MqttLink(
        settings,
        client_id="rig",
        subscriptions=[(TOPICS.commands("rig"), 1)],
        on_message=lambda _t, payload: received.append(SwitchCommand.model_validate_json(payload)),
    )
    tasks = [asyncio.create_task(central.run()), asyncio.create_task(agent.run())]
    await asyncio.wait_for(central.connected.wait(), 5)
    await asyncio.wait_for(agent.connected.wait(), 5)
    yield Bench(dispatcher, agent, received, clock, registry)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_done_event_closes_the_command_and_counts_it_ok(bench: Bench) -> None:
    (record,) = await bench.dispatcher.dispatch(
        one_switch("rig:0", "mine:kawpow"), generation=3, uuids={}
    )
    await eventually(lambda: bench.received, what="the command")
    command = bench.received[0]
    assert (command.command_id, command.generation, command.workload) == (
        record.command_id,
        3,
        "mine:kawpow",
    )
    await bench.answer(command, "accepted")
    await eventually(lambda: bench.dispatcher.in_flight["rig:0"].acked, what="the acknowledgement")
    await bench.answer(command, "done")
    await eventually(lambda: not bench.dispatcher.in_flight, what="the command to close")
    assert bench.dispatcher.journal[-1].state == "done"
    assert bench.metric("orchestrator_switches_total", result="ok") == 1.0


async def test_an_unacknowledged_command_is_sent_again_with_the_same_id_then_times_out(
    bench: Bench,
) -> None:
    await bench.dispatcher.dispatch(one_switch("rig:1", "ai:acme"), generation=1, uuids={})
    await eventually(lambda: len(bench.received) == 1, what="the first delivery")
    assert await bench.dispatcher.retry_unacknowledged() == 0  # not due yet
    bench.clock.now_s += 5.0
    assert await bench.dispatcher.retry_unacknowledged() == 1
    await eventually(lambda: len(bench.received) == 2, what="the retry")
    assert bench.received[0] == bench.received[1]
    bench.clock.now_s += 5.0
    assert await bench.dispatcher.retry_unacknowledged() == 0  # the delay doubled
    bench.clock.now_s += 200.0  # past the command's expiry
    assert await bench.dispatcher.retry_unacknowledged() == 0
    bench.dispatcher.settle(FleetState(offline_after_s=10.0))
    assert bench.dispatcher.in_flight == {}
    assert bench.dispatcher.journal[-1].state == "timed_out"
    assert bench.metric("orchestrator_switches_total", result="timeout") == 1.0


async def test_a_rolled_back_switch_is_not_ordered_again_during_the_cooldown(bench: Bench) -> None:
    plan = one_switch("rig:2", "mine:kawpow")
    await bench.dispatcher.dispatch(plan, generation=1, uuids={})
    await eventually(lambda: bench.received, what="the command")
    await bench.answer(bench.received[0], "rolled_back", "miner showed no hashrate in 120 s")
    await eventually(lambda: not bench.dispatcher.in_flight, what="the failure")
    assert bench.dispatcher.journal[-1].outcome == "miner showed no hashrate in 120 s"
    assert bench.metric("orchestrator_switches_total", result="rolled_back") == 1.0
    assert await bench.dispatcher.dispatch(plan, generation=2, uuids={}) == []
    other = await bench.dispatcher.dispatch(one_switch("rig:2", "ai:acme"), generation=2, uuids={})
    assert [r.workload for r in other] == ["ai:acme"]
    bench.clock.now_s += 901.0
    again = await bench.dispatcher.dispatch(plan, generation=3, uuids={})
    assert [r.workload for r in again] == ["mine:kawpow"]


async def test_events_for_unknown_commands_and_garbage_are_counted_and_dropped(
    bench: Bench,
) -> None:
    assert await bench.agent.publish(TOPICS.events("rig"), b"{not json", qos=1)
    stray = SwitchCommand(
        command_id="f" * 32,
        generation=1,
        node="rig",
        gpu_index=0,
        workload="idle",
        issued_at_s=0.0,
        expires_at_s=1.0,
    )
    await bench.answer(stray, "done")
    await eventually(
        lambda: bench.metric("orchestrator_events_dropped_total", reason="unknown_command") == 1.0,
        what="the stray event",
    )
    await eventually(
        lambda: bench.metric("orchestrator_events_dropped_total", reason="malformed") == 1.0,
        what="the garbage event",
    )


async def test_retries_go_out_in_bounded_rounds(bench: Bench) -> None:
    for index in range(5):
        await bench.dispatcher.dispatch(
            one_switch(f"rig:{index}", "ai:acme"), generation=1, uuids={}
        )
    bench.clock.now_s += 5.0
    assert await bench.dispatcher.retry_unacknowledged(limit=2) == 2
    assert await bench.dispatcher.retry_unacknowledged(limit=2) == 2
    assert await bench.dispatcher.retry_unacknowledged(limit=2) == 1
    assert await bench.dispatcher.retry_unacknowledged(limit=2) == 0


async def test_a_plans_commands_leave_together_and_answers_before_the_last_ack_count(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker's acknowledgements can trail the agents' answers (they queue behind the
    telemetry in central's socket). Here the link reports back only after the agent has
    answered the first command (`done`) and acknowledged the second; it then claims the
    second never went out. Neither answer may be lost, and neither command called unsent."""
    link = bench.dispatcher.link
    real_publish_many = link.publish_many
    offered: list[int] = []

    async def acknowledged_late(messages: list[tuple[str, bytes]], *, qos: int = 1) -> list[bool]:
        offered.append(len(messages))
        results = await real_publish_many(messages, qos=qos)
        await eventually(lambda: len(bench.received) == 2, what="both commands at the agent")
        first, second = sorted(bench.received, key=lambda c: c.gpu_index)
        await bench.answer(first, "done")
        await bench.answer(second, "accepted")
        await eventually(
            lambda: (
                "rig:0" not in bench.dispatcher.in_flight
                and bench.dispatcher.in_flight["rig:1"].acked
            ),
            what="both answers handled",
        )
        return [results[0], False]

    monkeypatch.setattr(link, "publish_many", acknowledged_late)
    first, second = one_switch("rig:0", "mine:kawpow"), one_switch("rig:1", "ai:acme")
    plan = replace(first, assignments={**first.assignments, **second.assignments}, switches=2)
    published = await bench.dispatcher.dispatch(plan, generation=4, uuids={})
    assert offered == [2]  # one call for the plan's commands
    assert [r.state for r in published] == ["in_flight", "in_flight"]
    assert bench.metric("orchestrator_commands_published_total", result="unsent") == 0.0
    assert bench.metric("orchestrator_events_dropped_total", reason="unknown_command") == 0.0
    assert bench.dispatcher.journal[-1].state == "done"
    assert bench.dispatcher.in_flight["rig:1"].acked


async def test_links_send_small_packets_without_waiting_for_the_peers_ack(bench: Bench) -> None:
    """TCP_NODELAY on both ends of a link: without it an agent's `accepted` event waited for
    the broker's delayed ACK of the command's PUBACK, about 40 ms a command."""
    for link in (bench.dispatcher.link, bench.agent):
        paho = link._client._client  # type: ignore[union-attr]
        sock = paho.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def _journal(
    store: Store,
    generation: int,
    at_s: float,
    commands: list[CommandRecord],
    ended: list[CommandRecord] | None = None,
) -> None:
    """What the policy loop writes before publishing a plan's commands."""
    store.record_plan(
        generation=generation,
        at_s=at_s,
        trigger="test",
        net_usd_per_hour=0.0,
        commands=commands,
        summary={},
        ended=ended or [],
    )


def _restarted(bench: Bench) -> Dispatcher:
    return Dispatcher(
        link=bench.dispatcher.link,
        topics=TOPICS,
        registry=CollectorRegistry(),
        command_timeout_s=600.0,
        command_ttl_s=120.0,
        clock=bench.clock,
    )


async def test_commands_a_plan_ends_are_saved_in_the_plans_own_transaction(
    bench: Bench, tmp_path: Path
) -> None:
    """Ended with the plan's journal entry, before anything is published: a crash right
    after it restores neither a superseded command nor one the plan revoked without a
    successor (its new target cooling down after a failure)."""
    store = Store(tmp_path / "serve.sqlite3")
    bench.dispatcher.store = store

    def plan(generation: int, gpu: str, workload: str) -> list[CommandRecord]:
        prepared = bench.dispatcher.prepare(
            one_switch(gpu, workload), generation=generation, uuids={}
        )
        _journal(store, generation, bench.clock.now_s, prepared, bench.dispatcher.take_ended())
        return prepared

    (first,) = await bench.dispatcher.publish(plan(1, "rig:0", "mine:kawpow"))
    (revoked,) = await bench.dispatcher.publish(plan(1, "rig:1", "mine:kawpow"))
    bench.dispatcher.cooldowns[("rig:1", "ai:acme")] = bench.clock.now_s + 900.0
    bench.clock.now_s += 1.0
    successor = plan(2, "rig:0", "ai:acme")
    assert plan(2, "rig:1", "ai:acme") == []  # cooling down: rig:1's command ends, none replaces it
    # a crash here, before anything is published
    assert [c.command_id for c in store.open_commands()] == [successor[0].command_id]
    states = {c.command_id: c.state for c in store.recent_commands(10)}
    assert states[first.command_id] == states[revoked.command_id] == "superseded"
    restarted = _restarted(bench)
    restarted.restore(store.open_commands())
    assert set(restarted.in_flight) == {"rig:0"}


async def test_a_restart_keeps_the_later_generation_of_two_open_commands(
    bench: Bench, tmp_path: Path
) -> None:
    """Two open commands for one GPU (a crash between a plan and the save of what it
    ended): the later plan generation wins, even when the clock stepped back between them,
    and the restore is written in one transaction."""
    store = Store(tmp_path / "serve.sqlite3")
    older = bench.dispatcher.prepare(one_switch("rig:0", "mine:kawpow"), generation=5, uuids={})
    bench.dispatcher.take_ended()
    bench.clock.now_s -= 30.0  # an NTP step backwards
    newer = _restarted(bench).prepare(one_switch("rig:0", "ai:acme"), generation=6, uuids={})
    _journal(store, 5, bench.clock.now_s, older)
    _journal(store, 6, bench.clock.now_s, newer)
    writes: list[int] = []
    real_update = store.update_commands

    def counted(rows: Iterable[CommandRecord]) -> None:
        writes.append(1)
        real_update(rows)

    store.update_commands = counted  # type: ignore[method-assign]
    restarted = _restarted(bench)
    restarted.store = store
    restarted.restore(store.open_commands())
    assert restarted.in_flight["rig:0"].command_id == newer[0].command_id
    assert writes == [1]
    assert [c.command_id for c in store.open_commands()] == [newer[0].command_id]
