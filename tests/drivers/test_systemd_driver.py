"""The systemd driver against a stub `systemctl` on PATH (systemd is not PID 1 here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orchestrator.config.profiles import ProfileSection
from orchestrator.drivers.base import (
    Driver,
    DriverUnavailableError,
    Handle,
    WorkloadStartError,
    WorkloadState,
)
from orchestrator.drivers.systemd import SystemdDriver, status_from_show
from tests.drivers.conftest import GPU1, make_profile, spec_for

HEALTH = {"miner_api": "lolminer", "url": "http://127.0.0.1:{port}"}


def unit_profile(
    template: str = "miner@{gpu_index}.service", *, user: bool = False
) -> ProfileSection:
    return make_profile(
        driver="systemd",
        sim=None,
        health=HEALTH,
        api_port_base=4000,
        systemd={"unit_template": template, "user": user},
    )


def calls(state_dir: Path) -> list[list[str]]:
    lines = (state_dir / "calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def set_unit(state_dir: Path, unit: str, **fields: object) -> None:
    path = state_dir / "state.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    state[unit] = {**state.get(unit, {}), **fields}
    path.write_text(json.dumps(state))


async def test_start_inspect_stop_a_templated_unit(stub_systemctl: Path) -> None:
    driver = SystemdDriver()
    assert isinstance(driver, Driver)
    handle = await driver.start(spec_for(unit_profile(), GPU1))
    assert handle.ref == "miner@1.service"
    status = await driver.inspect(handle)
    assert (status.state, status.pid, status.detail) == (
        WorkloadState.RUNNING,
        4242,
        "active/running",
    )
    result = await driver.stop(handle, timeout_s=5)
    assert (result.forced, result.exit_code) == (False, 0)
    assert (await driver.inspect(handle)).state is WorkloadState.EXITED
    recorded = calls(stub_systemctl)
    assert recorded[0] == ["start", "--no-block", "miner@1.service"]
    show = "LoadState,ActiveState,SubState,MainPID,ExecMainCode,ExecMainStatus"
    assert ["show", "-p", show, "miner@1.service"] in recorded
    assert ["stop", "miner@1.service"] in recorded


async def test_a_stop_that_hangs_is_bounded_then_sigkilled(stub_systemctl: Path) -> None:
    """systemctl stop that outlives the timeout is killed; the unit gets SIGKILL (exit 137)."""
    driver = SystemdDriver()
    handle = await driver.start(spec_for(unit_profile()))
    set_unit(stub_systemctl, "miner@0.service", hang_stop=True)
    started = time.monotonic()
    result = await driver.stop(handle, timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert (result.forced, result.exit_code) == (True, 137)
    assert ["kill", "--signal=SIGKILL", "miner@0.service"] in calls(stub_systemctl)


async def test_destroy_cancels_restarts_then_kills(stub_systemctl: Path) -> None:
    driver = SystemdDriver()
    handle = await driver.start(spec_for(unit_profile(user=True)))
    await driver.destroy(handle)
    recorded = calls(stub_systemctl)
    stop_at = recorded.index(["--user", "stop", "--no-block", "miner@0.service"])
    kill_at = recorded.index(["--user", "kill", "--signal=SIGKILL", "miner@0.service"])
    assert stop_at < kill_at  # so that Restart= cannot bring it back
    assert (await driver.inspect(handle)).exit_code == 137


async def test_a_unit_that_does_not_exist_is_a_start_error_with_systemctls_words(
    stub_systemctl: Path,
) -> None:
    with pytest.raises(WorkloadStartError, match=r"Unit missing@0\.service not found"):
        await SystemdDriver().start(spec_for(unit_profile("missing@{gpu_index}.service")))


async def test_recover_by_unit_name(stub_systemctl: Path) -> None:
    """Running or failed units re-attach after a restart; a cleanly stopped one does not."""
    handle = await SystemdDriver().start(spec_for(unit_profile()))
    persisted = handle.to_json()
    restarted = SystemdDriver()
    assert await restarted.recover(persisted) == handle
    set_unit(
        stub_systemctl,
        "miner@0.service",
        ActiveState="failed",
        SubState="failed",
        ExecMainCode="1",
        ExecMainStatus="3",
    )
    assert await restarted.recover(persisted) == handle
    assert (await restarted.inspect(handle)).exit_code == 3
    await restarted.stop(handle, timeout_s=5)
    set_unit(stub_systemctl, "miner@0.service", ActiveState="inactive", SubState="dead")
    assert await restarted.recover(persisted) is None


async def test_without_systemctl_inspect_is_unknown_not_stopped(tmp_path: Path) -> None:
    """When systemctl cannot be asked, the answer is UNKNOWN: never read as "stopped"."""
    driver = SystemdDriver(systemctl=str(tmp_path / "no-systemctl"))
    handle = Handle(
        driver="systemd",
        ref="miner@0.service",
        profile_id="miner-a",
        workload_id="mine:miner-a",
        node="node-a",
        gpu_index=0,
        gpu_uuid="GPU-x",
        started_at_s=0.0,
    )
    assert (await driver.inspect(handle)).state is WorkloadState.UNKNOWN
    with pytest.raises(DriverUnavailableError, match="no-systemctl"):
        await driver.recover(handle.to_json())


@pytest.mark.parametrize(
    ("properties", "state", "exit_code"),
    [
        ({"ActiveState": "activating", "MainPID": "7"}, WorkloadState.RUNNING, None),
        (
            {"ActiveState": "failed", "ExecMainCode": "1", "ExecMainStatus": "3"},
            WorkloadState.EXITED,
            3,
        ),
        (
            {"ActiveState": "failed", "ExecMainCode": "2", "ExecMainStatus": "15"},
            WorkloadState.EXITED,
            143,
        ),
        (
            {"ActiveState": "inactive", "ExecMainCode": "0", "ExecMainStatus": "0"},
            WorkloadState.EXITED,
            None,
        ),
        ({"LoadState": "not-found", "ActiveState": "inactive"}, WorkloadState.EXITED, None),
        ({}, WorkloadState.UNKNOWN, None),
    ],
)
def test_show_properties_map_to_status(
    properties: dict[str, str], state: WorkloadState, exit_code: int | None
) -> None:
    status = status_from_show(properties, None)
    assert (status.state, status.exit_code) == (state, exit_code)
