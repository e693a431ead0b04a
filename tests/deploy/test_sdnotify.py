"""sd_notify against a real unix datagram socket, as systemd would listen on it."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.sdnotify import Notifier, keep_alive


class Listener:
    """A bound SOCK_DGRAM socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def receive(self, timeout_s: float = 2.0) -> list[str]:
        self.sock.settimeout(timeout_s)
        return self.sock.recv(4096).decode().split("\n")

    def drain(self) -> None:
        while not self.nothing_pending():
            pass

    def nothing_pending(self) -> bool:
        self.sock.settimeout(0.05)
        try:
            self.sock.recv(4096)
        except TimeoutError:
            return True
        return False


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    yield Listener(sock, str(path))
    sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"orchestrator-test-{uuid.uuid4().hex}"
    sock.bind("\0" + name)
    yield Listener(sock, "@" + name)
    sock.close()


def test_each_message_arrives_as_one_datagram(listener: Listener) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": listener.env_value})
    assert notifier.enabled
    assert notifier.ready()
    assert listener.receive() == ["READY=1"]
    assert notifier.ready(status="serving 4 nodes")
    assert listener.receive() == ["READY=1", "STATUS=serving 4 nodes"]
    assert notifier.status("planning\nround 3")
    assert listener.receive() == ["STATUS=planning round 3"]
    assert notifier.stopping()
    assert listener.receive() == ["STOPPING=1"]
    assert notifier.extend_timeout(2.5)
    assert listener.receive() == ["EXTEND_TIMEOUT_USEC=2500000"]
    notifier.close()


def test_abstract_namespace_address(abstract_listener: Listener) -> None:
    """`@name` in NOTIFY_SOCKET means the Linux abstract namespace (a leading NUL byte)."""
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": abstract_listener.env_value})
    assert notifier.ready()
    assert abstract_listener.receive() == ["READY=1"]
    notifier.close()


def test_watchdog_interval_is_half_the_period_and_pings(listener: Listener) -> None:
    env = {"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "30000000"}
    notifier = Notifier.from_environment(env)
    assert notifier.watchdog_interval_s() == 15.0
    assert notifier.watchdog()
    assert listener.receive() == ["WATCHDOG=1"]
    notifier.close()


def test_watchdog_meant_for_another_process_is_ignored(listener: Listener) -> None:
    """A child that inherited WATCHDOG_* must not ping on its parent's behalf."""
    env = {
        "NOTIFY_SOCKET": listener.env_value,
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid() + 1),
    }
    notifier = Notifier.from_environment(env)
    assert notifier.watchdog_interval_s() is None
    assert not notifier.watchdog()
    assert listener.nothing_pending()
    mine = Notifier.from_environment({**env, "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_interval_s() == 15.0


@pytest.mark.parametrize("usec", ["", "0", "-5", "soon"])
def test_no_watchdog_without_a_valid_period(listener: Listener, usec: str) -> None:
    notifier = Notifier.from_environment(
        {"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": usec}
    )
    assert notifier.watchdog_interval_s() is None
    assert not notifier.watchdog()
    assert listener.nothing_pending()


def test_outside_systemd_everything_is_a_no_op() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s() is None
    assert not notifier.ready()
    assert not notifier.stopping()
    assert not notifier.status("x")
    assert not notifier.watchdog()
    assert notifier.failures == 0


def test_unsupported_address_disables_notifications() -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert not notifier.ready()


def test_unset_environment_hides_the_socket_from_children(listener: Listener) -> None:
    env = {
        "NOTIFY_SOCKET": listener.env_value,
        "WATCHDOG_USEC": "4000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/usr/bin",
    }
    notifier = Notifier.from_environment(env, unset_environment=True)
    assert env == {"PATH": "/usr/bin"}
    assert notifier.watchdog_interval_s() == 2.0
    assert notifier.ready()
    assert listener.receive() == ["READY=1"]
    notifier.close()


def test_a_vanished_socket_never_raises_and_is_logged_once(tmp_path: Path) -> None:
    """systemd gone (or the socket removed): calls return False, count, and do not raise."""
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert notifier.enabled
    with capture_logs() as logs:
        assert not notifier.ready()
        assert not notifier.status("still here")
        assert not notifier.stopping()
    assert notifier.failures == 3
    assert [entry["log_level"] for entry in logs] == ["warning"]
    assert logs[0]["message"] == "READY=1"
    notifier.close()


def test_default_environment_is_os_environ(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.env_value)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    notifier = Notifier.from_environment()
    assert notifier.ready()
    assert listener.receive() == ["READY=1"]
    notifier.close()


async def test_keep_alive_pings_while_alive_and_stops_when_stalled(listener: Listener) -> None:
    """The watchdog is fed only while the daemon's loop proves progress."""
    env = {"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "100000"}  # ping every 50 ms
    notifier = Notifier.from_environment(env)
    alive = True
    task = asyncio.create_task(keep_alive(notifier, alive=lambda: alive))
    try:
        received = await asyncio.to_thread(lambda: [listener.receive() for _ in range(3)])
        assert received == [["WATCHDOG=1"]] * 3
        alive = False
        await asyncio.sleep(0.06)  # a ping already on its way when it stalled arrives by now
        await asyncio.to_thread(listener.drain)
        await asyncio.sleep(0.2)  # four periods stalled
        assert await asyncio.to_thread(listener.nothing_pending)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    notifier.close()


async def test_keep_alive_without_watchdog_waits_until_cancelled() -> None:
    task = asyncio.create_task(keep_alive(Notifier(None), alive=lambda: True))
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
