"""Operators' overrides: pin GPUs to a workload, or drain them, with a reason and an expiry.

An override names its GPUs (`node:index` or NVML UUIDs) or a whole node (expanded to the
node's GPUs as they are known now), a workload (`mine:<profile>`, `ai:<contract>`, `idle`,
or `drain`, which is `idle` kept for maintenance), a reason, who did it (the token's name),
and optionally when it ends. It is written to the store with an audit record before the
planner sees it; the planner treats overridden GPUs as fixed. Where two overrides cover a
GPU, the newer wins.

An override that would leave a reserved contract short of its committed GPUs is refused
(naming the contract and the shortfall) unless the request says `force`: the check re-runs
the planner on the newest plan's fleet and prices with the override added.

A refusal is an `OverrideRejected` carrying a `RefusalReason` (what was wrong) and a
message for the operator; the HTTP layer (`api`) decides which status code each reason gets.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.central.policy_loop import PolicyLoop
from orchestrator.central.store import OverrideRow, Store
from orchestrator.domain import IDLE, ai_workload, gpu_key, mine_workload
from orchestrator.errors import PermanentError
from orchestrator.policy.model import Override
from orchestrator.policy.planner import plan

MAX_GPUS_PER_OVERRIDE = 10_000


class OverrideRequest(BaseModel):
    """The body of `POST /api/v1/overrides`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: Annotated[list[str], Field(min_length=1, max_length=MAX_GPUS_PER_OVERRIDE)] | None = None
    node: str | None = Field(default=None, min_length=1, max_length=128)
    workload: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=500)
    expires_at_s: float | None = Field(default=None, gt=0)
    ttl_s: float | None = Field(default=None, gt=0, le=366 * 86_400)
    force: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.gpus is None) == (self.node is None):
            raise ValueError("give exactly one of 'gpus' or 'node'")
        if self.expires_at_s is not None and self.ttl_s is not None:
            raise ValueError("give at most one of 'expires_at_s' or 'ttl_s'")
        return self


DRAIN = "drain"  # an override's own word: idle, kept for maintenance


class RefusalReason(StrEnum):
    """Why an override request was refused: what the operator has to change."""

    BAD_REQUEST = "bad_request"  # the request contradicts itself (expires before it starts)
    UNKNOWN_NODE = "unknown_node"  # the node has not reported any GPU
    UNKNOWN_GPU = "unknown_gpu"  # neither a known `node:index` nor a known UUID
    UNKNOWN_WORKLOAD = "unknown_workload"  # not a workload the policy offers
    CONTRACT_SHORT = "contract_short"  # would leave a reserved contract short; `force` it
    NOT_FOUND = "not_found"  # no live override with that id


