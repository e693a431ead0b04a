"""T-Rex ``/summary`` across API versions: exact H/s, shares per GPU, PCI ids from 0.2x."""

from __future__ import annotations

import pytest

from orchestrator.agents.miners import parse_miner, parse_trex
from tests.agents.miners.conftest import fixture_bytes


def test_api_1_0_has_hashrates_only() -> None:
    reading = parse_trex(fixture_bytes("trex-summary.api1.0.json"))
    assert (reading.miner, reading.version, reading.algorithm) == ("trex", "0.5.7", "lyra2z")
    assert reading.total_hashrate_hs == 5_601_500.0
    assert (reading.accepted_shares, reading.rejected_shares) == (17, 1)
    assert [d.hashrate_hs for d in reading.devices] == [2_811_000.0, 2_790_500.0]
    first = reading.devices[0]
    assert (first.pci_bus_id, first.power_w, first.temperature_c, first.accepted_shares) == (
        None,
        None,
        None,
        None,
    )


def test_api_3_2_takes_per_gpu_shares_from_stat_by_gpu() -> None:
    reading = parse_trex(fixture_bytes("trex-summary.api3.2-stat-by-gpu.json"))
    assert reading.total_hashrate_hs == 59_750_000.0
    gpu0, gpu1 = reading.devices
    assert (gpu0.accepted_shares, gpu0.rejected_shares) == (27, 1)
    assert (gpu1.accepted_shares, gpu1.rejected_shares) == (25, 1)
    assert (gpu0.power_w, gpu0.temperature_c, gpu0.fan_pct) == (120.0, 63.0, 61.0)
    assert reading.power_w == 239.0
    assert gpu0.pci_bus_id is None


def test_0_26_has_shares_inside_gpus_and_decimal_pci_bus_and_compact_uuid() -> None:
    reading = parse_trex(fixture_bytes("trex-summary.0.26-shares-pci.json"))
    gpu0, gpu1 = reading.devices
    assert gpu0.pci_bus_id == "00000000:01:00.0"
    assert gpu1.pci_bus_id == "00000000:0A:00.0"  # pci_bus 10 is decimal
    assert gpu0.uuid == "GPU-3e95c8eb-ee1c-a0d4-90c7-a000a27f4c55"
    assert (gpu1.accepted_shares, gpu1.rejected_shares) == (209, 2)
    assert gpu1.hashrate_hs == 22_050_000.0
    assert reading.device_by_pci_bus_id(b"00000000:0A:00.0") is gpu1


def test_warm_up_zeros_are_zero_hashrate_and_unknown_sensors() -> None:
    reading = parse_trex(fixture_bytes("trex-summary.warmup.json"))
    (gpu,) = reading.devices
    assert gpu.hashrate_hs == 0.0
    assert reading.total_hashrate_hs == 0.0
    assert (gpu.power_w, gpu.temperature_c, gpu.fan_pct) == (None, None, 30.0)


def test_ccminer_text_summary_is_in_khs() -> None:
    reading = parse_miner("trex", fixture_bytes("trex-ccminer-summary.txt"))
    assert reading.total_hashrate_hs == pytest.approx(11_250_500.0)
    assert (reading.version, reading.algorithm) == ("0.9.2", "x16r")
    assert (reading.accepted_shares, reading.rejected_shares) == (12, 1)
    assert reading.devices == ()


def test_to_json_dict_has_the_cli_keys() -> None:
    data = parse_trex(fixture_bytes("trex-summary.0.26-shares-pci.json")).to_json_dict()
    assert {"miner", "algorithm", "total_hashrate_hs", "devices"} <= data.keys()
    device = data["devices"][0]  # type: ignore[index]
    assert {
        "index",
        "pci_bus_id",
        "hashrate_hs",
        "accepted",
        "rejected",
        "power_w",
        "temperature_c",
    } <= device.keys()
