"""The steps of one switch on one GPU, and the rollback when a step fails.

The executor (`executor.py`) decides *whether* a command runs and serialises commands per GPU;
this module does the work once it runs, in the order the issue fixes:

1. drain: an AI workload stops admitting work and finishes what is in flight, bounded by its
   profile's `drain_timeout_s` (the driver's `Drainable` ability where it has one, else the
   server's own in-flight gauges, else a plain grace period). Mining has nothing to drain.
2. stop: graceful within `stop_timeout_s`, then forced (`destroy`).
3. verify: NVML (the `GpuBackend`) shows the GPU free: no compute process left and used memory
   at or below `verify_free_max_memory_mib`, within `verify_free_timeout_s`.
4. start: the target profile's driver starts it; the handle is persisted at once.
5. health: the workload proves itself (`workload_health`: hashrate > 0 on this GPU's bus id,
   a ready inference endpoint, a ready simulation) within the profile's `start_timeout_s`;
   a workload that exits meanwhile fails the step at once.

`idle` is steps 1-3. A step that fails raises `StepError(step, reason)`; `switch` then
discards what it started and rolls back to the previous workload (verify, start, health
again): `rolled_back` when that works, `failed` (the GPU left idle, and the reason says so)
when it does not or when there was nothing to roll back to.

Persist before acting: the `progress` hook, called before each step, is where the executor
writes the step into the GPU's state and announces it; everything a step changes (handle
gone, handle started, workload now healthy) is written here before the next step runs. What
telemetry reports follows what is true: the old workload until it is stopped, `idle` until
the new one is healthy, then the new one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import structlog

from orchestrator.agents.gpu import GpuBackend
from orchestrator.agents.inference import wait_drained
from orchestrator.agents.state import GpuRecord, StateStore
from orchestrator.agents.workload_health import Observation, WorkloadObserver
from orchestrator.config.profiles import InferenceHealthCheck, ProfileSection
from orchestrator.config.roots import ExecutorSection
from orchestrator.domain import IDLE, Health, SwitchState
from orchestrator.drivers import (
    Drainable,
    Driver,
    DriverRegistry,
    GpuRef,
    Handle,
    WorkloadSpec,
)
from orchestrator.errors import OrchestratorError

log = structlog.get_logger(__name__)

_MIB = 1024 * 1024
_VERIFY_POLL_S = 0.1
_HEALTH_POLL_MIN_S = 0.05
_HEALTH_POLL_MAX_S = 1.0
_DRIVER_MARGIN_S = 5.0  # on top of a driver call's own timeout, before it is abandoned
_DESTROY_TIMEOUT_S = 15.0

ProgressHook = Callable[[str], Awaitable[None]]


class StepError(OrchestratorError):
    """A switch step did not succeed; the switch rolls back."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass(slots=True, eq=False)
class GpuSlot:
    """One GPU in the agent's memory: its persisted record, its lock, its live handle."""

    gpu: GpuRef
    record: GpuRecord
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    handle: Handle | None = None
    latest_command_id: str | None = None
    observation: Observation | None = None  # the watchdog's latest look


@dataclass(frozen=True, slots=True)
class Outcome:
    state: SwitchState  # DONE, ROLLED_BACK, FAILED (the executor adds REFUSED)
    reason: str
    step: str | None = None  # the step that failed


