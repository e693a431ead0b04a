"""The dispatcher: planned switches become commands, and each command is owned to its end.

Level-based (STYLE point 4): the plan says what each GPU should run; the dispatcher sends
a command only where that differs from what the GPU runs or is already being switched to.
Each GPU's state lives in one `GpuBook` (`gpubook`): the plan's desired workload, at most
one command in flight, and the agent's last final word. A command is in flight from its
publication until the agent's final event on `nodes/<node>/events` (done, rolled back,
failed, refused) or `command_timeout_s`; telemetry never ends it, because an agent reports
a GPU idle between a switch's stop and its verification, and a switch that then rolls back
has not succeeded. While a command is in flight the planner sees the target, so one
decision is ordered once. A final event also sets the GPU's actual workload at once
(`GpuBook.record_final`), whether or not its command is still tracked (one that timed out
and then finished still tells what runs).

Delivery: a command the agent has not acknowledged (`accepted`) within the ack timeout is
published again, the same bytes and the same id (the agent answers a repeat with its
recorded result, so a retry can never run a switch twice), with a doubling delay, until
the command expires (`command_ttl_s`); then it is `timed_out`. Every command carries the
plan generation, which agents use to refuse anything older than what they acted on.

A switch that failed (rolled back, failed, refused) is not ordered again for the same GPU
and target during `failure_cooldown_s`: a broken miner must not be retried every plan.

The wave (`wave`): a plan's switches are not all sent at once. Those that lower a GPU's
power go first; those that raise it are held (`GpuBook.held`: in memory only, nothing
written or sent) until the site's estimated wall power plus the rise fits under the cap, the
ramp limit and the per-node limit on starts allow. Held switches are released by
`release_held`, which the `wave` task runs when an agent's final event, its telemetry or a
plan may have freed room (and when the ramp window moves on). A newer plan replaces the held
set: a switch it no longer wants is dropped unsent, one it wants elsewhere is replaced. A
released switch is an ordinary command from then on, with its own id and expiry. Without a
cap and limits everything is released at once, stops first.

Persistence: `order` writes a plan, the commands released at once (as `publishing`) and the
end of the commands it supersedes in one transaction, then publishes; a later release writes
its commands before publishing them; each later change of state is
written as it happens, a final event with the GPU fact it sets. On start, `restore` puts the
store's open commands back in flight, unacknowledged, so they are re-sent with their
original ids (a daemon killed mid-switch neither forgets nor duplicates a switch), and the
GPU facts back in the book.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from orchestrator.central.fleet import FleetState
from orchestrator.central.gpubook import Fact, GpuBook, Held, fact_of
from orchestrator.central.store import CommandRecord, FactRow, Store
from orchestrator.central.wave import (
    HELD_RAMP,
    HELD_REASONS,
    BoardAsWall,
    WavePower,
    WaveScheduler,
    WaveSettings,
)
from orchestrator.domain import GpuKey, SwitchState, WorkloadKind, gpu_key, workload_kind
from orchestrator.errors import PayloadError
from orchestrator.lifecycle import raise_if_cancelling
from orchestrator.mqtt import MqttLink
from orchestrator.policy.model import Plan
from orchestrator.protocol import (
    INTERRUPTED_BY_RESTART,
    GpuHealthEvent,
    SwitchCommand,
    SwitchEvent,
    Topics,
    decode_event,
    encode,
)

log = structlog.get_logger(__name__)

# a command's end state -> the `result` label of orchestrator_switches_total
_RESULT_LABEL = {
    SwitchState.DONE: "ok",
    SwitchState.FAILED: "failed",
    SwitchState.ROLLED_BACK: "rolled_back",
    SwitchState.REFUSED: "refused",
    SwitchState.TIMED_OUT: "timeout",
    SwitchState.SUPERSEDED: "superseded",
}


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """What the store keeps of a plan generation beside its commands."""

    generation: int
    at_s: float
    trigger: str
    net_usd_per_hour: float
    summary: dict[str, Any]


class Dispatcher:
    def __init__(
        self,
        *,
        link: MqttLink,
        topics: Topics,
        registry: CollectorRegistry,
        command_timeout_s: float,
        command_ttl_s: float,
        ack_timeout_s: float = 5.0,
        ack_timeout_max_s: float = 60.0,
        failure_cooldown_s: float = 900.0,
        clock: Callable[[], float] = time.time,
        journal_size: int = 1000,
        store: Store | None = None,
        power: WavePower | None = None,
        wave: WaveSettings | None = None,
        fleet: FleetState | None = None,
        wave_pass_min_s: float = 0.05,
    ) -> None:
        self.link = link
        self.store = store
        self.topics = topics
        self.clock = clock
        self.command_timeout_s = command_timeout_s
        self.command_ttl_s = command_ttl_s
        self.ack_timeout_s = ack_timeout_s
        self.ack_timeout_max_s = ack_timeout_max_s
        self.failure_cooldown_s = failure_cooldown_s
        self.book = GpuBook()
        self.in_flight: dict[str, CommandRecord] = self.book.commands
        self.by_id: dict[str, str] = {}  # command id -> GPU key, for in-flight commands
        self.cooldowns: dict[tuple[str, str], float] = {}  # (GPU, target) -> until
        self.journal: deque[CommandRecord] = deque(maxlen=journal_size)
        self.scheduler = WaveScheduler(power or BoardAsWall(), wave or WaveSettings(), fleet)
        self.held: dict[str, Held] = self.book.held
        self.wave_pass_min_s = wave_pass_min_s
        self._wake = asyncio.Event()
        self.published = Counter(
            "orchestrator_commands_published",
            "Switch command publications, by result (sent, unsent, retried)",
            ["result"],
            registry=registry,
        )
        self.planned = Counter(
            "orchestrator_switches_planned",
            "Switches the planner ordered, by the kind of the target workload",
            ["to_kind"],
            registry=registry,
        )
        self.finished = Counter(
            "orchestrator_switches",
            "Switches that ended, by result (ok, failed, rolled_back, refused, timeout,"
            " superseded)",
            ["result"],
            registry=registry,
        )
        self.health_events = Counter(
            "orchestrator_gpu_health_events",
            "Watchdog events from the agents (restarted, quarantined, cleared)",
            ["state"],
            registry=registry,
        )
        self.events_dropped = Counter(
            "orchestrator_events_dropped",
            "Agent events dropped: malformed, for no command in flight, or said before what"
            " serve already knows",
            ["reason"],
            registry=registry,
        )
        self.late_finals = Counter(
            "orchestrator_late_final_events",
            "Final switch events for a command no longer in flight (timed out, superseded,"
            " or from before a restart) that still set what the GPU runs",
            registry=registry,
        )
        # every known label value exists at 0 from the start, so that increase() in the
        # alert rules sees the first failure instead of a series appearing at 1
        for result in _RESULT_LABEL.values():
            self.finished.labels(result)
        for kind in (WorkloadKind.MINING, WorkloadKind.AI, WorkloadKind.IDLE):
            self.planned.labels(kind)
        for result in ("sent", "unsent", "retried"):
            self.published.labels(result)
        for reason in ("unknown_command", "out_of_order"):
            self.events_dropped.labels(reason)
        self.held_gauge = Gauge(
            "orchestrator_wave_held_commands",
            "Planned switches not yet sent, by what holds them back (site_power, ramp,"
            " node_starts; empty before the first release decision)",
            ["reason"],
            registry=registry,
        )
        for why in ("", *HELD_REASONS):
            self.held_gauge.labels(why).set_function(partial(self._held_count, why))
        self.held_changes = Counter(
            "orchestrator_wave_commands",
            "Planned switches by what the wave did with them (released: sent, at once or"
            " later; dropped: held, and a newer plan did not want them; replaced: held, and"
            " it wanted another workload)",
            ["result"],
            registry=registry,
        )
        for result in ("released", "dropped", "replaced"):
            self.held_changes.labels(result)
        Gauge(
            "orchestrator_site_power_estimated_watts",
            "The site's wall power as the wave counts it: switching GPUs at the larger of"
            " their old and new power, the others at their reading or estimate",
            registry=registry,
        ).set_function(lambda: self.scheduler.site_wall_w(self.book))
        Gauge(
            "orchestrator_site_power_cap_watts",
            "The site's wall power cap the wave holds to now (NaN: no cap)",
            registry=registry,
        ).set_function(lambda: _or_nan(self.scheduler.power.cap_w(self.clock())))

    def targets(self) -> Mapping[str, str]:
        """GPU -> the workload it is being switched to, for the planner."""
        return {key: record.workload for key, record in self.in_flight.items()}

    # ------------------------------------------------------------------ events in

    def on_event(self, node: str, payload: bytes) -> None:
        """An agent's event (synchronous: called from ingest for each message)."""
        try:
            event = decode_event(payload, topic_node=node)
        except PayloadError as error:
            self.events_dropped.labels(error.reason).inc()
            return
        if isinstance(event, GpuHealthEvent):
            self.health_events.labels(event.state).inc()
            log.warning(
                "gpu health event",
                gpu=gpu_key(event.node, event.gpu_index),
                state=event.state,
                reason=event.reason,
                restarts=event.restarts,
            )
            return
        self._on_switch_event(event)

    def _on_switch_event(self, event: SwitchEvent) -> None:
        state = SwitchState(event.state)
        key = gpu_key(event.node, event.gpu_index)
        command = self.in_flight.get(key)
        ours = command is not None and command.command_id == event.command_id
        if not state.final:
            if not ours:
                self.events_dropped.labels("unknown_command").inc()
                return
            assert command is not None  # noqa: S101  (ours)
            updated = replace(command, acked=True, step=event.step or command.step)
            self.in_flight[key] = updated
            if not command.acked:
                self._save([updated])
            return
        # an agent that numbers its reports says what runs after a final event; an older
        # one does not, and its telemetry (by its clock) is all serve can go on
        numbered = event.seq is not None and event.boot_s is not None
        fact = fact_of(event) if numbered else None
        moved = fact is not None and self.book.record_final(key, fact)
        facts = [_fact_row(key, fact)] if fact is not None and moved else []
        if self.held:
            self._wake.set()
        if not ours:
            # a superseded command's end: it no longer runs at its agent
            self.scheduler.ended(key, event.command_id)
            if moved:
                self.late_finals.inc()
                self._save([], facts)
                log.info(
                    "final event for a command no longer in flight",
                    gpu=key,
                    command_id=event.command_id,
                    state=state.value,
                    actual=event.actual,
                )
            else:
                self.events_dropped.labels("unknown_command").inc()
            return
        if numbered and not moved:
            # the agent said something about this GPU after this event: a duplicate, or
            # overtaken in delivery. The command still ends; the GPU's state stays.
            self.events_dropped.labels("out_of_order").inc()
        now_s = self.clock()
        self._finish(key, state, now_s, outcome=event.reason, facts=facts)
        # the agent switches a GPU one command at a time: anything older has ended too
        self.scheduler.settle(key)
        if state.failure:
            assert command is not None  # noqa: S101  (ours)
            # a restart of the agent is no fault of the target: no cool-down for it
            cooldown_s = (
                0.0 if event.reason.startswith(INTERRUPTED_BY_RESTART) else self.failure_cooldown_s
            )
            if cooldown_s:
                self.cooldowns[(key, command.workload)] = now_s + cooldown_s
            log.warning(
                "switch rolled back" if state is SwitchState.ROLLED_BACK else "switch failed",
                gpu=key,
                workload=command.workload,
                result=state.value,
                actual=event.actual,
                reason=event.reason,
                cooldown_s=cooldown_s,
            )

    # ------------------------------------------------------------------ housekeeping

    def expire_overdue(self) -> None:
        """End the commands past their timeout (or unacknowledged past their expiry).

        Telemetry never ends a command: only the agent's final event or this does."""
        now_s = self.clock()
        self.scheduler.expire(now_s)
        if not self.in_flight:
            return
        for key, command in list(self.in_flight.items()):
            unacked_expired = not command.acked and now_s > command.expires_at_s
            if unacked_expired or now_s - command.issued_at_s > self.command_timeout_s:
                log.warning("switch command timed out", gpu=key, command_id=command.command_id)
                self._finish(key, SwitchState.TIMED_OUT, now_s, outcome="no answer from the agent")

    async def retry_unacknowledged(self, *, limit: int = 250) -> int:
        """Publish again the commands no agent has acknowledged in time; return how many.

        At most `limit` a call: the policy loop calls this between plans, and a fleet that
        went quiet (thousands of unanswered commands) must not hold up the next plan; the
        rest are retried on the following ticks.
        """
        now_s = self.clock()
        due: list[CommandRecord] = []
        for command in self.in_flight.values():
            if len(due) >= limit:
                break
            if command.acked or now_s < command.next_retry_s or now_s > command.expires_at_s:
                continue
            due.append(command)
        sent_all = await self.link.publish_many(self._messages(due))
        retried: list[CommandRecord] = []
        for command, sent in zip(due, sent_all, strict=True):
            delay_s = min(self.ack_timeout_max_s, self.ack_timeout_s * 2**command.attempts)
            updated = replace(command, attempts=command.attempts + 1, next_retry_s=now_s + delay_s)
            if self.in_flight.get(command.gpu) is command:  # an event may have ended it meanwhile
                self.in_flight[command.gpu] = updated
                retried.append(updated)
            self.published.labels("retried" if sent else "unsent").inc()
        self._save(retried)
        return len(retried)

    def _messages(self, records: list[CommandRecord]) -> list[tuple[str, bytes]]:
        """(topic, payload) of each command, for `publish_many`."""
        return [(self.topics.commands(GpuKey.parse(r.gpu).node), r.payload) for r in records]

    def _finish(
        self,
        key: str,
        state: SwitchState,
        now_s: float,
        *,
        outcome: str = "",
        save: bool = True,
        facts: Iterable[FactRow] = (),
    ) -> CommandRecord:
        """End an in-flight command; `save=False` leaves the store write to the caller
        (to write many in one transaction)."""
        command = self.in_flight.pop(key)
        self.by_id.pop(command.command_id, None)
        self.finished.labels(_RESULT_LABEL[state]).inc()
        if state is SwitchState.SUPERSEDED:
            until_s = command.issued_at_s + self.command_timeout_s
            self.scheduler.may_still_run(key, command.command_id, command.workload, until_s)
        elif state is SwitchState.TIMED_OUT:
            # no word from the agent is no proof that it stopped: counted for one more timeout
            until_s = now_s + self.command_timeout_s
            self.scheduler.may_still_run(key, command.command_id, command.workload, until_s)
        else:
            self.scheduler.ended(key, command.command_id)
        if self.held:
            self._wake.set()
        # without its payload: an ended command is not sent again, and the store's update
        # of it writes only its state
        finished = replace(
            command, state=state.value, finished_at_s=now_s, outcome=outcome, payload=b""
        )
        if save:
            self._save([finished], facts)
        self.journal.append(finished)
        return finished

    def _save(self, records: list[CommandRecord], facts: Iterable[FactRow] = ()) -> None:
        facts = list(facts)
        if self.store is not None and (records or facts):
            self.store.update_commands(records, facts=facts)

    def restore(self, open_commands: list[CommandRecord], facts: list[FactRow]) -> None:
        """Put a previous run's open commands (oldest first) back in flight, to be re-sent as
        they were (of two for one GPU the later stays; one transaction for all of them), and
        each GPU's last final event back in the book."""
        for gpu, boot_s, seq, at_s, workload, since_s, state, command_id in facts:
            fact = Fact(
                (boot_s, seq, at_s), workload, since_s, SwitchState(state), command_id, at_s
            )
            self.book.record_final(gpu, fact)
        changed: dict[str, CommandRecord] = {}
        for command in open_commands:
            restored = replace(
                command, state=SwitchState.IN_FLIGHT.value, acked=False, next_retry_s=0.0
            )
            previous = self.in_flight.get(command.gpu)
            if previous is not None:
                ended = self._finish(
                    command.gpu,
                    SwitchState.SUPERSEDED,
                    self.clock(),
                    outcome="newer command",
                    save=False,
                )
                changed[ended.command_id] = ended
            self.in_flight[command.gpu] = restored
            self.by_id[command.command_id] = command.gpu
            changed[restored.command_id] = restored
        self._save(list(changed.values()))
        if open_commands:
            log.info("switch commands restored from the store", count=len(open_commands))

    # ------------------------------------------------------------------ commands out

    def cooling_down(self, key: str, workload: str, now_s: float) -> bool:
        until_s = self.cooldowns.get((key, workload))
        if until_s is None:
            return False
        if now_s >= until_s:
            del self.cooldowns[(key, workload)]
            return False
        return True

    async def order(
        self, plan: Plan, entry: PlanEntry, *, uuids: Mapping[str, str]
    ) -> list[CommandRecord]:
        """Carry out a plan: the switches it needs replace the held ones; those the wave
        releases now and the end of the commands the plan supersedes are written with the
        plan in one transaction, before anything is published; then they are published
        (stops first). Returns them as published (in flight, or unsent); the rest stay held
        (`held`) for `release_held`."""
        now_s = self.clock()
        wanted, superseded = self._wanted(plan, generation=entry.generation, uuids=uuids)
        self._replace_held(wanted)
        self.scheduler.plan_changed(plan)
        prepared = self._release(now_s)
        if self.store is not None:
            # written before anything is published: a crash from here on forgets nothing.
            # The superseded commands are ended in the same transaction: saving them later
            # would let a crash in between revive a command the plan ended without a
            # successor (one whose target is cooling down).
            self.store.record_plan(
                generation=entry.generation,
                at_s=entry.at_s,
                trigger=entry.trigger,
                net_usd_per_hour=entry.net_usd_per_hour,
                commands=prepared,
                summary=entry.summary,
                ended=superseded,
            )
        published = await self._publish(prepared)
        # after publishing: what the plan wants is for reading, and a plan's first command
        # should not wait for 10,000 dict writes
        desired = self.book.desired
        for key, assignment in plan.assignments.items():
            if assignment.workload is not None:
                desired[key] = assignment.workload
        if self.held:
            log.info(
                "switches held by the wave",
                generation=entry.generation,
                released=len(published),
                held=len(self.held),
            )
        return published

    async def release_held(self) -> list[CommandRecord]:
        """Release what the wave allows now of the held switches: written, then published.
        Returns them as published."""
        if not self.held:
            return []
        prepared = self._release(self.clock())
        if not prepared:
            return []
        if self.store is not None:
            self.store.add_commands(prepared)
        return await self._publish(prepared)

    async def run_wave(self) -> None:
        """The `wave` task: a release decision whenever a final event, telemetry, a timeout
        or a plan may have made room, or the ramp window moves on; at most one every
        `wave_pass_min_s` (what arrives meanwhile is decided together)."""
        while True:
            raise_if_cancelling()
            await self.wave_once()

    async def wave_once(self) -> list[CommandRecord]:
        timeout_s = self._next_wave_s()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        self._wake.clear()
        released = await self.release_held()
        await asyncio.sleep(self.wave_pass_min_s)
        return released

    def _next_wave_s(self) -> float | None:
        """Seconds until the ramp window frees room for a start it holds; None: no timer."""
        if not any(h.why == HELD_RAMP for h in self.held.values()):
            return None
        now_s = self.clock()
        at_s = self.scheduler.next_ramp_s()
        return None if at_s is None else max(0.0, at_s - now_s)

    def wave_summary(self) -> dict[str, object]:
        """What `/api/v1/plan` shows of the wave (`ServeReader.wave`)."""
        by_reason: dict[str, int] = {}
        for item in self.held.values():
            by_reason[item.why or "undecided"] = by_reason.get(item.why or "undecided", 0) + 1
        return {
            "held": len(self.held),
            "held_by_reason": dict(sorted(by_reason.items())),
            "in_flight": len(self.in_flight),
            "estimated_wall_w": round(self.scheduler.site_wall_w(self.book), 1),
            "cap_w": self.scheduler.power.cap_w(self.clock()),
        }

    def _held_count(self, why: str) -> int:
        return sum(1 for h in self.held.values() if h.why == why)

    def on_telemetry(self, node: str) -> None:  # noqa: ARG002  (ingest's listener signature)
        """A node's snapshot arrived (synchronous, from ingest): its readings may make room."""
        if self.held:
            self._wake.set()

    def _replace_held(self, wanted: dict[str, Held]) -> None:
        """The newest plan's switches replace the held ones; one it wants again keeps its
        place in the queue."""
        held = self.held
        kept: dict[str, Held] = {}
        for key, item in held.items():
            again = wanted.get(key)
            if again is None:
                self.held_changes.labels("dropped").inc()
            elif again.workload != item.workload:
                self.held_changes.labels("replaced").inc()
            else:
                kept[key] = replace(
                    again, held_since_s=item.held_since_s, why=item.why, rise_w=item.rise_w
                )
        held.clear()
        held.update(kept)  # first come, first served: those that waited keep their turn
        held.update((key, item) for key, item in wanted.items() if key not in kept)

    def _release(self, now_s: float) -> list[CommandRecord]:
        """The held switches the wave releases now, as commands (state `publishing`), stops
        first; they leave `held`."""
        go, stay = self.scheduler.choose(self.held, self.book, now_s)
        self.held.clear()
        self.held.update(stay)
        records = []
        for item, rise_w in go:
            record = self._command(item, now_s)
            self.scheduler.started(item.gpu, record.command_id, rise_w)
            records.append(record)
        if records:
            self.held_changes.labels("released").inc(len(records))
        return records

    def _wanted(
        self, plan: Plan, *, generation: int, uuids: Mapping[str, str]
    ) -> tuple[dict[str, Held], list[CommandRecord]]:
        """The switches a plan needs: changed GPUs not already heading there nor cooling
        down after a failed attempt; and the in-flight commands whose target the plan
        changed, ended as superseded."""
        wanted: dict[str, Held] = {}
        superseded: list[CommandRecord] = []
        now_s = self.clock()
        for key, assignment in plan.assignments.items():
            target = assignment.workload
            if not assignment.changed or target is None:
                continue
            pending = self.in_flight.get(key)
            if pending is not None:
                if pending.workload == target:
                    continue
                superseded.append(
                    self._finish(
                        key,
                        SwitchState.SUPERSEDED,
                        now_s,
                        outcome=f"replaced by a switch to {target}",
                        save=False,
                    )
                )
            if self.cooling_down(key, target, now_s):
                continue
            wanted[key] = Held(
                gpu=key,
                workload=target,
                previous=assignment.previous,
                reason=assignment.reason,
                generation=generation,
                uuid=uuids.get(key),
                held_since_s=now_s,
            )
        return wanted, superseded

    def _command(self, item: Held, now_s: float) -> CommandRecord:
        """A released switch as a command (state `publishing`), issued now."""
        gpu = GpuKey.parse(item.gpu)
        command = SwitchCommand(
            command_id=uuid.uuid4().hex,
            generation=item.generation,
            node=gpu.node,
            gpu_index=gpu.index,
            gpu_uuid=item.uuid,
            workload=item.workload,
            previous_workload=item.previous,
            issued_at_s=now_s,
            expires_at_s=now_s + self.command_ttl_s,
            reason=item.reason[:500],
        )
        return CommandRecord(
            command_id=command.command_id,
            generation=item.generation,
            gpu=item.gpu,
            workload=item.workload,
            previous=item.previous,
            reason=item.reason,
            issued_at_s=now_s,
            expires_at_s=command.expires_at_s,
            state=SwitchState.PUBLISHING.value,
            payload=encode(command),
            next_retry_s=now_s + self.ack_timeout_s,
        )

    async def _publish(self, records: list[CommandRecord]) -> list[CommandRecord]:
        """Publish prepared commands; each becomes in flight, or unsent without a broker."""
        # in flight before the first one leaves: the publications go out together, and an
        # agent may answer one before the broker has acknowledged the last
        flying = [replace(prepared, state=SwitchState.IN_FLIGHT.value) for prepared in records]
        for record in flying:
            self.in_flight[record.gpu] = record
            self.by_id[record.command_id] = record.gpu
        sent_all = await self.link.publish_many(self._messages(flying))
        published: list[CommandRecord] = []
        for record, sent in zip(flying, sent_all, strict=True):
            # a command its agent already answered went out, whatever the client said
            went = sent or self.in_flight.get(record.gpu) is not record
            self.published.labels("sent" if went else "unsent").inc()
            if went:
                self.planned.labels(workload_kind(record.workload).value).inc()
                final = record
            else:
                del self.in_flight[record.gpu]
                self.by_id.pop(record.command_id, None)
                self.scheduler.ended(record.gpu, record.command_id)
                final = replace(record, state=SwitchState.UNSENT.value)
                self.journal.append(replace(final, payload=b""))
            published.append(final)
            log.info(
                "switch ordered" if went else "switch not sent: broker unavailable",
                gpu=final.gpu,
                workload=final.workload,
                previous=final.previous,
                generation=final.generation,
                command_id=final.command_id,
            )
        # one transaction for the plan's publications: until it commits, the rows still say
        # `publishing`, which a restart re-sends with the same ids (agents answer a repeat
        # from their record), so nothing is lost or run twice. A command an agent answered
        # meanwhile was saved by its event (acked or ended) and is not written back here.
        self._save(
            [
                r
                for r in published
                if r.state == SwitchState.UNSENT or self.in_flight.get(r.gpu) is r
            ]
        )
        return published

    def recent(self, limit: int = 100) -> list[CommandRecord]:
        """The newest records first: in-flight commands, then the journal."""
        records = sorted(
            [*self.in_flight.values(), *self.journal], key=lambda r: r.issued_at_s, reverse=True
        )
        return records[:limit]


def _fact_row(key: str, fact: Fact) -> FactRow:
    boot_s, seq, _ = fact.order
    return (
        key,
        boot_s,
        seq,
        fact.at_s,
        fact.workload,
        fact.since_s,
        fact.state.value,
        fact.command_id,
    )


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value
