"""Every real upstream sample parses to sane values in the right units.

Runs over ``/work/shared/fixtures/upstream/miners`` when that folder exists (it is reference
data, not part of this repository) and skips otherwise. "Sane" means: hashrates in H/s within
a plausible range for the algorithm family (so a missed MH/s -> H/s conversion fails), sensor
readings within physical bounds, PCI ids in NVML form.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator.agents.miners import MINER_APIS, MinerReading, parse_miner
from tests.agents.miners.conftest import UPSTREAM

pytestmark = pytest.mark.skipif(not UPSTREAM.is_dir(), reason="upstream samples not present")

# Files that are not a reading on their own (config dumps, thread lists, pool lists).
NOT_A_READING = ("config", "threads", "pools", "readme", ".md")
NVML_BUS_ID = re.compile(r"^[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-7]$")


def _samples() -> list[tuple[str, Path]]:
    if not UPSTREAM.is_dir():
        return []
    found = []
    for path in sorted(UPSTREAM.iterdir()):
        api = path.name.split("-", 1)[0]
        if api in MINER_APIS and not any(word in path.name for word in NOT_A_READING):
            found.append((api, path))
    return found


def _assert_sane(reading: MinerReading) -> None:
    rates = [reading.total_hashrate_hs, *(d.hashrate_hs for d in reading.devices)]
    for rate in rates:
        assert rate is None or 0 <= rate < 1e13
    for device in reading.devices:
        assert device.pci_bus_id is None or NVML_BUS_ID.match(device.pci_bus_id)
        assert device.temperature_c is None or 0 < device.temperature_c < 120
        assert device.power_w is None or 0 < device.power_w < 1000
        assert device.fan_pct is None or 0 <= device.fan_pct <= 100
        for count in (device.accepted_shares, device.rejected_shares):
            assert count is None or count >= 0


@pytest.mark.parametrize(("api", "path"), _samples(), ids=lambda v: getattr(v, "name", v))
def test_upstream_sample_parses_sanely(api: str, path: Path) -> None:
    reading = parse_miner(api, path.read_bytes())
    assert reading.miner == api
    assert reading.total_hashrate_hs is not None
    _assert_sane(reading)


def _by_name(name: str) -> MinerReading:
    path = UPSTREAM / name
    return parse_miner(name.split("-", 1)[0], path.read_bytes())


def test_known_units_come_out_in_hs() -> None:
    """Spot checks of the unit conversions against the numbers printed in each sample."""
    assert _by_name("lolminer-summary.v1.26.hon95-exporter.json").total_hashrate_hs == (
        pytest.approx(91.55e6)
    )
    lol148 = _by_name("lolminer-root.v1.48-4gpu.dewkul-mock.json")
    assert lol148.devices[0].hashrate_hs == pytest.approx(27.43e6)
    trm = _by_name("teamredminer-devs.v0.3.10.foreman.json")
    assert trm.devices[0].hashrate_hs == pytest.approx(1_794_000.0)  # "KHS 30s": 1794
    trex = _by_name("trex-summary.v0.19.1-api3.2.foreman.json")
    assert trex.total_hashrate_hs == 232_615_880.0
    assert trex.devices[7].accepted_shares == 62
    assert _by_name("trex-ccminer-api-summary.v0.9.2.foreman.txt").total_hashrate_hs == (
        pytest.approx(5_798_280.0)
    )
    assert _by_name("gminer-stat.v1.34.foreman.json").total_hashrate_hs == pytest.approx(1.2)


def test_pci_bus_ids_match_nvml_form() -> None:
    gminer = _by_name("gminer-stat.v1.18-beam.foreman.json")
    assert gminer.devices[6].pci_bus_id == "00000000:0A:00.0"
    xmrig = _by_name("xmrig-2-backends.v5.5.3-cuda.foreman.json")
    assert xmrig.devices[0].pci_bus_id == "00000000:01:00.0"
    rigel = _by_name("rigel-api.v1.23.2-xelishashv3.UNVERIFIED-thirdparty.json")
    assert rigel.devices[0].pci_bus_id == "00000000:0B:00.0"
    srb = _by_name("srbminer-cn-root.v1.9.2.foreman.json")
    assert srb.devices[0].pci_bus_id == "00000000:0D:00.0"  # bus_id 13, decimal


def test_teamredminer_devs_with_pools_gives_the_algorithm() -> None:
    combined = {
        "devs": [json.loads((UPSTREAM / "teamredminer-devs.v0.3.10.foreman.json").read_bytes())],
        "pools": [json.loads((UPSTREAM / "teamredminer-pools.v0.3.10.foreman.json").read_bytes())],
    }
    reading = parse_miner("teamredminer", json.dumps(combined).encode())
    assert reading.algorithm == "phi2"


def test_xmrig_summary_and_backends_together() -> None:
    combined = {
        "summary": json.loads((UPSTREAM / "xmrig-1-summary.v5.5.3.foreman.json").read_bytes()),
        "backends": json.loads(
            (UPSTREAM / "xmrig-2-backends.v5.5.3-cuda.foreman.json").read_bytes()
        ),
    }
    reading = parse_miner("xmrig", json.dumps(combined).encode())
    assert reading.total_hashrate_hs == pytest.approx(899.09)
    (gpu,) = reading.devices
    assert (gpu.hashrate_hs, gpu.temperature_c, gpu.power_w) == (161.95, 48.0, None)