class Switcher:
    """Runs switch steps on one GPU at a time (the caller holds that GPU's lock)."""

    def __init__(
        self,
        *,
        node: str,
        profiles: Sequence[ProfileSection],
        registry: DriverRegistry,
        backend: GpuBackend,
        store: StateStore,
        observer: WorkloadObserver,
        session: aiohttp.ClientSession,
        settings: ExecutorSection,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.profiles = {profile.id: profile for profile in profiles}
        self.registry = registry
        self.backend = backend
        self.store = store
        self.observer = observer
        self.session = session
        self.settings = settings
        self.clock = clock

    # ------------------------------------------------------------------ the whole switch

    async def switch(
        self,
        slot: GpuSlot,
        target: str,
        target_profile: ProfileSection | None,
        *,
        progress: ProgressHook,
    ) -> Outcome:
        """Run `target` (`idle` when `target_profile` is None) on `slot`'s GPU, or roll back."""
        record = slot.record
        previous, previous_profile = record.workload, self.profiles.get(record.profile_id or "")
        if await self._already_running(slot, target):
            return Outcome(SwitchState.DONE, f"{target} already runs")
        try:
            await self.stop_current(slot, progress=progress)
            await progress("verify")
            await self.verify_free(slot)
            if target_profile is None:
                # an ordered idle wants nothing to run: without this the watchdog took the
                # stopped workload for a crashed one and started it again (tests/faults)
                record.profile_id = record.desired_workload = None
                await self.store.save_gpu(record)
                return Outcome(SwitchState.DONE, "GPU stopped and verified free")
            await progress("start")
            await self.start(slot, target_profile, target)
            await progress("health")
            observation = await self.wait_healthy(slot, target_profile)
            await self.mark_running(slot, observation)
            return Outcome(SwitchState.DONE, observation.detail)
        except StepError as failure:
            log.warning("switch step failed", gpu=record.index, step=failure.step, target=target)
            return await self._roll_back(slot, previous, previous_profile, failure, progress)

    async def _already_running(self, slot: GpuSlot, target: str) -> bool:
        if slot.record.workload != target:
            return False
        if target == IDLE:
            return slot.handle is None
        if slot.handle is None:
            return False
        observation = await self.observe(slot)
        return observation is not None and observation.ready is True

    async def _roll_back(
        self,
        slot: GpuSlot,
        previous: str | None,
        previous_profile: ProfileSection | None,
        failure: StepError,
        progress: ProgressHook,
    ) -> Outcome:
        why = f"{failure.step} failed: {failure.reason}"
        stuck = await self._discard_reporting(slot)
        if stuck is not None:
            return Outcome(SwitchState.FAILED, f"{why}; {stuck}", failure.step)
        if previous == IDLE:
            return Outcome(
                SwitchState.ROLLED_BACK, f"{why}; the GPU is idle as before", failure.step
            )
        if previous_profile is None or previous is None:
            was = previous or "unknown"
            return Outcome(
                SwitchState.FAILED,
                f"{why}; no profile to roll back to ({was}); GPU left idle",
                failure.step,
            )
        try:
            await progress("rollback")
            await self.verify_free(slot)
            await self.start(slot, previous_profile, previous)
            observation = await self.wait_healthy(slot, previous_profile)
        except StepError as second:
            stuck = await self._discard_reporting(slot)
            left = stuck if stuck is not None else "GPU left idle"
            return Outcome(
                SwitchState.FAILED,
                f"{why}; rollback to {previous} failed at {second.step}: {second.reason}; {left}",
                failure.step,
            )
        await self.mark_running(slot, observation)
        return Outcome(SwitchState.ROLLED_BACK, f"{why}; {previous} runs again", failure.step)

    # ------------------------------------------------------------------ steps

    async def stop_current(self, slot: GpuSlot, *, progress: ProgressHook | None = None) -> None:
        """Steps 1-2: drain (AI) and stop what runs; the GPU is then recorded idle."""
        handle = slot.handle
        if handle is None:
            if progress is not None:
                await progress("stop")  # nothing to stop: the step is still reported
            await self._record_idle(slot)
            return
        profile = self.profiles.get(handle.profile_id)
        driver = self.driver_for(handle, profile)
        if profile is not None and profile.kind == "ai" and profile.drain_timeout_s > 0:
            if progress is not None:
                await progress("drain")
            await self._drain(driver, handle, profile, slot.gpu)
        if progress is not None:
            await progress("stop")
        stop_timeout_s = profile.stop_timeout_s if profile is not None else 30.0
        try:
            async with asyncio.timeout(stop_timeout_s + _DRIVER_MARGIN_S):
                await driver.stop(handle, stop_timeout_s)
        except (TimeoutError, OrchestratorError) as error:
            log.warning("graceful stop failed; destroying", gpu=slot.gpu.index, error=str(error))
            await self._destroy(driver, handle, step="stop")
        await self._record_idle(slot)

    async def _drain(
        self, driver: Driver, handle: Handle, profile: ProfileSection, gpu: GpuRef
    ) -> None:
        timeout_s = profile.drain_timeout_s
        try:
            async with asyncio.timeout(timeout_s + _DRIVER_MARGIN_S):
                if isinstance(driver, Drainable):
                    drained = await driver.drain(handle, timeout_s)
                    log.info("drained", gpu=gpu.index, drained=drained)
                elif isinstance(profile.health, InferenceHealthCheck):
                    spec = self.spec(profile, gpu, handle.workload_id)
                    check = profile.health
                    result = await wait_drained(
                        self.session,
                        check.server,
                        spec.render(check.url),
                        metrics_url=spec.render(check.metrics_url) if check.metrics_url else None,
                        timeout_s=timeout_s,
                    )
                    log.info("drained", gpu=gpu.index, detail=result.detail)
        except (TimeoutError, OrchestratorError) as error:
            # draining is a courtesy bounded by its timeout: the stop goes ahead regardless
            log.warning("drain did not finish", gpu=gpu.index, error=str(error))

    async def verify_free(self, slot: GpuSlot) -> None:
        """Step 3: NVML shows no compute process and memory released, within the timeout."""
        timeout_s = self.settings.verify_free_timeout_s
        limit_bytes = self.settings.verify_free_max_memory_mib * _MIB
        deadline = time.monotonic() + timeout_s
        busy = "no reading"
        while True:
            try:
                sample = await asyncio.to_thread(self.backend.sample)
            except Exception as error:  # noqa: BLE001  (any backend failure: not verified)
                busy = f"NVML sample failed: {error}"
            else:
                gpu = next((g for g in sample if g.index == slot.gpu.index), None)
                if gpu is None:
                    busy = "GPU missing from the NVML sample"
                elif gpu.health is Health.LOST:
                    raise StepError("verify", "GPU is lost: " + "; ".join(gpu.health_reasons))
                else:
                    used = gpu.memory_used_bytes
                    if not gpu.processes and (used is None or used <= limit_bytes):
                        return
                    names = ", ".join(f"{p.pid} {p.name or '?'}" for p in gpu.processes)
                    used_mib = "?" if used is None else f"{used // _MIB}"
                    busy = f"{len(gpu.processes)} processes ({names}), {used_mib} MiB used"
            if time.monotonic() >= deadline:
                raise StepError("verify", f"GPU not free after {timeout_s} s: {busy}")
            await asyncio.sleep(_VERIFY_POLL_S)

    async def start(self, slot: GpuSlot, profile: ProfileSection, workload: str) -> Handle:
        """Step 4: start `profile` as `workload`; its handle is persisted before anything else."""
        driver = self.registry.for_profile(profile)
        spec = self.spec(profile, slot.gpu, workload)
        try:
            async with asyncio.timeout(profile.start_timeout_s):
                handle = await driver.start(spec)
        except TimeoutError:
            raise StepError(
                "start", f"driver did not start it in {profile.start_timeout_s} s"
            ) from None
        except OrchestratorError as error:
            raise StepError("start", str(error)) from None
        slot.handle = handle
        slot.observation = None
        slot.record.handle = handle.to_json()
        slot.record.profile_id = profile.id
        slot.record.desired_workload = workload
        await self.store.save_gpu(slot.record)
        return handle

    async def wait_healthy(self, slot: GpuSlot, profile: ProfileSection) -> Observation:
        """Step 5: healthy within `start_timeout_s`; an exit fails at once."""
        deadline = time.monotonic() + profile.start_timeout_s
        delay_s = _HEALTH_POLL_MIN_S
        last = "no observation"
        while True:
            observation = await self.observe(slot)
            if observation is not None:
                if observation.ready is True:
                    return observation
                if observation.exited:
                    raise StepError("health", f"workload {observation.detail} before healthy")
                last = observation.detail
            if time.monotonic() >= deadline:
                raise StepError("health", f"not healthy within {profile.start_timeout_s} s: {last}")
            await asyncio.sleep(min(delay_s, max(0.0, deadline - time.monotonic())))
            delay_s = min(_HEALTH_POLL_MAX_S, delay_s * 2)

    async def mark_running(self, slot: GpuSlot, observation: Observation | None = None) -> None:
        """Record that the started workload runs (healthy): telemetry reports it from now."""
        assert slot.handle is not None  # noqa: S101  (only called after a start)
        slot.record.workload = slot.handle.workload_id
        slot.record.since_s = self.clock()
        slot.observation = observation
        await self.store.save_gpu(slot.record)

    async def discard(self, slot: GpuSlot) -> None:
        """Stop what a failed step started (graceful, bounded, then forced); record idle."""
        await self.stop_current(slot)
        slot.record.profile_id = slot.record.desired_workload = None
        await self.store.save_gpu(slot.record)

    async def _discard_reporting(self, slot: GpuSlot) -> str | None:
        """`discard`, saying why when even the forced stop failed (None when it worked)."""
        try:
            await self.discard(slot)
        except StepError as stuck:
            return f"the workload could not be stopped ({stuck.reason}); GPU state unknown"
        return None

    # ------------------------------------------------------------------ helpers

    async def observe(self, slot: GpuSlot) -> Observation | None:
        handle = slot.handle
        if handle is None:
            return None
        profile = self.profiles.get(handle.profile_id)
        if profile is None:
            return None
        return await self.observer.observe(
            self.driver_for(handle, profile), handle, profile, slot.gpu
        )

    def driver_for(self, handle: Handle, profile: ProfileSection | None) -> Driver:
        """The driver of `handle`: its profile's, else any declared profile's of that driver."""
        if profile is None:
            profile = next((p for p in self.profiles.values() if p.driver == handle.driver), None)
        if profile is None:
            raise StepError("stop", f"no declared profile uses driver {handle.driver!r}")
        return self.registry.for_profile(profile)

    def spec(self, profile: ProfileSection, gpu: GpuRef, workload: str) -> WorkloadSpec:
        return WorkloadSpec.build(profile, gpu, node=self.node, workload_id=workload)

    async def _destroy(self, driver: Driver, handle: Handle, *, step: str) -> None:
        try:
            async with asyncio.timeout(_DESTROY_TIMEOUT_S):
                await driver.destroy(handle)
        except (TimeoutError, OrchestratorError) as error:
            raise StepError(step, f"forced stop failed: {error}") from None

    async def _record_idle(self, slot: GpuSlot) -> None:
        slot.handle = None
        slot.observation = None
        record = slot.record
        if record.handle is None and record.workload == IDLE:
            return
        record.handle = None
        record.workload = IDLE
        record.since_s = self.clock()
        await self.store.save_gpu(record)
