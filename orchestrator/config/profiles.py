"""`[[profiles]]`: the workloads an agent may run, and the only thing a command may name.

A command from the central daemon names a profile id ("mine with `trex-kawpow`"), never a
command line: the agent runs only what its own config declares, so a compromised broker can
at worst move GPUs between declared workloads. An unknown id is refused (`UnknownProfileError`).

A profile says what to run (exactly one driver section, matching `driver`: `[profiles.process]`,
`[profiles.docker]`, `[profiles.systemd]` or `[profiles.sim]`; a section for another driver is
rejected rather than silently ignored), how to tell that it works (`[profiles.health]`: a miner
API for mining, a readiness URL for inference), and what to expect of it (hashrate,
timeouts). The `sim` driver reports its own health, so a health check is optional there only.
`expected_power_w` is deprecated and ignored (`config.notices`): older files still load.

Templates. Strings that end up in argv, env values, docker port bindings, unit names and
health URLs may use these placeholders, filled per GPU when the workload starts:
`{gpu_index}` (NVML index), `{gpu_uuid}`, `{pci_bus_id}`, `{node}`, `{profile}` and `{port}`
(= `api_port_base + gpu_index`, so eight miners on one node get eight API ports). An unknown
placeholder, or `{port}` without `api_port_base`, fails when the config is checked.

Timeouts default by kind: an inference server loads its model for minutes, a miner starts in
seconds. Mining-only fields (`algorithm`, `expected_hashrate_hs`) are rejected on AI profiles.

Workload ids. A command names `mine:<profile id>`, `ai:<contract id>` or `idle`
(`profile_for_workload`). `ai:<contract>` runs the AI profile whose `serves_contracts` lists the
contract, else the AI profile whose id is the contract id; a contract listed by two profiles is
rejected when the config is loaded, so the choice is never ambiguous.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import AfterValidator, Field, model_validator

from orchestrator.config._base import Section
from orchestrator.domain import Workload, WorkloadKind
from orchestrator.errors import PermanentError

ProfileKind = Literal["mining", "ai"]
DriverName = Literal["process", "docker", "systemd", "sim"]
DRIVER_NAMES: tuple[DriverName, ...] = ("process", "docker", "systemd", "sim")

TEMPLATE_FIELDS = frozenset({"gpu_index", "gpu_uuid", "pci_bus_id", "node", "profile", "port"})

# the miner APIs `orchestrator.agents.miners` reads (config may not import agents)
MinerApiName = Literal[
    "trex", "lolminer", "gminer", "xmrig", "nbminer", "teamredminer", "srbminer", "rigel"
]
MINER_API_NAMES: tuple[str, ...] = get_args(MinerApiName)
InferenceServer = Literal["vllm", "tgi", "triton", "ollama", "http"]

_KIND_DEFAULTS: Mapping[str, Mapping[str, float]] = {
    "mining": {"start_timeout_s": 120.0, "stop_timeout_s": 15.0, "drain_timeout_s": 0.0},
    "ai": {"start_timeout_s": 900.0, "stop_timeout_s": 30.0, "drain_timeout_s": 60.0},
}
_SIM_DEFAULTS: Mapping[str, Mapping[str, float]] = {
    "mining": {"start_delay_s": 5.0, "stop_delay_s": 2.0},
    "ai": {"start_delay_s": 60.0, "stop_delay_s": 5.0},
}


class UnknownProfileError(PermanentError):
    """A command named a profile this agent does not declare."""

    def __init__(self, profile_id: str, known: Iterable[str]) -> None:
        self.profile_id = profile_id
        self.known = sorted(known)
        super().__init__(
            f"unknown profile {profile_id!r}; this agent declares: {', '.join(self.known) or '-'}"
        )


def template_fields(template: str) -> set[str]:
    """The placeholder names used by a `str.format` template; ValueError if it is malformed."""
    names: set[str] = set()
    for _literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"placeholder {{{name}}} in {template!r}: only plain names allowed")
        names.add(name)
    return names


def _check_templates(templates: Iterable[str]) -> set[str]:
    used: set[str] = set()
    for template in templates:
        fields = template_fields(template)
        unknown = fields - TEMPLATE_FIELDS
        if unknown:
            valid = ", ".join(f"{{{name}}}" for name in sorted(TEMPLATE_FIELDS))
            raise ValueError(
                f"unknown placeholder {{{sorted(unknown)[0]}}} in {template!r}; valid: {valid}"
            )
        used |= fields
    return used


class ProcessSettings(Section):
    """`[profiles.process]`: the agent runs argv as its child, one per GPU."""

    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None
    # uuid / index: CUDA_VISIBLE_DEVICES=<GPU UUID | NVML index> (with CUDA_DEVICE_ORDER=PCI_BUS_ID
    # so CUDA's ordinals match NVML's); argv: the miner's own flag, via a placeholder in argv
    gpu_selection: Literal["uuid", "index", "argv"] = "uuid"
    stop_signal: Literal["SIGTERM", "SIGINT"] = "SIGTERM"

    @model_validator(mode="after")
    def _gpu_flag_present(self) -> Self:
        if self.gpu_selection == "argv":
            used = _check_templates(self.argv)
            if not used & {"gpu_index", "gpu_uuid", "pci_bus_id"}:
                raise ValueError(
                    "gpu_selection = 'argv' needs {gpu_index}, {gpu_uuid} or {pci_bus_id} in argv"
                )
        return self


class DockerSettings(Section):
    """`[profiles.docker]`: one container per GPU through the Docker Engine API."""

    image: str = Field(min_length=1)
    cmd: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # container port ("8000/tcp") -> host binding ("127.0.0.1:{port}" or "{port}")
    ports: dict[str, str] = Field(default_factory=dict)
    binds: list[str] = Field(
        default_factory=list
    )  # "host-path:container-path[:ro]", e.g. a model cache
    network_mode: str = Field(default="bridge", min_length=1)  # "host" only when asked for
    shm_size_mib: int | None = Field(default=None, ge=1)
    # request the GPU by UUID from the NVIDIA runtime; false only for engines without it (tests)
    gpu_request: bool = True
    socket_path: Path = Path("/var/run/docker.sock")

    @model_validator(mode="after")
    def _port_keys(self) -> Self:
        for key in self.ports:
            port, _, proto = key.partition("/")
            if not port.isdigit() or proto not in {"", "tcp", "udp", "sctp"}:
                raise ValueError(f"port key {key!r}: use '<port>/tcp' or '<port>/udp'")
        return self


class SystemdSettings(Section):
    """`[profiles.systemd]`: a templated unit per GPU, managed with systemctl."""

    unit_template: str = Field(default="miner@{gpu_index}.service", min_length=1)
    user: bool = False  # systemctl --user

    @model_validator(mode="after")
    def _unit_suffix(self) -> Self:
        if "." not in self.unit_template.rsplit("}", 1)[-1]:
            raise ValueError("unit_template must end in a unit type, e.g. '.service'")
        return self


class SimSettings(Section):
    """`[profiles.sim]`: a simulated workload (demo, tests); delays are scaled by time_scale."""

    start_delay_s: float | None = Field(default=None, ge=0, le=3600)  # until hashrate / ready
    stop_delay_s: float | None = Field(default=None, ge=0, le=3600)  # graceful shutdown
    hashrate_hs: float | None = Field(default=None, gt=0)  # default: expected_hashrate_hs
    fail_start: bool = False  # failure injection: start() raises
    crash_after_s: float | None = Field(default=None, gt=0)  # failure injection: exit code 1


class MinerHealthCheck(Section):
    """Mining health: the miner API reader `miner_api` at `url` reports hashrate > 0."""

    miner_api: MinerApiName
    url: str = Field(min_length=1)


class InferenceHealthCheck(Section):
    """AI health: the readiness endpoint of `server` at `url` (vLLM/TGI `/health`, Triton
    `/v2/health/ready`, Ollama `/api/version`, or any URL answering 200 for `http`).

    `url` is the server's base (`http://127.0.0.1:{port}`: the server's own path is added) or a
    full URL with a path (read as given). `metrics_url` is its Prometheus endpoint, read while
    draining to see requests in flight; default `<url>/metrics` for vLLM and TGI (Triton serves
    metrics on another port, 8002, so give it there).
    """

    server: InferenceServer
    url: str = Field(min_length=1)
    metrics_url: str | None = Field(default=None, min_length=1)


class ProfileSection(Section):
    """One `[[profiles]]` entry."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: ProfileKind
    driver: DriverName
    process: ProcessSettings | None = None
    docker: DockerSettings | None = None
    systemd: SystemdSettings | None = None
    sim: SimSettings | None = None
    health: MinerHealthCheck | InferenceHealthCheck | None = None

    # deprecated and ignored: nothing reads it (serve learns power from telemetry); accepted
    # so that older files load, and `config check` says so
    expected_power_w: float | None = Field(default=None, gt=0, le=5000)
    start_timeout_s: float = Field(gt=0, le=7200)  # start until healthy
    stop_timeout_s: float = Field(gt=0, le=600)  # graceful stop, then forced
    drain_timeout_s: float = Field(ge=0, le=3600)  # AI: in-flight requests; mining: 0
    api_port_base: int | None = Field(default=None, ge=1, le=65535)

    algorithm: str | None = Field(default=None, min_length=1)  # mining only
    expected_hashrate_hs: float | None = Field(default=None, gt=0)  # mining only
    # AI only: the contracts this profile serves (`ai:<contract>` picks it)
    serves_contracts: list[
        Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
    ] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") in _KIND_DEFAULTS:
            return {**_KIND_DEFAULTS[data["kind"]], **data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name in DRIVER_NAMES:
            present = getattr(self, name) is not None
            if name == self.driver and not present:
                raise ValueError(f"driver = {name!r} needs a [profiles.{name}] section")
            if name != self.driver and present:
                raise ValueError(f"[profiles.{name}] given but driver = {self.driver!r}")
        self._check_kind()
        used = _check_templates(self._templates())
        if "port" in used and self.api_port_base is None:
            raise ValueError("{port} is used but api_port_base is not set")
        if self.api_port_base is not None and self.api_port_base + 63 > 65535:
            raise ValueError("api_port_base leaves no room for 64 GPUs below port 65535")
        return self

    def _check_kind(self) -> None:
        if self.kind == "mining":
            if self.algorithm is None:
                raise ValueError("a mining profile needs algorithm")
            if isinstance(self.health, InferenceHealthCheck):
                raise ValueError("a mining profile's health check names miner_api, not server")
            if self.serves_contracts:
                raise ValueError("serves_contracts is for AI profiles")
            if self.driver == "sim" and self.sim_hashrate_hs is None:
                raise ValueError("a simulated miner needs expected_hashrate_hs or sim.hashrate_hs")
        else:
            if self.algorithm is not None or self.expected_hashrate_hs is not None:
                raise ValueError("algorithm and expected_hashrate_hs are for mining profiles")
            if isinstance(self.health, MinerHealthCheck):
                raise ValueError("an AI profile's health check names server, not miner_api")
        if self.health is None and self.driver != "sim":
            raise ValueError(f"driver = {self.driver!r} needs a [profiles.health] check")

    def _templates(self) -> list[str]:
        templates: list[str] = []
        if self.process is not None:
            templates += [*self.process.argv, *self.process.env.values()]
        if self.docker is not None:
            templates += [*(self.docker.cmd or []), *self.docker.env.values()]
            templates += [*self.docker.ports.values(), *self.docker.binds]
        if self.systemd is not None:
            templates.append(self.systemd.unit_template)
        if self.health is not None:
            templates.append(self.health.url)
        if isinstance(self.health, InferenceHealthCheck) and self.health.metrics_url is not None:
            templates.append(self.health.metrics_url)
        return templates

    @property
    def sim_hashrate_hs(self) -> float | None:
        """The hashrate a simulated miner shows: sim.hashrate_hs, else expected_hashrate_hs."""
        if self.sim is not None and self.sim.hashrate_hs is not None:
            return self.sim.hashrate_hs
        return self.expected_hashrate_hs

    def sim_delays_s(self) -> tuple[float, float]:
        """(start, stop) delays of the simulated workload, before time scaling."""
        defaults = _SIM_DEFAULTS[self.kind]
        start = self.sim.start_delay_s if self.sim is not None else None
        stop = self.sim.stop_delay_s if self.sim is not None else None
        return (
            defaults["start_delay_s"] if start is None else start,
            defaults["stop_delay_s"] if stop is None else stop,
        )

    def port_for(self, gpu_index: int) -> int | None:
        """The API port of this profile's workload on GPU `gpu_index`, if it has one."""
        return None if self.api_port_base is None else self.api_port_base + gpu_index


def unique_profile_ids(profiles: list[ProfileSection]) -> list[ProfileSection]:
    """Reject a list that declares one id twice, or one contract served by two profiles
    (a command must name exactly one profile)."""
    seen: set[str] = set()
    served: dict[str, str] = {}
    for profile in profiles:
        if profile.id in seen:
            raise ValueError(f"duplicate profile id {profile.id!r}")
        seen.add(profile.id)
        for contract in profile.serves_contracts:
            if contract in served:
                raise ValueError(
                    f"contract {contract!r} is served by profiles {served[contract]!r}"
                    f" and {profile.id!r}"
                )
            served[contract] = profile.id
    return profiles


# the type of `AgentConfig.profiles`: `profiles: ProfileList = Field(default_factory=list)`
ProfileList = Annotated[list[ProfileSection], AfterValidator(unique_profile_ids)]


class ProfilesSection(Section):
    """A file (or config root) of `[[profiles]]`, with lookup by id."""

    profiles: ProfileList = Field(default_factory=list)

    def get(self, profile_id: str) -> ProfileSection:
        """The profile `profile_id`; `UnknownProfileError` when this agent does not declare it."""
        return find_profile(self.profiles, profile_id)


def find_profile(profiles: Iterable[ProfileSection], profile_id: str) -> ProfileSection:
    """The profile named `profile_id`; `UnknownProfileError` when none is."""
    profiles = list(profiles)
    for profile in profiles:
        if profile.id == profile_id:
            return profile
    raise UnknownProfileError(profile_id, (profile.id for profile in profiles))


def profile_for_workload(profiles: Iterable[ProfileSection], workload_id: str) -> ProfileSection:
    """The profile that runs `workload_id` (`mine:<profile>` or `ai:<contract>`).

    `UnknownProfileError` when none does (also for `idle`, which needs no profile, and for
    an id of neither form).
    """
    profiles = list(profiles)
    parsed = Workload.parse(workload_id)
    kind, name = parsed.kind, parsed.name
    if kind is WorkloadKind.MINING and name:
        for profile in profiles:
            if profile.kind == "mining" and profile.id == name:
                return profile
    elif kind is WorkloadKind.AI and name:
        ai = [profile for profile in profiles if profile.kind == "ai"]
        for profile in ai:
            if name in profile.serves_contracts:
                return profile
        for profile in ai:
            if profile.id == name:
                return profile
    raise UnknownProfileError(workload_id, (profile.id for profile in profiles))
