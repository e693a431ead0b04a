"""The process driver against real child processes (`workload_stub.py`)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from orchestrator.config.profiles import ProfileSection
from orchestrator.drivers.base import (
    Discoverable,
    Driver,
    Handle,
    HasLogs,
    WorkloadStartError,
    WorkloadState,
    WorkloadStatus,
)
from orchestrator.drivers.process import ProcessDriver, process_start_ticks
from tests.drivers.conftest import GPU0, GPU1, WORKLOAD_STUB, make_profile, spec_for, wait_for_text

HEALTH = {"miner_api": "trex", "url": "http://127.0.0.1:4067"}


def stub_profile(*flags: str, gpu_selection: str = "uuid") -> ProfileSection:
    return make_profile(
        driver="process",
        sim=None,
        health=HEALTH,
        process={
            "argv": [sys.executable, str(WORKLOAD_STUB), *flags],
            "gpu_selection": gpu_selection,
        },
    )


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[ProcessDriver]:
    """A process driver whose workloads are all killed after the test, whatever happened."""
    driver = ProcessDriver(log_dir=tmp_path / "logs")
    yield driver
    for handle in await driver.discover("node-a"):
        await driver.destroy(handle)


async def until_status(
    inspect: Callable[[], Awaitable[WorkloadStatus]],
    accept: Callable[[WorkloadStatus], bool],
    *,
    timeout_s: float = 10.0,
) -> WorkloadStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = await inspect()
        if accept(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"status never accepted: {status}")
        await asyncio.sleep(0.02)


def _log(driver: ProcessDriver, handle: Handle) -> Path:
    path = driver.log_path(handle)
    assert path is not None
    return path


async def test_start_selects_the_gpu_by_uuid_logs_and_stops_gracefully(
    driver: ProcessDriver,
) -> None:
    """CUDA_VISIBLE_DEVICES carries the UUID, output lands in gpu0.log, SIGTERM ends it (0)."""
    assert isinstance(driver, Driver)
    assert isinstance(driver, HasLogs)
    assert isinstance(driver, Discoverable)
    handle = await driver.start(spec_for(stub_profile()))
    log = await wait_for_text(_log(driver, handle), "ready")
    assert _log(driver, handle).name == "gpu0.log"
    assert "start mine:miner-a (miner-a)" in log
    assert f"cuda={GPU0.uuid}" in log
    assert "order=PCI_BUS_ID" in log  # CUDA counts devices the way NVML does
    status = await driver.inspect(handle)
    assert status.state is WorkloadState.RUNNING
    assert status.pid == int(handle.ref)
    result = await driver.stop(handle, timeout_s=5)
    assert (result.forced, result.exit_code) == (False, 0)
    assert (await driver.inspect(handle)).state is WorkloadState.EXITED


async def test_index_selection_and_argv_placeholders(driver: ProcessDriver) -> None:
    """`index` mode sets the NVML index; argv placeholders are filled for the GPU."""
    profile = stub_profile("--tag", "{gpu_index}/{pci_bus_id}", gpu_selection="index")
    handle = await driver.start(spec_for(profile, GPU1))
    log = await wait_for_text(_log(driver, handle), "ready")
    assert "cuda=1\n" in log
    assert f"tag=1/{GPU1.pci_bus_id}" in log
    await driver.stop(handle, timeout_s=5)


async def test_the_workload_gets_its_profile_env_but_not_the_agents_secrets(
    driver: ProcessDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_MQTT_PASSWORD", "hunter2")
    profile = make_profile(
        driver="process",
        sim=None,
        health=HEALTH,
        process={
            "argv": [
                sys.executable,
                str(WORKLOAD_STUB),
                "--show-env",
                "WALLET",
                "PATH",
                "ORCHESTRATOR_MQTT_PASSWORD",
            ],
            "env": {"WALLET": "rig-{gpu_index}"},
        },
    )
    handle = await driver.start(spec_for(profile, GPU1))
    log = await wait_for_text(_log(driver, handle), "ready")
    assert "env:WALLET=rig-1" in log
    assert "env:ORCHESTRATOR_MQTT_PASSWORD=<unset>" in log
    assert "env:PATH=/" in log  # the allowlist keeps what a program needs to run
    await driver.stop(handle, timeout_s=5)


async def test_inspect_reports_the_exit_code(driver: ProcessDriver) -> None:
    handle = await driver.start(spec_for(stub_profile("--exit-code", "3")))
    status = await until_status(lambda: driver.inspect(handle), lambda s: not s.running)
    assert status.state is WorkloadState.EXITED
    assert status.exit_code == 3
    restarted = ProcessDriver(log_dir=Path("/nonexistent"))
    assert await restarted.recover(handle.to_json()) is None  # nothing left to re-attach to
    result = await driver.stop(handle, timeout_s=1)  # stopping an exited workload is a no-op
    assert (result.forced, result.exit_code) == (False, 3)


async def test_sigterm_ignored_means_sigkill_to_the_whole_group(driver: ProcessDriver) -> None:
    """A workload that ignores SIGTERM is killed after the timeout, its child with it."""
    handle = await driver.start(spec_for(stub_profile("--ignore-term", "--child")))
    log = await wait_for_text(_log(driver, handle), "ready")
    child_pid = int(log.split("child=")[1].split()[0])
    assert process_start_ticks(child_pid) is not None
    started = time.monotonic()
    result = await driver.stop(handle, timeout_s=0.5)
    assert time.monotonic() - started >= 0.5
    assert result.forced is True
    assert result.exit_code == 137  # 128 + SIGKILL
    assert process_start_ticks(int(handle.ref)) is None
    for _ in range(100):  # the orphaned child is reaped by init a moment later
        if process_start_ticks(child_pid) is None:
            break
        await asyncio.sleep(0.02)
    assert process_start_ticks(child_pid) is None


async def test_recover_after_agent_restart_inspects_and_stops(tmp_path: Path) -> None:
    """A new driver (the restarted agent) re-attaches from the persisted JSON and stops it."""
    first = ProcessDriver(log_dir=tmp_path / "logs")
    handle = await first.start(spec_for(stub_profile("--ignore-term")))
    await wait_for_text(_log(first, handle), "ready")
    persisted = json.loads(json.dumps(handle.to_json()))

    restarted = ProcessDriver(log_dir=tmp_path / "logs")
    discovered = await restarted.discover("node-a")
    assert [found.ref for found in discovered] == [handle.ref]
    assert discovered[0].profile_id == "miner-a"
    assert await restarted.discover("node-b") == []
    recovered = await restarted.recover(persisted)
    assert recovered == handle
    status = await restarted.inspect(recovered)
    assert status.state is WorkloadState.RUNNING
    result = await restarted.stop(recovered, timeout_s=0.3)
    assert result.forced is True
    assert result.exit_code is None  # not this driver's child: the code is not ours to read
    assert (await restarted.inspect(recovered)).state is WorkloadState.EXITED
    assert await restarted.recover(persisted) is None


async def test_recover_refuses_a_reused_pid(driver: ProcessDriver) -> None:
    """Same pid, another start time: someone else's process, never re-attached or signalled."""
    handle = await driver.start(spec_for(stub_profile()))
    forged = handle.to_json()
    forged["details"]["start_ticks"] = int(forged["details"]["start_ticks"]) - 1
    assert await ProcessDriver(log_dir=Path("/nonexistent")).recover(forged) is None
    await driver.destroy(handle)
    assert (await driver.inspect(handle)).state is WorkloadState.EXITED


async def test_a_missing_binary_is_a_permanent_start_error(driver: ProcessDriver) -> None:
    profile = make_profile(
        driver="process", sim=None, health=HEALTH, process={"argv": ["/nonexistent/t-rex"]}
    )
    with pytest.raises(WorkloadStartError, match="/nonexistent/t-rex"):
        await driver.start(spec_for(profile))
