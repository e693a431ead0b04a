"""Every figure of issue 7 in one run, each beside its baseline and target.

Run as `python bench/run_all.py [--quick] [--with-backtest]`. Runs each benchmark as its own
process (one command per figure: `bench_ingest.py`, `bench_plan.py`, `bench_dispatch.py`,
`bench_http.py`, `bench_restart.py`, `bench_agent.py`, `bench_price.py`; `bench_backtest.py`
with `--with-backtest`, it takes minutes), then prints the machine (nproc, CPU model, RAM,
Python, load average before and after) and one line per figure. Other work on the machine
disturbs the figures: take them when the 1-minute load is low, and repeat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fleetsim

HERE = Path(__file__).resolve().parent


def bench(name: str, *args: str) -> dict[str, Any]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(HERE / name), "--json", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["took_s"] = time.perf_counter() - started
    print(f"  ran {name} in {result['took_s']:.0f} s (load {fleetsim.load_1min():.2f})", flush=True)
    return result


def plan_figures(repeats: int) -> dict[int, float]:
    out = subprocess.run(
        [sys.executable, str(HERE / "bench_plan.py"), "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit():
            figures[int(parts[0])] = float(parts[1])
    return figures


def backtest_seconds(*args: str) -> float:
    out = subprocess.run(
        [sys.executable, str(HERE / "bench_backtest.py"), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    last = [line for line in out.splitlines() if line.startswith("total")][-1]
    return float(last.split()[1])


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples everywhere")
    parser.add_argument("--with-backtest", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    before = fleetsim.machine()
    print(f"machine: {json.dumps(before)}", flush=True)
    ingest = bench("bench_ingest.py", "--total", "20000" if quick else "40000")
    plan = plan_figures(5 if quick else 15)
    print(f"  ran bench_plan.py (load {fleetsim.load_1min():.2f})", flush=True)
    dispatch = bench("bench_dispatch.py", "--samples", "24" if quick else "100")
    http = bench("bench_http.py", "--requests", "10" if quick else "20")
    restart = bench("bench_restart.py", "--restarts", "2" if quick else "3")
    agent = bench("bench_agent.py", "--seconds", "20" if quick else "60")
    price = bench("bench_price.py", "--moves", "2" if quick else "4")
    backtest = None
    if args.with_backtest:
        backtest = (backtest_seconds(), backtest_seconds("--power-cap-kw", "200"))
    after = fleetsim.machine()

    ep = http["endpoints"]
    rows = [
        (
            "ingest rate (serve)",
            f"{ingest['serve_rate']:.0f} msg/s",
            (
                f"bare aiomqtt {ingest['bare_aiomqtt_rate']:.0f} "
                f"({ingest['bare_direct_rate']:.0f} from its read callback), "
                f"mosquitto_sub {ingest['mosquitto_sub_rate']:.0f}"
            ),
            ">= 50 % of bare",
            verdict(ingest["serve_fraction_of_bare"] >= 0.5),
        ),
        (
            "ingest CPU at 1,250 msg/s",
            f"{100 * ingest['steady_cpu_fraction']:.1f} % core",
            "-",
            "<= 30 %",
            verdict(ingest["steady_cpu_fraction"] <= 0.30),
        ),
        *(
            (
                f"plan {n // 1000}k GPUs (median)",
                f"{ms:.0f} ms",
                "-",
                "<= 250 ms" if n == 10_000 else "-",
                verdict(ms <= 250) if n == 10_000 else "",
            )
            for n, ms in sorted(plan.items())
        ),
        (
            "dispatch p50 / p99",
            f"{dispatch['loaded']['p50_ms']:.0f} / {dispatch['loaded']['p99_ms']:.0f} ms",
            (
                f"no load {dispatch['baseline']['p50_ms']:.0f} / "
                f"{dispatch['baseline']['p99_ms']:.0f} ms"
            ),
            "p99 <= 100 ms",
            verdict(dispatch["loaded"]["p99_ms"] <= 100),
        ),
        (
            "/api/v1/state (median)",
            f"{ep['/api/v1/state']['median_ms']:.0f} ms",
            f"/healthz {ep['/healthz']['median_ms']:.1f} ms",
            "<= 100 ms",
            verdict(ep["/api/v1/state"]["median_ms"] <= 100),
        ),
        (
            "/metrics (median)",
            f"{ep['/metrics']['median_ms']:.0f} ms",
            f"/healthz {ep['/healthz']['median_ms']:.1f} ms",
            "<= 300 ms",
            verdict(ep["/metrics"]["median_ms"] <= 300),
        ),
        (
            "restart to ready (median)",
            f"{restart['ready_median_s']:.2f} s",
            f"import floor {restart['import_floor_s']:.2f} s",
            "<= 3 s",
            verdict(restart["ready_median_s"] <= 3),
        ),
        (
            "agent CPU / RSS",
            f"{100 * agent['cpu_fraction']:.2f} % / {agent['rss_mib']:.0f} MiB",
            f"imports alone {agent['import_floor_rss_mib']:.0f} MiB",
            "<= 1 % / <= 60 MiB",
            verdict(agent["cpu_fraction"] <= 0.01 and agent["rss_mib"] <= 60),
        ),
        (
            "price move -> command (median)",
            f"{price['first_command_median_s']:.2f} s",
            f"plan {price['plan_mean_s'] * 1000:.0f} ms",
            "<= 1 s",
            verdict(price["first_command_median_s"] <= 1.0),
        ),
    ]
    if backtest is not None:
        rows.append(
            (
                "backtest 1 y hourly, 1k GPUs",
                f"{backtest[0]:.1f} s / capped {backtest[1]:.1f} s",
                "earlier 30.7 / 152 s",
                "<= 60 s",
                verdict(max(backtest) <= 60),
            )
        )
    print(f"load average before {before['load_avg']}, after {after['load_avg']}")
    print(f"{'figure':32s} {'result':22s} {'baseline':38s} {'target':20s}")
    for name, result, baseline, target, ok in rows:
        print(f"{name:32s} {result:22s} {baseline:38s} {target:20s} {ok}")


if __name__ == "__main__":
    main()
