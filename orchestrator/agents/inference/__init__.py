"""Inference servers as the agent meets them: readiness probes and draining.

Offers `probe_readiness` (vLLM and TGI `GET /health`, Triton `GET /v2/health/ready`, Ollama
`GET /api/version` + `/api/ps`, generic HTTP 200) returning a `Readiness`, and `wait_drained`
(bounded wait until the server's own gauges show nothing in flight) returning a `DrainResult`.
Both take an injected `aiohttp.ClientSession` and never raise for what a server does.
"""

from orchestrator.agents.inference.drain import (
    IN_FLIGHT_SERIES,
    DrainResult,
    in_flight_from_metrics,
    metrics_url_for,
    read_in_flight,
    wait_drained,
)
from orchestrator.agents.inference.probes import (
    INFERENCE_SERVERS,
    READY_PATHS,
    Readiness,
    probe_readiness,
    readiness_url,
)

__all__ = [
    "INFERENCE_SERVERS",
    "IN_FLIGHT_SERIES",
    "READY_PATHS",
    "DrainResult",
    "Readiness",
    "in_flight_from_metrics",
    "metrics_url_for",
    "probe_readiness",
    "read_in_flight",
    "readiness_url",
    "wait_drained",
]
