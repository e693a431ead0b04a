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

from orchestrator.central.dispatch import Dispatcher, PlanEntry
from orchestrator.central.store import CommandRecord, FactRow, Store
from orchestrator.config.common import MqttSection
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.mqtt import MqttLink
from orchestrator.policy.model import Assignment, Plan
from orchestrator.protocol import INTERRUPTED_BY_RESTART, SwitchCommand, SwitchEvent, Topics, encode
from tests.fakes import Clock
from tests.waiting import eventually

pytestmark = pytest.mark.slow

TOPICS = Topics("fleet/v1/test")


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


def entry(generation: int) -> PlanEntry:
    return PlanEntry(generation, 5_000.0, "test", 0.0, {})


@dataclass
class Bench:
    dispatcher: Dispatcher
    agent: MqttLink
    received: list[SwitchCommand]
    clock: Clock
    registry: CollectorRegistry

    async def answer(
        self,
        command: SwitchCommand,
        state: str,
        reason: str = "",
        *,
        seq: int | None = None,
        actual: str | None = None,
    ) -> None:
        event = SwitchEvent(
            command_id=command.command_id,
            generation=command.generation,
            node=command.node,
            gpu_index=command.gpu_index,
            workload=command.workload,
            state=state,  # type: ignore[arg-type]
            reason=reason,
            at_s=self.clock.now_s,
            seq=seq,
            boot_s=None if seq is None else 1_000.0,
            actual=actual,
        )
        assert await self.agent.publish(TOPICS.events(command.node), encode(event), qos=1)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def bench(mosquitto: MosquittoBroker) -> AsyncIterator[Bench]:
    settings = MqttSection(host=mosquitto.host, port=mosquitto.port, site="test")
    clock = Clock(5_000.0)
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
    (record,) = await bench.dispatcher.order(one_switch("rig:0", "mine:kawpow"), entry(3), uuids={})
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
    await bench.dispatcher.order(one_switch("rig:1", "ai:acme"), entry(1), uuids={})
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
    bench.dispatcher.expire_overdue()
    assert bench.dispatcher.in_flight == {}
    assert bench.dispatcher.journal[-1].state == "timed_out"
    assert bench.metric("orchestrator_switches_total", result="timeout") == 1.0


async def test_a_rolled_back_switch_is_not_ordered_again_during_the_cooldown(bench: Bench) -> None:
    plan = one_switch("rig:2", "mine:kawpow")
    await bench.dispatcher.order(plan, entry(1), uuids={})
    await eventually(lambda: bench.received, what="the command")
    await bench.answer(bench.received[0], "rolled_back", "miner showed no hashrate in 120 s")
    await eventually(lambda: not bench.dispatcher.in_flight, what="the failure")
    assert bench.dispatcher.journal[-1].outcome == "miner showed no hashrate in 120 s"
    assert bench.metric("orchestrator_switches_total", result="rolled_back") == 1.0
    assert await bench.dispatcher.order(plan, entry(2), uuids={}) == []
    other = await bench.dispatcher.order(one_switch("rig:2", "ai:acme"), entry(2), uuids={})
    assert [r.workload for r in other] == ["ai:acme"]
    bench.clock.now_s += 901.0
    again = await bench.dispatcher.order(plan, entry(3), uuids={})
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
        await bench.dispatcher.order(one_switch(f"rig:{index}", "ai:acme"), entry(1), uuids={})
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
    published = await bench.dispatcher.order(plan, entry(4), uuids={})
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
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


class CrashError(Exception):
    """Stands for the daemon dying between writing a plan and publishing it."""


async def _crash_after_writing(dispatcher: Dispatcher, plan: Plan, generation: int) -> None:
    """`order` a plan and die before anything is published: what the store then holds is
    what a restart finds."""

    async def die(records: list[CommandRecord]) -> list[CommandRecord]:
        raise CrashError

    real = dispatcher._publish
    dispatcher._publish = die  # type: ignore[method-assign]
    try:
        with pytest.raises(CrashError):
            await dispatcher.order(plan, entry(generation), uuids={})
    finally:
        dispatcher._publish = real  # type: ignore[method-assign]


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
    dispatcher = bench.dispatcher
    dispatcher.store = store
    (first,) = await dispatcher.order(one_switch("rig:0", "mine:kawpow"), entry(1), uuids={})
    (revoked,) = await dispatcher.order(one_switch("rig:1", "mine:kawpow"), entry(1), uuids={})
    dispatcher.cooldowns[("rig:1", "ai:acme")] = bench.clock.now_s + 900.0
    bench.clock.now_s += 1.0
    second = replace(
        one_switch("rig:0", "ai:acme"),
        assignments={
            **one_switch("rig:0", "ai:acme").assignments,
            **one_switch("rig:1", "ai:acme").assignments,
        },
    )
    await _crash_after_writing(dispatcher, second, 2)
    # rig:1's command ended (its new target cools down) and nothing replaced it
    (successor,) = store.open_commands()
    assert (successor.gpu, successor.workload, successor.generation) == ("rig:0", "ai:acme", 2)
    states = {c.command_id: c.state for c in store.recent_commands(10)}
    assert states[first.command_id] == states[revoked.command_id] == "superseded"
    restarted = _restarted(bench)
    restarted.restore(store.open_commands(), store.load_facts())
    assert set(restarted.in_flight) == {"rig:0"}


