"""The watchdog: restarts with backoff, quarantine after repeated failure, operator clearing.

The agent runs for real (mosquitto, fake GPUs, sim and process workloads); the test drives the
watchdog's one iteration (`check_once`) itself instead of its timer, so each look is explicit.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from orchestrator.agents.agent import NodeAgent
from orchestrator.agents.gpu import FakeGpuBackend
from orchestrator.agents.gpu.fake import fake_pci_bus_ids
from orchestrator.agents.watchdog import Watchdog
from orchestrator.demo.broker import MosquittoBroker, free_port
from orchestrator.domain import Health
from orchestrator.protocol import GpuHealthEvent
from tests.agents.executor.rig import (
    DEFAULT_PROFILES,
    CentralView,
    agent_config,
    central_view,
    command,
    sim_profile,
    started,
)
from tests.agents.executor.test_process_miner import trex_profile, trex_summary
from tests.waiting import eventually

NODE = "rig-w"
WATCHDOG = {
    "enabled": False,  # the test calls check_once itself
    "unhealthy_after_s": 0.2,
    "max_restarts": 2,
    "window_s": 60.0,
    "backoff_initial_s": 0.2,
    "backoff_max_s": 0.4,
}
# ready after 10 ms, crashes (exit code 1) 300 ms after each start, at time_scale 0.01
CRASHY = sim_profile("crashy", sim={"crash_after_s": 30.0})
SLOW = sim_profile("slow", sim={"start_delay_s": 200.0})


ROUND_TIMES: list[float] = []  # when each `check_until` round ended (monotonic)


def watchdog_of(agent: NodeAgent) -> Watchdog:
    assert agent.watchdog is not None
    return agent.watchdog


async def check_until(
    watchdog: Watchdog, index: int, action: str, *, timeout_s: float = 10.0
) -> list[dict[int, str]]:
    """Run `check_once` every 50 ms until GPU `index` gets `action`; every round's actions."""
    rounds: list[dict[int, str]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rounds.append(await watchdog.check_once())
        ROUND_TIMES.append(time.monotonic())
        if rounds[-1][index] == action:
            return rounds
        await asyncio.sleep(0.05)
    raise AssertionError(f"GPU {index} never got {action!r}: {rounds[-5:]}")


def actions_of(rounds: list[dict[int, str]], index: int) -> list[str]:
    return [round_[index] for round_ in rounds]


async def test_a_crashed_workload_is_restarted_after_a_backoff_and_the_other_gpu_is_untouched(
    mosquitto: MosquittoBroker,
) -> None:
    config = agent_config(mosquitto, NODE, profiles=[*DEFAULT_PROFILES, CRASHY], watchdog=WATCHDOG)
    agent = NodeAgent(config)
    async with central_view(mosquitto, NODE) as view, started(agent) as executor:
        assert (await view.run(command(NODE, 0, "mine:crashy"))).state == "done"
        assert (await view.run(command(NODE, 1, "mine:miner-a"))).state == "done"
        healthy_ref = executor.slots[1].handle.ref if executor.slots[1].handle else None

        ROUND_TIMES.clear()
        rounds = await check_until(watchdog_of(agent), 0, "restarted")
        gpu0 = actions_of(rounds, 0)
        assert "waiting" in gpu0  # the failure was seen, then the backoff ran
        seen_s = ROUND_TIMES[gpu0.index("waiting")]
        assert ROUND_TIMES[-1] - seen_s >= 0.1  # backoff_initial_s 0.2, full jitter: >= 0.1 s
        assert set(actions_of(rounds, 1)) == {"ok"}
        slot1 = executor.slots[1]
        assert slot1.handle is not None
        assert slot1.handle.ref == healthy_ref  # GPU 1's workload was never restarted

        event = await _health_event(view, "restarted")
        assert event.gpu_index == 0
        assert event.workload == "mine:crashy"
        assert event.reason.startswith("crashed: exited with code 1")
        assert event.restarts == 1
        assert isinstance(agent.backend, FakeGpuBackend)
        assert agent.backend.workload_of(0) == "mine:crashy"  # running again


async def test_repeated_failure_quarantines_the_gpu_until_an_operator_clears_it(
    mosquitto: MosquittoBroker,
) -> None:
    config = agent_config(mosquitto, NODE, profiles=[*DEFAULT_PROFILES, CRASHY], watchdog=WATCHDOG)
    agent = NodeAgent(config)
    async with central_view(mosquitto, NODE) as view, started(agent) as executor:
        assert (await view.run(command(NODE, 0, "mine:crashy"))).state == "done"
        assert (await view.run(command(NODE, 1, "mine:miner-a"))).state == "done"
        slot1 = executor.slots[1]
        healthy_ref = slot1.handle.ref if slot1.handle else None

        rounds = await check_until(watchdog_of(agent), 0, "quarantined")
        assert actions_of(rounds, 0).count("restarted") == 2  # max_restarts, then quarantine
        quarantined = await _health_event(view, "quarantined")
        assert quarantined.reason.startswith("crashed: exited with code 1")
        assert "(2 restarts within 60 s)" in quarantined.reason
        assert quarantined.workload == "mine:crashy"

        def unhealthy_and_stopped() -> bool:
            # quarantine is reported at once, the stop of its workload a moment later
            gpu = view.gpu(0)
            return (
                gpu is not None
                and gpu.health is Health.UNHEALTHY
                and gpu.workload is not None
                and gpu.workload.workload == "idle"
            )

        await eventually(unhealthy_and_stopped, what="GPU 0 unhealthy, its workload stopped")
        gpu0 = view.gpu(0)
        assert gpu0 is not None
        assert gpu0.health_reasons[-1].startswith("quarantined: crashed")
        refused = await view.run(command(NODE, 0, "mine:miner-a"))
        assert refused.state == "refused"
        assert refused.reason.startswith("GPU quarantined: crashed")
        assert slot1.handle is not None
        assert slot1.handle.ref == healthy_ref  # the healthy GPU was never touched
        assert (await watchdog_of(agent).check_once())[0] == "skipped"

        assert agent.http is not None
        url = f"{agent.http.url}/api/v1/gpus/0/clear-quarantine"
        async with aiohttp.ClientSession() as http:
            async with http.post(url) as response:
                assert response.status == 200
                assert await response.json() == {"node": NODE, "gpu_index": 0, "cleared": True}
            async with http.post(url) as again:
                assert again.status == 409  # nothing left to clear
            async with http.post(f"{agent.http.url}/api/v1/gpus/9/clear-quarantine") as missing:
                assert missing.status == 404
        cleared = await _health_event(view, "cleared")
        assert cleared.gpu_index == 0
        assert (await view.run(command(NODE, 0, "mine:miner-a"))).state == "done"


async def test_the_watchdog_never_touches_a_gpu_while_it_is_switching(
    mosquitto: MosquittoBroker,
) -> None:
    """A switch in progress holds the GPU: the watchdog reports it busy and does nothing."""
    config = agent_config(mosquitto, NODE, profiles=[*DEFAULT_PROFILES, SLOW], watchdog=WATCHDOG)
    agent = NodeAgent(config)
    async with central_view(mosquitto, NODE) as view, started(agent) as executor:
        slow = command(NODE, 0, "mine:slow")  # healthy only after 2 s
        await view.send(slow)

        await eventually(lambda: executor.busy(0), what="GPU 0 switching")
        assert (await watchdog_of(agent).check_once())[0] == "busy"
        assert (await view.final(slow)).state == "done"
        # the final event is said while the switch still holds the GPU's lock (its record
        # written, then announced, then released): wait for the release
        await eventually(lambda: not executor.busy(0), what="GPU 0 released")
        assert (await watchdog_of(agent).check_once())[0] == "ok"
        assert view.health_events() == []


async def test_a_warming_miner_without_hashrate_is_left_alone_but_zero_hashrate_restarts_it(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The miner API's null hashrate (warm-up) is not zero; 0 H/s for unhealthy_after_s is."""
    bus_ids = fake_pci_bus_ids(NODE, 2)
    fixture = tmp_path / "trex-summary.json"

    def miner_says(hashrate_hs: float | None) -> None:
        fixture.write_text(json.dumps(trex_summary(bus_ids[0], hashrate_hs)))

    miner_says(21.5e6)
    profile: dict[str, Any] = trex_profile(fixture, free_port("127.0.0.1"))
    config = agent_config(mosquitto, NODE, profiles=[profile], watchdog=WATCHDOG)
    agent = NodeAgent(config)
    async with central_view(mosquitto, NODE) as view, started(agent):
        assert (await view.run(command(NODE, 0, "mine:trex"))).state == "done"
        watchdog = watchdog_of(agent)

        miner_says(None)
        deadline = time.monotonic() + 3 * WATCHDOG["unhealthy_after_s"]
        while time.monotonic() < deadline:
            assert (await watchdog.check_once())[0] == "ok"
            await asyncio.sleep(0.05)
        assert view.health_events() == []

        miner_says(0.0)
        rounds = await check_until(watchdog, 0, "restarted")
        assert actions_of(rounds, 0)[0] == "ok"  # 0 H/s must last unhealthy_after_s first
        event = await _health_event(view, "restarted")
        assert event.reason.startswith("unhealthy for")
        assert "0 H/s" in event.reason


async def _health_event(view: CentralView, state: str) -> GpuHealthEvent:
    events = await eventually(lambda: view.health_events(state), what=f"a {state} event")
    return events[0]


async def test_a_gpu_ordered_idle_is_left_idle_by_the_watchdog(
    mosquitto: MosquittoBroker,
) -> None:
    """Found by the fault suite: after an ordered switch to idle, the watchdog took the
    stopped miner for a crashed one and started it again, without any command."""
    agent = NodeAgent(agent_config(mosquitto, NODE, watchdog=WATCHDOG))
    async with central_view(mosquitto, NODE) as view, started(agent) as executor:
        assert (await view.run(command(NODE, 0, "mine:miner-a"))).state == "done"
        assert (await view.run(command(NODE, 0, "idle"))).state == "done"
        watchdog = watchdog_of(agent)
        for _ in range(5):  # longer than the backoff of a restart (0.2-0.4 s)
            assert (await watchdog.check_once())[0] == "skipped"
            await asyncio.sleep(0.1)
        assert executor.slots[0].record.workload == "idle"
        assert executor.slots[0].handle is None
        assert watchdog.restarts_total == 0
