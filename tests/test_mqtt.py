"""`MqttLink` against a real mosquitto: delivery straight from the read callback."""

from __future__ import annotations

import asyncio

from orchestrator.config.common import MqttSection
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.mqtt import MqttLink
from tests.waiting import eventually


async def test_a_handler_that_raises_loses_only_that_message(mosquitto: MosquittoBroker) -> None:
    settings = MqttSection(host=mosquitto.host, port=mosquitto.port, site="test")
    received: list[bytes] = []

    def handler(_topic: str, payload: bytes) -> None:
        if payload == b"bad":
            raise ValueError("a bug in a handler")
        received.append(payload)

    listener = MqttLink(
        settings, client_id="listener", subscriptions=[("t/#", 1)], on_message=handler
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
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
