"""Faults injected into a site of real processes: the broker, `serve` and an agent killed
mid-work and restarted. Each test counts what the issue asks for (records lost, duplicate
switches, AI workloads stopped without an order) and keeps the counts for
`docs/reliability.md`; each must be zero.

The site (see `site.py`): two agents with four fake GPUs each, every GPU pinned by an
override, GPUs 0-1 serving AI (`ai:spot`), GPUs 2-3 mining; the workloads are real processes
that keep a start/stop ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from orchestrator.config.common import MqttSection
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.mqtt import MqttLink
from orchestrator.protocol import SwitchCommand, Topics, encode
from tests.faults.conftest import record
from tests.faults.site import (
    AI,
    IDLE,
    MINE,
    PREFIX,
    SITE,
    EventLog,
    Site,
    ai_stopped_without_order,
    duplicate_parts,
    duplicate_switches,
    records_lost,
    store_snapshot,
)
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _gpus(site: Site) -> list[str]:
    return [f"{node}:{i}" for node in site.nodes for i in range(site.gpus)]


def _ai_gpu(gpu: str) -> bool:
    return gpu.endswith((":0", ":1"))


async def converged(site: Site, want: dict[str, str], *, timeout_s: float = 40.0) -> None:
    """Wait until the workload processes and serve's view both match `want`."""

    def probe() -> bool:
        running = {gpu: w for gpu, w in site.running().items() if w != IDLE}
        return running == {g: w for g, w in want.items() if w != IDLE} and all(
            site.reported().get(g) == w for g, w in want.items()
        )

    await eventually(probe, timeout_s=timeout_s, what=f"the site to run {want}")


async def baseline(site: Site) -> dict[str, str]:
    """Start the site, pin AI on GPUs 0-1 and mining on 2-3 of every node, wait for it."""
    site.start()
    await eventually(site.ready, timeout_s=30, what="serve ready")
    gpus = _gpus(site)
    await eventually(lambda: len(site.reported()) == len(gpus), timeout_s=30, what="telemetry")
    site.pin([g for g in gpus if _ai_gpu(g)], AI)
    site.pin([g for g in gpus if not _ai_gpu(g)], MINE)
    want = {g: AI if _ai_gpu(g) else MINE for g in gpus}
    await converged(site, want)
    return want


def _starts(site: Site) -> int:
    return sum(1 for line in site.ledger_lines() if line["event"] == "start")


async def _send_stale_commands(broker: MosquittoBroker, node: str) -> list[SwitchCommand]:
    """An older-generation and an expired command for AI GPU 0, as a replay would bring."""
    now_s = time.time()

    def replayed(generation: int, issued_at_s: float, expires_at_s: float) -> SwitchCommand:
        return SwitchCommand(
            command_id=uuid.uuid4().hex,
            generation=generation,
            node=node,
            gpu_index=0,
            workload=MINE,
            issued_at_s=issued_at_s,
            expires_at_s=expires_at_s,
            reason="stale replay",
        )

    stale = [replayed(0, now_s, now_s + 60), replayed(10**9, now_s - 120, now_s - 60)]
    link = MqttLink(MqttSection(host=broker.host, port=broker.port, site=SITE), client_id="replay")
    async with _linked(link):
        for command in stale:
            assert await link.publish(Topics(PREFIX).commands(node), encode(command), qos=1)
    return stale


@contextlib.asynccontextmanager
async def _linked(link: MqttLink) -> AsyncIterator[MqttLink]:
    task = asyncio.create_task(link.run(), name="replay-link")
    try:
        await asyncio.wait_for(link.connected.wait(), 5)
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_broker_killed_during_a_wave_of_switches_and_restarted(
    site: Site, broker: MosquittoBroker, events: EventLog
) -> None:
    """Agents keep their workloads while the broker is gone (fail-static), the wave
    completes after it returns, and stale commands replayed after the reconnect are refused."""
    want = await baseline(site)
    before = store_snapshot(site)
    mining = [g for g in want if not _ai_gpu(g)]
    site.pin(mining, IDLE, "wave: stop mining")
    await eventually(
        lambda: len(store_snapshot(site).commands) > len(before.commands),
        timeout_s=10,
        what="the wave's first command journaled",
    )
    broker.stop_sync()  # mid-wave
    faults = 1
    await eventually(lambda: not site.ready(), timeout_s=10, what="serve sees the broker gone")
    ai_running = {g: w for g, w in site.running().items() if w == AI}
    assert ai_running == {g: AI for g in want if _ai_gpu(g)}  # nothing stopped for lack of orders
    assert all(agent.alive for agent in site.agents.values())
    assert site.serve.alive
    broker.start_sync()
    await eventually(site.ready, timeout_s=20, what="serve reconnected")
    wave = {g: IDLE if g in mining else w for g, w in want.items()}
    await converged(site, wave)

    # the observer must be back before the replay, or it misses the refusals
    await eventually(events.listening, timeout_s=10, what="the event observer reconnected")
    starts = _starts(site)
    stale = await _send_stale_commands(broker, site.nodes[0])
    faults += len(stale)
    await eventually(
        lambda: all(
            any(e.command_id == c.command_id and e.state == "refused" for e in events.events)
            for c in stale
        ),
        timeout_s=10,
        what="the stale commands refused",
    )
    assert _starts(site) == starts
    await converged(site, wave)

    after = store_snapshot(site)
    counts = {
        "faults_injected": faults,
        "records_lost": records_lost(before, after),
        "duplicate_switches": duplicate_switches(site, events),
        "duplicate_switch_parts": duplicate_parts(site, events),
        "ai_stopped_without_order": ai_stopped_without_order(site),
        "stale_commands_executed": _starts(site) - starts,
    }
    record("broker killed mid-wave, restarted on the same port", **counts)
    assert counts == {**counts, "records_lost": 0, "duplicate_switches": 0,
                      "ai_stopped_without_order": 0, "stale_commands_executed": 0}  # fmt: skip


