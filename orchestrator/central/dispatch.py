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

Persistence: `order` writes a plan, its commands (as `publishing`) and the end of the
commands it supersedes in one transaction, then publishes; each later change of state is
written as it happens, a final event with the GPU fact it sets. On start, `restore` puts the
store's open commands back in flight, unacknowledged, so they are re-sent with their
original ids (a daemon killed mid-switch neither forgets nor duplicates a switch), and the
GPU facts back in the book.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter

from orchestrator.central.gpubook import Fact, GpuBook, fact_of
from orchestrator.central.store import CommandRecord, FactRow, Store
from orchestrator.domain import GpuKey, SwitchState, WorkloadKind, gpu_key, workload_kind
from orchestrator.errors import PayloadError
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
        if not ours:
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
        if not self.in_flight:
            return
        now_s = self.clock()
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
        """Carry out a plan: the commands it needs and the end of those it supersedes are
        written with the plan in one transaction, before anything is published; then the
        commands are published. Returns them as published (in flight, or unsent)."""
        prepared, superseded = self._prepare(plan, generation=entry.generation, uuids=uuids)
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
        return published

    def _prepare(
        self, plan: Plan, *, generation: int, uuids: Mapping[str, str]
    ) -> tuple[list[CommandRecord], list[CommandRecord]]:
        """The commands a plan needs (state `publishing`): changed GPUs not already heading
        there nor cooling down after a failed attempt; and the in-flight commands whose
        target the plan changed, ended as superseded."""
        records: list[CommandRecord] = []
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
            gpu = GpuKey.parse(key)
            command = SwitchCommand(
                command_id=uuid.uuid4().hex,
                generation=generation,
                node=gpu.node,
                gpu_index=gpu.index,
                gpu_uuid=uuids.get(key),
                workload=target,
                previous_workload=assignment.previous,
                issued_at_s=now_s,
                expires_at_s=now_s + self.command_ttl_s,
                reason=assignment.reason[:500],
            )
            records.append(
                CommandRecord(
                    command_id=command.command_id,
                    generation=generation,
                    gpu=key,
                    workload=target,
                    previous=assignment.previous,
                    reason=assignment.reason,
                    issued_at_s=now_s,
                    expires_at_s=command.expires_at_s,
                    state=SwitchState.PUBLISHING.value,
                    payload=encode(command),
                    next_retry_s=now_s + self.ack_timeout_s,
                )
            )
        return records, superseded

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
