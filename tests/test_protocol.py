"""The wire protocol: what is accepted, and the reason each rejected payload is dropped."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.domain import NodeStatus
from orchestrator.errors import PayloadError
from orchestrator.protocol import (
    GpuTelemetry,
    NodeStatusMessage,
    NodeTelemetry,
    Topics,
    WorkloadReport,
    decode_status,
    decode_telemetry,
    encode,
)


def snapshot(node: str = "rig-1", gpus: int = 2) -> NodeTelemetry:
    return NodeTelemetry(
        node=node,
        seq=7,
        sent_at_s=1_700_000_000.5,
        agent_version="0.1.0",
        nvml_backend="fake",
        gpus=tuple(
            GpuTelemetry(
                index=i,
                uuid=f"GPU-{i}",
                power_draw_w=250.5,
                workload=WorkloadReport(workload="mine:kawpow", hashrate_hs=2.5e7),
            )
            for i in range(gpus)
        ),
    )


def test_a_snapshot_survives_the_round_trip_with_its_schema_version() -> None:
    message = snapshot()
    payload = encode(message)
    assert payload.startswith(b'{"schema":1,')
    assert decode_telemetry(payload, topic_node="rig-1") == message


def test_share_counters_ride_along_and_an_older_agents_report_still_validates() -> None:
    """The miner's accepted/rejected shares are optional fields of a GPU's workload report:
    a report without them (an agent from before they existed) decodes as before, and a
    negative counter is malformed."""
    report = WorkloadReport(
        workload="mine:kawpow", hashrate_hs=2.5e7, accepted_shares=201, rejected_shares=3
    )
    message = snapshot().model_copy(update={"gpus": (GpuTelemetry(index=0, workload=report),)})
    decoded = decode_telemetry(encode(message), topic_node="rig-1")
    assert decoded.gpus[0].workload == report
    older = encode(snapshot())
    assert b"accepted_shares" not in older
    workload = decode_telemetry(older, topic_node="rig-1").gpus[0].workload
    assert workload is not None
    assert (workload.accepted_shares, workload.rejected_shares) == (None, None)
    bad = older.replace(b'"hashrate_hs":', b'"rejected_shares":-1,"hashrate_hs":', 1)
    with pytest.raises(PayloadError) as caught:
        decode_telemetry(bad, topic_node="rig-1")
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"schema": 1}', "malformed"),
        (b'{"schema": 99, "node": "rig-1"}', "unknown_version"),
        (b'{"schema": "1", "node": "rig-1"}', "unknown_version"),
    ],
)
def test_bad_payloads_raise_a_payload_error_with_the_drop_reason(
    payload: bytes, reason: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_telemetry(payload, topic_node="rig-1")
    assert caught.value.reason == reason


def test_an_unknown_field_is_malformed_and_names_the_field() -> None:
    payload = encode(snapshot()).replace(b'"seq":7', b'"seq":7,"surprise":1')
    with pytest.raises(PayloadError) as caught:
        decode_telemetry(payload, topic_node="rig-1")
    assert caught.value.reason == "malformed"
    assert "surprise" in caught.value.detail


def test_oversized_payloads_are_refused_before_parsing() -> None:
    payload = encode(snapshot(gpus=8))
    with pytest.raises(PayloadError) as caught:
        decode_telemetry(payload, topic_node="rig-1", max_bytes=len(payload) - 1)
    assert caught.value.reason == "oversized"


def test_a_node_cannot_report_under_another_nodes_topic() -> None:
    with pytest.raises(PayloadError) as caught:
        decode_telemetry(encode(snapshot("rig-1")), topic_node="rig-2")
    assert caught.value.reason == "node_mismatch"


def test_status_messages_round_trip() -> None:
    message = NodeStatusMessage(node="rig-1", status=NodeStatus.OFFLINE, at_s=5.0)
    assert decode_status(encode(message), topic_node="rig-1") == message


def test_topics_split_into_node_and_channel_and_refuse_foreign_ones() -> None:
    topics = Topics("fleet/v1/site")
    assert topics.split(topics.telemetry("rig-1")) == ("rig-1", "telemetry")
    assert topics.all_of("status") == "fleet/v1/site/nodes/+/status"
    assert topics.split("fleet/v1/other/nodes/rig-1/telemetry") is None
    assert topics.split("fleet/v1/site/nodes/rig-1/telemetry/extra") is None
    assert topics.split("fleet/v1/site/nodes//telemetry") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_payload_error(payload: bytes) -> None:
    reasons = {"malformed", "unknown_version", "oversized", "node_mismatch"}
    with pytest.raises(PayloadError) as caught:
        decode_telemetry(payload, topic_node="rig-1")
    assert caught.value.reason in reasons
