"""Benchmark: from a decision to the agent's acknowledgement, under the 10k-GPU telemetry load.

Run as `python bench/bench_dispatch.py [--samples N] [--json]`. A bench site with four real
agents (`orchestrator agent`, 8 fake RTX 3090s each, simulated workloads) beside 1,246
simulated nodes. Decisions are made through the operators' API: an override pins one of
the agents' GPUs to `idle`, then back to `mine:kawpow` (the previous override deleted), one
GPU at a time; each makes a plan and one switch command. The latency of a sample is from
the command's `issued_at_s` (the daemon's clock when the plan's commands were prepared) to
the arrival of the agent's `accepted` event at a subscriber here (same machine, same clock).
First `--baseline` samples with only the four agents reporting (the baseline), then
`--samples` with the fleet's 1,250 snapshots a second flowing. Target: p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import aiomqtt
import benchsite
import fleetsim

AGENTS = [f"agent-{k:02d}" for k in range(1, 5)]


class Observer:
    def __init__(self) -> None:
        self.issued: dict[str, float] = {}
        self.accepted: dict[str, float] = {}

    async def run(self, port: int, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            for node in AGENTS:
                await client.subscribe(f"{fleetsim.PREFIX}/nodes/{node}/commands", qos=1)
                await client.subscribe(f"{fleetsim.PREFIX}/nodes/{node}/events", qos=1)
            ready.set()
            async for message in client.messages:
                now_s = time.time()
                body = json.loads(bytes(message.payload))
                if str(message.topic).endswith("/commands"):
                    self.issued.setdefault(body["command_id"], body["issued_at_s"])
                elif body.get("state") == "accepted":
                    self.accepted.setdefault(body["command_id"], now_s)


async def sample(
    site: benchsite.BenchSite, observer: Observer, gpu: str, state: dict[str, Any]
) -> float:
    previous = state.get(gpu)
    if previous is not None:
        await asyncio.to_thread(_delete, site, previous["id"])
    workload = "idle" if previous is None or previous["workload"] != "idle" else "mine:kawpow"
    before = set(observer.accepted)
    status, body = await asyncio.to_thread(
        benchsite.http_post,
        f"{site.url}/api/v1/overrides",
        {"gpus": [gpu], "workload": workload, "reason": "bench", "ttl_s": 3600, "force": True},
    )
    if status != 201:
        raise RuntimeError(f"override refused: {status} {body}")
    state[gpu] = {"id": body["id"], "workload": workload}
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        for command_id in set(observer.accepted) - before:
            if command_id in observer.issued:
                return observer.accepted[command_id] - observer.issued[command_id]
        await asyncio.sleep(0.005)
    raise RuntimeError(f"no acknowledgement for {gpu}")


def _delete(site: benchsite.BenchSite, override_id: str) -> None:
    import urllib.request  # noqa: PLC0415

    request = urllib.request.Request(  # noqa: S310  (loopback)
        f"{site.url}/api/v1/overrides/{override_id}", headers=benchsite.AUTH, method="DELETE"
    )
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310
        pass


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000, "n": len(values)}


async def measure(site: benchsite.BenchSite, baseline: int, samples: int) -> dict[str, Any]:
    observer, ready = Observer(), asyncio.Event()
    task = asyncio.create_task(observer.run(site.broker.port, ready))
    await ready.wait()
    state: dict[str, Any] = {}
    gpus = [f"{node}:{i}" for i in range(8) for node in AGENTS]
    await asyncio.sleep(12)  # warm-up and the first plan
    quiet = [await sample(site, observer, gpus[k % len(gpus)], state) for k in range(baseline)]
    site.start_fleet(duration_s=900, nodes=site.nodes - len(AGENTS))
    await asyncio.to_thread(site.wait_for_gpus, site.nodes * fleetsim.GPUS_PER_NODE)
    await asyncio.sleep(5)
    loaded = [
        await sample(site, observer, gpus[(baseline + k) % len(gpus)], state)
        for k in range(samples)
    ]
    task.cancel()
    return {"baseline": percentiles(quiet), "loaded": percentiles(loaded)}


def run(baseline: int, samples: int) -> dict[str, Any]:
    with benchsite.BenchSite() as site:
        site.start_serve()
        for node in AGENTS:
            site.start_agent(node)
        return asyncio.run(measure(site, baseline, samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=int, default=16)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = fleetsim.load_1min()
    result = run(args.baseline, args.samples)
    result["load_before"], result["load_after"] = load, fleetsim.load_1min()
    if args.json:
        print(json.dumps(result))
        return
    print(f"dispatch: decision -> agent ack, 1-min load {load:.2f}")
    for name in ("baseline", "loaded"):
        r = result[name]
        print(f"  {name:9s} n={r['n']:3d}  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms")
    print("  target: p99 <= 100 ms under load")


if __name__ == "__main__":
    main()
