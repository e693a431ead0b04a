"""Handles are plain versioned JSON; the registry shares drivers per kind and socket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.drivers import DriverRegistry, Handle, HandleError
from orchestrator.drivers.docker import DockerDriver
from orchestrator.drivers.process import ProcessDriver
from orchestrator.drivers.sim import SimDriver
from orchestrator.drivers.systemd import SystemdDriver
from tests.drivers.conftest import GPU0, make_profile, spec_for

HANDLE = Handle(
    driver="process",
    ref="1234",
    profile_id="miner-a",
    workload_id="mine:miner-a",
    node="node-a",
    gpu_index=0,
    gpu_uuid=GPU0.uuid,
    started_at_s=1_700_000_000.5,
    details={"pid": 1234, "pgid": 1234, "start_ticks": 99, "log_path": None},
)


def test_a_handle_survives_a_json_round_trip() -> None:
    text = json.dumps(HANDLE.to_json())
    assert Handle.from_json(json.loads(text), driver="process") == HANDLE


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(version=2), "version 2"),
        (lambda d: d.pop("ref"), "lacks 'ref'"),
        (lambda d: d.update(gpu_index="0"), "gpu_index"),
        (lambda d: d.update(gpu_index=True), "gpu_index"),
        (lambda d: d.update(driver="docker"), "of driver 'docker' given to 'process'"),
    ],
)
def test_a_bad_persisted_handle_is_a_permanent_error(mutate: object, reason: str) -> None:
    data = HANDLE.to_json()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(HandleError, match=reason):
        Handle.from_json(data, driver="process")


def test_spec_renders_templates_and_ports_per_gpu() -> None:
    profile = make_profile(api_port_base=4067)
    spec = spec_for(profile, GPU0)
    assert spec.workload_id == "mine:miner-a"
    assert spec.render("{node}/{profile}/{gpu_index}/{port}") == "node-a/miner-a/0/4067"


async def test_registry_shares_drivers_per_kind_and_docker_socket(tmp_path: Path) -> None:
    registry = DriverRegistry(log_dir=tmp_path)
    health = {"miner_api": "trex", "url": "http://127.0.0.1:1"}
    process_a = make_profile(
        id="a", driver="process", sim=None, health=health, process={"argv": ["x"]}
    )
    process_b = make_profile(
        id="b", driver="process", sim=None, health=health, process={"argv": ["y"]}
    )
    docker = {"driver": "docker", "sim": None, "health": health}
    docker_1 = make_profile(id="d1", **docker, docker={"image": "i", "socket_path": "/a.sock"})
    docker_2 = make_profile(id="d2", **docker, docker={"image": "i", "socket_path": "/b.sock"})
    systemd = make_profile(id="s", driver="systemd", sim=None, health=health, systemd={})
    assert registry.for_profile(process_a) is registry.for_profile(process_b)
    assert isinstance(registry.for_profile(process_a), ProcessDriver)
    first, second = registry.for_profile(docker_1), registry.for_profile(docker_2)
    assert isinstance(first, DockerDriver)
    assert isinstance(second, DockerDriver)
    assert first is not second
    assert first.socket_path == Path("/a.sock")
    assert isinstance(registry.for_profile(systemd), SystemdDriver)
    assert isinstance(registry.for_profile(make_profile()), SimDriver)
    assert len(registry.drivers()) == 5
    await registry.close()
    assert spec_for(docker_1).profile.docker is not None
