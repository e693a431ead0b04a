"""Draining an inference server before its GPU is switched: let in-flight requests finish.

The agent cannot stop a real server from admitting work (that is the load balancer's job, or
the sim driver's `Drainable` ability); what it can do is wait, bounded, until the server has
nothing in flight, reading the server's own Prometheus gauges:

- vLLM: `vllm:num_requests_running` + `vllm:num_requests_waiting`
- TGI: `tgi_queue_size` + `tgi_batch_current_size`
- Triton: `nv_inference_pending_request_count` (summed over models; Triton serves metrics on
  its metrics port, 8002, so the profile gives `metrics_url`)

Where no count can be read (Ollama and generic servers have no such gauge, or the endpoint
is down), the wait is a plain grace period of `timeout_s`: bounded, never forever. The
result says which of the two it was, so the executor can report it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from orchestrator.agents.inference.probes import base_url

IN_FLIGHT_SERIES: dict[str, tuple[str, ...]] = {
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    "tgi": ("tgi_queue_size", "tgi_batch_current_size"),
    "triton": ("nv_inference_pending_request_count",),
}
DEFAULT_METRICS_SERVERS = frozenset({"vllm", "tgi"})  # metrics on the API port at /metrics
_MAX_METRICS_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DrainResult:
    drained: bool  # nothing in flight at the end (False after a plain grace period)
    observed: bool  # the in-flight count could be read
    in_flight: int | None  # the last count read
    waited_s: float

    @property
    def detail(self) -> str:
        if not self.observed:
            return f"no in-flight count readable; waited {self.waited_s:.1f} s"
        if self.drained:
            return f"drained in {self.waited_s:.1f} s"
        return f"{self.in_flight} requests still in flight after {self.waited_s:.1f} s"


def metrics_url_for(server: str, url: str, metrics_url: str | None) -> str | None:
    """Where `server`'s in-flight gauges are: `metrics_url`, else `<base>/metrics` (vLLM, TGI)."""
    if server not in IN_FLIGHT_SERIES:
        return None
    if metrics_url is not None:
        return metrics_url if "://" in metrics_url else f"http://{metrics_url}"
    if server in DEFAULT_METRICS_SERVERS:
        return base_url(url) + "/metrics"
    return None


def in_flight_from_metrics(server: str, text: str) -> int | None:
    """The requests in flight according to a Prometheus text exposition; None if absent."""
    wanted = IN_FLIGHT_SERIES.get(server, ())
    total = 0.0
    seen = False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_end = len(line)
        for stop in ("{", " "):
            position = line.find(stop)
            if position != -1:
                name_end = min(name_end, position)
        if line[:name_end] not in wanted:
            continue
        value = line[line.rfind("}") + 1 :].split() if "}" in line else line.split()[1:]
        try:
            total += float(value[0])
        except (IndexError, ValueError):
            continue
        seen = True
    return round(total) if seen else None


async def read_in_flight(
    session: aiohttp.ClientSession, server: str, metrics_url: str, *, timeout_s: float
) -> int | None:
    """One read of the in-flight count; None when it cannot be read."""
    try:
        async with session.get(
            metrics_url, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            if response.status != 200:
                return None
            body = await response.content.read(_MAX_METRICS_BYTES)
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None
    return in_flight_from_metrics(server, body.decode(errors="replace"))


async def wait_drained(
    session: aiohttp.ClientSession,
    server: str,
    url: str,
    *,
    metrics_url: str | None,
    timeout_s: float,
    poll_s: float = 0.5,
) -> DrainResult:
    """Wait until nothing is in flight, at most `timeout_s`; a grace period when unobservable."""
    started = time.monotonic()
    deadline = started + timeout_s
    where = metrics_url_for(server, url, metrics_url)
    observed = False
    count: int | None = None
    while True:
        remaining_s = deadline - time.monotonic()
        if where is not None:
            count = await read_in_flight(
                session, server, where, timeout_s=max(0.1, min(2.0, remaining_s))
            )
            observed = observed or count is not None
            if count == 0:
                return DrainResult(
                    drained=True, observed=True, in_flight=0, waited_s=time.monotonic() - started
                )
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            return DrainResult(
                drained=False,
                observed=observed,
                in_flight=count,
                waited_s=time.monotonic() - started,
            )
        await asyncio.sleep(min(poll_s, remaining_s) if observed else remaining_s)
