"""The watchdog: keeps each GPU's workload alive, and quarantines a GPU that will not stay up.

Every `interval_s`, `check_once` looks at every GPU at once, each on its own (one bad GPU
never restarts, delays or fails the others), and skips a GPU that:

- a switch or restart holds (the executor's per-GPU lock: the watchdog never fights a
  switch), that is quarantined, or that has nothing it should run (idle, or a workload this
  agent does not manage).

For the others it takes one `Observation` (`workload_health`) and judges it:

- *crashed*: the driver says the workload exited, or it should run and does not: failing now;
- *unhealthy*: a definite "no" (0 H/s on this GPU, the miner API unreachable, readiness not
  200) lasting `unhealthy_after_s`;
- *stalled*: a miner whose accepted-share count has not moved for `stall_s`;
- "cannot tell" (a null hashrate while a miner warms up, a driver that does not answer) is
  neither healthy nor failing: it changes nothing. After a (re)start the workload has its
  profile's `start_timeout_s` of grace before "unhealthy" counts (a crash counts at once).

A failing GPU is restarted (stop, verify free, start the same workload) after a jittered
exponential backoff (`backoff_initial_s` .. `backoff_max_s`), reset once it has run healthy for
`window_s`. When it has already been restarted `max_restarts` times within `window_s`, the
next failure quarantines it instead: its workload is stopped, commands for it are refused,
telemetry reports it `unhealthy` ("quarantined: ..."), and a `GpuHealthEvent` says so, until
an operator clears it (`POST /api/v1/gpus/{index}/clear-quarantine` on the agent).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from orchestrator.agents.executor import SwitchExecutor
from orchestrator.agents.switching import GpuSlot
from orchestrator.agents.workload_health import Observation
from orchestrator.config.roots import WatchdogSection
from orchestrator.drivers import WorkloadState
from orchestrator.mqtt import Backoff
from orchestrator.protocol import GpuHealthEvent

log = structlog.get_logger(__name__)

HealthSink = Callable[[GpuHealthEvent], Awaitable[bool]]


@dataclass(slots=True)
class _Watch:
    """The watchdog's memory of one GPU."""

    backoff: Backoff
    restarts_at_s: deque[float] = field(default_factory=deque)
    handle_ref: str | None = None
    grace_until_s: float = 0.0
    failing_since_s: float | None = None
    restart_due_s: float | None = None  # a failure was seen; restart at this time
    shares: int | None = None
    shares_changed_at_s: float = 0.0


