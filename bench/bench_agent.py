"""Benchmark: one node agent's CPU and memory, 8 fake GPUs sampled and published every second.

Run as `python bench/bench_agent.py [--seconds S] [--json]`. A real `python -m orchestrator
agent` (fake NVML backend, simulated workloads, its HTTP endpoint, the watchdog, the switch
executor idle) publishes to a private mosquitto; after a 10 s warm-up its CPU time is read
from /proc/<pid>/stat over `--seconds` and its resident memory (VmRSS) at the end. Baseline:
an interpreter that imported the agent's modules and sleeps (the memory floor of the same
code loaded). Targets (issue 7): <= 1 % of a core, <= 60 MiB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import benchsite
import fleetsim


def run(seconds: float) -> dict[str, float]:
    with benchsite.BenchSite(nodes=0) as site:
        agent = site.start_agent("bench-agent", interval_s=1.0)
        time.sleep(10.0)
        cpu0, t0 = fleetsim.cpu_seconds(agent.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = fleetsim.cpu_seconds(agent.pid), time.monotonic()
        rss = fleetsim.rss_mib(agent.pid)
        floor = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import orchestrator.agents.agent, orchestrator.cli, time; time.sleep(30)",
            ]
        )
        time.sleep(4.0)
        floor_rss = fleetsim.rss_mib(floor.pid)
        floor.terminate()
        floor.wait()
    return {
        "cpu_fraction": (cpu1 - cpu0) / (t1 - t0),
        "rss_mib": rss,
        "import_floor_rss_mib": floor_rss,
        "window_s": t1 - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = fleetsim.load_1min()
    result: dict[str, float] = run(args.seconds)
    result["load_before"], result["load_after"] = load, fleetsim.load_1min()
    if args.json:
        print(json.dumps(result))
        return
    print(f"agent, 8 fake GPUs at 1 s, over {result['window_s']:.0f} s, 1-min load {load:.2f}")
    print(
        f"  CPU {100 * result['cpu_fraction']:.2f} % of a core (target <= 1 %); "
        f"RSS {result['rss_mib']:.0f} MiB (target <= 60 MiB; "
        f"its modules imported alone: {result['import_floor_rss_mib']:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
