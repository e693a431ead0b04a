"""The sim driver: realistic delays (scaled), self-reported health, the fake GPU following."""

from __future__ import annotations

import time

import pytest

from orchestrator.agents.gpu.fake import FakeGpuBackend
from orchestrator.config.profiles import ProfileSection
from orchestrator.drivers.base import (
    Drainable,
    Driver,
    HealthReporting,
    WorkloadStartError,
    WorkloadState,
)
from orchestrator.drivers.sim import SimDriver
from tests.drivers.conftest import GPU0, make_profile, spec_for
from tests.fakes import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend(clock: Clock) -> FakeGpuBackend:
    gpus = FakeGpuBackend(node="node-a", gpus=2, models=["rtx-3090"], noise_fraction=0, clock=clock)
    gpus.open()
    return gpus


def power_w(backend: FakeGpuBackend, index: int = 0) -> float:
    value = backend.sample()[index].power_draw_w
    assert value is not None
    return value


def ai_profile(**sim: object) -> ProfileSection:
    return make_profile(
        id="llama", kind="ai", algorithm=None, expected_hashrate_hs=None, sim=dict(sim)
    )


async def test_a_miner_shows_hashrate_after_its_start_delay_and_power_follows(
    backend: FakeGpuBackend, clock: Clock
) -> None:
    """Start returns at once; hashrate appears after the (scaled) delay; the fake GPU draws."""
    driver = SimDriver(backend=backend, time_scale=0.02, clock=clock)  # 5 s -> 100 ms
    assert isinstance(driver, Driver)
    assert isinstance(driver, HealthReporting)
    idle_w = power_w(backend)
    handle = await driver.start(spec_for(make_profile(), GPU0))
    assert backend.workload_of(0) == "mine:miner-a"
    early = await driver.health(handle)
    assert (early.ready, early.hashrate_hs) == (False, 0.0)
    assert await driver.wait_ready(handle, timeout_s=0.01) is False  # not before its delay
    assert await driver.wait_ready(handle, timeout_s=5) is True
    assert (await driver.health(handle)).hashrate_hs == 25e6
    clock.now_s += 120  # past the fake DAG build
    mining_w = power_w(backend)
    assert mining_w > 3 * idle_w
    assert 0.6 * 350 <= mining_w <= 0.85 * 350

    result = await driver.stop(handle, timeout_s=5)
    assert (result.forced, result.exit_code) == (False, 0)
    assert backend.workload_of(0) == "idle"
    assert (await driver.inspect(handle)).state is WorkloadState.EXITED
    assert backend.workload_of(1) == "idle"  # the other GPU was never touched


async def test_an_inference_server_loads_slowly_and_drains(
    backend: FakeGpuBackend, clock: Clock
) -> None:
    """AI: not ready during the model load; drain stops admitting, bounded by its timeout."""
    driver = SimDriver(backend=backend, time_scale=0.002, clock=clock)  # 60 s -> 120 ms
    assert isinstance(driver, Drainable)
    handle = await driver.start(spec_for(ai_profile()))
    assert handle.workload_id == "ai:llama"
    assert (await driver.health(handle)).ready is False
    assert (await driver.inspect(handle)).detail == "starting"
    assert await driver.wait_ready(handle, timeout_s=5)
    health = await driver.health(handle)
    assert (health.ready, health.hashrate_hs) == (True, None)
    assert await driver.drain(handle, timeout_s=0.001) is False  # 2 s x 0.002 = 4 ms > 1 ms
    assert await driver.drain(handle, timeout_s=1) is True
    assert (await driver.health(handle)).ready is False  # no longer admitting requests
    await driver.destroy(handle)
    assert (await driver.inspect(handle)).exit_code == 137


async def test_a_stop_slower_than_the_timeout_is_forced(backend: FakeGpuBackend) -> None:
    driver = SimDriver(backend=backend, time_scale=1.0)
    handle = await driver.start(spec_for(make_profile(sim={"stop_delay_s": 30})))
    started = time.monotonic()
    result = await driver.stop(handle, timeout_s=0.05)
    assert time.monotonic() - started < 1  # bounded by the caller's timeout, not the delay
    assert (result.forced, result.exit_code) == (True, 137)
    assert backend.workload_of(0) == "idle"


async def test_failure_injection_start_fails_and_crash_after(backend: FakeGpuBackend) -> None:
    driver = SimDriver(backend=backend, time_scale=0.01)
    with pytest.raises(WorkloadStartError, match="simulated start failure"):
        await driver.start(spec_for(make_profile(sim={"fail_start": True})))
    assert backend.workload_of(0) == "idle"  # a failed start leaves the GPU as it was

    handle = await driver.start(spec_for(make_profile(sim={"crash_after_s": 2})))
    assert await driver.wait_exited(handle, timeout_s=5) == 1
    status = await driver.inspect(handle)
    assert (status.state, status.exit_code) == (WorkloadState.EXITED, 1)
    assert backend.workload_of(0) == "idle"
    assert (await driver.health(handle)).ready is False


async def test_recover_reattaches_to_what_the_simulated_gpu_still_runs(
    backend: FakeGpuBackend,
) -> None:
    first = SimDriver(backend=backend, time_scale=0.0)
    handle = await first.start(spec_for(make_profile()))
    persisted = handle.to_json()
    restarted = SimDriver(backend=backend, time_scale=0.0)
    recovered = await restarted.recover(persisted)
    assert recovered == handle
    assert (await restarted.health(handle)).hashrate_hs == 25e6
    await restarted.stop(handle, timeout_s=1)
    assert backend.workload_of(0) == "idle"
    assert await SimDriver(backend=backend).recover(persisted) is None  # nothing runs there now
