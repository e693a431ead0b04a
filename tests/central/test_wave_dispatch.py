"""The wave inside the dispatcher, over a real broker: a held start is released by the
agent's final event (the `wave` task wakes on it, no timer), shows while it waits, and is
neither stored nor restored, so a restarted serve sends nothing stale."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.central.dispatch import Dispatcher, PlanEntry
from orchestrator.central.store import Store
from orchestrator.central.wave import HELD_SITE_POWER, BoardAsWall, WaveSettings
from orchestrator.config import parse_config
from orchestrator.config.common import MqttSection
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.domain import IDLE
from orchestrator.errors import ConfigError
from orchestrator.mqtt import MqttLink
from orchestrator.policy.model import Assignment, CandidateValue, Plan
from orchestrator.protocol import SwitchCommand, SwitchEvent, Topics, encode
from orchestrator.serve import CentralDaemon, wave_settings
from tests.fakes import Clock
from tests.waiting import eventually

pytestmark = pytest.mark.slow

TOPICS = Topics("fleet/v1/wave")
MINE = "mine:kawpow"
POWER_W = {IDLE: 90.0, MINE: 690.0}


def swap_plan() -> Plan:
    """rig:0 stops mining (690 -> 90 W), rig:1 starts (90 -> 690 W): 780 W now and after."""

    def assignment(gpu: str, previous: str, workload: str) -> Assignment:
        return Assignment(
            gpu_key=gpu,
            workload=workload,
            previous=previous,
            changed=True,
            reason=f"switch to {workload}",
            lock="free",
            candidates=tuple(CandidateValue(w, 0.0, p) for w, p in POWER_W.items()),
        )

    assignments = {
        "rig:0": assignment("rig:0", MINE, IDLE),
        "rig:1": assignment("rig:1", IDLE, MINE),
    }
    return Plan(
        assignments=assignments,
        objective_usd_per_hour=0.0,
        net_usd_per_hour=0.0,
        total_power_w=780.0,
        power_cap_w=1000.0,
        sla=(),
        switches=2,
        dwell_breaks=0,
        problems=(),
    )


@dataclass
class Site:
    dispatcher: Dispatcher
    agent: MqttLink
    received: list[SwitchCommand]
    store: Store
    registry: CollectorRegistry
    clock: Clock

    async def done(self, command: SwitchCommand, seq: int) -> None:
        event = SwitchEvent(
            command_id=command.command_id,
            generation=command.generation,
            node=command.node,
            gpu_index=command.gpu_index,
            workload=command.workload,
            state="done",
            at_s=self.clock.now_s,
            seq=seq,
            boot_s=1_000.0,
            actual=command.workload,
            actual_since_s=self.clock.now_s,
        )
        assert await self.agent.publish(TOPICS.events(command.node), encode(event), qos=1)

    def command(self, n: int) -> SwitchCommand | None:
        """The `n`th command the agent received, once it has."""
        return self.received[n] if len(self.received) > n else None

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
async def site(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Site]:
    settings = MqttSection(host=mosquitto.host, port=mosquitto.port, site="wave")
    clock = Clock(5_000.0)
    registry = CollectorRegistry()
    received: list[SwitchCommand] = []
    store = Store(tmp_path / "serve.sqlite3")
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
        clock=clock,
        store=store,
        power=BoardAsWall(cap_kw=1.0),
    )
    dispatchers.append(dispatcher)
    agent = MqttLink(
        settings,
        client_id="rig",
        subscriptions=[(TOPICS.commands("rig"), 1)],
        on_message=lambda _t, payload: received.append(SwitchCommand.model_validate_json(payload)),
    )
    tasks = [
        asyncio.create_task(central.run()),
        asyncio.create_task(agent.run()),
        asyncio.create_task(dispatcher.run_wave(), name="wave"),
    ]
    await asyncio.wait_for(central.connected.wait(), 5)
    await asyncio.wait_for(agent.connected.wait(), 5)
    yield Site(dispatcher, agent, received, store, registry, clock)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    store.close()


async def test_a_held_start_goes_out_when_the_stop_it_waits_for_is_done(site: Site) -> None:
    dispatcher = site.dispatcher
    sent = await dispatcher.order(swap_plan(), PlanEntry(1, 5_000.0, "test", 0.0, {}), uuids={})
    assert [c.gpu for c in sent] == ["rig:0"]  # the stop; the start would reach 1,380 W
    held = dispatcher.book.line("rig:1").held
    assert held is not None
    assert (held.workload, held.why, held.rise_w) == (MINE, HELD_SITE_POWER, 600.0)
    assert site.metric("orchestrator_wave_held_commands", reason=HELD_SITE_POWER) == 1.0
    assert site.metric("orchestrator_site_power_estimated_watts") == 780.0
    assert site.metric("orchestrator_site_power_cap_watts") == 1000.0
    assert dispatcher.wave_summary()["held_by_reason"] == {HELD_SITE_POWER: 1}
    stop = await eventually(lambda: site.command(0), what="the stop")
    assert stop.gpu_index == 0
    assert await dispatcher.release_held() == []  # no room before the stop is done
    await site.done(stop, seq=1)
    start = await eventually(lambda: site.command(1), what="the start, after the stop")
    assert (start.gpu_index, start.workload) == (1, MINE)
    assert not dispatcher.held
    assert site.metric("orchestrator_wave_held_commands", reason=HELD_SITE_POWER) == 0.0
    assert site.metric("orchestrator_wave_commands_total", result="released") == 2.0
    # rig:0 idle now (90 W), rig:1 counted at its larger power while it switches
    assert dispatcher.wave_summary()["estimated_wall_w"] == 780.0


async def test_held_switches_are_not_stored_so_a_restart_sends_nothing_stale(site: Site) -> None:
    dispatcher = site.dispatcher
    await dispatcher.order(swap_plan(), PlanEntry(1, 5_000.0, "test", 0.0, {}), uuids={})
    assert set(dispatcher.held) == {"rig:1"}
    stored = site.store.open_commands()
    assert [c.gpu for c in stored] == ["rig:0"]
    restarted = Dispatcher(
        link=dispatcher.link,
        topics=TOPICS,
        registry=CollectorRegistry(),
        command_timeout_s=600.0,
        command_ttl_s=120.0,
        clock=site.clock,
        store=site.store,
        power=BoardAsWall(cap_kw=1.0),
    )
    restarted.restore(stored, site.store.load_facts())
    assert set(restarted.in_flight) == {"rig:0"}
    assert not restarted.held
    assert await restarted.release_held() == []


async def test_a_newer_plan_that_no_longer_wants_a_held_switch_drops_it(site: Site) -> None:
    dispatcher = site.dispatcher
    await dispatcher.order(swap_plan(), PlanEntry(1, 5_000.0, "test", 0.0, {}), uuids={})
    assert set(dispatcher.held) == {"rig:1"}
    plan = swap_plan()
    stay = Assignment(
        gpu_key="rig:1",
        workload=IDLE,
        previous=IDLE,
        changed=False,
        reason="held",
        lock="free",
        candidates=(),
    )
    newer = Plan(
        assignments={"rig:0": plan.assignments["rig:0"], "rig:1": stay},
        objective_usd_per_hour=0.0,
        net_usd_per_hour=0.0,
        total_power_w=180.0,
        power_cap_w=1000.0,
        sla=(),
        switches=0,
        dwell_breaks=0,
        problems=(),
    )
    assert await dispatcher.order(newer, PlanEntry(2, 5_001.0, "test", 0.0, {}), uuids={}) == []
    assert not dispatcher.held
    assert site.metric("orchestrator_wave_commands_total", result="dropped") == 1.0
    stop = await eventually(lambda: site.command(0), what="the stop")
    await site.done(stop, seq=1)
    await eventually(lambda: not dispatcher.in_flight, what="the stop's end")
    assert [c.gpu_index for c in site.received] == [0]


async def test_a_start_that_timed_out_still_counts_until_its_agent_says_how_it_ended(
    site: Site,
) -> None:
    """No word from the agent is no proof that a switch stopped: after its timeout a start
    still counts at its target, so the next start stays held, until the agent's late final
    event says what the GPU runs."""
    dispatcher = site.dispatcher
    plan = swap_plan()
    start = plan.assignments["rig:1"]  # idle -> mining, +600 W
    both = Plan(
        assignments={"rig:0": replace(start, gpu_key="rig:0"), "rig:1": start},
        objective_usd_per_hour=0.0,
        net_usd_per_hour=0.0,
        total_power_w=1380.0,
        power_cap_w=1000.0,
        sla=(),
        switches=2,
        dwell_breaks=0,
        problems=(),
    )
    sent = await dispatcher.order(both, PlanEntry(1, 5_000.0, "test", 0.0, {}), uuids={})
    assert [c.gpu for c in sent] == ["rig:0"]  # 180 W + 600 W fits; a second start does not
    first = await eventually(lambda: site.command(0), what="the first start")
    site.clock.advance(601.0)
    dispatcher.expire_overdue()
    assert not dispatcher.in_flight
    assert await dispatcher.release_held() == []
    assert dispatcher.held["rig:1"].why == HELD_SITE_POWER
    # the agent's late word: the start failed and the GPU is idle again
    event = SwitchEvent(
        command_id=first.command_id,
        generation=first.generation,
        node="rig",
        gpu_index=0,
        workload=MINE,
        state="failed",
        reason="miner did not start",
        at_s=site.clock.now_s,
        seq=1,
        boot_s=1_000.0,
        actual=IDLE,
        actual_since_s=site.clock.now_s,
    )
    assert await site.agent.publish(TOPICS.events("rig"), encode(event), qos=1)
    second = await eventually(lambda: site.command(1), what="the held start, released")
    assert (second.gpu_index, second.workload) == (1, MINE)


def test_the_wave_limits_come_from_the_dispatch_section_in_kw() -> None:
    config = parse_config(
        {"dispatch": {"ramp_limit_kw_per_minute": 30, "max_starts_per_node": 4}},
        "serve",
        source="<test>",
    )
    assert wave_settings(config) == WaveSettings(
        ramp_limit_w_per_minute=30_000.0, max_starts_per_node=4
    )
    assert wave_settings(parse_config({}, "serve", source="<test>")) == WaveSettings()


@pytest.mark.parametrize(
    ("key", "value"), [("ramp_limit_kw_per_minute", 0), ("max_starts_per_node", 0)]
)
def test_a_wave_limit_of_zero_is_refused_naming_the_key(key: str, value: int) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"dispatch": {key: value}}, "serve", source="<test>")
    assert [k for k, _ in error.value.problems] == [f"dispatch.{key}"]


def test_serve_wires_the_cap_the_limits_and_telemetry_into_the_wave(tmp_path: Path) -> None:
    config = parse_config(
        {
            "planner": {"site_power_cap_kw": 500},
            "dispatch": {"ramp_limit_kw_per_minute": 30, "max_starts_per_node": 2},
            "store": {"path": str(tmp_path / "serve.sqlite3")},
        },
        "serve",
        source="<test>",
    )
    daemon = CentralDaemon(config)
    try:
        scheduler = daemon.dispatcher.scheduler
        assert scheduler.power.cap_w(0.0) == 500_000.0
        assert scheduler.settings == WaveSettings(30_000.0, 2)
        assert scheduler.fleet is daemon.fleet
        assert daemon.ingest.telemetry_listener == daemon.dispatcher.on_telemetry
    finally:
        daemon.store.close()
