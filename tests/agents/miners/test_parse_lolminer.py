"""lolMiner: legacy ``/summary`` units per version, and the Workers/Algorithms format."""

from __future__ import annotations

import pytest

from orchestrator.agents.miners import parse_lolminer
from tests.agents.miners.conftest import fixture_bytes


def test_0x_without_a_unit_counts_equihash_in_sols() -> None:
    reading = parse_lolminer(fixture_bytes("lolminer-summary.0.x-equihash.json"))
    assert (reading.version, reading.algorithm) == ("0.7", "Equihash 150/5")
    assert reading.total_hashrate_hs == pytest.approx(31.4)
    assert [d.hashrate_hs for d in reading.devices] == [pytest.approx(15.9), pytest.approx(15.5)]
    assert [d.rejected_shares for d in reading.devices] == [0, 1]  # submitted - accepted
    assert (reading.accepted_shares, reading.rejected_shares) == (9, 1)
    assert reading.devices[1].pci_bus_id == "00000000:03:00.0"


def test_1_0_reads_temps_key_and_sols_unit_with_unmeasured_power() -> None:
    reading = parse_lolminer(fixture_bytes("lolminer-summary.1.0-sols.json"))
    (gpu,) = reading.devices
    assert gpu.hashrate_hs == pytest.approx(24.8)
    assert (gpu.temperature_c, gpu.fan_pct, gpu.power_w) == (57.0, 55.0, None)
    assert reading.power_w is None


def test_1_2x_converts_mhs_and_reads_decimal_pcie_address() -> None:
    reading = parse_lolminer(fixture_bytes("lolminer-summary.1.2x-mhs.json"))
    nvidia, amd = reading.devices
    assert reading.total_hashrate_hs == pytest.approx(58_120_000.0)
    assert nvidia.hashrate_hs == pytest.approx(58_120_000.0)
    assert nvidia.pci_bus_id == "00000000:0A:00.0"  # "10:0" read as decimal
    assert (nvidia.power_w, nvidia.temperature_c) == (230.5, 52.0)
    assert amd.hashrate_hs == 0.0  # warming up
    assert (amd.power_w, amd.temperature_c) == (None, None)
    assert amd.pci_bus_id == "00000000:26:00.0"
    assert reading.power_w == 230.5


def test_workers_format_uses_performance_factor_and_positional_arrays() -> None:
    reading = parse_lolminer(fixture_bytes("lolminer-root.1.5x-workers.json"))
    assert (reading.version, reading.algorithm) == ("1.52", "Etchash")
    assert reading.total_hashrate_hs == pytest.approx(144_830_000.0)
    nvidia, amd = reading.devices
    assert nvidia.hashrate_hs == pytest.approx(97_618_000.0)
    assert amd.hashrate_hs == pytest.approx(47_212_000.0)
    assert (nvidia.accepted_shares, nvidia.rejected_shares) == (208, 1)
    assert (nvidia.power_w, nvidia.temperature_c, nvidia.fan_pct) == (221.75, 61.0, 70.0)
    assert (nvidia.pci_bus_id, amd.pci_bus_id) == ("00000000:0A:00.0", "00000000:03:00.0")
    assert (reading.accepted_shares, reading.rejected_shares) == (310, 2)
    assert reading.power_w == pytest.approx(342.25)
