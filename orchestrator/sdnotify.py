"""Telling systemd how the daemon is doing: the sd_notify protocol, without libsystemd.

Under a `Type=notify` unit systemd passes `$NOTIFY_SOCKET`, the address of a unix datagram
socket (a path, or `@name` for the abstract namespace). A daemon sends newline-separated
`KEY=value` assignments to it, one datagram per message:

- `READY=1` once it is truly ready (for `serve`: `/readyz` would answer 200); until then
  `systemctl start` waits and units ordered after it do not start;
- `STOPPING=1` when shutdown begins, so `systemctl status` says "deactivating" and the stop
  timeout starts counting from a known point;
- `STATUS=<text>`, one line shown by `systemctl status`;
- `WATCHDOG=1`, at least every `WatchdogSec=`; systemd kills and restarts a daemon that
  misses it. `$WATCHDOG_USEC` carries the period, and `$WATCHDOG_PID`, when set, names the one
  process it is meant for (a child that inherited the variables must not ping);
- `EXTEND_TIMEOUT_USEC=<µs>`, to ask for more time during a slow start or stop.

Outside systemd (no `$NOTIFY_SOCKET`) every call is a no-op, so daemons call it
unconditionally. Nothing here raises into the daemon: a failed send is logged once per
notifier, counted in `failures` and otherwise ignored, because the service manager being
unreachable is no reason to stop serving. Sends are non-blocking: a full socket buffer drops
the message rather than stalling the event loop.

Only unix-socket addresses are supported (`vsock:` addresses, used for virtual machines, are
logged once and ignored).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping, MutableMapping

import structlog

__all__ = ["Notifier", "keep_alive"]

log = structlog.get_logger(__name__)

_ENV_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _socket_address(raw: str) -> str | None:
    """The address to `sendto` for a `$NOTIFY_SOCKET` value; None when unusable."""
    if raw.startswith("@"):
        return "\0" + raw[1:]  # Linux abstract namespace
    if raw.startswith("/"):
        return raw
    return None


def _watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    """The watchdog period in µs if the watchdog is meant for process `pid`."""
    raw_usec = environ.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = environ.get("WATCHDOG_PID")
    if raw_pid is not None:
        try:
            if int(raw_pid) != pid:
                return None
        except ValueError:
            return None
    return usec


class Notifier:
    """One daemon's line to systemd. Build it with `from_environment()`.

    With `address=None` it is disabled and every method does nothing (and `enabled` is False).
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._failure_logged = False
        self.failures = 0

    @classmethod
    def from_environment(
        cls,
        environ: MutableMapping[str, str] | None = None,
        *,
        unset_environment: bool = False,
        pid: int | None = None,
    ) -> Notifier:
        """Read `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (default: `os.environ`).

        `unset_environment=True` removes the three variables afterwards, so that processes the
        daemon starts (the agent's workloads) do not inherit them and try to notify systemd
        about a unit that is not theirs.
        """
        env: MutableMapping[str, str] = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = _socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("sd_notify disabled: unsupported NOTIFY_SOCKET address", address=raw)
        watchdog_usec = _watchdog_usec(env, os.getpid() if pid is None else pid)
        if unset_environment:
            for name in _ENV_VARIABLES:
                env.pop(name, None)
        return cls(address, watchdog_usec=watchdog_usec if address else None)

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` assignments in one datagram; True if it was handed to the socket."""
        if self._address is None or not assignments:
            return False
        message = "\n".join(assignments).encode()
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.settimeout(0.0)  # non-blocking: never stall the event loop
                self._socket = sock
            self._socket.sendto(message, self._address)
        except OSError as error:
            self.failures += 1
            if not self._failure_logged:
                self._failure_logged = True
                log.warning(
                    "sd_notify failed; further failures are not logged",
                    error=str(error),
                    message=assignments[0],
                )
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """`READY=1`: start-up is complete and the daemon does what it is for."""
        return self.notify("READY=1", *self._status(status))

    def stopping(self, status: str | None = None) -> bool:
        """`STOPPING=1`: shutdown has begun."""
        return self.notify("STOPPING=1", *self._status(status))

    def status(self, text: str) -> bool:
        """`STATUS=<text>`: one line for `systemctl status` (newlines become spaces)."""
        return self.notify(*self._status(text))

    def watchdog(self) -> bool:
        """`WATCHDOG=1`: the daemon's loop is alive. No-op when no watchdog is set for us."""
        if self._watchdog_usec is None:
            return False
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more than the start or stop timeout allows, counted from now."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(1, round(seconds * 1_000_000))}")

    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half of `$WATCHDOG_USEC`, or None when there is no watchdog."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    @staticmethod
    def _status(text: str | None) -> tuple[str, ...]:
        if text is None:
            return ()
        return ("STATUS=" + " ".join(text.splitlines()),)


async def keep_alive(notifier: Notifier, *, alive: Callable[[], bool]) -> None:
    """Ping the watchdog every half period while `alive()` says the daemon's loop turns.

    Run it as a task of the daemon's TaskGroup. `alive` should prove progress, not just that
    the event loop runs: e.g. "the last reconcile finished less than N intervals ago". While it
    is False the pings stop and systemd restarts the daemon after `WatchdogSec=`. Without a
    watchdog this waits until cancelled, so it never ends on its own.
    """
    interval_s = notifier.watchdog_interval_s()
    if interval_s is None:
        await asyncio.get_running_loop().create_future()  # nothing to feed: wait for cancel
        return
    stalled_logged = False
    while True:
        if alive():
            notifier.watchdog()
            stalled_logged = False
        elif not stalled_logged:
            stalled_logged = True
            log.error("main loop stalled: not feeding the systemd watchdog")
        await asyncio.sleep(interval_s)
