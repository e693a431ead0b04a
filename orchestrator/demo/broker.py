"""An MQTT broker for one machine: a private mosquitto, else amqtt in-process.

The demo and the test fixtures need a broker that nobody set up. A private mosquitto
(its own config, port, and data in a temporary directory, run in the foreground as our
child and stopped by its own PID) behaves exactly as production does. Where no mosquitto
binary exists, the pure-Python amqtt broker runs in-process instead; amqtt delivers
retained messages too widely and upgrades QoS, so nothing here relies on those.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)


class Broker(Protocol):
    host: str
    port: int
    kind: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


class MosquittoBroker:
    """A mosquitto child process with its own config on a loopback port."""

    kind = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_config: str = "",
        binary: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.extra_config = extra_config
        self.binary = binary or find_mosquitto() or "mosquitto"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "mosquitto.log"

    def config_text(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            "max_queued_messages 100000",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if not any(line.startswith("allow_anonymous") for line in self.extra_config.splitlines()):
            lines.append("allow_anonymous true")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # as root, mosquitto would drop to user `mosquitto` and could not write its log
            lines.append("user root")
        return "\n".join([*lines, self.extra_config, ""])

    def start_sync(self, *, timeout_s: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        self.process = subprocess.Popen(  # noqa: S603  (fixed arguments, our own config)
            [self.binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while not port_accepts(self.host, self.port):
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RuntimeError(
                    f"mosquitto exited with {self.process.returncode}: {err.strip()}"
                )
            if time.monotonic() > deadline:
                self.stop_sync()
                raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port}")
            time.sleep(0.02)

    def stop_sync(self, *, timeout_s: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)
        finally:
            if process.stderr:
                process.stderr.close()

    async def start(self) -> None:
        await asyncio.to_thread(self.start_sync)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)


class AmqttBroker:
    """The pure-Python fallback, in this process."""

    kind = "amqtt"

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._broker: Any = None

    async def start(self) -> None:
        from amqtt.broker import Broker as _AmqttBroker  # noqa: PLC0415  (only when needed)

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = _AmqttBroker(config)
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None


def embedded_broker(workdir: Path, *, prefer: str = "auto") -> MosquittoBroker | AmqttBroker:
    """A private mosquitto when its binary exists (or `prefer="mosquitto"`), else amqtt."""
    if prefer == "amqtt" or (prefer == "auto" and find_mosquitto() is None):
        return AmqttBroker()
    return MosquittoBroker(workdir)
