"""The `docker` driver: one container per GPU workload, through the Docker Engine API.

It speaks HTTP to dockerd's unix socket with aiohttp, at a pinned API version (`/v1.41`,
Docker 20.10 and later), rather than shelling out to the CLI: errors come back as dockerd's
own JSON message, which is what an operator needs to read.

Create. The GPU is given by `HostConfig.DeviceRequests = [{"Driver": "nvidia", "DeviceIDs":
[<GPU UUID>], "Capabilities": [["gpu"]]}]` (the UUID, not the index: indexes differ between
NVML and containers). A profile may turn the request off (`gpu_request = false`) for engines
without the NVIDIA runtime; with it on, such an engine refuses the start with its own message
("could not select device driver ...") and that message surfaces in a `DockerStartError`.
Networking is the engine's default bridge unless the profile asks for another mode; published
ports come from the profile's templates. A container created but not started is removed again,
so a failed start leaves nothing behind.

Labels make the agent's containers findable without a persisted handle: `io.gpu-orchestrator.
managed=true`, `.node`, `.gpu` (NVML index), `.gpu-uuid`, `.profile`, `.workload`. The name is
`orch-<node>-gpu<index>-<profile>`; a stopped leftover of the same name (a crash between create
and remove) is removed before creating, a running one is refused (recover it instead).

Stop: `POST /containers/{id}/stop?t=<timeout>` (dockerd sends the stop signal, then SIGKILL
after t seconds; exit code 137 means it had to), then the container is removed. Destroy:
`DELETE ?force=1` (kill and remove). Recover: by id, else by the node/GPU/profile labels.

Error typing: no answer from the socket is a `DriverUnavailableError` (retry); a refusal while
starting is a `DockerStartError` (a `WorkloadStartError`: give up, roll back); other refusals
are `DockerApiError` (permanent for 4xx) or unavailable (5xx).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from orchestrator.drivers.base import (
    DriverUnavailableError,
    Handle,
    StopResult,
    WorkloadSpec,
    WorkloadStartError,
    WorkloadState,
    WorkloadStatus,
    whole_seconds,
)
from orchestrator.errors import PermanentError

NAME = "docker"
API_VERSION = "v1.41"
LABEL = "io.gpu-orchestrator"
_KILLED_EXIT_CODE = 137  # 128 + SIGKILL
_RUNNING_STATES = frozenset({"running", "restarting", "paused"})


class DockerApiError(PermanentError):
    """dockerd refused a request; `message` is dockerd's own text."""

    def __init__(self, operation: str, status: int, message: str) -> None:
        self.operation = operation
        self.status = status
        self.message = message
        super().__init__(f"docker {operation}: HTTP {status}: {message}")


class DockerStartError(WorkloadStartError):
    """dockerd refused to create or start the container; `detail` is dockerd's message."""

    def __init__(self, profile_id: str, status: int, message: str) -> None:
        self.status = status
        super().__init__(NAME, profile_id, message)


def container_name(node: str, gpu_index: int, profile_id: str) -> str:
    return f"orch-{node}-gpu{gpu_index}-{profile_id}"


def create_body(spec: WorkloadSpec) -> dict[str, Any]:
    """The `POST /containers/create` body for `spec` (pure; tests read it)."""
    settings = spec.profile.docker
    if settings is None:
        raise WorkloadStartError(NAME, spec.profile.id, "profile has no [docker] section")
    host_config: dict[str, Any] = {"NetworkMode": settings.network_mode}
    if settings.gpu_request:
        host_config["DeviceRequests"] = [
            {"Driver": "nvidia", "DeviceIDs": [spec.gpu.uuid], "Capabilities": [["gpu"]]}
        ]
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for container_port, binding in settings.ports.items():
        key = container_port if "/" in container_port else f"{container_port}/tcp"
        host_ip, _, host_port = spec.render(binding).rpartition(":")
        exposed[key] = {}
        bindings[key] = [{"HostIp": host_ip, "HostPort": host_port}]
    if bindings:
        host_config["PortBindings"] = bindings
    if settings.binds:
        host_config["Binds"] = [spec.render(bind) for bind in settings.binds]
    if settings.shm_size_mib is not None:
        host_config["ShmSize"] = settings.shm_size_mib * 1024 * 1024
    body: dict[str, Any] = {
        "Image": settings.image,
        "Env": [f"{key}={spec.render(value)}" for key, value in settings.env.items()],
        "Labels": {
            f"{LABEL}.managed": "true",
            f"{LABEL}.node": spec.node,
            f"{LABEL}.gpu": str(spec.gpu.index),
            f"{LABEL}.gpu-uuid": spec.gpu.uuid,
            f"{LABEL}.profile": spec.profile.id,
            f"{LABEL}.workload": spec.workload_id,
        },
        "HostConfig": host_config,
    }
    if settings.cmd is not None:
        body["Cmd"] = [spec.render(arg) for arg in settings.cmd]
    if exposed:
        body["ExposedPorts"] = exposed
    return body


