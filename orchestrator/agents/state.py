"""The agent's persisted state: what each GPU runs, and what the agent has promised.

Why. An agent restarts (upgrade, crash, reboot) while its workloads keep running (fail-static).
After the restart it must know what it started (to re-attach, not re-launch), which plan
generation it has acted on (fencing: an older one stays refused), and how it answered each
recent command (a repeated command id gets the same answer and is not run twice). So the
executor writes these facts *before* each action they describe (STYLE point 11): a crash
between "written" and "done" leaves a record of an intent, never an action nobody wrote down.

Layout under `state_dir` (the systemd unit's `StateDirectory`):

- `node.json`: `{"version", "node", "highest_generation"}`, rewritten only when a newer
  generation is acted on.
- `gpu-<index>.json`: one `GpuRecord`: the workload the GPU runs (`null` = unknown), since
  when, the profile and workload that should run there (the watchdog keeps them alive), the driver
  handle (`Handle.to_json()`), a quarantine reason, the command in progress (`intent`, with
  its step) and the final events of its most recent commands (newest last, capped).

Writes are atomic: a temporary file in the same directory, flushed and fsynced, renamed over
the old file, then the directory fsynced, so a reader sees the old or the new file whole. The
blocking I/O runs in a worker thread; one lock per file keeps writes of the same file in order.
A file that cannot be read (a foreign or hand-edited file) is moved aside as `*.corrupt` and
the GPU starts as unknown, never as "stopped".
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from orchestrator.errors import PermanentError

log = structlog.get_logger(__name__)

STATE_VERSION = 1


class StateDirError(PermanentError):
    """The state directory belongs to another node, or cannot be created."""


class ReportOrder:
    """The agent's own order of what it says: `(boot_s, seq)` on telemetry and events.

    One counter for both, read where a report's content is taken (no await between), so a
    snapshot numbered before a final event was sampled before the switch ended.
    """

    def __init__(self, boot_s: float) -> None:
        self.boot_s = boot_s
        self._counter = itertools.count(1)
        self.last = 0

    def next(self) -> int:
        self.last = next(self._counter)
        return self.last


@dataclass(slots=True)
class GpuRecord:
    """What the agent knows and has promised about one GPU."""

    index: int
    workload: str | None = None  # `mine:x`, `ai:y`, `idle`; None: unknown
    since_s: float | None = None  # unix seconds the workload started
    # what should run here, which the watchdog keeps alive (None: idle, or not ours to manage)
    profile_id: str | None = None
    desired_workload: str | None = None
    handle: dict[str, Any] | None = None  # `Handle.to_json()` of the running workload
    quarantine_reason: str | None = None
    quarantined_at_s: float | None = None
    intent: dict[str, Any] | None = None  # the command in progress and its step
    results: list[dict[str, Any]] = field(default_factory=list)  # final events, newest last

    @property
    def quarantined(self) -> bool:
        return self.quarantine_reason is not None

    def result_for(self, command_id: str) -> dict[str, Any] | None:
        """The recorded final event of `command_id`, if this GPU answered it."""
        for result in reversed(self.results):
            if result.get("command_id") == command_id:
                found: dict[str, Any] = result
                return found
        return None

    def remember(self, event: dict[str, Any], *, keep: int) -> None:
        """Record a command's final event, keeping the newest `keep`."""
        self.results.append(event)
        del self.results[: max(0, len(self.results) - keep)]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "index": self.index,
            "workload": self.workload,
            "since_s": self.since_s,
            "profile_id": self.profile_id,
            "desired_workload": self.desired_workload,
            "handle": self.handle,
            "quarantine_reason": self.quarantine_reason,
            "quarantined_at_s": self.quarantined_at_s,
            "intent": self.intent,
            "results": self.results,
        }

    @classmethod
    def from_json(cls, data: Any, *, index: int) -> GpuRecord:
        """Read a persisted record; ValueError when it is not one (for GPU `index`)."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("not a version-1 GPU record")
        if data.get("index") != index:
            raise ValueError(f"record of GPU {data.get('index')!r} in the file of GPU {index}")
        record = cls(
            index=index,
            workload=_optional(data, "workload", str),
            since_s=_optional(data, "since_s", (int, float)),
            profile_id=_optional(data, "profile_id", str),
            desired_workload=_optional(data, "desired_workload", str),
            handle=_optional(data, "handle", dict),
            quarantine_reason=_optional(data, "quarantine_reason", str),
            quarantined_at_s=_optional(data, "quarantined_at_s", (int, float)),
            intent=_optional(data, "intent", dict),
            results=[item for item in data.get("results") or [] if isinstance(item, dict)],
        )
        if record.since_s is not None:
            record.since_s = float(record.since_s)
        return record


def _optional(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ValueError(f"{key!r} has the wrong type: {value!r}")
    return value


@dataclass(slots=True)
class NodeRecord:
    node: str
    highest_generation: int = -1  # none acted on yet

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "node": self.node,
            "highest_generation": self.highest_generation,
        }


class StateStore:
    """JSON files under one directory, written atomically, one lock per file."""

    def __init__(self, state_dir: Path, *, node: str) -> None:
        self.state_dir = state_dir
        self.node = node
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ reading (at start)

    def load_node(self) -> NodeRecord:
        """The node record; a fresh one when none exists. `StateDirError` for another node's."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateDirError(f"cannot create state dir {self.state_dir}: {error}") from None
        data = self._read(self.state_dir / "node.json")
        if data is None:
            return NodeRecord(self.node)
        if data.get("node") != self.node:
            raise StateDirError(
                f"state dir {self.state_dir} belongs to node {data.get('node')!r},"
                f" not {self.node!r}"
            )
        generation = data.get("highest_generation")
        if not isinstance(generation, int) or isinstance(generation, bool):
            self._move_aside(self.state_dir / "node.json", "highest_generation is not an int")
            return NodeRecord(self.node)
        return NodeRecord(self.node, generation)

    def load_gpu(self, index: int) -> GpuRecord | None:
        """GPU `index`'s record, or None when there is none (or it was unreadable)."""
        path = self._gpu_path(index)
        data = self._read(path)
        if data is None:
            return None
        try:
            return GpuRecord.from_json(data, index=index)
        except ValueError as error:
            self._move_aside(path, str(error))
            return None

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            self._move_aside(path, str(error))
            return None
        if not isinstance(data, dict):
            self._move_aside(path, "not a JSON object")
            return None
        return data

    def _move_aside(self, path: Path, why: str) -> None:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.error("unreadable state file moved aside", path=str(path), aside=str(aside), why=why)
        try:
            path.replace(aside)
        except OSError as error:
            log.warning("could not move the state file aside", path=str(path), error=str(error))

    # ------------------------------------------------------------------ writing

    async def save_node(self, record: NodeRecord) -> None:
        await self._write(self.state_dir / "node.json", record.to_json())

    async def save_gpu(self, record: GpuRecord) -> None:
        await self._write(self._gpu_path(record.index), record.to_json())

    async def _write(self, path: Path, document: dict[str, Any]) -> None:
        payload = json.dumps(document, separators=(",", ":")).encode()  # a snapshot, now
        lock = self._locks.setdefault(path.name, asyncio.Lock())
        async with lock:
            await asyncio.to_thread(write_atomically, path, payload)

    def _gpu_path(self, index: int) -> Path:
        return self.state_dir / f"gpu-{index}.json"


def write_atomically(path: Path, payload: bytes) -> None:
    """Replace `path` with `payload` so that a crash leaves the old or the new file whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
