"""TeamRedMiner sgminer replies: windowed KHS/MHS keys, pools, devdetails, error replies."""

from __future__ import annotations

import json

import pytest

from orchestrator.agents.miners import MinerApiError, parse_teamredminer
from tests.agents.miners.conftest import fixture_bytes


def test_devs_prefers_the_windowed_khs_value() -> None:
    reading = parse_teamredminer(fixture_bytes("teamredminer-devs.0.8-30s.json"))
    assert reading.version == "0.8.2"
    gpu0, gpu1 = reading.devices
    assert gpu0.hashrate_hs == pytest.approx(31_450_000.0)
    assert gpu1.hashrate_hs == pytest.approx(30_750_000.0)
    assert reading.total_hashrate_hs == pytest.approx(62_200_000.0)
    assert (gpu0.temperature_c, gpu0.fan_pct, gpu0.power_w) == (61.0, 52.0, None)
    assert (reading.accepted_shares, reading.rejected_shares) == (168, 1)
    assert gpu0.pci_bus_id is None


def test_a_120s_window_is_found_by_pattern() -> None:
    reading = parse_teamredminer(fixture_bytes("teamredminer-devs.0.7-120s-khs.json"))
    assert reading.devices[0].hashrate_hs == pytest.approx(2150.0)


def test_nul_terminated_reply_parses() -> None:
    reading = parse_teamredminer(fixture_bytes("teamredminer-devs.0.8-30s.json") + b"\x00")
    assert len(reading.devices) == 2


def test_multi_command_reply_adds_algorithm_and_pci_bus_ids() -> None:
    combined = {
        name: [json.loads(fixture_bytes(f"teamredminer-{name}.{suffix}"))]
        for name, suffix in (
            ("devs", "0.8-30s.json"),
            ("pools", "0.8.json"),
            ("devdetails", "0.8.json"),
        )
    }
    reading = parse_teamredminer(json.dumps(combined))
    assert reading.algorithm == "ethash"
    assert [d.pci_bus_id for d in reading.devices] == ["00000000:03:00.0", "00000000:0C:00.0"]


def test_error_status_reply_is_a_miner_error() -> None:
    reply = b'{"STATUS":[{"STATUS":"E","When":1,"Code":14,"Msg":"Invalid command"}],"id":1}'
    with pytest.raises(MinerApiError) as err:
        parse_teamredminer(reply)
    assert err.value.reason == "miner_error"
    assert "Invalid command" in str(err.value)