class OverrideRejected(PermanentError):  # noqa: N818  (a refusal, told to the client)
    """A refused override request: `reason` says why, `message` says it to the operator."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class CreatedOverride:
    row: OverrideRow
    gpus: tuple[str, ...]
    sla_note: str


class OverrideService:
    def __init__(self, *, loop: PolicyLoop, store: Store) -> None:
        self.loop = loop
        self.store = store
        self._lock = asyncio.Lock()

    def rebuild(self) -> None:
        """The planner's per-GPU overrides from the store's live rows (newest wins)."""
        now_s = self.loop.clock()
        by_gpu: dict[str, Override] = {}
        for row in self.store.live_overrides(now_s):
            for gpu in json.loads(row.gpu):
                by_gpu[gpu] = _planner_override(row, gpu)
        self.loop.replace_overrides(by_gpu)

    def valid_workloads(self) -> set[str]:
        policy = self.loop.policy
        return {
            IDLE,
            DRAIN,
            *(mine_workload(p.id) for p in policy.profiles),
            *(ai_workload(c.id) for c in policy.contracts.reserved),
            *(ai_workload(c.id) for c in policy.contracts.on_demand),
        }

    def _targets(self, request: OverrideRequest) -> tuple[str, ...]:
        fleet = self.loop.fleet
        if request.node is not None:
            record = fleet.nodes.get(request.node)
            if record is None or record.telemetry is None:
                raise OverrideRejected(
                    RefusalReason.UNKNOWN_NODE, f"node {request.node!r} has not reported any GPU"
                )
            return tuple(gpu_key(request.node, g.index) for g in record.telemetry.gpus)
        known = {view.key for view in fleet.gpus()}
        targets = []
        for name in request.gpus or ():
            key = self.loop.observer.resolve(name)
            if key is None or key not in known:
                raise OverrideRejected(
                    RefusalReason.UNKNOWN_GPU,
                    f"unknown GPU {name!r}: name it node:index or by UUID",
                )
            targets.append(key)
        return tuple(dict.fromkeys(targets))

    async def create(self, request: OverrideRequest, *, actor: str) -> CreatedOverride:
        if request.workload not in self.valid_workloads():
            raise OverrideRejected(
                RefusalReason.UNKNOWN_WORKLOAD,
                f"unknown workload {request.workload!r}; one of: "
                + ", ".join(sorted(self.valid_workloads())),
            )
        async with self._lock:
            now_s = self.loop.clock()
            gpus = self._targets(request)
            expires_at_s = request.expires_at_s or (
                now_s + request.ttl_s if request.ttl_s else None
            )
            if expires_at_s is not None and expires_at_s <= now_s:
                raise OverrideRejected(
                    RefusalReason.BAD_REQUEST, "the override would expire before it starts"
                )
            row = OverrideRow(
                id=uuid.uuid4().hex[:12],
                gpu=json.dumps(list(gpus)),
                workload=request.workload,
                reason=request.reason,
                actor=actor,
                created_at_s=now_s,
                expires_at_s=expires_at_s,
            )
            sla_note = await self._check_sla(row, gpus, force=request.force)
            self.store.add_override(
                row,
                audit_detail={
                    "id": row.id,
                    "gpus": list(gpus),
                    "workload": row.workload,
                    "reason": row.reason,
                    "expires_at_s": expires_at_s,
                    "forced": request.force,
                    "sla": sla_note,
                },
            )
            self.rebuild()
            return CreatedOverride(row, gpus, sla_note)

    async def delete(self, override_id: str, *, actor: str) -> OverrideRow:
        """End a live override; `OverrideRejected(NOT_FOUND)` when there is none by that id."""
        async with self._lock:
            row = self.store.delete_override(override_id, actor=actor, at_s=self.loop.clock())
            if row is None:
                raise OverrideRejected(RefusalReason.NOT_FOUND, f"no live override {override_id!r}")
            self.rebuild()
            return row

    def list(self) -> list[dict[str, object]]:
        return [
            {**row.to_json(), "gpus": json.loads(row.gpu)}
            for row in self.store.live_overrides(self.loop.clock())
        ]

    async def _check_sla(self, row: OverrideRow, gpus: tuple[str, ...], *, force: bool) -> str:
        last = self.loop.last
        if last is None:
            return "not checked: no plan yet"
        trial = dict(self.loop.overrides)
        for gpu in gpus:
            trial[gpu] = _planner_override(row, gpu)
        policy = self.loop.policy
        result = await asyncio.to_thread(
            plan,
            list(last.gpus.values()),
            last.market,
            contracts=policy.contracts,
            profiles=policy.profiles,
            overrides=trial,
            settings=policy.settings,
            now_s=self.loop.clock(),
            power=last.power,
        )
        before = {s.contract_id: s.shortfall_gpus for s in last.plan.sla}
        worse = [
            f"{s.contract_id} would be short {s.shortfall_gpus} of {s.committed_gpus} GPUs"
            for s in result.sla
            if s.shortfall_gpus > before.get(s.contract_id, 0)
        ]
        if not worse:
            return "ok: no SLA shortfall"
        text = "; ".join(worse)
        if not force:
            raise OverrideRejected(
                RefusalReason.CONTRACT_SHORT,
                f"refused: {text}; send force=true to override anyway",
            )
        return f"forced: {text}"


def _planner_override(row: OverrideRow, gpu: str) -> Override:
    drain = row.workload == DRAIN
    workload = IDLE if drain else row.workload
    note = f"{DRAIN + ': ' if drain else ''}{row.reason}"
    return Override(
        gpu_key=gpu, workload=workload, by=row.actor, until_s=row.expires_at_s, note=note
    )