async def test_serve_sigkilled_mid_switch_and_restarted_on_the_same_store(
    site: Site, events: EventLog
) -> None:
    """No override or journal row lost, the interrupted wave finishes without a second
    command per GPU, and the restart itself moves no GPU."""
    want = await baseline(site)
    mining = [g for g in want if not _ai_gpu(g)]
    site.pin(mining, IDLE, "wave: stop mining")
    await eventually(
        lambda: sum(1 for row in site.store_rows("commands") if row[3] == IDLE) >= 1,
        timeout_s=10,
        what="a command of the wave journaled",
    )
    before = store_snapshot(site)
    assert site.serve.kill(signal.SIGKILL) == -signal.SIGKILL
    site.serve.start()
    await eventually(site.ready, timeout_s=30, what="serve back")
    wave = {g: IDLE if g in mining else w for g, w in want.items()}
    await converged(site, wave)
    commands_after_wave = len(site.store_rows("commands"))
    # the restart moved nothing by itself: a few more plans, no more commands
    plans = len(site.store_rows("plans"))
    await eventually(
        lambda: len(site.store_rows("plans")) >= plans + 2, timeout_s=15, what="two more plans"
    )
    assert len(site.store_rows("commands")) == commands_after_wave
    idle_commands = [row for row in site.store_rows("commands") if row[3] == IDLE]
    after = store_snapshot(site)
    counts = {
        "faults_injected": 1,
        "records_lost": records_lost(before, after),
        "duplicate_switches": duplicate_switches(site, events) + (len(idle_commands) - len(mining)),
        "ai_stopped_without_order": ai_stopped_without_order(site),
    }
    record("serve SIGKILLed mid-switch, restarted on the same store", **counts)
    assert (counts["records_lost"], counts["duplicate_switches"]) == (0, 0)
    assert counts["ai_stopped_without_order"] == 0


async def test_an_agent_sigkilled_and_restarted_re_attaches_to_its_running_workloads(
    site: Site, events: EventLog
) -> None:
    want = await baseline(site)
    before, starts = store_snapshot(site), _starts(site)
    node = site.nodes[0]
    assert site.agents[node].kill(signal.SIGKILL) == -signal.SIGKILL
    await eventually(
        lambda: site.reported().get(f"{node}:0") == "unknown",
        timeout_s=10,
        what="serve sees the node offline (last will)",
    )
    assert site.running() == {g: w for g, w in want.items() if w != IDLE}  # workloads live on
    site.agents[node].start()
    await converged(site, want)
    plans = len(site.store_rows("plans"))
    await eventually(
        lambda: len(site.store_rows("plans")) >= plans + 2, timeout_s=15, what="two more plans"
    )
    after = store_snapshot(site)
    counts = {
        "faults_injected": 1,
        "records_lost": records_lost(before, after),
        "duplicate_switches": duplicate_switches(site, events),
        "ai_stopped_without_order": ai_stopped_without_order(site),
        "workloads_restarted": _starts(site) - starts,
        "commands_after_restart": len(after.commands - before.commands),
    }
    record("agent SIGKILLed and restarted", **counts)
    assert {k: v for k, v in counts.items() if k != "faults_injected"} == dict.fromkeys(
        ("records_lost", "duplicate_switches", "ai_stopped_without_order",
         "workloads_restarted", "commands_after_restart"), 0
    )  # fmt: skip
