"""The one error a miner reader raises, typed by what the caller should do.

Every failure of a miner reading -- an unreachable API, a timeout, a body that is not JSON, a
document of the wrong shape, a negative or NaN hashrate -- surfaces as `MinerApiError`, with a
short machine-readable `reason` (a metric label) and a human `detail`. The watchdog and the CLI
catch this one class and never crash on miner output.

`MinerUnreachableError` is the retry-later subclass: the miner did not answer (connection refused,
timeout, HTTP error status). A miner that answered with garbage gets the plain `MinerApiError`:
asking again a second later will usually give the same garbage.
"""

from __future__ import annotations

from orchestrator.errors import OrchestratorError


class MinerApiError(OrchestratorError):
    """A miner API reading could not be turned into a `MinerReading`.

    `reason` is one of a small fixed set: ``not_json``, ``wrong_shape``, ``bad_value``,
    ``bad_unit``, ``miner_error``, ``unknown_api``, ``too_large``, ``unreachable``, ``timeout``,
    ``http_status``, ``no_source``.
    """

    def __init__(self, reason: str, detail: str, *, miner: str | None = None) -> None:
        prefix = f"{miner}: " if miner else ""
        super().__init__(f"{prefix}{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.miner = miner


class MinerUnreachableError(MinerApiError):
    """The miner did not answer in time or at all; worth retrying later."""
