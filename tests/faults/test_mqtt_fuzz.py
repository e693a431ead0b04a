"""The telemetry and events topics filled with fuzzed payloads (hypothesis) while the site
runs: serve keeps serving, every bad payload is counted as dropped, nothing crashes, and no
workload moves."""

from __future__ import annotations

import json
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from tests.faults.conftest import record
from tests.faults.site import PREFIX, EventLog, Site, ai_stopped_without_order, duplicate_switches
from tests.faults.test_process_faults import baseline, converged
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
_telemetry_like = st.fixed_dictionaries(
    {"schema": st.sampled_from([1, 2, 0, "1"]), "node": st.sampled_from(["node-a", "x"])},
    optional={
        "seq": _json,
        "sent_at_s": _json,
        "gpus": st.lists(
            st.dictionaries(st.sampled_from(["index", "uuid", "power_draw_w"]), _json), max_size=3
        ),
        "kind": st.sampled_from(["switch", "health", "nonsense"]),
        "command_id": st.text(max_size=40),
        "state": _json,
    },
)
PAYLOADS = st.one_of(
    st.binary(max_size=512),
    _json.map(lambda v: json.dumps(v).encode()),
    _telemetry_like.map(lambda v: json.dumps(v).encode()),
    st.just(b"{" * 50_000),  # deep nesting
    st.just(b"x" * 300_000),  # over max_payload_bytes
)


def fuzzed_payloads(count: int) -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []

    @settings(
        max_examples=count, database=None, phases=[Phase.generate], deadline=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(
        st.sampled_from(["node-a", "node-b", "ghost"]),
        st.sampled_from(["telemetry", "events"]),
        PAYLOADS,
    )
    def collect(node: str, channel: str, payload: bytes) -> None:
        found.append((f"{PREFIX}/nodes/{node}/{channel}", payload))

    collect()
    return found


def publish_all(site: Site, messages: list[tuple[str, bytes]]) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="fuzzer")
    client.connect(site.broker.host, site.broker.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)
    finally:
        client.loop_stop()
        client.disconnect()


async def test_fuzzed_telemetry_and_events_are_dropped_and_counted_while_serve_keeps_serving(
    site: Site, events: EventLog
) -> None:
    want = await baseline(site)
    received_before = site.metric("orchestrator_mqtt_messages_total")
    dropped_before = site.metric("orchestrator_payloads_dropped_total")
    events_dropped_before = site.metric("orchestrator_events_dropped_total")
    messages = fuzzed_payloads(400)
    publish_all(site, messages)

    def counted() -> Any:
        received = site.metric("orchestrator_mqtt_messages_total") - received_before
        return received >= len(messages)

    # every fuzzed message reached serve (besides the agents' own telemetry meanwhile)
    await eventually(counted, timeout_s=30, what="serve received the fuzzed messages")
    dropped = site.metric("orchestrator_payloads_dropped_total") - dropped_before
    events_dropped = site.metric("orchestrator_events_dropped_total") - events_dropped_before
    assert site.serve.alive
    assert all(agent.alive for agent in site.agents.values())
    assert site.ready()
    await converged(site, want, timeout_s=10)  # the site carries on as it was
    counts = {
        "faults_injected": len(messages),
        "payloads_dropped_and_counted": int(dropped + events_dropped),
        "crashes": sum(1 for d in (site.serve, *site.agents.values()) if not d.alive),
        "duplicate_switches": duplicate_switches(site, events),
        "ai_stopped_without_order": ai_stopped_without_order(site),
    }
    record("telemetry and events topics filled with fuzzed payloads (hypothesis)", **counts)
    assert counts["crashes"] == 0
    assert counts["payloads_dropped_and_counted"] >= len(messages) * 0.9
    assert (counts["duplicate_switches"], counts["ai_stopped_without_order"]) == (0, 0)
