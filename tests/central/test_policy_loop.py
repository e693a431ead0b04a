"""The central loop: triggers, holding on bad data, and commands that reach the broker.

The fleet state and market book are the real ones, fed directly; the dispatcher publishes
through a real mosquitto, and a second client proves what was delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.central.dispatch import Dispatcher
from orchestrator.central.fleet import FleetState
from orchestrator.central.policy_loop import PolicyLoop
from orchestrator.config.common import MqttSection
from orchestrator.config.policy import PolicySection
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.domain import NodeStatus
from orchestrator.markets import MarketBook, Provenance, Quote, QuoteKind
from orchestrator.mqtt import MqttLink
from orchestrator.policy.model import policy_from_config
from orchestrator.protocol import (
    GpuTelemetry,
    NodeStatusMessage,
    NodeTelemetry,
    SwitchCommand,
    SwitchEvent,
    Topics,
    WorkloadReport,
    encode,
)
from tests.fakes import Clock
from tests.waiting import eventually

pytestmark = pytest.mark.slow

RTX_3090 = "NVIDIA GeForce RTX 3090"
# kawpow on a 3090 (58 MH/s, 310 W) against spot AI (0.30 $/h x 25 %, 300 W) at 0.05 $/kWh
# breaks even near 3.16e-8 US$ per H/s per day
CHEAP_HASHPRICE = 1.0e-8
RICH_HASHPRICE = 1.0e-7

POLICY = PolicySection.model_validate(
    {
        "mining_profiles": [
            {
                "id": "kawpow",
                "algorithm": "kawpow",
                "switch_downtime_s": 20.0,
                "benchmarks": {RTX_3090: {"hashrate_hs": 58e6, "power_w": 310.0}},
            }
        ],
        "contracts": {
            "on_demand": [
                {
                    "id": "spot",
                    "rate_usd_per_gpu_hour": 0.30,
                    "expected_utilisation_fraction": 0.25,
                    "switch_downtime_s": 60.0,
                    "default_power_w": 300.0,
                }
            ]
        },
        "planner": {
            "interval_s": 60.0,
            "min_dwell_s": 0.0,
            "hysteresis_margin_usd_per_gpu_hour": 0.01,
            "price_move_replan_fraction": 0.01,
        },
    }
)


def quote(key: str, value: float, now_s: float) -> Quote:
    kind = QuoteKind.POWER if key == "power" else QuoteKind.HASHPRICE
    return Quote(
        kind=kind,
        key=key,
        value=value,
        provenance=Provenance(
            source="test", url="test://", fetched_at_s=now_s, raw_value=value, raw_unit="normalised"
        ),
        staleness_s=3600.0,
    )


def telemetry(node: str, workload: str, *, gpus: int = 2) -> NodeTelemetry:
    return NodeTelemetry(
        node=node,
        seq=1,
        sent_at_s=0.0,
        agent_version="test",
        nvml_backend="fake",
        gpus=tuple(
            GpuTelemetry(
                index=i,
                uuid=f"GPU-{node}-{i}",
                name=RTX_3090,
                memory_total_bytes=24 * 1024**3,
                power_draw_w=300.0,
                workload=WorkloadReport(workload=workload),
            )
            for i in range(gpus)
        ),
    )


@dataclass
class Rig:
    loop: PolicyLoop
    fleet: FleetState
    book: MarketBook
    clock: Clock
    registry: CollectorRegistry
    received: list[SwitchCommand]


@pytest.fixture
async def rig(mosquitto: MosquittoBroker) -> AsyncIterator[Rig]:
    clock = Clock(1_000_000.0)
    topics = Topics("fleet/v1/test")
    settings = MqttSection(host=mosquitto.host, port=mosquitto.port, site="test")
    received: list[SwitchCommand] = []

    def on_command(_topic: str, payload: bytes) -> None:
        received.append(SwitchCommand.model_validate_json(payload))

    publisher = MqttLink(settings, client_id="test-dispatch")
    listener = MqttLink(
        settings,
        client_id="test-listener",
        subscriptions=[(topics.all_of("commands"), 1)],
        on_message=on_command,
    )
    tasks = [asyncio.create_task(publisher.run()), asyncio.create_task(listener.run())]
    await asyncio.wait_for(publisher.connected.wait(), 5)
    await asyncio.wait_for(listener.connected.wait(), 5)
    registry = CollectorRegistry()
    fleet = FleetState(offline_after_s=10.0, started_at_s=clock.now_s)
    book = MarketBook()
    dispatcher = Dispatcher(
        link=publisher,
        topics=topics,
        registry=registry,
        command_timeout_s=600.0,
        command_ttl_s=300.0,
        clock=clock,
    )
    loop = PolicyLoop(
        fleet=fleet,
        book=book,
        dispatcher=dispatcher,
        policy=policy_from_config(POLICY),
        contracts=POLICY.contracts,
        registry=registry,
        warmup_s=10.0,
        clock=clock,
    )
    yield Rig(loop, fleet, book, clock, registry, received)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def prices(rig: Rig, *, hashprice: float | None, power: float | None = 0.05) -> None:
    if hashprice is not None:
        assert rig.book.offer(quote("kawpow", hashprice, rig.clock.now_s), rig.clock.now_s) is None
    if power is not None:
        assert rig.book.offer(quote("power", power, rig.clock.now_s), rig.clock.now_s) is None


async def test_nothing_is_planned_during_the_warm_up_then_the_first_plan_holds_a_good_fleet(
    rig: Rig,
) -> None:
    # a second node is known online (its retained status) but has not reported yet
    status = NodeStatusMessage(node="quiet", status=NodeStatus.ONLINE)
    rig.fleet.apply_status(status, now_s=rig.clock.now_s)
    rig.fleet.apply_telemetry(telemetry("rig", "ai:spot"), now_s=rig.clock.now_s)
    prices(rig, hashprice=CHEAP_HASHPRICE)
    assert rig.loop.due(rig.clock.now_s + 9.9) is None
    rig.clock.now_s += 10.0
    assert rig.loop.due(rig.clock.now_s) == "start"
    record = await rig.loop.plan_once("start")
    assert record is not None
    assert {a.workload for a in record.plan.assignments.values()} == {"ai:spot"}
    assert record.commands == ()
    assert rig.loop.due(rig.clock.now_s + 1) is None
    assert rig.loop.due(rig.clock.now_s + 60) == "timer"


async def test_the_first_plan_comes_once_every_online_node_has_reported(rig: Rig) -> None:
    """No need to sit out the whole warm-up when the fleet has already spoken: after a short
    grace (for the retained statuses to arrive), the first plan is due."""
    for node in ("rig", "other"):
        status = NodeStatusMessage(node=node, status=NodeStatus.ONLINE)
        rig.fleet.apply_status(status, now_s=rig.clock.now_s)
    prices(rig, hashprice=CHEAP_HASHPRICE)
    rig.clock.now_s += 0.5
    rig.fleet.apply_telemetry(telemetry("rig", "ai:spot"), now_s=rig.clock.now_s)
    assert rig.loop.due(rig.clock.now_s + 3.0) is None  # "other" has not reported
    rig.fleet.apply_telemetry(telemetry("other", "ai:spot"), now_s=rig.clock.now_s)
    assert rig.loop.due(rig.clock.now_s) is None  # within the grace
    assert rig.loop.due(rig.clock.now_s + 2.0) == "start"


async def test_a_sustained_price_move_orders_the_switch_within_one_replan_and_only_once(
    rig: Rig,
) -> None:
    rig.fleet.apply_telemetry(telemetry("rig", "ai:spot"), now_s=rig.clock.now_s)
    prices(rig, hashprice=CHEAP_HASHPRICE)
    rig.clock.now_s += 10.0
    await rig.loop.plan_once("start")

    rig.clock.now_s += 5.0
    prices(rig, hashprice=RICH_HASHPRICE, power=None)
    assert rig.loop.due(rig.clock.now_s) == "price"
    record = await rig.loop.plan_once("price")
    assert record is not None
    assert [c.workload for c in record.commands] == ["mine:kawpow", "mine:kawpow"]
    assert "switch to mine:kawpow" in record.plan.assignments["rig:0"].reason

    await eventually(lambda: len(rig.received) == 2, what="two commands delivered")
    first = rig.received[0]
    assert (first.node, first.workload, first.previous_workload) == (
        "rig",
        "mine:kawpow",
        "ai:spot",
    )
    assert first.generation == record.generation
    assert first.expires_at_s == pytest.approx(rig.clock.now_s + 300.0)
    assert {c.gpu_index for c in rig.received} == {0, 1}
    assert {c.gpu_uuid for c in rig.received} == {"GPU-rig-0", "GPU-rig-1"}

    # the GPUs have not switched yet: the next plan must not order the same switch again
    rig.clock.now_s += 60.0
    again = await rig.loop.plan_once("timer")
    assert again is not None
    assert again.commands == ()
    assert set(rig.loop.dispatcher.targets().values()) == {"mine:kawpow"}

    # telemetry showing the new workload confirms, but only the agent's final word ends
    rig.fleet.apply_telemetry(telemetry("rig", "mine:kawpow"), now_s=rig.clock.now_s)
    rig.loop.dispatcher.expire_overdue()
    assert set(rig.loop.dispatcher.targets()) == {"rig:0", "rig:1"}
    for seq, command in enumerate(rig.received, start=1):
        done = SwitchEvent(
            command_id=command.command_id,
            generation=command.generation,
            node="rig",
            gpu_index=command.gpu_index,
            workload=command.workload,
            state="done",
            at_s=rig.clock.now_s,
            seq=seq,
            boot_s=1.0,
            actual=command.workload,
            actual_since_s=rig.clock.now_s,
        )
        rig.loop.dispatcher.on_event("rig", encode(done))
    assert rig.loop.dispatcher.targets() == {}
    assert {r.state for r in rig.loop.dispatcher.journal} == {"done"}


async def test_prices_wobbling_inside_the_margin_replan_but_never_switch(rig: Rig) -> None:
    rig.fleet.apply_telemetry(telemetry("rig", "ai:spot"), now_s=rig.clock.now_s)
    prices(rig, hashprice=3.10e-8)
    rig.clock.now_s += 10.0
    await rig.loop.plan_once("start")
    replans = 0
    for step in range(20):
        rig.clock.now_s += 1.0
        prices(rig, hashprice=3.20e-8 if step % 2 == 0 else 3.10e-8, power=None)
        trigger = rig.loop.due(rig.clock.now_s)
        if trigger is not None:
            replans += 1
            record = await rig.loop.plan_once(trigger)
            assert record is not None
            assert record.commands == ()
    assert replans == 20
    assert rig.received == []


async def test_an_absurd_price_is_rejected_and_causes_no_switch(rig: Rig) -> None:
    rig.fleet.apply_telemetry(telemetry("rig", "ai:spot"), now_s=rig.clock.now_s)
    prices(rig, hashprice=CHEAP_HASHPRICE)
    rig.clock.now_s += 10.0
    await rig.loop.plan_once("start")
    rig.clock.now_s += 1.0
    rejection = rig.book.offer(
        quote("kawpow", CHEAP_HASHPRICE * 5000, rig.clock.now_s), rig.clock.now_s
    )
    assert rejection is not None
    assert rejection.reason == "outlier"
    assert rig.loop.due(rig.clock.now_s) is None
    record = await rig.loop.plan_once("timer")
    assert record is not None
    assert record.commands == ()


async def test_without_a_power_price_the_loop_holds_and_counts_why(rig: Rig) -> None:
    rig.fleet.apply_telemetry(telemetry("rig", "ai:spot"), now_s=rig.clock.now_s)
    prices(rig, hashprice=RICH_HASHPRICE, power=None)
    rig.clock.now_s += 10.0
    assert await rig.loop.plan_once("start") is None
    assert rig.loop.last is None
    held = rig.registry.get_sample_value(
        "orchestrator_plan_held_total", {"reason": "no_power_price"}
    )
    assert held == 1.0
    assert rig.received == []
    prices(rig, hashprice=None, power=0.05)
    assert rig.loop.due(rig.clock.now_s) == "market"


async def test_a_node_going_offline_triggers_a_replan_that_leaves_its_gpus_alone(rig: Rig) -> None:
    rig.fleet.apply_telemetry(telemetry("rig", "ai:spot"), now_s=rig.clock.now_s)
    rig.fleet.apply_telemetry(telemetry("other", "ai:spot"), now_s=rig.clock.now_s)
    prices(rig, hashprice=CHEAP_HASHPRICE)
    rig.clock.now_s += 10.0
    await rig.loop.plan_once("start")
    rig.fleet.apply_status(
        NodeStatusMessage(node="other", status=NodeStatus.OFFLINE), now_s=rig.clock.now_s
    )
    assert rig.loop.due(rig.clock.now_s) == "fleet"
    prices(rig, hashprice=RICH_HASHPRICE, power=None)
    record = await rig.loop.plan_once("fleet")
    assert record is not None
    assert {c.gpu for c in record.commands} == {"rig:0", "rig:1"}
    assert record.plan.assignments["other:0"].lock == "offline"
    assert record.plan.assignments["other:0"].changed is False


async def test_a_failing_planner_holds_the_plan_and_the_loop_goes_on(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.central import policy_loop  # noqa: PLC0415

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("solver exploded")

    rig.fleet.apply_telemetry(telemetry("rig", "ai:spot"), now_s=rig.clock.now_s)
    prices(rig, hashprice=RICH_HASHPRICE)
    rig.clock.now_s += 10.0
    monkeypatch.setattr(policy_loop, "plan", broken)
    assert await rig.loop.plan_once("start") is None
    held = rig.registry.get_sample_value(
        "orchestrator_plan_held_total", {"reason": "planner_error"}
    )
    assert held == 1.0
    assert rig.received == []
    monkeypatch.undo()
    rig.clock.now_s += 60.0
    record = await rig.loop.plan_once("timer")
    assert record is not None
    assert len(record.commands) == 2


async def test_a_move_between_negative_power_prices_replans(rig: Rig) -> None:
    """Real-time power prices go below zero: -0.05 to -0.5 US$/kWh is ten times the pay for
    drawing power and must re-plan at once; a wobble of a tenth of a cent must not."""
    book = MarketBook(allow_negative_power_price=True)
    rig.loop.book = rig.book = book
    rig.fleet.apply_telemetry(telemetry("rig", "ai:spot"), now_s=rig.clock.now_s)
    prices(rig, hashprice=CHEAP_HASHPRICE, power=-0.05)
    rig.clock.now_s += 10.0
    first = await rig.loop.plan_once("start")
    assert first is not None
    assert first.market.power_price_usd_per_kwh == -0.05

    rig.clock.now_s += 5.0
    prices(rig, hashprice=None, power=-0.0499)
    assert rig.loop.due(rig.clock.now_s) is None
    prices(rig, hashprice=None, power=-0.5)
    assert rig.loop.due(rig.clock.now_s) == "price"
    record = await rig.loop.plan_once("price")
    assert record is not None
    assert record.market.power_price_usd_per_kwh == -0.5
    assert rig.loop.due(rig.clock.now_s + 1.0) is None
