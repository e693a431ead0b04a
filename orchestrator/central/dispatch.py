"""The dispatcher: planned switches become commands on `nodes/<node>/commands`.

Level-based (STYLE point 4): the plan says what each GPU should run; the dispatcher sends
a command only where that differs from what the GPU runs or is already being switched to.
A command is *in flight* from its publication until the GPU reports the target workload
(done) or `command_timeout_s` passes (timed out; the next plan may order it again). While
a command is in flight the planner sees the target, so one decision is ordered once.

Every command carries an id (a repeat is idempotent on the agent) and the plan generation
(an agent refuses a generation older than the newest it has acted on). A command that could
not be published (broker away) is journaled as `unsent` and not counted as in flight.

The journal is in memory for now (the newest `journal_size` records); the persistence
issue moves it into SQLite, written before each publish.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import structlog
from prometheus_client import CollectorRegistry, Counter

from orchestrator.central.fleet import FleetState
from orchestrator.domain import NodeStatus, gpu_key, workload_kind
from orchestrator.mqtt import MqttLink
from orchestrator.policy.model import Plan
from orchestrator.protocol import SwitchCommand, Topics, encode

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CommandRecord:
    command_id: str
    generation: int
    gpu: str
    workload: str
    previous: str | None
    reason: str
    issued_at_s: float
    state: str  # in_flight | unsent | done | timed_out | superseded
    finished_at_s: float | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "command_id": self.command_id,
            "generation": self.generation,
            "gpu": self.gpu,
            "workload": self.workload,
            "previous": self.previous,
            "reason": self.reason,
            "issued_at_s": self.issued_at_s,
            "state": self.state,
            "finished_at_s": self.finished_at_s,
        }


class Dispatcher:
    def __init__(
        self,
        *,
        link: MqttLink,
        topics: Topics,
        registry: CollectorRegistry,
        command_timeout_s: float,
        command_ttl_s: float,
        clock: Callable[[], float] = time.time,
        journal_size: int = 1000,
    ) -> None:
        self.link = link
        self.topics = topics
        self.clock = clock
        self.command_timeout_s = command_timeout_s
        self.command_ttl_s = command_ttl_s
        self.in_flight: dict[str, CommandRecord] = {}
        self.journal: deque[CommandRecord] = deque(maxlen=journal_size)
        self.published = Counter(
            "orchestrator_commands_published",
            "Switch commands, by result of publishing (sent, unsent)",
            ["result"],
            registry=registry,
        )
        self.planned = Counter(
            "orchestrator_switches_planned",
            "Switches the planner ordered, by the kind of the target workload",
            ["to_kind"],
            registry=registry,
        )

    def targets(self) -> Mapping[str, str]:
        """GPU -> the workload it is being switched to, for the planner."""
        return {key: record.workload for key, record in self.in_flight.items()}

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
                if (
                    command is not None
                    and gpu.workload
                    and gpu.workload.workload == command.workload
                ):
                    self._finish(key, "done", now_s)
        for key, command in list(self.in_flight.items()):
            if now_s - command.issued_at_s > self.command_timeout_s:
                log.warning("switch command timed out", gpu=key, command_id=command.command_id)
                self._finish(key, "timed_out", now_s)

    def _finish(self, key: str, state: str, now_s: float) -> None:
        command = self.in_flight.pop(key)
        self.journal.append(replace(command, state=state, finished_at_s=now_s))

    async def dispatch(
        self, plan: Plan, *, generation: int, uuids: Mapping[str, str]
    ) -> list[CommandRecord]:
        """Publish a command for every changed assignment; return what was recorded."""
        issued: list[CommandRecord] = []
        now_s = self.clock()
        for key, assignment in plan.assignments.items():
            target = assignment.workload
            if not assignment.changed or target is None:
                continue
            pending = self.in_flight.get(key)
            if pending is not None:
                if pending.workload == target:
                    continue
                self._finish(key, "superseded", now_s)
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
            sent = await self.link.publish(self.topics.commands(node), encode(command), qos=1)
            record = CommandRecord(
                command_id=command.command_id,
                generation=generation,
                gpu=key,
                workload=target,
                previous=assignment.previous,
                reason=assignment.reason,
                issued_at_s=now_s,
                state="in_flight" if sent else "unsent",
            )
            self.published.labels("sent" if sent else "unsent").inc()
            if sent:
                self.planned.labels(workload_kind(target).value).inc()
                self.in_flight[key] = record
            else:
                self.journal.append(record)
            issued.append(record)
            log.info(
                "switch ordered" if sent else "switch not sent: broker unavailable",
                gpu=key,
                workload=target,
                previous=assignment.previous,
                generation=generation,
                command_id=command.command_id,
            )
        return issued

    def recent(self, limit: int = 100) -> list[CommandRecord]:
        """The newest records first: in-flight commands, then the journal."""
        records = sorted(
            [*self.in_flight.values(), *self.journal], key=lambda r: r.issued_at_s, reverse=True
        )
        return records[:limit]
