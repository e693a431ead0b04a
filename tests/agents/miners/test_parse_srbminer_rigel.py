"""SRBMiner-MULTI/CN shapes, and Rigel (single and dual algorithm)."""

from __future__ import annotations

import pytest

from orchestrator.agents.miners import parse_rigel, parse_srbminer
from tests.agents.miners.conftest import fixture_bytes


def test_srbminer_2x_algorithms_shape_joins_gpu_keys_to_devices() -> None:
    reading = parse_srbminer(fixture_bytes("srbminer-multi-root.2.x-gpu.json"))
    assert (reading.version, reading.algorithm) == ("2.4.5", "kawpow")
    assert reading.total_hashrate_hs == 25_210_500.5
    gpu0, gpu1 = reading.devices
    assert gpu0.hashrate_hs == 12_600_250.25
    assert (gpu0.pci_bus_id, gpu1.pci_bus_id) == ("00000000:03:00.0", "00000000:09:00.0")
    assert (gpu1.power_w, gpu1.temperature_c) == (64.0, 61.0)
    assert (reading.accepted_shares, reading.rejected_shares) == (158, 2)
    assert reading.power_w == 126.0


def test_srbminer_0_1_gpu_hashrate_keeps_devices_without_details() -> None:
    reading = parse_srbminer(fixture_bytes("srbminer-multi-root.0.1-gpu_hashrate.json"))
    assert reading.total_hashrate_hs == 6_010_000_000.0
    gpu0, gpu1 = reading.devices
    assert (gpu0.pci_bus_id, gpu0.hashrate_hs) == ("00000000:04:00.0", 3_012_000_000.0)
    assert (gpu1.index, gpu1.pci_bus_id, gpu1.hashrate_hs) == (1, None, 2_998_000_000.0)
    assert gpu0.fan_pct is None  # fan_speed_rpm is not a percentage


def test_srbminer_cn_devices_shape() -> None:
    reading = parse_srbminer(fixture_bytes("srbminer-cn-root.1.x.json"))
    assert (reading.algorithm, reading.total_hashrate_hs) == ("haven", 3590.0)
    assert [d.hashrate_hs for d in reading.devices] == [1790.0, 1800.0]
    assert (reading.accepted_shares, reading.rejected_shares) == (39, 1)


def test_rigel_single_algorithm_skips_unselected_devices_and_reads_hex_bus() -> None:
    reading = parse_rigel(fixture_bytes("rigel-stat.single.json"))
    assert (reading.version, reading.algorithm) == ("1.19.1", "kawpow")
    assert reading.total_hashrate_hs == 60_125_001.0
    assert [d.pci_bus_id for d in reading.devices] == ["00000000:0A:00.0", "00000000:0B:00.0"]
    gpu0 = reading.devices[0]
    assert (gpu0.power_w, gpu0.temperature_c, gpu0.fan_pct) == (165.5, 60.0, 66.0)
    assert (gpu0.accepted_shares, gpu0.rejected_shares) == (40, 1)
    assert reading.power_w == 333.75


def test_rigel_dual_reports_the_primary_algorithm() -> None:
    reading = parse_rigel(fixture_bytes("rigel-stat.dual.json"))
    assert reading.algorithm == "etchash"
    assert reading.total_hashrate_hs == pytest.approx(99_500_000.0)
    assert reading.devices[0].pci_bus_id == "00000000:1F:00.0"
    assert reading.accepted_shares == 12
