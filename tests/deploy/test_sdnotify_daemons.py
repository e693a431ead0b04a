"""The daemons speak sd_notify as a `Type=notify` unit expects: `serve` says READY=1 only once
/readyz is 200 (broker connected), the agent once /healthz is 200 (no broker needed), both feed
the watchdog while they run and say STOPPING=1 on SIGTERM, then exit 0 in bounded time.

Each daemon is a real `python -m orchestrator` subprocess, with NOTIFY_SOCKET pointing at a unix
datagram socket this test binds, as systemd would.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.demo.broker import MosquittoBroker, find_mosquitto, free_port


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.received: list[str] = []

    def poll(self) -> list[str]:
        """Assignments that arrived since the last poll (waits up to 0.1 s for the first)."""
        new: list[str] = []
        try:
            while True:
                new.extend(self.sock.recv(4096).decode().split("\n"))
                self.sock.settimeout(0.0)
        except (TimeoutError, BlockingIOError):
            pass
        finally:
            self.sock.settimeout(0.1)
        self.received.extend(new)
        return new

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310  (loopback http)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _start(kind: str, config: Path, notify: NotifySocket, log: Path) -> subprocess.Popen[bytes]:
    env = {
        "PATH": "/usr/bin:/bin",
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "1000000",  # ping every 0.5 s
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator", kind, "-c", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop_and_expect_clean_exit(
    process: subprocess.Popen[bytes], notify: NotifySocket, log: Path
) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0, log.read_text()
    notify.poll()
    assert "STOPPING=1" in notify.received


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=5)


@pytest.mark.slow
def test_serve_is_ready_only_once_readyz_is_200(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: scripts/test.sh installs it when run as root")
    broker = MosquittoBroker(tmp_path / "mosquitto")  # its port is chosen, it is not started yet
    http_port = free_port()
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nsite = "t"\n'
        "reconnect_initial_s = 0.1\nreconnect_max_s = 0.5\n"
        f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n[log]\nformat = "json"\n'
    )
    log = tmp_path / "serve.log"
    serve = _start("serve", config, notify_socket, log)
    base = f"http://127.0.0.1:{http_port}"
    try:
        # without a broker: HTTP answers, /readyz says 503, and systemd hears no READY=1
        deadline = time.monotonic() + 20
        while _status(f"{base}/healthz") != 200:
            assert serve.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "serve never answered /healthz"
            notify_socket.poll()
        quiet_until = time.monotonic() + 1.5
        while time.monotonic() < quiet_until:
            notify_socket.poll()
        assert _status(f"{base}/readyz") == 503
        assert "READY=1" not in notify_socket.received

        broker.start_sync()
        deadline = time.monotonic() + 20
        while "READY=1" not in notify_socket.poll():
            assert serve.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no READY=1: {notify_socket.received}"
        assert _status(f"{base}/readyz") == 200

        # the watchdog is fed while it runs
        deadline = time.monotonic() + 3
        while "WATCHDOG=1" not in notify_socket.poll():
            assert time.monotonic() < deadline, f"no WATCHDOG=1: {notify_socket.received}"

        _stop_and_expect_clean_exit(serve, notify_socket, log)
    finally:
        _kill(serve)
        broker.stop_sync()


@pytest.mark.slow
def test_agent_is_ready_without_a_broker(tmp_path: Path, notify_socket: NotifySocket) -> None:
    """Fail-static: an agent samples and serves /healthz while the broker is away."""
    http_port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[node]\nname = "rig-01"\n[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n[log]\nformat = "json"\n'
        '[telemetry]\ninterval_s = 0.2\n[gpu]\nbackend = "fake"\n[gpu.fake]\ngpus = 2\n'
    )
    log = tmp_path / "agent.log"
    agent = _start("agent", config, notify_socket, log)
    try:
        deadline = time.monotonic() + 20
        while "READY=1" not in notify_socket.poll():
            assert agent.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no READY=1: {notify_socket.received}"
        assert _status(f"http://127.0.0.1:{http_port}/healthz") == 200

        deadline = time.monotonic() + 3
        while "WATCHDOG=1" not in notify_socket.poll():
            assert time.monotonic() < deadline, f"no WATCHDOG=1: {notify_socket.received}"

        _stop_and_expect_clean_exit(agent, notify_socket, log)
    finally:
        _kill(agent)
