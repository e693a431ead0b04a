"""Whole-fleet renderings written as text: `/api/v1/state` and the per-GPU metric families.

At 10,000 GPUs the generic paths cost most of a core: `/api/v1/state` built one dict per GPU
with pydantic's `model_dump` and then ran `json.dumps` over 9 MB, and `/metrics` made a
prometheus_client `Sample` per GPU and family (80,000) and formatted each label set again on
every scrape. This module produces the same documents by concatenating strings:

- state: each GPU's telemetry is serialised by pydantic-core straight to JSON (`to_json`),
  the few fields around it are quoted by the C string encoder of `json`; a node's rendered
  `gpus` array is kept and reused while the node's snapshot object, its online flag and the
  plan are the same objects (a second scrape within the telemetry interval costs little);
- metrics (`Family`, `LabelCache`, used by `metrics.py` and `plan_metrics.py`): each GPU's
  label set (`gpu`, `UUID`, `modelName`, `Hostname`) is escaped once and
  remembered by its values; a line is the family name, the labels and the value formatted as
  prometheus_client formats it (`floatToGoString`), so the exposition is the one the
  collectors produced, family for family and sample for sample.

Reads only: the fleet and the newest plan as they stand at the call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote

from prometheus_client.utils import floatToGoString as _untyped_float_to_go  # noqa: N813

from orchestrator.central.fleet import FleetState, NodeRecord
from orchestrator.domain import UNKNOWN, NodeStatus, gpu_key
from orchestrator.policy.model import Assignment
from orchestrator.protocol import GpuTelemetry

_GPU_JSON = GpuTelemetry.__pydantic_serializer__


def floatToGoString(value: float) -> str:  # noqa: N802  (prometheus_client's name)
    """prometheus_client's own value formatting, typed."""
    text: str = _untyped_float_to_go(value)  # type: ignore[no-untyped-call]
    return text


def _json_or_null(value: str | None) -> str:
    return "null" if value is None else str(_quote(value))


# ------------------------------------------------------------------ /api/v1/state


@dataclass(slots=True)
class _RenderedGpus:
    record: NodeRecord
    reports: int  # the record's `reports_total` when rendered: the same snapshot
    online: bool
    plan: object
    text: bytes


class StateRenderer:
    """`/api/v1/state` as bytes; reuses each node's `gpus` array while nothing changed
    (the same snapshot, presence and plan).

    Everything is assembled as bytes and joined once: pydantic-core writes each GPU's
    telemetry as bytes, and the fields around it (key, UUID, state, workloads, reason),
    which rarely change, are kept encoded by their values, so a new snapshot costs one
    `to_json` a GPU and a lookup."""

    def __init__(self) -> None:
        self._gpus: dict[str, _RenderedGpus] = {}
        self._openings: dict[_OpeningKey, bytes] = {}

    def render(
        self,
        *,
        fleet: FleetState,
        site: str,
        now_s: float,
        assignments: Mapping[str, Assignment] | None,
        plan: object,
        plan_generation: int | None,
    ) -> bytes:
        summary = fleet.counts()
        head = json.dumps(
            {
                "site": site,
                "generated_at_s": now_s,
                "summary": summary,
                "plan_generation": plan_generation,
            }
        )
        parts = [f'{head[:-1]}, "nodes": ['.encode()]
        for number, record in enumerate(sorted(fleet.nodes.values(), key=_by_name)):
            node = json.dumps(node_head(record, now_s))
            parts.append(f'{", " if number else ""}{node[:-1]}, "gpus": ['.encode())
            parts.append(self._gpus_of(record, assignments, plan))
            parts.append(b"]}")
        parts.append(b"]}")
        self._forget_missing(fleet)
        if len(self._openings) > 2 * summary["gpus_total"] + 1024:
            self._openings.clear()  # bounded: most keys are of GPUs gone or changed since
        return b"".join(parts)

    def _gpus_of(
        self, record: NodeRecord, assignments: Mapping[str, Assignment] | None, plan: object
    ) -> bytes:
        telemetry = record.telemetry
        if telemetry is None:
            return b""
        online = record.status is NodeStatus.ONLINE
        cached = self._gpus.get(record.name)
        if (
            cached is not None
            and cached.record is record
            and cached.reports == record.reports_total
            and cached.online == online
            and cached.plan is plan
        ):
            return cached.text
        parts = []
        for gpu in telemetry.gpus:
            reported = gpu.workload.workload if gpu.workload else UNKNOWN
            key = gpu_key(record.name, gpu.index)
            assignment = assignments.get(key) if assignments is not None else None
            state = gpu.health.value if online else UNKNOWN
            planned = assignment.workload if assignment else None
            reason = assignment.reason if assignment else None
            opening_key = (key, gpu.uuid, state, online, reported, planned, reason)
            opening = self._openings.get(opening_key)
            if opening is None:
                opening = _opening(opening_key)
                self._openings[opening_key] = opening
            parts.append(opening + _GPU_JSON.to_json(gpu, exclude_none=True) + b"}")
        text = b", ".join(parts)
        # not the snapshot itself: holding it would keep every replaced snapshot alive until
        # the next request, which then paid for freeing them all (~20 ms at 10k GPUs)
        self._gpus[record.name] = _RenderedGpus(record, record.reports_total, online, plan, text)
        return text

    def _forget_missing(self, fleet: FleetState) -> None:
        if len(self._gpus) > len(fleet.nodes):
            for name in [n for n in self._gpus if n not in fleet.nodes]:
                del self._gpus[name]


