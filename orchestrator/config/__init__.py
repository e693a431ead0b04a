"""Settings: the TOML config files of `serve` and `agent`, modelled in pydantic v2.

`load_config(path, kind)` reads a file and returns a frozen `ServeConfig` or `AgentConfig`,
or raises `ConfigError` listing each bad key with its reason (`mqtt.port: Input should be
less than or equal to 65535`). `detect_kind` tells the two apart for `config check`: an
agent file is one with a `[node]`, `[gpu]` or `[telemetry]` section.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, overload

from pydantic import ValidationError

from orchestrator.config.roots import AgentConfig, ServeConfig
from orchestrator.errors import ConfigError

__all__ = ["AgentConfig", "ConfigKind", "ServeConfig", "detect_kind", "load_config", "parse_config"]

ConfigKind = Literal["serve", "agent"]
_AGENT_SECTIONS = frozenset({"node", "gpu", "telemetry"})


def detect_kind(document: dict[str, Any]) -> ConfigKind:
    return "agent" if _AGENT_SECTIONS & document.keys() else "serve"


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        reason = item["msg"]
        if item["type"] == "extra_forbidden":
            reason = "unknown key"
        elif "input" in item and not isinstance(item["input"], dict | list):
            reason = f"{reason} (got {item['input']!r})"
        problems.append((key, reason))
    return problems


@overload
def parse_config(
    document: dict[str, Any], kind: Literal["serve"], *, source: str
) -> ServeConfig: ...
@overload
def parse_config(
    document: dict[str, Any], kind: Literal["agent"], *, source: str
) -> AgentConfig: ...
@overload
def parse_config(
    document: dict[str, Any], kind: ConfigKind, *, source: str
) -> ServeConfig | AgentConfig: ...
def parse_config(
    document: dict[str, Any], kind: ConfigKind, *, source: str
) -> ServeConfig | AgentConfig:
    model: type[ServeConfig] | type[AgentConfig] = ServeConfig if kind == "serve" else AgentConfig
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise ConfigError(source, _problems(error)) from None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ConfigError(str(path), [("<file>", error.strerror or str(error))]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), [("<toml>", str(error))]) from None


@overload
def load_config(path: Path, kind: Literal["serve"]) -> ServeConfig: ...
@overload
def load_config(path: Path, kind: Literal["agent"]) -> AgentConfig: ...
@overload
def load_config(path: Path, kind: None = None) -> ServeConfig | AgentConfig: ...
def load_config(path: Path, kind: ConfigKind | None = None) -> ServeConfig | AgentConfig:
    document = read_toml(path)
    return parse_config(document, kind or detect_kind(document), source=str(path))
