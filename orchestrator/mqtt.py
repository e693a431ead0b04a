"""The only module that imports the MQTT client library (aiomqtt 2.x).

`MqttLink` is a broker connection that keeps itself up: `run()` connects, subscribes,
calls `on_connect` (where a node publishes its retained `online`), hands every message to
a plain callback, and on any broker error waits a jittered, growing delay and tries again;
the delay resets after a connection that held. `publish()` never blocks on a missing broker:
it returns False and the caller decides (telemetry is simply the next snapshot's job).

The message callback is synchronous on purpose: ingest is a parse and a dict store, and a
callback that cannot await cannot stall the client's reading loop behind slow work. It is
called as each message is read, with no queue between (the client's own queue and iterator
cost as much per message as the validation); an exception in it is logged, never fatal.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiomqtt
import structlog
from prometheus_client import CollectorRegistry, Counter
from pydantic import SecretStr

from orchestrator.config.common import MqttSection
from orchestrator.lifecycle import raise_if_cancelling

log = structlog.get_logger(__name__)

MessageHandler = Callable[[str, bytes], None]

# Small packets go out at once. Without TCP_NODELAY a publish that follows another (the
# PUBACK of a command, then its `accepted` event) waits for the broker's delayed ACK: about
# 40 ms on Linux, which was most of a command's round trip (docs/benchmarks.md).
_SOCKET_OPTIONS = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
# At most this many QoS 1 publications await their PUBACK at once (`publish_many` queues the
# rest). The client checks every new publication against all pending ones, so thousands at
# once cost quadratic time: 7,500 concurrent commands took 3 s before the first left.
_MAX_INFLIGHT = 100
ConnectHook = Callable[["MqttLink"], Awaitable[None]]

__all__ = ["Backoff", "MqttLink", "Will"]


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class Backoff:
    """Exponential backoff with full jitter; `reset()` after a success."""

    def __init__(self, *, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._attempt = 0
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not cryptography)

    def next_delay_s(self) -> float:
        ceiling = min(self.max_s, self.initial_s * (2**self._attempt))
        self._attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0


def _tls_context(settings: MqttSection) -> ssl.SSLContext | None:
    tls = settings.tls
    if not tls.enabled:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class MqttLink:
    """One self-healing broker connection with its subscriptions and last will."""

    def __init__(
        self,
        settings: MqttSection,
        *,
        client_id: str,
        password: SecretStr | None = None,
        will: Will | None = None,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_message: MessageHandler | None = None,
        on_connect: ConnectHook | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self._password = password
        self._will = will
        self._subscriptions = tuple(subscriptions)
        self._on_message = on_message
        self._on_connect = on_connect
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.connections_total = 0
        self.disconnections_total = 0
        self.handler_errors_total = 0  # messages whose handler raised (each one dropped)
        self._handler_error_logged_s = float("-inf")
        self._handler_errors = Counter(  # registered only where a registry is given
            "orchestrator_mqtt_handler_errors",
            "MQTT messages dropped because handling them raised (a bug: see the log)",
            registry=registry,
        )
        self._backoff = Backoff(
            initial_s=settings.reconnect_initial_s, max_s=settings.reconnect_max_s
        )

    def _deliver(self, message: aiomqtt.Message) -> None:
        handler = self._on_message
        if handler is None:
            return
        try:
            handler(message.topic.value, bytes(message.payload))
        except Exception:  # a handler's bug costs its message, never the connection
            self.handler_errors_total += 1
            self._handler_errors.inc()
            now_s = time.monotonic()
            if now_s - self._handler_error_logged_s >= 1.0:  # a traceback a second at most
                self._handler_error_logged_s = now_s
                log.exception(
                    "mqtt message handler failed",
                    topic=message.topic.value,
                    failures_total=self.handler_errors_total,
                )

    def _new_client(self) -> aiomqtt.Client:
        link = self

        class Delivering(asyncio.Queue[aiomqtt.Message]):
            """aiomqtt's incoming queue, replaced: each message goes straight to the link's
            callback as the client reads it. Through the queue and aiomqtt's iterator (a
            task and an `asyncio.wait` a message) the client's own loop cost about as much
            as validating the payload (docs/benchmarks.md)."""

            def put_nowait(self, item: aiomqtt.Message) -> None:
                link._deliver(item)

        client = aiomqtt.Client(
            self.settings.host,
            self.settings.port,
            identifier=self.client_id,
            username=self.settings.username,
            password=self._password.get_secret_value() if self._password else None,
            will=(
                aiomqtt.Will(
                    self._will.topic, self._will.payload, self._will.qos, self._will.retain
                )
                if self._will
                else None
            ),
            keepalive=self.settings.keepalive_s,
            timeout=10.0,
            tls_context=_tls_context(self.settings),
            queue_type=Delivering,
            clean_session=True,
            socket_options=_SOCKET_OPTIONS,
            # a plan's commands go out together (publish_many), this many at a time
            max_inflight_messages=_MAX_INFLIGHT,
            max_concurrent_outgoing_calls=_MAX_INFLIGHT,
        )
        client.pending_calls_threshold = 10_000
        return client

    async def run(self) -> None:
        """Stay connected until cancelled."""
        while True:
            await self.run_once()
            delay_s = self._backoff.next_delay_s()
            log.info("mqtt reconnecting", broker=self._where(), delay_s=round(delay_s, 2))
            await asyncio.sleep(delay_s)

    async def run_once(self) -> None:
        """One connection: connect, subscribe, deliver until the broker goes away."""
        try:
            async with self._new_client() as client:
                self._client = client
                for topic, qos in self._subscriptions:
                    await client.subscribe(topic, qos=qos)
                self.connections_total += 1
                self.connected.set()
                self._backoff.reset()
                log.info("mqtt connected", broker=self._where(), client_id=self.client_id)
                if self._on_connect is not None:
                    await self._on_connect(self)
                # messages reach the callback from the client's read callback (`_deliver`);
                # this only waits for the connection to end
                async for _ in client.messages:
                    pass
        except aiomqtt.MqttError as error:
            if self.connected.is_set():
                self.disconnections_total += 1
            log.warning("mqtt unavailable", broker=self._where(), error=str(error))
        finally:
            self._client = None
            self.connected.clear()

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        unconfirmed_ok: bool = False,
    ) -> bool:
        """Publish if connected; False when the broker is away or the publish failed.

        `unconfirmed_ok`: True also for a message the client took but whose acknowledgement
        did not come in time (it may well have been delivered); False then means only "never
        handed over" (no connection, refused by the client)."""
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttCodeError as error:  # the client refused it: not sent
            log.debug("mqtt publish refused", topic=topic, error=str(error))
            return False
        except aiomqtt.MqttError as error:  # taken, not acknowledged in time
            log.debug("mqtt publish unconfirmed", topic=topic, error=str(error))
            return unconfirmed_ok
        finally:
            # aiomqtt's publish waits with asyncio.wait_for, which on Python 3.11 can
            # swallow a cancellation landing with the broker's acknowledgement
            raise_if_cancelling()
        return True

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]], *, qos: int = 1
    ) -> list[bool]:
        """Publish several messages at once; one result a message, in order: True when the
        client took it, even if its acknowledgement timed out (`unconfirmed_ok`: the
        dispatcher keeps such a command in flight and re-sends it under its id).

        They go out together and their acknowledgements are awaited together. One after
        another, each would wait for the broker's PUBACK, which under load queues behind
        every telemetry message already in this client's socket: a plan's third command
        then left hundreds of milliseconds after its first (docs/benchmarks.md).
        """
        if not messages:
            return []
        return list(
            await asyncio.gather(
                *(self.publish(t, p, qos=qos, unconfirmed_ok=True) for t, p in messages)
            )
        )

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"
