"""The two lifecycle faults a new user met, on a site of real processes (`site.py`).

1. A plan built on a report older than the switch it had just finished: `serve` dropped a
   command at its `done` and the next plan read the GPU from telemetry sampled before the
   switch ended, so it ordered the same switch again (and moved contract GPUs about).
   Here the agents report only every 4 s, so between a switch's end and the next timed
   snapshot several plans run: each needed switch must be ordered exactly once.
2. A switch closed before the agent had finished it: a switch to idle reports the GPU idle
   after the stop, then verifies through NVML that the GPU is free. Here the fake GPU keeps
   a stuck process (`stuck_memory_dir`) until the rollback begins, the verification fails,
   the agent starts the miner again and says `rolled_back`: the command must end as a
   failure (counted, cooled down, shown by the decisions API and explain), not as the
   success that telemetry suggested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.demo.broker import MosquittoBroker
from orchestrator.domain import OPEN_STATES
from tests.faults.site import IDLE, MINE, VIEWER, EventLog, Site
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

_STATE = 8  # the commands table's state column
_WORKLOAD = 3
_OPEN = {state.value for state in OPEN_STATES}


def _site(tmp_path: Path, broker: MosquittoBroker, **agent_extra: Any) -> Site:
    return Site(
        tmp_path,
        broker,
        gpus=2,
        serve_extra={"ingest": {"node_offline_after_s": 10.0, "staleness_check_interval_s": 0.2}},
        agent_extra=agent_extra,
    )


def _gpus(site: Site) -> list[str]:
    return [f"{node}:{i}" for node in site.nodes for i in range(site.gpus)]


async def _started(site: Site) -> None:
    """Serve first, then the agents: their first snapshots (at start) reach serve."""
    site.serve.start()
    await eventually(site.ready, timeout_s=30, what="serve ready")
    for agent in site.agents.values():
        agent.start()
    await eventually(
        lambda: len(site.reported()) == len(_gpus(site)), timeout_s=30, what="telemetry"
    )


async def test_each_needed_switch_is_ordered_once_though_telemetry_trails_the_switch(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    site = _site(tmp_path, broker, telemetry={"interval_s": 4.0})
    try:
        await _started(site)
        gpus = _gpus(site)
        # the first plan may order switches of its own (a node can report before the other
        # is known, and on-demand work pays here): let them end before the pin, so that
        # every command counted below is the pin's
        await eventually(
            lambda: (
                bool(site.store_rows("plans"))
                and all(row[_STATE] not in _OPEN for row in site.store_rows("commands"))
            ),
            timeout_s=30,
            what="the first plan's switches ended",
        )
        before = {row[0] for row in site.store_rows("commands")}

        def pinned() -> list[tuple[Any, ...]]:
            return [row for row in site.store_rows("commands") if row[0] not in before]

        site.pin(gpus, MINE, "mine everywhere")
        await eventually(
            lambda: (
                {row[2] for row in pinned() if row[_STATE] == "done" and row[_WORKLOAD] == MINE}
                == set(gpus)
            ),
            timeout_s=40,
            what="every switch done",
        )
        plans = len(site.store_rows("plans"))
        await eventually(
            lambda: len(site.store_rows("plans")) >= plans + 3, timeout_s=15, what="three plans"
        )
        assert sorted(row[2] for row in pinned()) == sorted(gpus), "a switch ordered twice"
        assert site.metric("orchestrator_events_dropped_total", reason="unknown_command") == 0
    finally:
        site.close()


async def test_a_switch_to_idle_that_rolls_back_ends_as_a_failure(
    tmp_path: Path, broker: MosquittoBroker, events: EventLog
) -> None:
    stuck = tmp_path / "stuck"
    stuck.mkdir()
    site = _site(tmp_path, broker, gpu={"fake": {"stuck_memory_dir": str(stuck)}})
    try:
        await _started(site)
        gpu = f"{site.nodes[0]}:0"
        site.pin([gpu], MINE)
        await eventually(
            lambda: site.running().get(gpu) == MINE and site.reported().get(gpu) == MINE,
            timeout_s=30,
            what="the miner running",
        )
        (stuck / "gpu-0").touch()  # from now on GPU 0 does not look free
        site.pin([gpu], IDLE, "maintenance")
        # the verification failed; the agent rolls back, and the stuck process goes away
        # in time for the miner to start again (the rollback verifies the GPU free too)
        await eventually(
            lambda: any(e.step == "rollback" for e in events.events),
            timeout_s=30,
            what="the rollback step",
        )
        (stuck / "gpu-0").unlink()
        await eventually(
            lambda: any(
                row[_WORKLOAD] == IDLE and row[_STATE] not in ("publishing", "in_flight")
                for row in site.store_rows("commands")
            ),
            timeout_s=30,
            what="the switch to idle ended",
        )
        (to_idle,) = [row for row in site.store_rows("commands") if row[_WORKLOAD] == IDLE]
        assert to_idle[_STATE] == "rolled_back"
        assert site.metric("orchestrator_switches_total", result="rolled_back") == 1
        assert site.metric("orchestrator_events_dropped_total", reason="unknown_command") == 0
        await eventually(
            lambda: site.running().get(gpu) == MINE, timeout_s=10, what="the miner back"
        )
        status, body = site.call("GET", "/api/v1/decisions?limit=50", token=VIEWER)
        assert status == 200
        (decision,) = [
            d for d in body["decisions"] if d["kind"] == "switch" and d["workload"] == IDLE
        ]
        assert (decision["state"], decision["failed"]) == ("rolled_back", True)
        status, explained = site.call("GET", f"/api/v1/gpus/{gpu}/explain", token=VIEWER)
        assert status == 200
        last = explained["lifecycle"]["last_switch"]
        assert (last["state"], last["failed"], last["workload"]) == ("rolled_back", True, MINE)
        assert explained["lifecycle"]["cooldown_until_s"] is not None
        # cooled down: the override still says idle, and no second command goes out
        plans = len(site.store_rows("plans"))
        await eventually(
            lambda: len(site.store_rows("plans")) >= plans + 2, timeout_s=15, what="two plans"
        )
        assert len([r for r in site.store_rows("commands") if r[_WORKLOAD] == IDLE]) == 1
    finally:
        site.close()
