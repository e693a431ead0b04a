"""Benchmark: `/api/v1/state` and `/metrics` of `serve` at 10,000 GPUs, under the fleet's load.

Run as `python bench/bench_http.py [--requests N] [--json]`. A bench site (`benchsite.py`):
mosquitto, the real `orchestrator serve`, and 1,250 simulated nodes x 8 GPUs publishing one
snapshot per node per second throughout. Once every GPU is known and a plan exists, each
endpoint is fetched `--requests` times one after another; the figure is the median and p90
of the client's wall time, next to `/healthz` (the floor of the HTTP stack, the baseline).
Targets (issue 7): `/api/v1/state` <= 100 ms, `/metrics` <= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import benchsite
import fleetsim

ENDPOINTS = {"/healthz": None, "/api/v1/state": 100.0, "/metrics": 300.0}


def timed(url: str, requests: int) -> dict[str, float]:
    timings_ms, size = [], 0
    for _ in range(requests):
        started = time.perf_counter()
        status, body = benchsite.http_get(url)
        timings_ms.append((time.perf_counter() - started) * 1000.0)
        if status != 200:
            raise RuntimeError(f"{url} answered {status}")
        size = len(body)
        time.sleep(1.0)  # a scrape a second: every node has sent a new snapshot since
    return {
        "median_ms": statistics.median(timings_ms),
        "p90_ms": statistics.quantiles(timings_ms, n=10)[-1],
        "bytes": size,
    }


def run(requests: int) -> dict[str, object]:
    with benchsite.BenchSite() as site:
        site.start_serve()
        site.start_fleet(duration_s=600)
        site.wait_for_gpus(site.nodes * fleetsim.GPUS_PER_NODE)
        time.sleep(12)  # past the warm-up: the first plan exists, its reasons are in the state
        state = json.loads(benchsite.http_get(f"{site.url}/api/v1/state")[1])
        results = {path: timed(site.url + path, requests) for path in ENDPOINTS}
    return {
        "gpus": state["summary"]["gpus_total"],
        "plan_generation": state["plan_generation"],
        "endpoints": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = fleetsim.load_1min()
    result = run(args.requests)
    result["load_before"], result["load_after"] = load, fleetsim.load_1min()
    if args.json:
        print(json.dumps(result))
        return
    print(f"HTTP at {result['gpus']} GPUs under 1,250 msg/s, 1-min load {load:.2f}")
    endpoints = result["endpoints"]
    assert isinstance(endpoints, dict)
    for path, target in ENDPOINTS.items():
        r = endpoints[path]
        goal = f"<= {target:.0f} ms" if target else "(baseline)"
        print(
            f"  {path:16s} median {r['median_ms']:7.1f} ms  p90 {r['p90_ms']:7.1f} ms  "
            f"{r['bytes'] / 1024:8.0f} KiB  {goal}"
        )


if __name__ == "__main__":
    main()
