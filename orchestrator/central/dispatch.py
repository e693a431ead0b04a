"""The dispatcher: planned switches become commands on `nodes/<node>/commands`.

Level-based (STYLE point 4): the plan says what each GPU should run; the dispatcher sends
a command only where that differs from what the GPU runs or is already being switched to.
A command is *in flight* from its publication until the agent reports its end on
`nodes/<node>/events` (done, rolled back, failed, refused), the GPU's telemetry shows the
target workload, or `command_timeout_s` passes. While a command is in flight the planner
sees the target, so one decision is ordered once.

Delivery: a command the agent has not acknowledged (`accepted`) within the ack timeout is
published again, the same bytes and the same id (the agent answers a repeat with its
recorded result, so a retry can never run a switch twice), with a doubling delay, until
the command expires (`command_ttl_s`); then it is `timed_out`. Every command carries the
plan generation, which agents use to refuse anything older than what they acted on.

A switch that failed (rolled back, failed, refused) is not ordered again for the same GPU
and target during `failure_cooldown_s`: a broken miner must not be retried every plan.

Persistence: with a store, every command is written as `publishing` (with the rest of
its plan, in one transaction, by the policy loop) before it is published, and each change
of state after that is written as it happens. On start, `restore` puts the store's open
commands back in flight, unacknowledged, so they are re-sent with their original ids: a
daemon killed mid-switch neither forgets nor duplicates a switch.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace

import structlog
from prometheus_client import CollectorRegistry, Counter

from orchestrator.central.fleet import FleetState
from orchestrator.central.store import CommandRecord, Store
from orchestrator.domain import NodeStatus, gpu_key, workload_kind
from orchestrator.errors import PayloadError
from orchestrator.mqtt import MqttLink
from orchestrator.policy.model import Plan
from orchestrator.protocol import (
    GpuHealthEvent,
    SwitchCommand,
    SwitchEvent,
    Topics,
    decode_event,
    encode,
)

log = structlog.get_logger(__name__)

_FINAL_STATES = {"done", "failed", "rolled_back", "refused"}
_FAILED_STATES = {"failed", "rolled_back", "refused"}


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
        self.in_flight: dict[str, CommandRecord] = {}
        self.by_id: dict[str, str] = {}  # command id -> GPU key, for in-flight commands
        self.cooldowns: dict[tuple[str, str], float] = {}  # (GPU, target) -> until
        self.journal: deque[CommandRecord] = deque(maxlen=journal_size)
        # ended by `prepare`; saved with the plan (`take_ended`) or else by `publish`
        self._superseded_unsaved: list[CommandRecord] = []
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
            "Switches that ended, by result (ok, failed, rolled_back, refused, timeout)",
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
            "Agent events dropped: malformed, or for no command in flight",
            ["reason"],
            registry=registry,
        )
        # every known label value exists at 0 from the start, so that increase() in the
        # alert rules sees the first failure instead of a series appearing at 1
        for result in ("ok", "failed", "rolled_back", "refused", "timeout", "superseded"):
            self.finished.labels(result)
        for kind in ("mining", "ai", "idle"):
            self.planned.labels(kind)
        for result in ("sent", "unsent", "retried"):
            self.published.labels(result)

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
        key = self.by_id.get(event.command_id)
        command = self.in_flight.get(key) if key else None
        if command is None or command.command_id != event.command_id:
            self.events_dropped.labels("unknown_command").inc()
            return
        now_s = self.clock()
        if event.state in _FINAL_STATES:
            assert key is not None  # noqa: S101  (found through by_id)
            self._finish(key, event.state, now_s, outcome=event.reason)
            if event.state in _FAILED_STATES:
                self.cooldowns[(key, command.workload)] = now_s + self.failure_cooldown_s
                log.warning(
                    "switch failed",
                    gpu=key,
                    workload=command.workload,
                    result=event.state,
                    reason=event.reason,
                )
            return
        updated = replace(command, acked=True, step=event.step or command.step)
        self.in_flight[command.gpu] = updated
        if not command.acked:
            self._save(updated)

    # ------------------------------------------------------------------ housekeeping

    def settle(self, fleet: FleetState) -> None:
        """Close in-flight commands the fleet shows done, and those past their timeout."""
        if not self.in_flight:
            return
        now_s = self.clock()
        for record in fleet.nodes.values():
            if record.telemetry is None or record.status is not NodeStatus.ONLINE:
                continue
            for gpu in record.telemetry.gpus:
                key = gpu_key(record.name, gpu.index)
                command = self.in_flight.get(key)
                reported = gpu.workload.workload if gpu.workload else None
                if command is not None and reported == command.workload:
                    self._finish(key, "done", now_s, outcome="telemetry shows the workload")
        for key, command in list(self.in_flight.items()):
            unacked_expired = not command.acked and now_s > command.expires_at_s
            if unacked_expired or now_s - command.issued_at_s > self.command_timeout_s:
                log.warning("switch command timed out", gpu=key, command_id=command.command_id)
                self._finish(key, "timed_out", now_s, outcome="no answer from the agent")

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
        self._save_all(retried)
        return len(retried)

    def _messages(self, records: list[CommandRecord]) -> list[tuple[str, bytes]]:
        """(topic, payload) of each command, for `publish_many`."""
        return [(self.topics.commands(r.gpu.rpartition(":")[0]), r.payload) for r in records]

    def _finish(
        self, key: str, state: str, now_s: float, *, outcome: str = "", save: bool = True
    ) -> CommandRecord:
        """End an in-flight command; `save=False` leaves the store write to the caller
        (to write many in one transaction)."""
        command = self.in_flight.pop(key)
        self.by_id.pop(command.command_id, None)
        self.finished.labels(_RESULT_LABEL.get(state, state)).inc()
        # without its payload: an ended command is not sent again, and the store's update
        # of it writes only its state
        finished = replace(command, state=state, finished_at_s=now_s, outcome=outcome, payload=b"")
        if save:
            self._save(finished)
        self.journal.append(finished)
        return finished

    def _save(self, record: CommandRecord) -> None:
        if self.store is not None:
            self.store.update_command(record)

    def _save_all(self, records: list[CommandRecord]) -> None:
        if self.store is not None and records:
            self.store.update_commands(records)

    def restore(self, open_commands: list[CommandRecord]) -> None:
        """Put a previous run's open commands (oldest first) back in flight, to be re-sent as
        they were; of two for one GPU the later stays. One transaction for all of them."""
        changed: dict[str, CommandRecord] = {}
        for command in open_commands:
            restored = replace(command, state="in_flight", acked=False, next_retry_s=0.0)
            previous = self.in_flight.get(command.gpu)
            if previous is not None:
                ended = self._finish(
                    command.gpu, "superseded", self.clock(), outcome="newer command", save=False
                )
                changed[ended.command_id] = ended
            self.in_flight[command.gpu] = restored
            self.by_id[command.command_id] = command.gpu
            changed[restored.command_id] = restored
        self._save_all(list(changed.values()))
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

    def prepare(
        self, plan: Plan, *, generation: int, uuids: Mapping[str, str]
    ) -> list[CommandRecord]:
        """The commands a plan needs (state `publishing`): changed GPUs not already heading
        there nor cooling down after a failed attempt. Supersedes in-flight commands whose
        target the plan changed."""
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
                        "superseded",
                        now_s,
                        outcome=f"replaced by a switch to {target}",
                        save=False,
                    )
                )
            if self.cooling_down(key, target, now_s):
                continue
            node, _, index = key.rpartition(":")
            command = SwitchCommand(
                command_id=uuid.uuid4().hex,
                generation=generation,
                node=node,
                gpu_index=int(index),
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
                    state="publishing",
                    payload=encode(command),
                    next_retry_s=now_s + self.ack_timeout_s,
                )
            )
        # not saved here: the caller writes them in the plan's own transaction (`take_ended`,
        # `Store.record_plan`), or `publish` saves what no one took. A transaction of their
        # own would sit between a decision and its commands (~0.2 s for 7,500), and saving
        # them only after publishing would let a crash in between revive a command the plan
        # ended without a successor (one whose target is cooling down).
        self._superseded_unsaved.extend(superseded)
        return records

    def take_ended(self) -> list[CommandRecord]:
        """The commands `prepare` ended, for the caller to save with the plan's commands."""
        ended, self._superseded_unsaved = self._superseded_unsaved, []
        return ended

    async def publish(self, records: list[CommandRecord]) -> list[CommandRecord]:
        """Publish prepared commands; each becomes in flight, or unsent without a broker."""
        # in flight before the first one leaves: the publications go out together, and an
        # agent may answer one before the broker has acknowledged the last
        flying = [replace(prepared, state="in_flight") for prepared in records]
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
                final = replace(record, state="unsent")
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
        self._save_all(
            [
                *self.take_ended(),  # when the caller did not save them with the plan
                *(r for r in published if r.state == "unsent" or self.in_flight.get(r.gpu) is r),
            ]
        )
        return published

    async def dispatch(
        self, plan: Plan, *, generation: int, uuids: Mapping[str, str]
    ) -> list[CommandRecord]:
        """`prepare` and `publish` in one go, for callers without a store to write first."""
        return await self.publish(self.prepare(plan, generation=generation, uuids=uuids))

    def recent(self, limit: int = 100) -> list[CommandRecord]:
        """The newest records first: in-flight commands, then the journal."""
        records = sorted(
            [*self.in_flight.values(), *self.journal], key=lambda r: r.issued_at_s, reverse=True
        )
        return records[:limit]


_RESULT_LABEL = {"done": "ok", "timed_out": "timeout"}