async def test_a_restart_keeps_the_later_generation_of_two_open_commands(
    bench: Bench, tmp_path: Path
) -> None:
    """Two open commands for one GPU (two daemons' plans, each dead before publishing):
    the later plan generation wins, even when the clock stepped back between them, and
    the restore is written in one transaction."""
    store = Store(tmp_path / "serve.sqlite3")
    first = _restarted(bench)
    first.store = store
    await _crash_after_writing(first, one_switch("rig:0", "mine:kawpow"), 5)
    bench.clock.now_s -= 30.0  # an NTP step backwards
    second = _restarted(bench)
    second.store = store
    await _crash_after_writing(second, one_switch("rig:0", "ai:acme"), 6)
    newer = [c for c in store.open_commands() if c.generation == 6]
    writes: list[int] = []
    real_update = store.update_commands

    def counted(rows: Iterable[CommandRecord], *, facts: Iterable[FactRow] = ()) -> None:
        writes.append(1)
        real_update(rows, facts=facts)

    store.update_commands = counted  # type: ignore[method-assign]
    restarted = _restarted(bench)
    restarted.store = store
    restarted.restore(store.open_commands(), store.load_facts())
    assert restarted.in_flight["rig:0"].command_id == newer[0].command_id
    assert writes == [1]
    assert [c.command_id for c in store.open_commands()] == [newer[0].command_id]


async def test_a_rollback_ends_its_command_as_a_failure_and_moves_the_gpu_at_once(
    bench: Bench, tmp_path: Path
) -> None:
    """The agent stopped the miner, could not free the GPU, and started the miner again:
    the switch failed (counted, cooled down), and the GPU runs what the event says."""
    store = Store(tmp_path / "serve.sqlite3")
    bench.dispatcher.store = store
    plan = one_switch("rig:0", "idle", previous="mine:kawpow")
    await bench.dispatcher.order(plan, entry(1), uuids={})
    await eventually(lambda: bench.received, what="the command")
    command = bench.received[0]
    await bench.answer(command, "accepted", seq=10)
    await bench.answer(
        command,
        "rolled_back",
        "verify failed; mine:kawpow runs again",
        seq=14,
        actual="mine:kawpow",
    )
    await eventually(lambda: not bench.dispatcher.in_flight, what="the rollback")
    assert bench.metric("orchestrator_switches_total", result="rolled_back") == 1.0
    assert bench.metric("orchestrator_switches_total", result="ok") == 0.0
    assert bench.dispatcher.cooling_down("rig:0", "idle", bench.clock.now_s)
    line = bench.dispatcher.book.line("rig:0")
    assert (line.desired, line.command) == ("idle", None)
    assert line.fact is not None
    assert line.fact.workload == "mine:kawpow"
    assert line.fact.state.failure
    # a GPU's fact survives a restart of serve, in the agent's order
    restarted = _restarted(bench)
    restarted.restore(store.open_commands(), store.load_facts())
    assert restarted.book.facts["rig:0"].order[:2] == (1_000.0, 14)


async def test_a_late_final_event_still_sets_the_gpu_and_an_older_one_does_not(
    bench: Bench,
) -> None:
    """A command that timed out, then finished: its `done` tells what runs (counted as
    late). A duplicate, or one said before what serve knows, changes nothing."""
    await bench.dispatcher.order(one_switch("rig:3", "ai:acme"), entry(1), uuids={})
    await eventually(lambda: bench.received, what="the command")
    command = bench.received[0]
    bench.clock.now_s += 700.0
    bench.dispatcher.expire_overdue()
    assert bench.dispatcher.journal[-1].state == "timed_out"
    await bench.answer(command, "done", seq=20, actual="ai:acme")
    await eventually(
        lambda: bench.metric("orchestrator_late_final_events_total") == 1.0, what="the late done"
    )
    assert bench.dispatcher.book.facts["rig:3"].workload == "ai:acme"
    await bench.answer(command, "done", seq=20, actual="ai:acme")  # the same, again
    await eventually(
        lambda: bench.metric("orchestrator_events_dropped_total", reason="unknown_command") == 1.0,
        what="the duplicate",
    )
    assert bench.dispatcher.book.facts["rig:3"].order[1] == 20


async def test_a_switch_cut_short_by_the_agents_restart_fails_without_a_cooldown(
    bench: Bench,
) -> None:
    """The agent died mid-switch and says so when it is back: the command ends failed at
    once (not at its timeout), and the target may be ordered again at the next plan."""
    plan = one_switch("rig:4", "mine:kawpow")
    await bench.dispatcher.order(plan, entry(1), uuids={})
    await eventually(lambda: bench.received, what="the command")
    why = f"{INTERRUPTED_BY_RESTART} 'start'; not resumed"
    await bench.answer(bench.received[0], "failed", why, seq=1, actual="idle")
    await eventually(lambda: not bench.dispatcher.in_flight, what="the failure")
    assert bench.metric("orchestrator_switches_total", result="failed") == 1.0
    assert not bench.dispatcher.cooling_down("rig:4", "mine:kawpow", bench.clock.now_s)
    again = await bench.dispatcher.order(plan, entry(2), uuids={})
    assert [r.workload for r in again] == ["mine:kawpow"]