def _started_at_s(value: object) -> float | None:
    """dockerd's RFC 3339 timestamp with nanoseconds, as unix seconds (None when unset)."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(trimmed).timestamp()
    except ValueError:
        return None


def _message(body: object) -> str:
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return str(body)


class DockerDriver:
    """Containers on one dockerd, reached through its unix socket."""

    def __init__(self, *, socket_path: Path, request_timeout_s: float = 30.0) -> None:
        self._socket_path = socket_path
        self._request_timeout_s = request_timeout_s
        self._session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        return NAME

    @property
    def socket_path(self) -> Path:
        return self._socket_path

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, spec: WorkloadSpec) -> Handle:
        body = create_body(spec)
        name = container_name(spec.node, spec.gpu.index, spec.profile.id)
        status, reply = await self._create(name, body)
        if status == 409:
            await self._remove_stopped_leftover(spec, name)
            status, reply = await self._create(name, body)
        if status != 201 or not isinstance(reply, dict) or "Id" not in reply:
            raise DockerStartError(spec.profile.id, status, _message(reply))
        container_id = str(reply["Id"])
        status, reply = await self._request("POST", f"/containers/{container_id}/start")
        if status not in {204, 304}:
            await self._request("DELETE", f"/containers/{container_id}", params={"force": "1"})
            raise DockerStartError(spec.profile.id, status, _message(reply))
        return Handle(
            driver=NAME,
            ref=container_id,
            profile_id=spec.profile.id,
            workload_id=spec.workload_id,
            node=spec.node,
            gpu_index=spec.gpu.index,
            gpu_uuid=spec.gpu.uuid,
            started_at_s=time.time(),
            details={"name": name, "socket_path": str(self._socket_path)},
        )

    async def stop(self, handle: Handle, timeout_s: float) -> StopResult:
        seconds = whole_seconds(timeout_s)
        status, reply = await self._request(
            "POST",
            f"/containers/{handle.ref}/stop",
            params={"t": str(seconds)},
            timeout_s=seconds + self._request_timeout_s,
        )
        if status == 404:
            return StopResult(forced=False, exit_code=None)
        self._check("stop", status, reply, ok={204, 304})
        observed = await self.inspect(handle)
        await self._remove(handle.ref, force=False)
        forced = observed.exit_code == _KILLED_EXIT_CODE and status == 204
        return StopResult(forced=forced, exit_code=observed.exit_code)

    async def destroy(self, handle: Handle) -> None:
        await self._remove(handle.ref, force=True)

    async def inspect(self, handle: Handle) -> WorkloadStatus:
        try:
            status, reply = await self._request("GET", f"/containers/{handle.ref}/json")
        except DriverUnavailableError as error:
            return WorkloadStatus(WorkloadState.UNKNOWN, container_id=handle.ref, detail=str(error))
        if status == 404:
            return WorkloadStatus(
                WorkloadState.EXITED, container_id=handle.ref, detail="container not found"
            )
        if status != 200 or not isinstance(reply, dict):
            return WorkloadStatus(
                WorkloadState.UNKNOWN, container_id=handle.ref, detail=_message(reply)
            )
        state = reply.get("State") or {}
        docker_status = str(state.get("Status", ""))
        raw_pid = state.get("Pid")
        pid = raw_pid if isinstance(raw_pid, int) and raw_pid > 0 else None
        container_id = str(reply.get("Id", handle.ref))
        started_at_s = _started_at_s(state.get("StartedAt"))
        if docker_status in _RUNNING_STATES:
            return WorkloadStatus(
                WorkloadState.RUNNING,
                pid=pid,
                container_id=container_id,
                started_at_s=started_at_s,
                detail=docker_status,
            )
        exit_code = state.get("ExitCode")
        never_started = docker_status == "created"
        return WorkloadStatus(
            WorkloadState.EXITED,
            exit_code=None if never_started or not isinstance(exit_code, int) else exit_code,
            container_id=container_id,
            started_at_s=started_at_s,
            detail=docker_status,
        )

    async def recover(self, persisted: dict[str, Any]) -> Handle | None:
        handle = Handle.from_json(persisted, driver=NAME)
        if handle.ref:
            status, _reply = await self._request("GET", f"/containers/{handle.ref}/json")
            if status == 200:
                return handle
        labels = {"gpu": str(handle.gpu_index), "profile": handle.profile_id}
        for found in await self._list(handle.node, labels):
            return found  # newest first
        return None

    async def discover(self, node: str) -> list[Handle]:
        """Every container labelled as managed for `node`, running or not, newest first."""
        return await self._list(node, {})

    # ------------------------------------------------------------------ helpers

    async def _create(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        return await self._request("POST", "/containers/create", params={"name": name}, body=body)

    async def _remove_stopped_leftover(self, spec: WorkloadSpec, name: str) -> None:
        status, reply = await self._request("GET", f"/containers/{name}/json")
        if status == 200 and isinstance(reply, dict):
            labels = (reply.get("Config") or {}).get("Labels") or {}
            running = (reply.get("State") or {}).get("Status") in _RUNNING_STATES
            if labels.get(f"{LABEL}.managed") == "true" and not running:
                await self._remove(str(reply["Id"]), force=True)
                return
            what = "is running: recover it instead" if running else "is not ours"
            raise DockerStartError(spec.profile.id, 409, f"container {name} {what}")

    async def _remove(self, container_id: str, *, force: bool) -> None:
        params = {"force": "1" if force else "0", "v": "1"}
        status, reply = await self._request("DELETE", f"/containers/{container_id}", params=params)
        self._check("remove", status, reply, ok={204, 404, 409})  # 409: removal in progress

    async def _list(self, node: str, labels: dict[str, str]) -> list[Handle]:
        wanted = {"managed": "true", "node": node, **labels}
        filters = {"label": [f"{LABEL}.{key}={value}" for key, value in wanted.items()]}
        status, reply = await self._request(
            "GET", "/containers/json", params={"all": "1", "filters": json.dumps(filters)}
        )
        self._check("list", status, reply, ok={200})
        found: list[Handle] = []
        for item in sorted(reply, key=lambda entry: -int(entry.get("Created", 0))):
            item_labels = item.get("Labels") or {}
            found.append(
                Handle(
                    driver=NAME,
                    ref=str(item["Id"]),
                    profile_id=item_labels.get(f"{LABEL}.profile", ""),
                    workload_id=item_labels.get(f"{LABEL}.workload", ""),
                    node=node,
                    gpu_index=int(item_labels.get(f"{LABEL}.gpu", "-1")),
                    gpu_uuid=item_labels.get(f"{LABEL}.gpu-uuid", ""),
                    started_at_s=float(item.get("Created", 0)),
                    details={
                        "name": str((item.get("Names") or ["/"])[0]).lstrip("/"),
                        "socket_path": str(self._socket_path),
                    },
                )
            )
        return found

    @staticmethod
    def _check(operation: str, status: int, reply: object, *, ok: set[int]) -> None:
        if status in ok:
            return
        if status >= 500:
            raise DriverUnavailableError(NAME, f"{operation}: HTTP {status}: {_message(reply)}")
        raise DockerApiError(operation, status, _message(reply))

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, Any]:
        """One API call: (status, parsed JSON or text or None). No answer: unavailable."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self._socket_path))
            )
        timeout = aiohttp.ClientTimeout(total=timeout_s or self._request_timeout_s)
        url = f"http://docker/{API_VERSION}{path}"
        try:
            async with self._session.request(
                method, url, params=params, json=body, timeout=timeout
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            detail = f"{method} {path} on {self._socket_path}: {error!r}"
            raise DriverUnavailableError(NAME, detail) from None
        if not text:
            return status, None
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.strip()
