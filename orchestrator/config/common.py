"""Sections that `serve` and `agent` share: the broker, logging, the HTTP listener.

Secrets never sit in the TOML file itself: a section names a file (a systemd credential
under `$CREDENTIALS_DIRECTORY` works) or an environment variable, and `resolve_secret`
reads it when the daemon starts. The value is a `SecretStr`, so it never reaches a log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from orchestrator.config._base import Section
from orchestrator.errors import ConfigError


class SecretRef(Section):
    """Where a secret comes from: exactly one of a file or an environment variable."""

    file: Path | None = None
    env: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of 'file' or 'env'")
        return self


def resolve_secret(ref: SecretRef, *, key: str) -> SecretStr:
    """Read a secret now; a missing file or variable is a config error naming `key`."""
    if ref.file is not None:
        path = ref.file
        if not path.is_absolute() and "CREDENTIALS_DIRECTORY" in os.environ:
            path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / path
        try:
            return SecretStr(path.read_text().strip())
        except OSError as error:
            raise ConfigError(
                str(path), [(key, f"cannot read secret file: {error.strerror}")]
            ) from None
    assert ref.env is not None  # noqa: S101  (guaranteed by the validator)
    value = os.environ.get(ref.env)
    if value is None:
        raise ConfigError("<environment>", [(key, f"environment variable {ref.env} is not set")])
    return SecretStr(value)


class TlsSection(Section):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False


class MqttSection(Section):
    """The broker connection. The topic prefix is `fleet/v1/<site>` unless given."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    site: str = Field(default="site", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    topic_prefix: str | None = Field(default=None, min_length=1)
    client_id: str | None = None
    username: str | None = None
    password: SecretRef | None = None
    keepalive_s: int = Field(default=15, ge=2, le=3600)
    reconnect_initial_s: float = Field(default=0.5, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    tls: TlsSection = TlsSection()

    @property
    def prefix(self) -> str:
        return self.topic_prefix or f"fleet/v1/{self.site}"

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self


class LogSection(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: readable on a terminal, JSON lines otherwise (journald)
    format: Literal["auto", "json", "console"] = "auto"


class TokenSection(Section):
    """An API token: its holder, role, and the SHA-256 of the token (never the token)."""

    name: str = Field(min_length=1, max_length=64)
    role: Literal["viewer", "operator"]
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


class HttpSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=9850, ge=0, le=65535)
    # bearer tokens for /api/v1 (serve only); `orchestrator token new` makes one
    tokens: list[TokenSection] = Field(default_factory=list)
