"""`MqttLink` against a real mosquitto: delivery straight from the read callback."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.config.common import MqttSection
from orchestrator.demo.broker import MosquittoBroker, free_port
from orchestrator.mqtt import MqttLink
from tests.waiting import eventually


async def test_a_handler_that_raises_loses_only_that_message(mosquitto: MosquittoBroker) -> None:
    settings = MqttSection(host=mosquitto.host, port=mosquitto.port, site="test")
    received: list[bytes] = []

    def handler(_topic: str, payload: bytes) -> None:
        if payload == b"bad":
            raise ValueError("a bug in a handler")
        received.append(payload)

    registry = CollectorRegistry()
    listener = MqttLink(
        settings,
        client_id="listener",
        subscriptions=[("t/#", 1)],
        on_message=handler,
        registry=registry,
    )
    talker = MqttLink(settings, client_id="talker")
    tasks = [asyncio.create_task(listener.run()), asyncio.create_task(talker.run())]
    try:
        await asyncio.wait_for(listener.connected.wait(), 5)
        await asyncio.wait_for(talker.connected.wait(), 5)
        for payload in (b"one", b"bad", b"two"):
            assert await talker.publish("t/x", payload, qos=1)
        await eventually(
            lambda: received == [b"one", b"two"], what="the messages around the bad one"
        )
        assert listener.connected.is_set()
        assert listener.connections_total == 1  # the bad message did not cost the connection
        assert listener.handler_errors_total == 1
        assert registry.get_sample_value("orchestrator_mqtt_handler_errors_total") == 1.0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.slow
async def test_a_publication_the_broker_never_acknowledged_counts_as_handed_over_for_commands(
    tmp_path: Path,
) -> None:
    """A frozen broker (SIGSTOP) takes the bytes but never answers: after the client's
    10 s wait, `publish` says False, while `publish_many` (the dispatcher's, which re-sends
    under the same id) says True: the command may have arrived, so it stays in flight."""
    broker = MosquittoBroker(tmp_path / "broker")
    broker.start_sync()
    link = MqttLink(MqttSection(host=broker.host, port=broker.port, site="test"), client_id="c")
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 5)
        assert broker.process is not None
        broker.process.send_signal(signal.SIGSTOP)
        try:
            plain, many = await asyncio.gather(
                link.publish("t/a", b"x", qos=1), link.publish_many([("t/b", b"y")])
            )
        finally:
            broker.process.send_signal(signal.SIGCONT)
        assert (plain, many) == (False, [True])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        broker.stop_sync()
    assert await MqttLink(
        MqttSection(host="127.0.0.1", port=free_port(), site="test"), client_id="d"
    ).publish_many([("t/c", b"z")]) == [False]  # never connected: not handed over
