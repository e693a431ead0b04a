"""One root exception, typed by what the caller should do.

`TemporaryError` means "try again later" (a broker away, a feed timing out) and carries
the suggested delay; `PermanentError` means "give up on this input" (a bad config key,
a malformed payload). Callers catch by intent, not by library.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """The root of every error this package raises on purpose."""


class TemporaryError(OrchestratorError):
    """Worth retrying after `delay_s`."""

    def __init__(self, message: str, *, delay_s: float = 1.0) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class PermanentError(OrchestratorError):
    """Retrying the same input will fail the same way."""


class ConfigError(PermanentError):
    """A config file that cannot be used; `problems` holds (key, reason) pairs."""

    def __init__(self, path: str, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  {key}: {reason}" for key, reason in problems)
        super().__init__(f"invalid config {path}:\n{lines}")


class PayloadError(PermanentError):
    """An MQTT payload that was dropped; `reason` is a short metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
