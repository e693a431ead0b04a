"""The docker driver against a real dockerd on a private socket (see conftest `dockerd`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.config.profiles import ProfileSection
from orchestrator.drivers.base import (
    Discoverable,
    Driver,
    DriverUnavailableError,
    Handle,
    WorkloadStartError,
    WorkloadState,
    WorkloadStatus,
)
from orchestrator.drivers.docker import (
    LABEL,
    DockerDriver,
    DockerStartError,
    container_name,
    create_body,
)
from orchestrator.errors import PermanentError
from tests.drivers.conftest import GPU0, GPU1, IMAGE, Dockerd, make_profile, spec_for

HEALTH = {"server": "http", "url": "http://127.0.0.1:{port}/health"}
SERVE_UNTIL_TERM = ["sh", "-c", "trap 'exit 0' TERM; echo up; while true; do sleep 0.1; done"]

pytestmark = pytest.mark.slow


def container_profile(
    socket_path: Path, *, cmd: list[str], gpu_request: bool = False, **docker: object
) -> ProfileSection:
    return make_profile(
        id="llama",
        kind="ai",
        driver="docker",
        sim=None,
        algorithm=None,
        expected_hashrate_hs=None,
        health=HEALTH,
        api_port_base=18000,
        docker={
            "image": IMAGE,
            "cmd": cmd,
            "gpu_request": gpu_request,
            "socket_path": str(socket_path),
            **docker,
        },
    )


@pytest.fixture
async def driver(dockerd: Dockerd, docker_cleanup: None) -> AsyncIterator[DockerDriver]:
    driver = DockerDriver(socket_path=dockerd.socket_path)
    yield driver
    await driver.close()


async def until_exited(
    driver: DockerDriver, handle: Handle, timeout_s: float = 10
) -> WorkloadStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = await driver.inspect(handle)
        if status.state is WorkloadState.EXITED:
            return status
        assert time.monotonic() < deadline, f"still {status}"
        await asyncio.sleep(0.05)


def test_create_body_requests_the_gpu_by_uuid_without_host_networking() -> None:
    """The request shape dockerd documents: DeviceRequests with the UUID, bridge by default."""
    profile = container_profile(
        Path("/x.sock"),
        cmd=["serve", "--port", "{port}"],
        gpu_request=True,
        ports={"8000/tcp": "127.0.0.1:{port}"},
        env={"GPU": "{gpu_uuid}"},
    )
    body = create_body(spec_for(profile, GPU1))
    host = body["HostConfig"]
    assert host["DeviceRequests"] == [
        {"Driver": "nvidia", "DeviceIDs": [GPU1.uuid], "Capabilities": [["gpu"]]}
    ]
    assert host["NetworkMode"] == "bridge"
    assert host["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18001"}]}
    assert body["ExposedPorts"] == {"8000/tcp": {}}
    assert body["Cmd"] == ["serve", "--port", "18001"]
    assert body["Env"] == [f"GPU={GPU1.uuid}"]
    assert body["Labels"][f"{LABEL}.managed"] == "true"
    assert body["Labels"][f"{LABEL}.gpu"] == "1"
    host_mode = container_profile(Path("/x.sock"), cmd=["x"], network_mode="host")
    assert create_body(spec_for(host_mode))["HostConfig"]["NetworkMode"] == "host"


async def test_create_start_inspect_stop_remove(dockerd: Dockerd, driver: DockerDriver) -> None:
    """A profile without a GPU request runs; it is labelled, bridged, stopped, then removed."""
    assert isinstance(driver, Driver)
    assert isinstance(driver, Discoverable)
    profile = container_profile(dockerd.socket_path, cmd=SERVE_UNTIL_TERM)
    handle = await driver.start(spec_for(profile))
    status = await driver.inspect(handle)
    assert status.state is WorkloadState.RUNNING
    assert status.container_id == handle.ref
    assert status.pid is not None
    assert status.started_at_s is not None
    assert abs(status.started_at_s - time.time()) < 60

    seen = json.loads(dockerd.cli("inspect", handle.ref).stdout)[0]
    assert seen["Name"] == "/" + container_name("node-a", 0, "llama")
    assert seen["HostConfig"]["NetworkMode"] == "bridge"
    assert not seen["HostConfig"].get("DeviceRequests")
    labels = seen["Config"]["Labels"]
    assert labels[f"{LABEL}.node"] == "node-a"
    assert labels[f"{LABEL}.gpu-uuid"] == GPU0.uuid
    assert labels[f"{LABEL}.profile"] == "llama"

    result = await driver.stop(handle, timeout_s=10)
    assert (result.forced, result.exit_code) == (False, 0)
    assert dockerd.cli("inspect", handle.ref).returncode != 0  # removed
    gone = await driver.inspect(handle)
    assert (gone.state, gone.detail) == (WorkloadState.EXITED, "container not found")
    assert await driver.stop(handle, timeout_s=1) == result.__class__(forced=False, exit_code=None)


async def test_a_container_ignoring_sigterm_is_killed_after_the_timeout(
    dockerd: Dockerd, driver: DockerDriver
) -> None:
    """PID 1 without a TERM handler ignores SIGTERM: dockerd kills it after t (exit 137)."""
    handle = await driver.start(
        spec_for(container_profile(dockerd.socket_path, cmd=["sleep", "300"]))
    )
    started = time.monotonic()
    result = await driver.stop(handle, timeout_s=1)
    assert time.monotonic() - started >= 1
    assert (result.forced, result.exit_code) == (True, 137)


async def test_inspect_reports_the_exit_code_and_destroy_removes(
    dockerd: Dockerd, driver: DockerDriver
) -> None:
    profile = container_profile(dockerd.socket_path, cmd=["sh", "-c", "exit 3"])
    handle = await driver.start(spec_for(profile))
    status = await until_exited(driver, handle)
    assert status.exit_code == 3
    await driver.destroy(handle)
    await driver.destroy(handle)  # idempotent
    assert dockerd.cli("inspect", handle.ref).returncode != 0


async def test_recover_by_label_after_an_agent_restart(
    dockerd: Dockerd, driver: DockerDriver
) -> None:
    """A restarted agent finds its container by id, or by its labels when the id was lost."""
    handle = await driver.start(
        spec_for(container_profile(dockerd.socket_path, cmd=SERVE_UNTIL_TERM))
    )
    persisted = handle.to_json()
    restarted = DockerDriver(socket_path=dockerd.socket_path)
    try:
        assert await restarted.recover(persisted) == handle
        lost_id = {**persisted, "ref": "", "details": {}}
        by_label = await restarted.recover(lost_id)
        assert by_label is not None
        assert by_label.ref == handle.ref
        assert (by_label.gpu_index, by_label.gpu_uuid, by_label.workload_id) == (
            0,
            GPU0.uuid,
            "ai:llama",
        )
        assert [found.ref for found in await restarted.discover("node-a")] == [handle.ref]
        assert await restarted.discover("node-b") == []
        assert (await restarted.inspect(by_label)).running
        await restarted.destroy(by_label)
        assert await restarted.recover(persisted) is None
    finally:
        await restarted.close()


async def test_a_gpu_request_on_an_engine_without_nvidia_fails_with_dockerds_error(
    dockerd: Dockerd, driver: DockerDriver
) -> None:
    """dockerd's own message surfaces in a typed permanent error; nothing is left behind."""
    profile = container_profile(dockerd.socket_path, cmd=SERVE_UNTIL_TERM, gpu_request=True)
    with pytest.raises(DockerStartError) as caught:
        await driver.start(spec_for(profile))
    error = caught.value
    assert isinstance(error, WorkloadStartError)
    assert isinstance(error, PermanentError)
    assert error.detail == 'could not select device driver "nvidia" with capabilities: [[gpu]]'
    assert error.status == 500
    listed = dockerd.cli("ps", "-a", "--filter", f"label={LABEL}.profile=llama", "-q")
    assert listed.stdout.strip() == ""


