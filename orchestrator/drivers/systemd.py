"""The `systemd` driver: one templated unit instance per GPU, managed through `systemctl`.

For sites that already run their miners as units (`miner@0.service`, with the GPU taken from
the instance name: `Environment=CUDA_VISIBLE_DEVICES=%i`). The profile's `unit_template` is
filled per GPU; the unit's own file says what runs, so the agent only starts and stops it.

Every `systemctl` call is a subprocess bounded by a timeout; a call that does not finish is
killed and reported as `DriverUnavailableError` (systemd busy or gone: retry later).

- start: `systemctl start --no-block <unit>`. It returns once the start job is queued; a unit
  that cannot be loaded fails right here (systemctl's own message in a `WorkloadStartError`),
  one that crashes later shows up in `inspect`, like a crashing child process would.
- stop: `systemctl stop <unit>` bounded by the caller's timeout (the unit's TimeoutStopSec may
  be longer); when it runs out, `systemctl kill --signal=SIGKILL <unit>` and a short bounded
  wait for the unit to leave the active states.
- destroy: `systemctl stop --no-block` first (so `Restart=` does not bring it back), then
  `systemctl kill --signal=SIGKILL`.
- inspect: `systemctl show -p LoadState,ActiveState,SubState,MainPID,ExecMainCode,
  ExecMainStatus`. ExecMainCode says how the main process ended (1 exited, 2 killed, 3 dumped
  core), so a signal becomes the shell's 128 + N like every other driver reports it.
- recover: by unit name; a unit that is inactive (stopped cleanly) leaves nothing to re-attach
  to, a failed one is returned so that the caller sees the crash.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from orchestrator.drivers.base import (
    DriverUnavailableError,
    Handle,
    StopResult,
    WorkloadSpec,
    WorkloadStartError,
    WorkloadState,
    WorkloadStatus,
    signal_exit_code,
)

NAME = "systemd"
SHOW_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "ExecMainCode",
    "ExecMainStatus",
)
_ACTIVE_STATES = frozenset({"active", "activating", "reloading", "deactivating", "refreshing"})
_CLD_EXITED, _CLD_KILLED, _CLD_DUMPED = 1, 2, 3
_SIGKILL = 9
_POLL_S = 0.05


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show` output (`Key=value` lines) as a dict."""
    properties: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            properties[key.strip()] = value.strip()
    return properties


def status_from_show(properties: dict[str, str], started_at_s: float | None) -> WorkloadStatus:
    """One observation from `systemctl show` properties."""
    if properties.get("LoadState") == "not-found":
        return WorkloadStatus(WorkloadState.EXITED, detail="unit not found")
    active = properties.get("ActiveState", "")
    detail = f"{active}/{properties.get('SubState', '')}"
    main_pid = _int(properties.get("MainPID"))
    if active in _ACTIVE_STATES:
        return WorkloadStatus(
            WorkloadState.RUNNING,
            pid=main_pid or None,
            started_at_s=started_at_s,
            detail=detail,
        )
    if active in {"inactive", "failed"}:
        return WorkloadStatus(
            WorkloadState.EXITED,
            exit_code=_exit_code(properties),
            started_at_s=started_at_s,
            detail=detail,
        )
    return WorkloadStatus(WorkloadState.UNKNOWN, detail=detail or "no ActiveState")


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _exit_code(properties: dict[str, str]) -> int | None:
    code, status = _int(properties.get("ExecMainCode")), _int(properties.get("ExecMainStatus"))
    if status is None or code not in {_CLD_EXITED, _CLD_KILLED, _CLD_DUMPED}:
        return None  # the main process never ran (or systemd does not say)
    return status if code == _CLD_EXITED else signal_exit_code(status)


