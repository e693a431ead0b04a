"""MQTT security proven by delivery, against mosquitto with TLS, passwords and the ACL
shipped in `deploy/mosquitto/acl`.

mosquitto drops a publish the ACL denies without a word and grants a denied subscription
(it just delivers nothing), so every "cannot" below is shown the same way: the denied
message is sent first, an allowed sentinel after it on the same connection, and once the
sentinel has arrived the denied one has not (one client's messages are handled in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from tests.security.conftest import PASSWORDS, SERVE_USER, SecureBroker
from tests.waiting import eventually

pytestmark = pytest.mark.slow
NODES = "fleet/v1/site/nodes"
REFUSED = "Not authorized"  # CONNACK 5 (MQTT 3.1.1) / 135 (MQTT 5), as aiomqtt words it


def tls(broker: SecureBroker) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(broker.certificates.ca))


def client(broker: SecureBroker, user: str | None, password: str | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=f"acl-test-{user}-{uuid.uuid4().hex[:8]}",
        username=user,
        password=password if password is not None else PASSWORDS.get(user or ""),
        tls_context=tls(broker),
        timeout=5,
    )


class Inbox:
    """Everything one client receives, by topic."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def has(self, topic: str, payload: bytes) -> bool:
        return (topic, payload) in self.messages


@contextlib.asynccontextmanager
async def listening(
    broker: SecureBroker, user: str, *topics: str
) -> AsyncIterator[tuple[aiomqtt.Client, Inbox]]:
    inbox = Inbox()
    async with client(broker, user) as mqtt:
        for topic in topics:
            await mqtt.subscribe(topic, qos=1)  # granted even where the ACL denies it

        async def read() -> None:
            async for message in mqtt.messages:
                inbox.messages.append((message.topic.value, bytes(message.payload)))

        task = asyncio.create_task(read(), name=f"inbox-{user}")
        try:
            yield mqtt, inbox
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_an_unauthenticated_client_and_a_wrong_password_are_refused(
    secure_broker: SecureBroker,
) -> None:
    with pytest.raises(aiomqtt.MqttError) as anonymous:
        async with client(secure_broker, None):
            pass
    assert REFUSED in str(anonymous.value)
    with pytest.raises(aiomqtt.MqttError) as wrong:
        async with client(secure_broker, "node-a", "not-the-password"):
            pass
    assert REFUSED in str(wrong.value)
    with pytest.raises(aiomqtt.MqttError):  # the right password for another account
        async with client(secure_broker, "node-a", PASSWORDS["node-b"]):
            pass
    async with client(secure_broker, "node-a"):  # and the right one is let in
        pass


async def test_plain_mqtt_without_tls_is_not_spoken(secure_broker: SecureBroker) -> None:
    plain = aiomqtt.Client(
        secure_broker.host, secure_broker.port, username="node-a",
        password=PASSWORDS["node-a"], timeout=3,
    )  # fmt: skip
    with pytest.raises(aiomqtt.MqttError):
        async with plain:
            pass


@pytest.mark.parametrize("channel", ["telemetry", "events", "status"])
async def test_a_node_cannot_publish_as_another_node(
    secure_broker: SecureBroker, channel: str
) -> None:
    forged, sentinel = f"{NODES}/node-b/{channel}", f"{NODES}/node-a/{channel}"
    async with listening(secure_broker, SERVE_USER, f"{NODES}/+/{channel}") as (_, inbox):
        async with client(secure_broker, "node-a") as node_a:
            await node_a.publish(forged, b"forged by node-a", qos=1)
            await node_a.publish(sentinel, b"sentinel", qos=1)
        await eventually(lambda: inbox.has(sentinel, b"sentinel"), what="node-a's own message")
        assert not inbox.has(forged, b"forged by node-a")
        # node-b's own publish on that topic is delivered: the topic itself is not the problem
        async with client(secure_broker, "node-b") as node_b:
            await node_b.publish(forged, b"from node-b", qos=1)
        await eventually(lambda: inbox.has(forged, b"from node-b"), what="node-b's own message")


async def test_a_node_cannot_read_another_nodes_commands(secure_broker: SecureBroker) -> None:
    own, other = f"{NODES}/node-a/commands", f"{NODES}/node-b/commands"
    async with (
        listening(secure_broker, "node-a", other, f"{NODES}/+/commands", "#") as (_, a_inbox),
        listening(secure_broker, "node-b", other) as (_, b_inbox),
        client(secure_broker, SERVE_USER) as serve,
    ):
        await serve.publish(other, b"for node-b", qos=1)
        await serve.publish(own, b"for node-a", qos=1)
        await eventually(lambda: a_inbox.has(own, b"for node-a"), what="node-a's own command")
        await eventually(lambda: b_inbox.has(other, b"for node-b"), what="node-b's command")
        assert [topic for topic, _ in a_inbox.messages] == [own]  # nothing of node-b's


async def test_a_node_cannot_forge_commands_and_serve_cannot_forge_reports(
    secure_broker: SecureBroker,
) -> None:
    """Commands are written by serve only, reports by their own node only."""
    commands, telemetry = f"{NODES}/node-a/commands", f"{NODES}/node-a/telemetry"
    async with (
        listening(secure_broker, "node-a", commands) as (_, a_inbox),
        listening(secure_broker, SERVE_USER, f"{NODES}/+/telemetry") as (_, serve_inbox),
    ):
        async with client(secure_broker, "node-b") as node_b:
            await node_b.publish(commands, b"forged by node-b", qos=1)
        async with client(secure_broker, "node-a") as node_a:
            await node_a.publish(commands, b"forged by node-a itself", qos=1)
        async with client(secure_broker, SERVE_USER) as serve:
            await serve.publish(telemetry, b"forged by serve", qos=1)
            await serve.publish(commands, b"sentinel", qos=1)
        await eventually(lambda: a_inbox.has(commands, b"sentinel"), what="serve's command")
        assert a_inbox.messages == [(commands, b"sentinel")]
        assert serve_inbox.messages == []


async def test_the_observer_reads_everything_and_writes_nothing(
    secure_broker: SecureBroker,
) -> None:
    commands = f"{NODES}/node-a/commands"
    async with (
        listening(secure_broker, "orchestrator-observer", f"{NODES}/#") as (_, watched),
        listening(secure_broker, "node-a", commands) as (_, a_inbox),
    ):
        async with client(secure_broker, "orchestrator-observer") as observer:
            await observer.publish(commands, b"forged by the observer", qos=1)
        async with client(secure_broker, SERVE_USER) as serve:
            await serve.publish(commands, b"sentinel", qos=1)
        await eventually(lambda: a_inbox.has(commands, b"sentinel"), what="serve's command")
        await eventually(lambda: watched.has(commands, b"sentinel"), what="the observer's view")
        assert not a_inbox.has(commands, b"forged by the observer")
