"""One look at a GPU's workload: does it run, is it healthy, how fast does it hash?

Both the switch executor (step 5, "health": wait until healthy within the start timeout) and
the watchdog (every interval: crashed, zero or stalled, failing readiness) ask the same
question, so it is answered here once. `observe` consumes a driver, its handle, the profile
and the GPU, and produces an `Observation`:

1. the driver's `inspect`: exited (with its code), running, or unknown (the backend could not
   tell: nothing is concluded from it);
2. for a running workload, its health, from the first source that applies:
   - a driver that reports health itself (`HealthReporting`: the simulation);
   - a miner API (`[profiles.health] miner_api`): `read_miner`, then the device on *this*
     GPU's PCI bus id (miners number devices in their own order; see `miners.reading`). A
     miner that lists one device without a bus id is taken as this GPU's (one miner per GPU);
   - an inference readiness probe (`[profiles.health] server`);
   - nothing declared: running counts as healthy.

`ready` is True (healthy: hashrate > 0, or the server answers ready), False (a definite no:
0 H/s, 503, unreachable) or None (cannot tell yet: a miner's hashrate is null while it warms
up, which is never read as zero). Every call is bounded by `timeout_s`; nothing raises for
what a workload does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from orchestrator.agents.inference import probe_readiness
from orchestrator.agents.miners import DeviceReading, MinerApiError, MinerReading, read_miner
from orchestrator.config.profiles import InferenceHealthCheck, MinerHealthCheck, ProfileSection
from orchestrator.drivers import (
    Driver,
    GpuRef,
    Handle,
    HealthReporting,
    WorkloadSpec,
    WorkloadState,
)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one look at a workload showed."""

    state: WorkloadState
    ready: bool | None  # None: cannot tell yet (warm-up, backend silent)
    detail: str
    hashrate_hs: float | None = None  # mining: this GPU's hashrate, when the miner says
    accepted_shares: int | None = None  # mining: this GPU's accepted shares, when known
    rejected_shares: int | None = None  # mining: this GPU's rejected shares, when known
    exit_code: int | None = None

    @property
    def exited(self) -> bool:
        return self.state is WorkloadState.EXITED


class WorkloadObserver:
    """Looks at workloads through their drivers, miner APIs and readiness endpoints."""

    def __init__(self, *, session: aiohttp.ClientSession, node: str, timeout_s: float = 3.0):
        self._session = session
        self._node = node
        self._timeout_s = timeout_s

    async def observe(
        self, driver: Driver, handle: Handle, profile: ProfileSection, gpu: GpuRef
    ) -> Observation:
        """One bounded look at `handle` (the workload of `profile` on `gpu`)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                status = await driver.inspect(handle)
        except TimeoutError:
            return Observation(WorkloadState.UNKNOWN, None, "inspect did not answer in time")
        if status.state is WorkloadState.EXITED:
            code = "unknown" if status.exit_code is None else str(status.exit_code)
            detail = f"exited with code {code}" + (f" ({status.detail})" if status.detail else "")
            return Observation(
                WorkloadState.EXITED, ready=False, detail=detail, exit_code=status.exit_code
            )
        if status.state is WorkloadState.UNKNOWN:
            return Observation(WorkloadState.UNKNOWN, None, status.detail or "state unknown")
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._health(driver, handle, profile, gpu)
        except TimeoutError:
            return Observation(
                WorkloadState.RUNNING, ready=False, detail="health check did not answer"
            )

    async def _health(
        self, driver: Driver, handle: Handle, profile: ProfileSection, gpu: GpuRef
    ) -> Observation:
        running = WorkloadState.RUNNING
        if isinstance(driver, HealthReporting):
            health = await driver.health(handle)
            detail = "ready" if health.ready else "not ready"
            if health.hashrate_hs is not None:
                detail += f", {health.hashrate_hs:.4g} H/s"
            return Observation(running, health.ready, detail, hashrate_hs=health.hashrate_hs)
        spec = WorkloadSpec.build(profile, gpu, node=self._node, workload_id=handle.workload_id)
        check = profile.health
        if isinstance(check, MinerHealthCheck):
            return await self._miner(check, spec)
        if isinstance(check, InferenceHealthCheck):
            readiness = await probe_readiness(
                self._session, check.server, spec.render(check.url), timeout_s=self._timeout_s
            )
            return Observation(running, readiness.ready, readiness.detail)
        return Observation(running, ready=True, detail="running (no health check declared)")

    async def _miner(self, check: MinerHealthCheck, spec: WorkloadSpec) -> Observation:
        running = WorkloadState.RUNNING
        try:
            reading = await read_miner(
                check.miner_api,
                url=spec.render(check.url),
                session=self._session,
                timeout_s=self._timeout_s,
            )
        except MinerApiError as error:
            return Observation(running, ready=False, detail=f"miner API: {error}")
        device = device_for_gpu(reading, spec.gpu.pci_bus_id)
        if device is None:
            buses = ", ".join(str(d.pci_bus_id) for d in reading.devices) or "none"
            return Observation(
                running,
                ready=False,
                detail=f"miner reports no device on bus {spec.gpu.pci_bus_id} ({buses})",
            )
        if device.hashrate_hs is None:
            return Observation(running, None, "miner warming up: no hashrate yet")
        return Observation(
            running,
            device.hashrate_hs > 0,
            f"{device.hashrate_hs:.4g} H/s",
            hashrate_hs=device.hashrate_hs,
            accepted_shares=device.accepted_shares,
            rejected_shares=device.rejected_shares,
        )


def device_for_gpu(reading: MinerReading, pci_bus_id: str) -> DeviceReading | None:
    """The miner's device on NVML's `pci_bus_id`; a lone device without a bus id is it."""
    device = reading.device_by_pci_bus_id(pci_bus_id)
    if device is not None:
        return device
    if len(reading.devices) == 1 and reading.devices[0].pci_bus_id is None:
        return reading.devices[0]
    return None
