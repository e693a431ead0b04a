"""The switch executor: commands from `nodes/<node>/commands` become switches, exactly once.

Intake (`submit`, called by the MQTT message callback, never blocks) queues a command; `run`
takes commands off the queue and handles each in its own named task. `handle` is the "one
iteration" (STYLE point 6), and decides, in this order:

1. a GPU this node does not have, or whose UUID differs from the command's: `refused`;
2. a `command_id` already answered for this GPU: the recorded final event is published again,
   nothing runs (idempotent; recorded results survive a restart). One still running: an
   `accepted` again;
3. `refused`, recorded, when the command is stale (`expires_at_s` passed), of an older plan
   generation than the newest this node has acted on (fencing; persisted), for a GPU in
   quarantine, or names a workload that no declared profile runs;
4. otherwise the generation is persisted, `accepted` published, and the command waits for the
   GPU's lock (one switch at a time per GPU; at most `max_parallel_switches` GPUs at once).
   When it gets the lock, a newer command for the same GPU that arrived meanwhile supersedes
   it (`refused`: latest wins), and a command that went stale while queued is `refused`;
5. the switch runs (`switching.Switcher`): a `progress` event before each step (`drain`,
   `stop`, `verify`, `start`, `health`, `rollback`), the step first written into the GPU's
   state (`intent`); then one final event, `done`, `rolled_back` or `failed`, recorded in
   the state before it is published.

Every event carries the agent's report order (`ReportOrder`: the process's start and one
counter shared with telemetry), and a final event says what the GPU runs after it
(`actual`, since when). After a final event the agent publishes a fresh snapshot at once
(`on_final`), so `serve` never waits a telemetry interval for the GPU's new state.

Final events that cannot be published (broker away) are kept in a bounded outbox and sent at
the next connection; progress events are not (the final one supersedes them). Workloads never
depend on the broker: fail-static.

The executor is also where the watchdog and the HTTP API change a GPU (`hold`, `restart`,
`quarantine`, `clear_quarantine`), so that they take the same per-GPU lock as switches and
never fight one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import structlog

from orchestrator.agents.state import GpuRecord, NodeRecord, ReportOrder, StateStore
from orchestrator.agents.switching import GpuSlot, Outcome, StepError, Switcher
from orchestrator.config.profiles import ProfileSection, UnknownProfileError, profile_for_workload
from orchestrator.config.roots import ExecutorSection
from orchestrator.domain import IDLE, SwitchState
from orchestrator.protocol import AgentSwitchState, SwitchCommand, SwitchEvent

log = structlog.get_logger(__name__)

EventSink = Callable[[SwitchEvent], Awaitable[bool]]  # True when published
_OUTBOX_SIZE = 1000


class SwitchExecutor:
    """Per-GPU serialised, idempotent, fenced execution of switch commands."""

    def __init__(
        self,
        *,
        node: str,
        slots: dict[int, GpuSlot],
        node_record: NodeRecord,
        switcher: Switcher,
        store: StateStore,
        profiles: Sequence[ProfileSection],
        settings: ExecutorSection,
        publish: EventSink,
        clock: Callable[[], float] = time.time,
        order: ReportOrder | None = None,
        on_final: Callable[[], None] | None = None,
    ) -> None:
        self.node = node
        self.order = order or ReportOrder(clock())
        self.on_final = on_final
        self.slots = slots
        self.node_record = node_record
        self.switcher = switcher
        self.store = store
        self.profiles = list(profiles)
        self.settings = settings
        self.publish = publish
        self.clock = clock
        self._queue: asyncio.Queue[SwitchCommand] = asyncio.Queue()
        self._parallel = asyncio.Semaphore(settings.max_parallel_switches)
        self._running: set[str] = set()
        self.outbox: deque[SwitchEvent] = deque(maxlen=_OUTBOX_SIZE)
        self.results_total: dict[str, int] = {}

    # ------------------------------------------------------------------ intake

    def submit(self, command: SwitchCommand) -> None:
        """Queue a command (from the MQTT callback: must not block)."""
        self._queue.put_nowait(command)

    async def run(self) -> None:
        """Handle queued commands, each in its own task, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            while True:
                command = await self._queue.get()
                name = f"switch-gpu{command.gpu_index}-{command.command_id[:8]}"
                tasks.create_task(self._handle_logged(command), name=name)

    async def _handle_logged(self, command: SwitchCommand) -> None:
        with structlog.contextvars.bound_contextvars(
            node=self.node, gpu=command.gpu_index, command_id=command.command_id
        ):
            try:
                await self.handle(command)
            except Exception:
                log.exception("switch command crashed")

    async def handle(self, command: SwitchCommand) -> SwitchEvent:
        """One command, from intake to its final event (returned)."""
        slot = self.slots.get(command.gpu_index)
        if slot is None:
            return await self._emit(
                command, SwitchState.REFUSED, f"no GPU {command.gpu_index} here"
            )
        if command.gpu_uuid is not None and slot.gpu.uuid and command.gpu_uuid != slot.gpu.uuid:
            reason = f"GPU {command.gpu_index} is {slot.gpu.uuid}, not {command.gpu_uuid}"
            return await self._finish(slot, command, Outcome(SwitchState.REFUSED, reason))
        recorded = slot.record.result_for(command.command_id)
        if recorded is not None:
            log.info("repeated command answered from the record", state=recorded.get("state"))
            event = SwitchEvent.model_validate(recorded)
            await self._send(event)
            return event
        if command.command_id in self._running:
            return await self._emit(command, SwitchState.ACCEPTED, "already in progress")
        target_profile, refusal = self._refusal(command, slot)
        if refusal is not None:
            return await self._finish(slot, command, Outcome(SwitchState.REFUSED, refusal))
        self._running.add(command.command_id)
        slot.latest_command_id = command.command_id  # before any await: arrival order
        try:
            return await self._accept_and_run(command, slot, target_profile)
        finally:
            self._running.discard(command.command_id)

    def _refusal(
        self, command: SwitchCommand, slot: GpuSlot
    ) -> tuple[ProfileSection | None, str | None]:
        now_s = self.clock()
        if now_s > command.expires_at_s:
            return None, f"stale: expired {now_s - command.expires_at_s:.1f} s ago"
        highest = self.node_record.highest_generation
        if command.generation < highest:
            return None, f"generation {command.generation} is older than {highest} (acted on)"
        if slot.record.quarantined:
            return None, f"GPU quarantined: {slot.record.quarantine_reason}"
        if command.workload == IDLE:
            return None, None
        try:
            return profile_for_workload(self.profiles, command.workload), None
        except UnknownProfileError as error:
            return None, str(error)

    async def _accept_and_run(
        self, command: SwitchCommand, slot: GpuSlot, target_profile: ProfileSection | None
    ) -> SwitchEvent:
        if command.generation > self.node_record.highest_generation:
            self.node_record.highest_generation = command.generation
            await self.store.save_node(self.node_record)  # fencing holds across a restart
        await self._emit(command, SwitchState.ACCEPTED, command.reason[:200])
        async with slot.lock, self._parallel:
            if slot.latest_command_id != command.command_id:
                outcome = Outcome(
                    SwitchState.REFUSED, f"superseded by command {slot.latest_command_id}"
                )
            elif self.clock() > command.expires_at_s:
                outcome = Outcome(
                    SwitchState.REFUSED, "stale: expired while queued behind another switch"
                )
            elif slot.record.quarantined:
                outcome = Outcome(
                    SwitchState.REFUSED, f"GPU quarantined: {slot.record.quarantine_reason}"
                )
            else:
                outcome = await self._run_switch(command, slot, target_profile)
            return await self._finish(slot, command, outcome)

    async def _run_switch(
        self, command: SwitchCommand, slot: GpuSlot, target_profile: ProfileSection | None
    ) -> Outcome:
        intent = {
            "command_id": command.command_id,
            "generation": command.generation,
            "workload": command.workload,
            "step": "accepted",
        }

        async def progress(step: str) -> None:
            intent["step"] = step
            slot.record.intent = dict(intent)
            await self.store.save_gpu(slot.record)  # the step is on disk before it runs
            await self._emit(command, SwitchState.PROGRESS, step=step)

        log.info("switch started", target=command.workload, previous=slot.record.workload)
        outcome = await self.switcher.switch(
            slot, command.workload, target_profile, progress=progress
        )
        log.info("switch ended", state=outcome.state, reason=outcome.reason)
        return outcome

    async def _finish(self, slot: GpuSlot, command: SwitchCommand, outcome: Outcome) -> SwitchEvent:
        """The final event: what the GPU runs now, recorded, published, then a snapshot."""
        event = self._event(command, outcome.state, outcome.reason, step=outcome.step, slot=slot)
        slot.record.intent = None
        slot.record.remember(
            event.model_dump(by_alias=True, mode="json"),
            keep=self.settings.remembered_results_per_gpu,
        )
        await self.store.save_gpu(slot.record)  # recorded before announced
        self.results_total[outcome.state] = self.results_total.get(outcome.state, 0) + 1
        await self._send(event)
        if self.on_final is not None:
            self.on_final()
        return event

    # ------------------------------------------------------------------ events

    def _event(
        self,
        command: SwitchCommand,
        state: SwitchState,
        reason: str = "",
        *,
        step: str | None = None,
        slot: GpuSlot | None = None,
    ) -> SwitchEvent:
        """An event numbered now; a final one (`slot` given) says what the GPU runs."""
        agent_state: AgentSwitchState = state.value  # type: ignore[assignment]  # checked by pydantic
        actual = since_s = None
        if slot is not None and state.final:
            actual, since_s = slot.record.workload, slot.record.since_s
        return SwitchEvent(
            command_id=command.command_id,
            generation=command.generation,
            node=self.node,
            gpu_index=command.gpu_index,
            workload=command.workload,
            state=agent_state,
            step=step,
            reason=reason[:1000],
            at_s=self.clock(),
            seq=self.order.next(),
            boot_s=self.order.boot_s,
            actual=actual,
            actual_since_s=since_s,
        )

    async def _emit(
        self,
        command: SwitchCommand,
        state: SwitchState,
        reason: str = "",
        *,
        step: str | None = None,
    ) -> SwitchEvent:
        event = self._event(command, state, reason, step=step)
        if state is SwitchState.REFUSED:
            self.results_total["refused"] = self.results_total.get("refused", 0) + 1
            log.info("command refused", reason=reason)
        await self._send(event)
        return event

    async def _send(self, event: SwitchEvent) -> None:
        if not await self.publish(event) and SwitchState(event.state).final:
            self.outbox.append(event)

    async def flush_outbox(self) -> int:
        """Publish final events kept while the broker was away (at a reconnect)."""
        sent = 0
        while self.outbox:
            event = self.outbox[0]
            if not await self.publish(event):
                break
            self.outbox.popleft()
            sent += 1
        return sent

    # ------------------------------------------------------------------ the watchdog's door

    def busy(self, index: int) -> bool:
        """A switch (or restart) holds GPU `index` now."""
        slot = self.slots.get(index)
        return slot is not None and slot.lock.locked()

    @contextlib.asynccontextmanager
    async def hold(self, index: int) -> AsyncIterator[GpuSlot | None]:
        """GPU `index`'s slot with its lock held, or None at once if a switch holds it."""
        slot = self.slots.get(index)
        if slot is None or slot.lock.locked():
            yield None
            return
        async with slot.lock:
            yield slot

    async def restart(self, slot: GpuSlot) -> str | None:
        """Stop and start the GPU's own workload again (lock held); None, or why it failed."""
        profile = self.switcher.profiles.get(slot.record.profile_id or "")
        workload = slot.record.desired_workload
        if profile is None or workload is None:
            return f"no declared profile {slot.record.profile_id!r} to restart"
        try:
            await self.switcher.stop_current(slot)
            await self.switcher.verify_free(slot)
            await self.switcher.start(slot, profile, workload)
        except StepError as failure:
            return f"{failure.step} failed: {failure.reason}"
        await self.switcher.mark_running(slot)
        return None

    async def quarantine(self, slot: GpuSlot, reason: str) -> None:
        """Stop the GPU's workload and refuse commands for it (lock held) until cleared."""
        slot.record.quarantine_reason = reason
        slot.record.quarantined_at_s = self.clock()
        await self.store.save_gpu(slot.record)  # refusals start before the stop
        await self.switcher.discard(slot)

    async def clear_quarantine(self, index: int) -> GpuRecord | None:
        """Lift GPU `index`'s quarantine; its record, or None if it was not quarantined."""
        slot = self.slots.get(index)
        if slot is None or not slot.record.quarantined:
            return None
        async with slot.lock:
            slot.record.quarantine_reason = None
            slot.record.quarantined_at_s = None
            await self.store.save_gpu(slot.record)
        return slot.record
