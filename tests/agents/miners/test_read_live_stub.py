"""`read_miner` against stub miners running as real processes on 127.0.0.1.

Each stub serves a miner's real API format (HTTP, or sgminer JSON over TCP for TeamRedMiner);
the reading must equal what `parse_miner` makes of the same fixture, proving the transport adds
and loses nothing. Failures (timeout, refused connection, 404, garbage) must come out as
`MinerApiError` with the right reason.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import aiohttp
import pytest

from orchestrator.agents.miners import (
    MinerApiError,
    MinerUnreachableError,
    parse_miner,
    read_miner,
)
from tests.agents.miners.conftest import FIXTURES, StartStub, fixture_bytes

pytestmark = pytest.mark.slow

SINGLE_ENDPOINT = [
    ("trex", "trex-summary.0.26-shares-pci.json"),
    ("lolminer", "lolminer-root.1.5x-workers.json"),
    ("gminer", "gminer-stat.3.x-snakecase.json"),
    ("nbminer", "nbminer-status.v40-strings.json"),
    ("srbminer", "srbminer-multi-root.2.x-gpu.json"),
    ("rigel", "rigel-stat.single.json"),
    ("xmrig", "xmrig-1-summary.6.x.json"),
    ("teamredminer", "teamredminer-devs.0.8-30s.json"),
]


def _url(api: str, port: int) -> str:
    return f"tcp://127.0.0.1:{port}" if api == "teamredminer" else f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(("api", "fixture"), SINGLE_ENDPOINT)
async def test_live_reading_equals_parsed_fixture(
    start_stub: StartStub, api: str, fixture: str
) -> None:
    port = start_stub(api, fixture)
    reading = await read_miner(api, url=_url(api, port), timeout_s=5)
    assert reading == parse_miner(api, fixture_bytes(fixture))
    assert reading.total_hashrate_hs is not None
    assert reading.total_hashrate_hs > 0


async def test_xmrig_reader_merges_backends_into_gpu_devices(start_stub: StartStub) -> None:
    backends = FIXTURES / "xmrig-2-backends.6.x-cuda.json"
    port = start_stub("xmrig", "xmrig-1-summary.6.x.json", "--endpoint", f"/2/backends={backends}")
    async with aiohttp.ClientSession() as session:
        reading = await read_miner("xmrig", url=f"127.0.0.1:{port}", session=session)
    assert reading.version == "6.18.1"
    assert [d.pci_bus_id for d in reading.devices] == ["00000000:01:00.0", "00000000:0A:00.0"]


async def test_teamredminer_reader_adds_pools_and_devdetails(start_stub: StartStub) -> None:
    pools = FIXTURES / "teamredminer-pools.0.8.json"
    details = FIXTURES / "teamredminer-devdetails.0.8.json"
    port = start_stub(
        "teamredminer",
        "teamredminer-devs.0.8-30s.json",
        "--endpoint",
        f"pools={pools}",
        "--endpoint",
        f"devdetails={details}",
    )
    reading = await read_miner("teamredminer", url=f"127.0.0.1:{port}")
    assert reading.algorithm == "ethash"
    assert [d.pci_bus_id for d in reading.devices] == ["00000000:03:00.0", "00000000:0C:00.0"]


async def test_teamredminer_without_nul_terminator(start_stub: StartStub) -> None:
    port = start_stub("teamredminer", "teamredminer-devs.0.8-30s.json", "--no-nul")
    reading = await read_miner("teamredminer", url=f"tcp://127.0.0.1:{port}")
    assert reading.total_hashrate_hs == pytest.approx(62_200_000.0)
    assert reading.algorithm is None  # the stub answers "Invalid command" for pools


async def test_reading_follows_the_miner_as_it_changes(
    start_stub: StartStub, tmp_path: Path
) -> None:
    live = tmp_path / "summary.json"
    live.write_bytes(fixture_bytes("trex-summary.warmup.json"))
    port = start_stub("trex", live)
    first = await read_miner("trex", url=f"http://127.0.0.1:{port}")
    live.write_bytes(fixture_bytes("trex-summary.api3.2-stat-by-gpu.json"))
    second = await read_miner("trex", url=f"http://127.0.0.1:{port}/summary")
    assert (first.total_hashrate_hs, second.total_hashrate_hs) == (0.0, 59_750_000.0)


@pytest.mark.parametrize("api", ["trex", "teamredminer"])
async def test_slow_miner_times_out_as_unreachable(start_stub: StartStub, api: str) -> None:
    fixture = (
        "teamredminer-devs.0.8-30s.json" if api == "teamredminer" else "trex-summary.api1.0.json"
    )
    port = start_stub(api, fixture, "--delay-s", "10")
    with pytest.raises(MinerUnreachableError) as err:
        await read_miner(api, url=_url(api, port), timeout_s=0.5)
    assert err.value.reason == "timeout"


@pytest.mark.parametrize("api", ["gminer", "teamredminer"])
async def test_nothing_listening_is_unreachable(api: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(MinerUnreachableError) as err:
        await read_miner(api, url=_url(api, port), timeout_s=2)
    assert err.value.reason == "unreachable"


async def test_wrong_miner_on_the_port_is_an_http_status_error(start_stub: StartStub) -> None:
    port = start_stub("trex", "trex-summary.api1.0.json")
    with pytest.raises(MinerApiError) as err:
        await read_miner("gminer", url=f"http://127.0.0.1:{port}")
    assert err.value.reason == "http_status"
    assert not isinstance(err.value, MinerUnreachableError)


async def test_garbage_body_is_not_json(start_stub: StartStub, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"<html>miner starting</html>")
    port = start_stub("nbminer", garbage)
    with pytest.raises(MinerApiError) as err:
        await read_miner("nbminer", url=f"http://127.0.0.1:{port}")
    assert err.value.reason == "not_json"


async def test_file_source_and_argument_errors(tmp_path: Path) -> None:
    reading = await read_miner("rigel", file=FIXTURES / "rigel-stat.dual.json")
    assert reading.algorithm == "etchash"
    cases = [
        ({"api": "rigel", "file": tmp_path / "missing.json"}, "unreadable"),
        ({"api": "cgminer", "url": "http://127.0.0.1:1"}, "unknown_api"),
        ({"api": "trex"}, "no_source"),
        ({"api": "trex", "url": "http://[::1"}, "bad_url"),
    ]
    for kwargs, reason in cases:
        with pytest.raises(MinerApiError) as err:
            await read_miner(**kwargs)  # type: ignore[arg-type]
        assert err.value.reason == reason, kwargs


def test_cli_json_shape_round_trips() -> None:
    reading = parse_miner("gminer", fixture_bytes("gminer-stat.3.x-snakecase.json"))
    data = json.loads(json.dumps(reading.to_json_dict()))
    assert data["miner"] == "gminer"
    assert data["devices"][1]["pci_bus_id"] == "00000000:0C:00.0"
