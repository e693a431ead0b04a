"""Ingest: MQTT messages from the nodes into the fleet state.

`Ingest.handle(topic, payload)` is the whole per-message path: split the topic, decode
and validate the payload (one pydantic-core pass), store it. A payload that fails is
counted under its reason (`malformed`, `oversized`, `unknown_version`, `node_mismatch`,
`bad_topic`), logged at most once a second per reason with how many were dropped since,
and dropped. Nothing a node sends can raise out of `handle`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from prometheus_client import CollectorRegistry, Counter

from orchestrator.central.fleet import FleetState
from orchestrator.errors import PayloadError
from orchestrator.protocol import Topics, decode_status, decode_telemetry

log = structlog.get_logger(__name__)

_LOG_EVERY_S = 1.0


class Ingest:
    def __init__(
        self,
        *,
        fleet: FleetState,
        topics: Topics,
        registry: CollectorRegistry,
        max_payload_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet = fleet
        self.topics = topics
        self.max_payload_bytes = max_payload_bytes
        self.clock = clock
        self.messages = Counter(
            "orchestrator_mqtt_messages",
            "MQTT messages received from nodes, by channel",
            ["channel"],
            registry=registry,
        )
        self.dropped = Counter(
            "orchestrator_payloads_dropped",
            "Payloads dropped because they failed validation, by reason",
            ["channel", "reason"],
            registry=registry,
        )
        self._telemetry_count = self.messages.labels("telemetry")
        self._status_count = self.messages.labels("status")
        self._last_log_s: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self.extra_handlers: dict[str, Callable[[str, bytes], None]] = {}
        # told the node of each snapshot stored (the dispatcher's wave: readings make room)
        self.telemetry_listener: Callable[[str], None] | None = None

    def handle(self, topic: str, payload: bytes) -> None:
        parts = self.topics.split(topic)
        if parts is None:
            self._drop("unknown", PayloadError("bad_topic", topic))
            return
        node, channel = parts
        now_s = self.clock()
        try:
            if channel == "telemetry":
                self._telemetry_count.inc()
                message = decode_telemetry(
                    payload, topic_node=node, max_bytes=self.max_payload_bytes
                )
                self.fleet.apply_telemetry(message, now_s=now_s)
                if self.telemetry_listener is not None:
                    self.telemetry_listener(node)
            elif channel == "status":
                self._status_count.inc()
                if not payload:  # a cleared retained message
                    return
                status = decode_status(payload, topic_node=node, max_bytes=self.max_payload_bytes)
                self.fleet.apply_status(status, now_s=now_s)
            else:
                self.messages.labels(channel).inc()
                extra = self.extra_handlers.get(channel)
                if extra is not None:
                    extra(node, payload)
        except PayloadError as error:
            self._drop(channel, error, node=node)

    def _drop(self, channel: str, error: PayloadError, *, node: str | None = None) -> None:
        self.dropped.labels(channel, error.reason).inc()
        now_s = time.monotonic()
        key = f"{channel}/{error.reason}"
        if now_s - self._last_log_s.get(key, float("-inf")) >= _LOG_EVERY_S:
            log.warning(
                "payload dropped",
                channel=channel,
                reason=error.reason,
                detail=error.detail[:200],
                node=node,
                suppressed_since_last=self._suppressed.pop(key, 0),
            )
            self._last_log_s[key] = now_s
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
