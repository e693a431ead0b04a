"""XMRig: summary windows with nulls, GPUs from ``/2/backends``, legacy xmrig-nvidia health."""

from __future__ import annotations

import json

import pytest

from orchestrator.agents.miners import parse_xmrig
from tests.agents.miners.conftest import fixture_bytes


def _envelope() -> bytes:
    return json.dumps(
        {
            "summary": json.loads(fixture_bytes("xmrig-1-summary.6.x.json")),
            "backends": json.loads(fixture_bytes("xmrig-2-backends.6.x-cuda.json")),
        }
    ).encode()


def test_summary_alone_gives_totals_and_shares() -> None:
    reading = parse_xmrig(fixture_bytes("xmrig-1-summary.6.x.json"))
    assert (reading.version, reading.algorithm) == ("6.18.1", "rx/0")
    assert reading.total_hashrate_hs == 3120.5  # the 10 s window
    assert (reading.accepted_shares, reading.rejected_shares) == (41, 2)
    assert reading.devices == ()


def test_summary_and_backends_give_gpus_with_threads_summed_per_index() -> None:
    reading = parse_xmrig(_envelope())
    assert reading.total_hashrate_hs == 3120.5
    gpu0, gpu1 = reading.devices
    assert gpu0.hashrate_hs == pytest.approx(900.5)  # two threads on GPU 0
    assert gpu0.pci_bus_id == "00000000:01:00.0"
    assert (gpu0.power_w, gpu0.temperature_c, gpu0.fan_pct) == (112.0, 55.0, 48.0)
    assert gpu1.pci_bus_id == "00000000:0A:00.0"
    assert (gpu1.power_w, gpu1.fan_pct) == (None, None)  # power 0 and [] mean not reported
    assert gpu1.hashrate_hs == 1010.0


def test_backends_alone_total_enabled_backends() -> None:
    reading = parse_xmrig(fixture_bytes("xmrig-2-backends.6.x-cuda.json"))
    assert reading.total_hashrate_hs == pytest.approx(3120.5)
    assert len(reading.devices) == 2
    assert reading.version is None


def test_warm_up_nulls_are_unknown_hashrate() -> None:
    reading = parse_xmrig(fixture_bytes("xmrig-1-summary.warmup.json"))
    assert reading.total_hashrate_hs is None
    assert (reading.accepted_shares, reading.rejected_shares) == (0, 0)


def test_legacy_xmrig_nvidia_health_gives_sensors_without_hashrate() -> None:
    reading = parse_xmrig(fixture_bytes("xmrig-nvidia-root.2.x-health.json"))
    assert reading.total_hashrate_hs == 1650.75
    assert [(d.power_w, d.temperature_c, d.fan_pct) for d in reading.devices] == [
        (98.0, 58.0, 47.0),
        (96.0, 56.0, 45.0),
    ]
    assert all(d.hashrate_hs is None and d.pci_bus_id is None for d in reading.devices)
    assert (reading.accepted_shares, reading.rejected_shares) == (12, 1)
