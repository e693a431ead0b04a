"""The process driver path once, for real: a stub miner program serving T-Rex's API.

The agent starts `tests/agents/miners/stub_miner.py` as its child on the GPU's API port,
checks its health through the T-Rex API (hashrate > 0 on the device whose PCI bus id is the
NVML GPU's), reports that hashrate and the device's share counters in telemetry, re-attaches
to it after a restart, and stops it on `idle`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from orchestrator.agents.agent import NodeAgent
from orchestrator.agents.gpu import build_backend
from orchestrator.agents.gpu.fake import fake_pci_bus_ids
from orchestrator.demo.broker import MosquittoBroker, free_port
from tests.agents.executor.rig import (
    StartCounter,
    agent_config,
    central_view,
    command,
    started,
)
from tests.agents.miners.conftest import STUB

NODE = "rig-p"


def trex_summary(
    pci_bus_id: str, hashrate_hs: float | None, *, accepted: int = 12, rejected: int = 0
) -> dict[str, Any]:
    """A T-Rex 0.26 `/summary` for one GPU on `pci_bus_id` (NVML form)."""
    bus = int(pci_bus_id.split(":")[1], 16)
    return {
        "accepted_count": accepted,
        "algorithm": "kawpow",
        "api": "4.2",
        "gpu_total": 1,
        "gpus": [
            {
                "device_id": 0,
                "gpu_id": 0,
                "gpu_user_id": 0,
                "hashrate": hashrate_hs,
                "pci_bus": bus,
                "pci_domain": 0,
                "pci_id": 0,
                "shares": {
                    "accepted_count": accepted,
                    "rejected_count": rejected,
                    "invalid_count": 0,
                },
            }
        ],
        "hashrate": hashrate_hs,
        "name": "t-rex",
        "success": 1,
        "uptime": 60,
        "version": "0.26.8",
    }


def trex_profile(fixture: Path, port_base: int) -> dict[str, Any]:
    return {
        "id": "trex",
        "kind": "mining",
        "driver": "process",
        "algorithm": "kawpow",
        "expected_hashrate_hs": 21e6,
        "expected_power_w": 200.0,
        "api_port_base": port_base,
        "start_timeout_s": 15.0,
        "stop_timeout_s": 5.0,
        "process": {
            "argv": [
                sys.executable,
                str(STUB),
                "--api",
                "trex",
                "--port",
                "{port}",
                "--fixture",
                str(fixture),
            ],
            "gpu_selection": "uuid",
        },
        "health": {"miner_api": "trex", "url": "http://127.0.0.1:{port}"},
    }


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


async def test_a_stub_miner_is_started_health_checked_by_bus_id_recovered_and_stopped(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    bus_ids = fake_pci_bus_ids(NODE, 2)
    fixture = tmp_path / "trex-summary.json"
    fixture.write_text(json.dumps(trex_summary(bus_ids[0], 21.5e6, accepted=48, rejected=2)))
    config = agent_config(mosquitto, NODE, profiles=[trex_profile(fixture, free_port("127.0.0.1"))])
    backend = build_backend(config.gpu, node=NODE)
    first = NodeAgent(config, backend=backend)
    async with central_view(mosquitto, NODE) as view:
        async with started(first, keep_workloads=True) as executor:
            done = await view.run(command(NODE, 0, "mine:trex"))
            assert done.state == "done", done.reason
            assert done.reason == "2.15e+07 H/s"  # the miner's reading for this GPU's bus
            gpu = await view.reported(0, "mine:trex")
            assert gpu.workload is not None
            assert gpu.workload.hashrate_hs == 21.5e6
            # the miner's share counters for this GPU travel with it (serve values accepted work)
            assert (gpu.workload.accepted_shares, gpu.workload.rejected_shares) == (48, 2)
            handle = executor.slots[0].handle
            assert handle is not None
            pid = int(handle.ref)
            assert alive(pid)

        assert alive(pid)  # fail-static: the miner outlives the agent
        second = NodeAgent(config, backend=backend)
        starts = StartCounter(second.drivers.for_profile(config.profiles[0]))
        async with started(second) as recovered:
            slot = recovered.slots[0]
            assert slot.handle is not None
            assert slot.handle.ref == str(pid)
            assert starts.calls == []

            stop = await view.run(command(NODE, 0, "idle"))
            assert stop.state == "done"
            assert not alive(pid)
            await view.reported(0, "idle")