class SystemdDriver:
    """Templated units driven by a bounded `systemctl` subprocess per call."""

    def __init__(
        self,
        *,
        systemctl: str = "systemctl",
        command_timeout_s: float = 15.0,
        kill_wait_s: float = 5.0,
    ) -> None:
        self._systemctl = systemctl
        self._command_timeout_s = command_timeout_s
        self._kill_wait_s = kill_wait_s

    @property
    def name(self) -> str:
        return NAME

    async def close(self) -> None:
        """Nothing held between calls."""

    async def start(self, spec: WorkloadSpec) -> Handle:
        settings = spec.profile.systemd
        if settings is None:
            raise WorkloadStartError(NAME, spec.profile.id, "profile has no [systemd] section")
        unit = spec.render(settings.unit_template)
        handle = Handle(
            driver=NAME,
            ref=unit,
            profile_id=spec.profile.id,
            workload_id=spec.workload_id,
            node=spec.node,
            gpu_index=spec.gpu.index,
            gpu_uuid=spec.gpu.uuid,
            started_at_s=time.time(),
            details={"unit": unit, "user": settings.user},
        )
        returncode, _out, err = await self._systemctl_run(handle, "start", "--no-block", unit)
        if returncode != 0:
            raise WorkloadStartError(NAME, spec.profile.id, err.strip() or f"exit {returncode}")
        return handle

    async def stop(self, handle: Handle, timeout_s: float) -> StopResult:
        try:
            returncode, _out, err = await self._systemctl_run(
                handle, "stop", handle.ref, timeout_s=timeout_s
            )
        except DriverUnavailableError:
            await self._kill(handle)
            await self._await_inactive(handle)
            return StopResult(forced=True, exit_code=(await self.inspect(handle)).exit_code)
        if returncode != 0 and "not loaded" not in err and "not found" not in err:
            raise DriverUnavailableError(NAME, f"stop {handle.ref}: {err.strip()}")
        properties = await self._show(handle)
        forced = (
            _int(properties.get("ExecMainCode")) == _CLD_KILLED
            and _int(properties.get("ExecMainStatus")) == _SIGKILL
        )
        return StopResult(forced=forced, exit_code=_exit_code(properties))

    async def destroy(self, handle: Handle) -> None:
        await self._systemctl_run(handle, "stop", "--no-block", handle.ref)
        await self._kill(handle)
        await self._await_inactive(handle)

    async def inspect(self, handle: Handle) -> WorkloadStatus:
        try:
            properties = await self._show(handle)
        except DriverUnavailableError as error:
            return WorkloadStatus(WorkloadState.UNKNOWN, detail=str(error))
        return status_from_show(properties, handle.started_at_s)

    async def recover(self, persisted: dict[str, Any]) -> Handle | None:
        handle = Handle.from_json(persisted, driver=NAME)
        status = await self.inspect(handle)
        if status.state is WorkloadState.UNKNOWN:
            raise DriverUnavailableError(
                NAME, f"cannot tell whether {handle.ref} runs: {status.detail}"
            )
        if status.running or status.detail.startswith("failed"):
            return handle
        return None

    # ------------------------------------------------------------------ helpers

    async def _kill(self, handle: Handle) -> None:
        returncode, _out, err = await self._systemctl_run(
            handle, "kill", "--signal=SIGKILL", handle.ref
        )
        if returncode != 0 and "not loaded" not in err:
            raise DriverUnavailableError(NAME, f"kill {handle.ref}: {err.strip()}")

    async def _await_inactive(self, handle: Handle) -> None:
        deadline_s = time.monotonic() + self._kill_wait_s
        while (await self.inspect(handle)).running:
            if time.monotonic() > deadline_s:
                raise DriverUnavailableError(
                    NAME, f"{handle.ref} still active {self._kill_wait_s} s after SIGKILL"
                )
            await asyncio.sleep(_POLL_S)

    async def _show(self, handle: Handle) -> dict[str, str]:
        returncode, out, err = await self._systemctl_run(
            handle, "show", "-p", ",".join(SHOW_PROPERTIES), handle.ref
        )
        if returncode != 0:
            raise DriverUnavailableError(NAME, f"show {handle.ref}: {err.strip()}")
        return parse_show(out)

    async def _systemctl_run(
        self, handle: Handle, *args: str, timeout_s: float | None = None
    ) -> tuple[int, str, str]:
        """Run systemctl; (returncode, stdout, stderr). A call that overruns is killed."""
        user = ["--user"] if handle.details.get("user") is True else []
        try:
            proc = await asyncio.create_subprocess_exec(
                self._systemctl,
                *user,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            raise DriverUnavailableError(NAME, f"cannot run {self._systemctl}: {error}") from None
        limit_s = self._command_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(limit_s):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise DriverUnavailableError(
                NAME, f"systemctl {' '.join(args)} did not finish in {limit_s} s"
            ) from None
        assert proc.returncode is not None  # noqa: S101  (communicate() waited for it)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