async def test_a_stopped_leftover_of_the_same_name_is_replaced(
    dockerd: Dockerd, driver: DockerDriver
) -> None:
    """A crash between create and remove leaves a container; the next start replaces it."""
    profile = container_profile(dockerd.socket_path, cmd=["sh", "-c", "exit 0"])
    first = await driver.start(spec_for(profile))
    await until_exited(driver, first)
    second = await driver.start(spec_for(profile))
    assert second.ref != first.ref
    assert dockerd.cli("inspect", first.ref).returncode != 0
    running = await driver.start(
        spec_for(container_profile(dockerd.socket_path, cmd=SERVE_UNTIL_TERM), GPU1)
    )
    with pytest.raises(DockerStartError, match="is running: recover it instead"):
        await driver.start(
            spec_for(container_profile(dockerd.socket_path, cmd=SERVE_UNTIL_TERM), GPU1)
        )
    await driver.destroy(running)


async def test_a_missing_image_is_a_start_error(dockerd: Dockerd, driver: DockerDriver) -> None:
    profile = container_profile(dockerd.socket_path, cmd=["x"], image="nosuch/image:1")
    with pytest.raises(DockerStartError, match="No such image: nosuch/image:1"):
        await driver.start(spec_for(profile))


async def test_an_absent_engine_is_temporary_and_inspect_says_unknown(tmp_path: Path) -> None:
    driver = DockerDriver(socket_path=tmp_path / "none.sock", request_timeout_s=2)
    profile = container_profile(tmp_path / "none.sock", cmd=["x"])
    try:
        with pytest.raises(DriverUnavailableError):
            await driver.start(spec_for(profile))
        handle = Handle("docker", "abc", "llama", "ai:llama", "node-a", 0, GPU0.uuid, 0.0)
        assert (await driver.inspect(handle)).state is WorkloadState.UNKNOWN
    finally:
        await driver.close()
