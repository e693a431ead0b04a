"""GMiner's unit keys across versions and NBMiner's numeric vs string hashrates."""

from __future__ import annotations

import pytest

from orchestrator.agents.miners import parse_gminer, parse_nbminer
from tests.agents.miners.conftest import fixture_bytes


def test_gminer_1x_without_unit_reports_native_units() -> None:
    reading = parse_gminer(fixture_bytes("gminer-stat.1.x-no-unit.json"))
    assert reading.total_hashrate_hs == pytest.approx(89.5)
    _, gpu1 = reading.devices
    assert gpu1.pci_bus_id == "00000000:0A:00.0"
    assert (gpu1.accepted_shares, gpu1.rejected_shares) == (2, 1)
    assert (reading.accepted_shares, reading.rejected_shares) == (5, 1)  # summed
    assert reading.version is None


def test_gminer_1_34_camelcase_sols_unit() -> None:
    reading = parse_gminer(fixture_bytes("gminer-stat.1.34-camelcase.json"))
    assert (reading.version, reading.algorithm) == ("1.36", 'Equihash 150,5 "Beam-PoW"')
    assert reading.total_hashrate_hs == pytest.approx(12.4)
    assert (reading.accepted_shares, reading.rejected_shares) == (7, 1)


def test_gminer_3x_snake_case_hs_with_fans_and_lowercase_bus_ids() -> None:
    reading = parse_gminer(fixture_bytes("gminer-stat.3.x-snakecase.json"))
    gpu0, gpu1 = reading.devices
    assert gpu0.hashrate_hs == 24_750_000.0
    assert reading.total_hashrate_hs == 49_850_000.0
    assert (gpu0.pci_bus_id, gpu1.pci_bus_id) == ("00000000:0B:00.0", "00000000:0C:00.0")
    assert (gpu1.fan_pct, gpu1.power_w, gpu1.temperature_c) == (67.0, 121.0, 61.0)
    assert (reading.accepted_shares, reading.rejected_shares) == (90, 1)


def test_nbminer_v10_numeric_hashrates_without_bus_ids() -> None:
    reading = parse_nbminer(fixture_bytes("nbminer-status.v10-numeric.json"))
    assert reading.version == "10.1"
    assert [d.hashrate_hs for d in reading.devices] == [1520.0, 1505.5]
    assert reading.total_hashrate_hs == 3025.5
    assert reading.power_w == 375.0
    assert (reading.accepted_shares, reading.rejected_shares) == (49, 1)
    assert reading.devices[0].pci_bus_id is None


def test_nbminer_v40_prefers_raw_hashrate_and_decimal_bus() -> None:
    reading = parse_nbminer(fixture_bytes("nbminer-status.v40-strings.json"))
    gpu0, gpu1 = reading.devices
    assert gpu0.hashrate_hs == 61_503_219.25
    assert gpu1.pci_bus_id == "00000000:26:00.0"  # pci_bus_id 38
    assert gpu0.temperature_c == 57.0
    assert reading.total_hashrate_hs == 104_713_219.25
    assert reading.algorithm == "ethash"
    assert (gpu0.accepted_shares, gpu0.rejected_shares) == (120, 1)


def test_nbminer_string_hashrates_with_si_suffix_when_no_raw_value() -> None:
    reading = parse_nbminer(fixture_bytes("nbminer-status.strings-only.json"))
    gpu0, gpu1 = reading.devices
    assert gpu0.hashrate_hs == pytest.approx(121_300_000.0)
    assert gpu1.hashrate_hs == pytest.approx(950_000.0)
    assert reading.total_hashrate_hs == pytest.approx(122_250_000.0)
    assert reading.version == "39.5"