class Watchdog:
    """Per-GPU supervision on top of the executor's slots."""

    def __init__(
        self,
        *,
        node: str,
        executor: SwitchExecutor,
        settings: WatchdogSection,
        publish: HealthSink,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.executor = executor
        self.settings = settings
        self.publish = publish
        self.clock = clock
        self.wall_clock = wall_clock
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not cryptography)
        self._watches: dict[int, _Watch] = {}
        self.restarts_total = 0
        self.quarantines_total = 0

    async def check_once(self) -> dict[int, str]:
        """Look at every GPU once, concurrently; what was done to each (for logs and tests)."""
        indexes = sorted(self.executor.slots)
        results = await asyncio.gather(
            *(self.check_gpu(index) for index in indexes), return_exceptions=True
        )
        actions: dict[int, str] = {}
        for index, result in zip(indexes, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                log.error("watchdog check failed", gpu=index, error=repr(result))
                actions[index] = "error"
            else:
                actions[index] = result
        return actions

    async def check_gpu(self, index: int) -> str:
        """One GPU: `skipped`, `busy`, `ok`, `waiting`, `restarted` or `quarantined`."""
        slot = self.executor.slots[index]
        if self.executor.busy(index):
            return "busy"
        if slot.record.quarantined or slot.record.profile_id is None:
            self._watches.pop(index, None)
            return "skipped"
        async with self.executor.hold(index) as held:
            if held is None:
                return "busy"
            return await self._judge(held)

    async def _judge(self, slot: GpuSlot) -> str:
        index = slot.gpu.index
        watch = self._watch(index)
        now_s = self.clock()
        failure = await self._failure(slot, watch, now_s)
        if failure is None:
            watch.restart_due_s = None
            self._forget_old_restarts(watch, now_s)
            if not watch.restarts_at_s:
                watch.backoff.reset()
            return "ok"
        if watch.restart_due_s is None:
            watch.restart_due_s = now_s + watch.backoff.next_delay_s()
            log.warning("workload failing; restart scheduled", gpu=index, reason=failure)
        if now_s < watch.restart_due_s:
            return "waiting"
        watch.restart_due_s = None
        self._forget_old_restarts(watch, now_s)
        if len(watch.restarts_at_s) >= self.settings.max_restarts:
            await self._quarantine(slot, watch, failure)
            return "quarantined"
        await self._restart(slot, watch, failure, now_s)
        return "restarted"

    async def _failure(self, slot: GpuSlot, watch: _Watch, now_s: float) -> str | None:
        """Why the GPU's workload is failing now, or None (healthy, or cannot tell)."""
        handle = slot.handle
        if handle is None:
            return f"{slot.record.desired_workload} is not running"
        if handle.ref != watch.handle_ref:  # a new start: fresh counters, and a grace period
            profile = self.executor.switcher.profiles.get(handle.profile_id)
            proven = slot.observation is not None and slot.observation.ready is True
            watch.handle_ref = handle.ref
            # a switch proved it healthy already; a restart (or a recovery) gets its start time
            grace_s = 0.0 if proven or profile is None else profile.start_timeout_s
            watch.grace_until_s = now_s + grace_s
            watch.failing_since_s = None
            watch.shares = None
        observation = await self.executor.switcher.observe(slot)
        if observation is None or observation.state is WorkloadState.UNKNOWN:
            return None
        slot.observation = observation
        if observation.exited:
            return f"crashed: {observation.detail}"
        if observation.ready is True:
            watch.grace_until_s = 0.0
        if now_s < watch.grace_until_s or observation.ready is None:
            return None
        if observation.ready is False:
            watch.failing_since_s = watch.failing_since_s or now_s
            failing_s = now_s - watch.failing_since_s
            if failing_s >= self.settings.unhealthy_after_s:
                return f"unhealthy for {failing_s:.0f} s: {observation.detail}"
            return None
        watch.failing_since_s = None
        return self._stalled(observation, watch, now_s)

    def _stalled(self, observation: Observation, watch: _Watch, now_s: float) -> str | None:
        shares = observation.accepted_shares
        if shares is None:
            return None
        if watch.shares is None or shares != watch.shares:
            watch.shares, watch.shares_changed_at_s = shares, now_s
            return None
        stalled_s = now_s - watch.shares_changed_at_s
        if stalled_s >= self.settings.stall_s:
            return f"stalled: accepted shares stuck at {shares} for {stalled_s:.0f} s"
        return None

    async def _restart(self, slot: GpuSlot, watch: _Watch, reason: str, now_s: float) -> None:
        index = slot.gpu.index
        watch.restarts_at_s.append(now_s)
        self.restarts_total += 1
        problem = await self.executor.restart(slot)
        restarts = len(watch.restarts_at_s)
        detail = reason if problem is None else f"{reason}; restart failed: {problem}"
        log.warning("workload restarted", gpu=index, reason=detail, restarts=restarts)
        await self._announce(slot, "restarted", detail, restarts)

    async def _quarantine(self, slot: GpuSlot, watch: _Watch, reason: str) -> None:
        restarts = len(watch.restarts_at_s)
        window = f"{restarts} restarts within {self.settings.window_s:.0f} s"
        full = f"{reason} ({window})"
        workload = slot.record.desired_workload
        await self.executor.quarantine(slot, full)
        self.quarantines_total += 1
        self._watches.pop(slot.gpu.index, None)
        log.error("GPU quarantined", gpu=slot.gpu.index, reason=full)
        await self._announce(slot, "quarantined", full, restarts, workload=workload)

    async def clear(self, index: int) -> bool:
        """An operator lifts GPU `index`'s quarantine; False if it was not quarantined."""
        record = await self.executor.clear_quarantine(index)
        if record is None:
            return False
        self._watches.pop(index, None)
        log.info("GPU quarantine cleared", gpu=index)
        await self._announce(self.executor.slots[index], "cleared", "cleared by an operator", 0)
        return True

    async def _announce(
        self,
        slot: GpuSlot,
        state: str,
        reason: str,
        restarts: int,
        *,
        workload: str | None = None,
    ) -> None:
        event = GpuHealthEvent.model_validate(
            {
                "node": self.node,
                "gpu_index": slot.gpu.index,
                "workload": workload or slot.record.desired_workload or slot.record.workload,
                "state": state,
                "reason": reason[:1000],
                "restarts": restarts,
                "at_s": self.wall_clock(),
            }
        )
        await self.publish(event)

    def _watch(self, index: int) -> _Watch:
        watch = self._watches.get(index)
        if watch is None:
            backoff = Backoff(
                initial_s=self.settings.backoff_initial_s,
                max_s=self.settings.backoff_max_s,
                rng=self._rng,
            )
            watch = self._watches[index] = _Watch(backoff=backoff)
        return watch

    def _forget_old_restarts(self, watch: _Watch, now_s: float) -> None:
        while watch.restarts_at_s and now_s - watch.restarts_at_s[0] > self.settings.window_s:
            watch.restarts_at_s.popleft()