_OpeningKey = tuple[str, str | None, str, bool, str, str | None, str | None]


def _opening(fields: _OpeningKey) -> bytes:
    """A GPU's object in `/api/v1/state` up to its telemetry: `{"gpu": ..., "telemetry": `,
    from (key, UUID, state, online, reported workload, planned workload, reason)."""
    key, uuid, state, online, reported, planned, reason = fields
    return (
        f'{{"gpu": {_quote(key)}, "uuid": {_json_or_null(uuid)}, '
        f'"state": {_quote(state)}, '
        f'"workload": {_quote(reported if online else UNKNOWN)}, '
        f'"last_reported_workload": {_quote(reported)}, '
        f'"planned_workload": {_json_or_null(planned)}, '
        f'"reason": {_json_or_null(reason)}, '
        f'"telemetry": '
    ).encode()


def node_head(record: NodeRecord, now_s: float) -> dict[str, object]:
    """A node's fields in `/api/v1/state`, everything but its GPUs."""
    telemetry = record.telemetry
    return {
        "node": record.name,
        "status": record.status.value,
        "status_reason": record.status_reason,
        "status_since_s": record.status_changed_at_s,
        "last_report_age_s": (
            None if record.received_at_s is None else round(now_s - record.received_at_s, 3)
        ),
        "reports_total": record.reports_total,
        "agent_version": telemetry.agent_version if telemetry else None,
        "nvml_backend": telemetry.nvml_backend if telemetry else None,
        "driver_version": telemetry.driver_version if telemetry else None,
    }


def _by_name(record: NodeRecord) -> str:
    return record.name


# ------------------------------------------------------------------ per-GPU metric families


class LabelCache:
    """Escaped dcgm-style label sets, remembered by their values."""

    def __init__(self) -> None:
        self._labels: dict[tuple[str, ...], str] = {}

    def get(self, *values: str) -> str:
        text = self._labels.get(values)
        if text is None:
            if len(self._labels) > 200_000:  # a fleet that keeps renaming: start over
                self._labels.clear()
            text = self._labels[values] = _label_set(_LABEL_NAMES, values)
        return text

    def host(self, node: str) -> str:
        """The label set of a node's own gauges: `Hostname` alone."""
        return self.get_named(("Hostname",), node)

    def get_named(self, names: tuple[str, ...], *values: str) -> str:
        key = (*names, "=", *values)
        text = self._labels.get(key)
        if text is None:
            text = self._labels[key] = _label_set(names, values)
        return text


_LABEL_NAMES = ("gpu", "UUID", "modelName", "Hostname", "workload", "state")


def _label_set(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """`name="value",...` sorted by name, as prometheus_client writes a sample's labels."""
    pairs = sorted(zip(names, values, strict=False))
    return ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class Family:
    """One gauge family's exposition lines (HELP, TYPE, then one line per sample)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
        self.lines = [f"# HELP {name} {help_text}\n# TYPE {name} gauge\n"]

    def add(self, labels: str, value: float) -> None:
        self.lines.append(f"{self.name}{{{labels}}} {floatToGoString(value)}\n")


def join(families: Iterable[Family]) -> str:
    return "".join(line for family in families for line in family.lines)
