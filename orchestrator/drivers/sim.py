"""The `sim` driver: simulated workloads for the demo and for tests of what sits above drivers.

A simulated workload behaves like a real one seen from the agent: `start` returns at once, the
workload becomes healthy only after its start delay (a miner shows hashrate after a few
seconds; an inference server loads its model for a minute or two), a graceful stop takes its
stop delay and is forced (exit 137) when the caller's timeout is shorter, and it may crash.
It reports its own health (`HealthReporting`: a ready flag and, for mining, the profile's
hashrate), since no miner API or readiness endpoint exists to probe. AI workloads can be
drained (`Drainable`).

The simulated GPU follows: a `WorkloadSink` (the fake NVML backend's `WorkloadSettable`,
declared here structurally because drivers never import agents) is told what runs on the GPU
when a workload starts and `idle` when it ends, so the fake power, memory and processes move
with the simulation.

Time. `time_scale` multiplies the workload's own delays (0.001 turns a 60 s model load into
60 ms); the caller's timeouts are real seconds and are not scaled. Delays are timers on the
event loop (`call_later`), not polled: `wait_ready` awaits an event, so tests wait for
conditions, never for a guessed duration. `clock` (unix seconds) stamps `since_s` for the
backend and `started_at_s` for handles; pass the backend's clock in a scaled demo.

Failure injection from the profile: `sim.fail_start` makes `start` raise, `sim.crash_after_s`
ends the workload with exit code 1 after that (scaled) time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.domain import IDLE
from orchestrator.drivers.base import (
    Handle,
    StopResult,
    WorkloadHealth,
    WorkloadSpec,
    WorkloadStartError,
    WorkloadState,
    WorkloadStatus,
    signal_exit_code,
)

NAME = "sim"
CRASH_EXIT_CODE = 1
KILLED_EXIT_CODE = signal_exit_code(9)
DRAIN_DELAY_S = 2.0  # in-flight inference requests finish in this (scaled) time


class WorkloadSink(Protocol):
    """Where the simulation reports what runs on a GPU (the fake GPU backend)."""

    def set_workload(self, index: int, workload: str, *, since_s: float) -> None: ...

    def workload_of(self, index: int) -> str: ...


@dataclass(slots=True, eq=False)
class _SimWorkload:
    handle: Handle
    kind: str
    hashrate_hs: float | None
    stop_delay_s: float  # already scaled
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int | None = None
    admitting: bool = True
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class SimDriver:
    """Simulated workloads on simulated GPUs."""

    def __init__(
        self,
        *,
        backend: WorkloadSink | None = None,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if time_scale < 0:
            raise ValueError("time_scale must not be negative")
        self._backend = backend
        self._time_scale = time_scale
        self._clock = clock
        self._workloads: dict[str, _SimWorkload] = {}
        self._ids = itertools.count(1)

    @property
    def name(self) -> str:
        return NAME

    async def close(self) -> None:
        """Timers stay with their workloads; nothing else is held."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self, spec: WorkloadSpec) -> Handle:
        profile = spec.profile
        if profile.sim is not None and profile.sim.fail_start:
            raise WorkloadStartError(NAME, profile.id, "simulated start failure (sim.fail_start)")
        start_delay_s, stop_delay_s = profile.sim_delays_s()
        now_s = self._clock()
        handle = Handle(
            driver=NAME,
            ref=f"sim-{spec.node}-gpu{spec.gpu.index}-{next(self._ids)}",
            profile_id=profile.id,
            workload_id=spec.workload_id,
            node=spec.node,
            gpu_index=spec.gpu.index,
            gpu_uuid=spec.gpu.uuid,
            started_at_s=now_s,
            details={"kind": profile.kind, "hashrate_hs": profile.sim_hashrate_hs},
        )
        workload = _SimWorkload(
            handle=handle,
            kind=profile.kind,
            hashrate_hs=profile.sim_hashrate_hs if profile.kind == "mining" else None,
            stop_delay_s=stop_delay_s * self._time_scale,
        )
        self._workloads[handle.ref] = workload
        if self._backend is not None:
            self._backend.set_workload(spec.gpu.index, spec.workload_id, since_s=now_s)
        loop = asyncio.get_running_loop()
        workload.timers.append(
            loop.call_later(start_delay_s * self._time_scale, workload.ready.set)
        )
        if profile.sim is not None and profile.sim.crash_after_s is not None:
            crash_s = profile.sim.crash_after_s * self._time_scale
            workload.timers.append(loop.call_later(crash_s, self._end, workload, CRASH_EXIT_CODE))
        return handle

    async def stop(self, handle: Handle, timeout_s: float) -> StopResult:
        workload = self._workloads.get(handle.ref)
        if workload is None or workload.exited.is_set():
            return StopResult(forced=False, exit_code=self._exit_code(handle))
        workload.admitting = False
        graceful = workload.stop_delay_s <= timeout_s
        try:
            async with asyncio.timeout(workload.stop_delay_s if graceful else timeout_s):
                await workload.exited.wait()  # a crash or destroy during the stop ends it early
        except TimeoutError:
            self._end(workload, 0 if graceful else KILLED_EXIT_CODE)
        return StopResult(
            forced=not graceful and workload.exit_code == KILLED_EXIT_CODE,
            exit_code=workload.exit_code,
        )

    async def destroy(self, handle: Handle) -> None:
        workload = self._workloads.get(handle.ref)
        if workload is not None:
            self._end(workload, KILLED_EXIT_CODE)

    async def inspect(self, handle: Handle) -> WorkloadStatus:
        workload = self._workloads.get(handle.ref)
        if workload is None:
            return WorkloadStatus(WorkloadState.EXITED, detail="no such simulated workload")
        if workload.exited.is_set():
            return WorkloadStatus(
                WorkloadState.EXITED,
                exit_code=workload.exit_code,
                started_at_s=handle.started_at_s,
            )
        detail = "ready" if workload.ready.is_set() else "starting"
        return WorkloadStatus(
            WorkloadState.RUNNING, started_at_s=handle.started_at_s, detail=detail
        )

    async def recover(self, persisted: dict[str, Any]) -> Handle | None:
        """Known to this driver, or still running on the simulated GPU: re-attach (ready)."""
        handle = Handle.from_json(persisted, driver=NAME)
        known = self._workloads.get(handle.ref)
        if known is not None:
            return None if known.exited.is_set() else known.handle
        if (
            self._backend is None
            or self._backend.workload_of(handle.gpu_index) != handle.workload_id
        ):
            return None
        kind = str(handle.details.get("kind", "mining"))
        hashrate = handle.details.get("hashrate_hs")
        workload = _SimWorkload(
            handle=handle,
            kind=kind,
            hashrate_hs=float(hashrate) if isinstance(hashrate, int | float) else None,
            stop_delay_s=0.0,
        )
        workload.ready.set()
        self._workloads[handle.ref] = workload
        return handle

    # ------------------------------------------------------------------ abilities

    async def health(self, handle: Handle) -> WorkloadHealth:
        workload = self._workloads.get(handle.ref)
        if workload is None:
            return WorkloadHealth(ready=False, hashrate_hs=None)
        ready = workload.ready.is_set() and not workload.exited.is_set()
        if workload.kind == "mining":
            return WorkloadHealth(ready=ready, hashrate_hs=workload.hashrate_hs if ready else 0.0)
        return WorkloadHealth(ready=ready and workload.admitting, hashrate_hs=None)

    async def drain(self, handle: Handle, timeout_s: float) -> bool:
        """Stop admitting requests; in-flight ones finish in DRAIN_DELAY_S (scaled)."""
        workload = self._workloads.get(handle.ref)
        if workload is None or workload.exited.is_set() or workload.kind == "mining":
            return True
        workload.admitting = False
        drain_s = DRAIN_DELAY_S * self._time_scale
        await asyncio.sleep(min(drain_s, timeout_s))
        return drain_s <= timeout_s

    async def wait_ready(self, handle: Handle, timeout_s: float) -> bool:
        """Wait until the workload is healthy; False if it is not within `timeout_s`."""
        workload = self._workloads.get(handle.ref)
        if workload is None:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await workload.ready.wait()
        except TimeoutError:
            return False
        return not workload.exited.is_set()

    async def wait_exited(self, handle: Handle, timeout_s: float) -> int | None:
        """Wait until the workload ends; its exit code, or None if it still runs."""
        workload = self._workloads.get(handle.ref)
        if workload is None:
            return None
        try:
            async with asyncio.timeout(timeout_s):
                await workload.exited.wait()
        except TimeoutError:
            return None
        return workload.exit_code

    # ------------------------------------------------------------------ helpers

    def _exit_code(self, handle: Handle) -> int | None:
        workload = self._workloads.get(handle.ref)
        return None if workload is None else workload.exit_code

    def _end(self, workload: _SimWorkload, exit_code: int) -> None:
        if workload.exited.is_set():
            return
        for timer in workload.timers:
            timer.cancel()
        workload.exit_code = exit_code
        workload.exited.set()
        if self._backend is not None:
            handle = workload.handle
            if self._backend.workload_of(handle.gpu_index) == handle.workload_id:
                self._backend.set_workload(handle.gpu_index, IDLE, since_s=self._clock())
