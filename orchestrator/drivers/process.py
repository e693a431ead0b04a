"""The `process` driver: the agent runs each GPU's workload as its own child process.

Start. The profile's argv (placeholders filled for the GPU) is executed directly, never through
a shell, in a new session (`start_new_session`), so the workload and everything it forks form
one process group that a stop signals as a whole. The GPU is selected either by
`CUDA_VISIBLE_DEVICES` (the GPU's UUID, or its NVML index with `CUDA_DEVICE_ORDER=PCI_BUS_ID`
so CUDA counts the way NVML does) or by the miner's own flag through a placeholder in argv.
The environment is the profile's `env` over a short allowlist of the agent's own (`PATH`,
`HOME`, locale, `LD_LIBRARY_PATH`...): a third-party miner never sees the agent's secrets.
stdout and stderr go to `<log_dir>/gpu<index>.log`, appended, one header line per start.

Stop: the profile's stop signal (SIGTERM) to the group; after `timeout_s`, SIGKILL to the group;
then a short bounded wait (`kill_wait_s`) for the kernel to reap it. Stragglers that outlive
their group leader get SIGKILL too: a GPU held by a forgotten grandchild is not free.

Restart safety. The handle carries the pid, the process group and the process's start time in
clock ticks since boot (field 22 of `/proc/<pid>/stat`). A pid alone is not an identity: after
a restart the kernel may have given it to something else. `recover` re-attaches only when the
start time matches, and then inspects and stops the process through its pid and group even
though it is no longer this agent's child (its exit code is then unknown). Every workload also
carries an environment marker (`GPU_ORCHESTRATOR_WORKLOAD`, JSON) so that `discover` finds the
group leaders this node started even when no handle was persisted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from orchestrator.drivers.base import (
    DriverUnavailableError,
    Handle,
    HandleError,
    StopResult,
    WorkloadSpec,
    WorkloadStartError,
    WorkloadState,
    WorkloadStatus,
    signal_exit_code,
)

NAME = "process"
MARKER_ENV = "GPU_ORCHESTRATOR_WORKLOAD"
# what a workload inherits from the agent; the rest (broker credentials...) stays behind
INHERITED_ENV = frozenset(
    {"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "LD_LIBRARY_PATH"}
)
_POLL_S = 0.02
_STAT_STATE = 0  # fields after "pid (comm) ": state is field 3 of the file
_STAT_START_TICKS = 19  # starttime is field 22 of the file


def _read_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of `pid`; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # comm may contain spaces and parentheses
    return fields[_STAT_STATE], int(fields[_STAT_START_TICKS])


def process_start_ticks(pid: int) -> int | None:
    """The start time of a live (non-zombie) `pid` in clock ticks since boot; None if gone."""
    stat = _read_stat(pid)
    if stat is None or stat[0] in {"Z", "X"}:
        return None
    return stat[1]


def _boot_time_s() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def _returncode_to_exit(returncode: int) -> int:
    return signal_exit_code(-returncode) if returncode < 0 else returncode


class ProcessDriver:
    """Child processes, one process group per GPU workload."""

    def __init__(self, *, log_dir: Path, kill_wait_s: float = 5.0) -> None:
        self._log_dir = log_dir
        self._kill_wait_s = kill_wait_s
        self._children: dict[int, asyncio.subprocess.Process] = {}

    @property
    def name(self) -> str:
        return NAME

    def log_path(self, handle: Handle) -> Path | None:
        path = handle.detail_str("log_path")
        return None if path is None else Path(path)

    # ------------------------------------------------------------------ start

    async def start(self, spec: WorkloadSpec) -> Handle:
        settings = spec.profile.process
        if settings is None:
            raise WorkloadStartError(NAME, spec.profile.id, "profile has no [process] section")
        argv = [spec.render(arg) for arg in settings.argv]
        env = {key: value for key, value in os.environ.items() if key in INHERITED_ENV}
        env.update({key: spec.render(value) for key, value in settings.env.items()})
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        if settings.gpu_selection == "uuid":
            env["CUDA_VISIBLE_DEVICES"] = spec.gpu.uuid
        elif settings.gpu_selection == "index":
            env["CUDA_VISIBLE_DEVICES"] = str(spec.gpu.index)
        env[MARKER_ENV] = json.dumps(
            {
                "node": spec.node,
                "gpu_index": spec.gpu.index,
                "gpu_uuid": spec.gpu.uuid,
                "profile_id": spec.profile.id,
                "workload_id": spec.workload_id,
                "stop_signal": settings.stop_signal,
            }
        )
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_dir / f"gpu{spec.gpu.index}.log"
        started_at_s = time.time()
        with log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at_s))
            log.write(
                f"=== {stamp} start {spec.workload_id} ({spec.profile.id}): {argv}\n".encode()
            )
            log.flush()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=settings.cwd,
                    env=env,
                    start_new_session=True,
                )
            except OSError as error:
                raise WorkloadStartError(NAME, spec.profile.id, f"{argv[0]}: {error}") from None
        self._children[proc.pid] = proc
        stat = _read_stat(proc.pid)  # a workload that exits at once may be a zombie already
        return Handle(
            driver=NAME,
            ref=str(proc.pid),
            profile_id=spec.profile.id,
            workload_id=spec.workload_id,
            node=spec.node,
            gpu_index=spec.gpu.index,
            gpu_uuid=spec.gpu.uuid,
            started_at_s=started_at_s,
            details={
                "pid": proc.pid,
                "pgid": proc.pid,
                "start_ticks": None if stat is None else stat[1],
                "log_path": str(log_path),
                "stop_signal": settings.stop_signal,
            },
        )

    # ------------------------------------------------------------------ observe

    async def inspect(self, handle: Handle) -> WorkloadStatus:
        pid = self._pid(handle)
        child = self._children.get(pid)
        if child is not None:
            if child.returncode is None:
                return WorkloadStatus(
                    WorkloadState.RUNNING, pid=pid, started_at_s=handle.started_at_s
                )
            return WorkloadStatus(
                WorkloadState.EXITED,
                exit_code=_returncode_to_exit(child.returncode),
                pid=pid,
                started_at_s=handle.started_at_s,
            )
        if self._alive(handle):
            return WorkloadStatus(WorkloadState.RUNNING, pid=pid, started_at_s=handle.started_at_s)
        return WorkloadStatus(
            WorkloadState.EXITED,
            pid=pid,
            started_at_s=handle.started_at_s,
            detail="process gone (not this agent's child: exit code unknown)",
        )

    async def recover(self, persisted: dict[str, Any]) -> Handle | None:
        handle = Handle.from_json(persisted, driver=NAME)
        self._pid(handle)
        # without a start time (it had exited before it could be read) nothing can be trusted
        return handle if self._alive(handle) else None

    async def discover(self, node: str) -> list[Handle]:
        """Group leaders carrying `node`'s environment marker (reads /proc/*/environ)."""
        return [
            handle for handle in await asyncio.to_thread(self._scan_proc) if handle.node == node
        ]

    # ------------------------------------------------------------------ stop

    async def stop(self, handle: Handle, timeout_s: float) -> StopResult:
        pgid = self._pgid(handle)
        stop_signal = signal.Signals[handle.detail_str("stop_signal") or "SIGTERM"]
        if self._leader_running(handle):
            self._signal_group(pgid, stop_signal)
            if await self._wait_leader_gone(handle, timeout_s):
                self._signal_group(pgid, signal.SIGKILL)  # stragglers outliving their leader
                return StopResult(forced=False, exit_code=await self._exit_code(handle))
            self._signal_group(pgid, signal.SIGKILL)
            await self._await_killed(handle)
            return StopResult(forced=True, exit_code=await self._exit_code(handle))
        self._signal_group(pgid, signal.SIGKILL)
        return StopResult(forced=False, exit_code=await self._exit_code(handle))

    async def destroy(self, handle: Handle) -> None:
        self._signal_group(self._pgid(handle), signal.SIGKILL)
        await self._await_killed(handle)
        self._children.pop(self._pid(handle), None)

    async def close(self) -> None:
        """Nothing to release: children keep running; they belong to their GPU, not to us."""

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _pid(handle: Handle) -> int:
        pid = handle.detail_int("pid")
        if pid is None or pid <= 1:
            raise HandleError(f"process handle has no usable pid: {handle.details!r}")
        return pid

    def _pgid(self, handle: Handle) -> int:
        pgid = handle.detail_int("pgid")
        return pgid if pgid is not None and pgid > 1 else self._pid(handle)

    def _alive(self, handle: Handle) -> bool:
        expected = handle.detail_int("start_ticks")
        return expected is not None and process_start_ticks(self._pid(handle)) == expected

    def _leader_running(self, handle: Handle) -> bool:
        child = self._children.get(self._pid(handle))
        if child is not None:
            return child.returncode is None
        return self._alive(handle)

    async def _wait_leader_gone(self, handle: Handle, timeout_s: float) -> bool:
        child = self._children.get(self._pid(handle))
        try:
            async with asyncio.timeout(timeout_s):
                if child is not None:
                    await child.wait()
                else:
                    # not our child: no exit notification exists, so poll /proc
                    while self._alive(handle):  # noqa: ASYNC110
                        await asyncio.sleep(_POLL_S)
        except TimeoutError:
            return False
        return True

    async def _await_killed(self, handle: Handle) -> None:
        if self._leader_running(handle) and not await self._wait_leader_gone(
            handle, self._kill_wait_s
        ):
            raise DriverUnavailableError(
                NAME, f"pid {self._pid(handle)} survived SIGKILL for {self._kill_wait_s} s"
            )

    async def _exit_code(self, handle: Handle) -> int | None:
        child = self._children.pop(self._pid(handle), None)
        if child is None or child.returncode is None:
            return None
        return _returncode_to_exit(child.returncode)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    def _scan_proc(self) -> list[Handle]:
        boot_s = _boot_time_s()
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        found: list[Handle] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                if os.getpgid(pid) != pid:
                    continue  # children inherit the marker; only the group leader is the workload
                environ = (entry / "environ").read_bytes()
            except (OSError, ProcessLookupError):
                continue
            marker = _marker(environ)
            ticks = process_start_ticks(pid)
            if marker is None or ticks is None:
                continue
            found.append(
                Handle(
                    driver=NAME,
                    ref=str(pid),
                    profile_id=str(marker["profile_id"]),
                    workload_id=str(marker["workload_id"]),
                    node=str(marker["node"]),
                    gpu_index=int(marker["gpu_index"]),
                    gpu_uuid=str(marker["gpu_uuid"]),
                    started_at_s=boot_s + ticks / ticks_per_s,
                    details={
                        "pid": pid,
                        "pgid": pid,
                        "start_ticks": ticks,
                        "log_path": None,
                        "stop_signal": str(marker.get("stop_signal", "SIGTERM")),
                    },
                )
            )
        return found


def _marker(environ: bytes) -> dict[str, Any] | None:
    prefix = f"{MARKER_ENV}=".encode()
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            try:
                value = json.loads(item[len(prefix) :])
            except ValueError:
                return None
            keys = {"node", "gpu_index", "gpu_uuid", "profile_id", "workload_id"}
            return value if isinstance(value, dict) and keys <= value.keys() else None
    return None
