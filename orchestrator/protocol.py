"""The MQTT wire protocol: topics and versioned JSON payloads.

Topics live under a site prefix (default `fleet/v1/<site>`):

- `<prefix>/nodes/<node>/status`    retained; `online` on connect, `offline` as the last will
- `<prefix>/nodes/<node>/telemetry` a full snapshot of the node every interval (QoS 0)
- `<prefix>/nodes/<node>/commands`  orders for the node's agent
- `<prefix>/nodes/<node>/events`    the agent's progress and results

Every payload is one JSON object with `"schema": <int>`. Version 1 is the only one so far;
a reader drops anything else (`unknown_version`), anything that is not valid JSON of the
right shape (`malformed`), anything over the size limit (`oversized`) and a payload whose
`node` differs from its topic (`node_mismatch`), raising `PayloadError` with that reason
as a metric label. Telemetry is a whole-node snapshot, so the latest one replaces the last
(latest wins) and a reader never merges partial updates.

Ordering. An agent numbers everything it says about its GPUs with one counter: each
telemetry snapshot and each switch event carries `seq` (from that counter) and `boot_s`
(when that agent process started, so a restarted agent's numbers sort after its earlier
ones). `(boot_s, seq)` is the agent's own order of its reports, which is what `serve`
trusts, not the order in which the broker delivered them: a snapshot sampled before a
switch ended says nothing about the GPU after it, whenever it arrives. Both fields are
optional so that an older agent's payloads still validate; without them `serve` falls back
to the agent's timestamps (`sent_at_s`, `at_s`).

Decoding is one pydantic-core pass over the bytes; nothing here grows with the fleet.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from orchestrator.domain import Health, NodeStatus
from orchestrator.errors import PayloadError

SCHEMA_VERSION = 1
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024

NodeName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]


class Topics:
    """Topic names for one site prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")

    def status(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/status"

    def telemetry(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/telemetry"

    def commands(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/commands"

    def events(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/events"

    def all_of(self, channel: str) -> str:
        """The wildcard subscription for one channel of every node."""
        return f"{self.prefix}/nodes/+/{channel}"

    def split(self, topic: str) -> tuple[str, str] | None:
        """`(node, channel)` for a topic under this prefix, else None."""
        head = self.prefix + "/nodes/"
        if not topic.startswith(head):
            return None
        rest = topic[len(head) :].split("/")
        if len(rest) != 2 or not rest[0]:
            return None
        return rest[0], rest[1]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuProcess(_Payload):
    pid: int = Field(ge=0)
    used_memory_bytes: int | None = Field(default=None, ge=0)
    name: str | None = None


class WorkloadReport(_Payload):
    """What the agent believes runs on a GPU (`mine:x`, `ai:y`, `idle`)."""

    workload: str = Field(min_length=1, max_length=200)
    since_s: float | None = None
    hashrate_hs: float | None = Field(default=None, ge=0)
    # mining: the miner's share counters for this GPU since the miner started (optional, so
    # an older agent's reports still validate); serve values hashrate x accepted fraction
    accepted_shares: int | None = Field(default=None, ge=0)
    rejected_shares: int | None = Field(default=None, ge=0)


class GpuTelemetry(_Payload):
    """One GPU's state as NVML reported it. `None` means NVML could not say."""

    index: int = Field(ge=0, le=1024)
    uuid: str | None = Field(default=None, max_length=128)
    pci_bus_id: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=128)
    memory_total_bytes: int | None = Field(default=None, ge=0)
    memory_used_bytes: int | None = Field(default=None, ge=0)
    utilization_gpu_pct: float | None = Field(default=None, ge=0, le=100)
    utilization_memory_pct: float | None = Field(default=None, ge=0, le=100)
    temperature_c: float | None = Field(default=None, ge=-50, le=200)
    power_draw_w: float | None = Field(default=None, ge=0, le=10_000)
    power_limit_w: float | None = Field(default=None, ge=0, le=10_000)
    # NVML's total energy counter (mJ since the driver loaded; Volta and newer): the mean
    # power between two snapshots is their energy delta over their time delta
    total_energy_mj: int | None = Field(default=None, ge=0)
    sm_clock_mhz: float | None = Field(default=None, ge=0)
    memory_clock_mhz: float | None = Field(default=None, ge=0)
    fan_speed_pct: float | None = Field(default=None, ge=0, le=200)
    ecc_errors_corrected_volatile: int | None = Field(default=None, ge=0)
    ecc_errors_uncorrected_volatile: int | None = Field(default=None, ge=0)
    retired_pages_pending: bool | None = None
    processes: tuple[GpuProcess, ...] = Field(default=(), max_length=256)
    health: Health = Health.OK
    health_reasons: tuple[str, ...] = Field(default=(), max_length=32)
    workload: WorkloadReport | None = None


class NodeTelemetry(_Payload):
    """A full snapshot of one node, published every telemetry interval."""

    schema_version: Literal[1] = Field(default=1, alias="schema")
    node: NodeName
    seq: int = Field(ge=0)
    sent_at_s: float
    boot_s: float | None = None  # when the agent process started: `(boot_s, seq)` orders
    agent_version: str = Field(max_length=64)
    nvml_backend: str = Field(max_length=32)
    driver_version: str | None = Field(default=None, max_length=64)
    gpus: tuple[GpuTelemetry, ...] = Field(max_length=64)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NodeStatusMessage(_Payload):
    """The retained presence message; the last will carries `offline`."""

    schema_version: Literal[1] = Field(default=1, alias="schema")
    node: NodeName
    status: NodeStatus
    at_s: float | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SwitchCommand(_Payload):
    """An order to one node: run `workload` on GPU `gpu_index`.

    `command_id` makes a repeat idempotent; `generation` is the plan generation, and an
    agent refuses a command older than one it has already acted on (fencing). A command
    received after `expires_at_s` is stale and is not run.
    """

    schema_version: Literal[1] = Field(default=1, alias="schema")
    kind: Literal["switch"] = "switch"
    command_id: str = Field(min_length=8, max_length=64)
    generation: int = Field(ge=0)
    node: NodeName
    gpu_index: int = Field(ge=0, le=1024)
    gpu_uuid: str | None = Field(default=None, max_length=128)
    workload: str = Field(min_length=1, max_length=200)
    previous_workload: str | None = Field(default=None, max_length=200)
    issued_at_s: float
    expires_at_s: float
    reason: str = Field(default="", max_length=500)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# the states an agent reports: the agent's part of `domain.SwitchState`, whose comments say
# what each means (a test keeps the two in step)
AgentSwitchState = Literal["accepted", "progress", "done", "failed", "rolled_back", "refused"]


# how an agent words the failure of a command its own restart cut short: not a fault of the
# target workload, so serve does not cool the target down for it
INTERRUPTED_BY_RESTART = "agent restarted during step"


class SwitchEvent(_Payload):
    """The agent's word on one command, published on `nodes/<node>/events`.

    A repeated `command_id` is answered with the recorded final event, not run again.
    A final event (done, failed, rolled_back, refused) says what the GPU runs after it:
    `actual` (None: the agent cannot tell) since `actual_since_s`; `seq` and `boot_s` place
    it among the agent's telemetry (see the module's note on ordering).
    """

    schema_version: Literal[1] = Field(default=1, alias="schema")
    kind: Literal["switch"] = "switch"
    command_id: str = Field(min_length=8, max_length=64)
    generation: int = Field(ge=0)
    node: NodeName
    gpu_index: int = Field(ge=0, le=1024)
    workload: str = Field(min_length=1, max_length=200)
    state: AgentSwitchState
    step: str | None = Field(default=None, max_length=32)
    reason: str = Field(default="", max_length=1000)
    at_s: float
    seq: int | None = Field(default=None, ge=0)
    boot_s: float | None = None
    actual: str | None = Field(default=None, min_length=1, max_length=200)
    actual_since_s: float | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GpuHealthEvent(_Payload):
    """The watchdog's word on a GPU: a restart, a quarantine, or a cleared quarantine."""

    schema_version: Literal[1] = Field(default=1, alias="schema")
    kind: Literal["gpu_health"] = "gpu_health"
    node: NodeName
    gpu_index: int = Field(ge=0, le=1024)
    workload: str | None = Field(default=None, max_length=200)
    state: Literal["restarted", "quarantined", "cleared"]
    reason: str = Field(default="", max_length=1000)
    restarts: int = Field(default=0, ge=0)
    at_s: float

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def encode(message: BaseModel) -> bytes:
    """Serialise a payload with its schema version under the key `schema`."""
    return message.model_dump_json(by_alias=True, exclude_none=True).encode()


_EVENT_ADAPTER: TypeAdapter[SwitchEvent | GpuHealthEvent] = TypeAdapter(
    Annotated[SwitchEvent | GpuHealthEvent, Field(discriminator="kind")]
)


def _classify(payload: bytes | str, error: ValidationError) -> PayloadError:
    """Tell an unknown schema version apart from a malformed payload (failure path only)."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return PayloadError("malformed", "not JSON")
    if isinstance(doc, dict) and "schema" in doc and doc["schema"] != SCHEMA_VERSION:
        return PayloadError("unknown_version", f"schema {doc['schema']!r}")
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "<root>"
    return PayloadError("malformed", f"{where}: {first['msg']}")


_Message = TypeVar("_Message", bound=_Payload)


def _decode(
    adapter: TypeAdapter[_Message], payload: bytes, *, topic_node: str, max_bytes: int
) -> _Message:
    """Size check, one validating parse, and the node on the topic must be the payload's."""
    if len(payload) > max_bytes:
        raise PayloadError("oversized", f"{len(payload)} bytes > {max_bytes}")
    try:
        message = adapter.validate_json(payload)
    except ValidationError as error:
        raise _classify(payload, error) from None
    node = getattr(message, "node", None)
    if node != topic_node:
        raise PayloadError("node_mismatch", f"payload of {node!r} on the topic of {topic_node!r}")
    return message


_TELEMETRY: TypeAdapter[NodeTelemetry] = TypeAdapter(NodeTelemetry)
_STATUS: TypeAdapter[NodeStatusMessage] = TypeAdapter(NodeStatusMessage)
_COMMAND: TypeAdapter[SwitchCommand] = TypeAdapter(SwitchCommand)


def decode_telemetry(
    payload: bytes, *, topic_node: str, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> NodeTelemetry:
    """Validate a telemetry payload or raise `PayloadError` with the drop reason."""
    return _decode(_TELEMETRY, payload, topic_node=topic_node, max_bytes=max_bytes)


def decode_status(
    payload: bytes, *, topic_node: str, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> NodeStatusMessage:
    """Validate a status payload or raise `PayloadError` with the drop reason."""
    return _decode(_STATUS, payload, topic_node=topic_node, max_bytes=max_bytes)


def decode_command(
    payload: bytes, *, topic_node: str, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> SwitchCommand:
    """Validate a command or raise `PayloadError` with the drop reason."""
    return _decode(_COMMAND, payload, topic_node=topic_node, max_bytes=max_bytes)


def decode_event(
    payload: bytes, *, topic_node: str, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> SwitchEvent | GpuHealthEvent:
    """Validate an event (either kind) or raise `PayloadError` with the drop reason."""
    return _decode(_EVENT_ADAPTER, payload, topic_node=topic_node, max_bytes=max_bytes)
