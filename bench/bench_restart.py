"""Benchmark: `serve` restarted over 10,000 GPUs of history, from spawn to `/readyz` 200.

Run as `python bench/bench_restart.py [--restarts N] [--json]`. The store is filled first as
a long-running site leaves it: `--plans` plan generations of a 10k-GPU fleet, each with
`--commands-per-plan` finished switch commands in the journal, `--open` commands still in
flight (restored and re-sent at start), the SLA ledger and market quotes. Then, with the
simulated fleet publishing 1,250 snapshots a second, `python -m orchestrator serve` is
started `--restarts` times; the figure is the wall time from spawn to `/readyz` answering 200
(state loaded and the broker connected). Baseline: the same interpreter importing the CLI
and exiting (the floor any Python daemon pays). Target (issue 7): <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import benchsite
import fleetsim

from orchestrator.central.store import CommandRecord, Store


def fill(store: Store, *, plans: int, per_plan: int, open_commands: int) -> int:
    now_s = time.time() - 86_400.0
    gpus = 1250 * fleetsim.GPUS_PER_NODE
    written = 0
    for generation in range(1, plans + 1):
        at_s = now_s + generation * 30.0
        records = [
            CommandRecord(
                command_id=uuid.uuid4().hex,
                generation=generation,
                gpu=f"{fleetsim.node_name((generation * per_plan + k) % gpus // 8)}:{k % 8}",
                workload="mine:kawpow" if k % 2 else "idle",
                previous="idle" if k % 2 else "mine:kawpow",
                reason="switch to mining: +$0.41/h over idle after switch cost",
                issued_at_s=at_s,
                expires_at_s=at_s + 300.0,
                state="publishing",  # as the policy loop writes it; ended below
                payload=b"{}" * 200,
            )
            for k in range(per_plan)
        ]
        open_left = open_commands if generation == plans else 0
        records = [
            _finished(r, "in_flight" if k < open_left else "done", at_s + 20.0)
            for k, r in enumerate(records)
        ]
        store.record_plan(
            generation=generation,
            at_s=at_s,
            trigger="timer",
            net_usd_per_hour=1234.5,
            commands=records,
            summary={"switches": per_plan, "workloads": {"mine:kawpow": 7500, "ai:acme": 2500}},
        )
        written += len(records)
    store.save_ledger([("acme", now_s, 1000.0, 990.0)], now_s)
    return written


def _finished(record: CommandRecord, state: str, at_s: float) -> CommandRecord:
    return replace(record, state=state, finished_at_s=None if state == "in_flight" else at_s)


def import_floor_s() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import orchestrator.cli"], check=True)
    return time.perf_counter() - started


def run(restarts: int, plans: int, per_plan: int, open_commands: int) -> dict[str, object]:
    with benchsite.BenchSite() as site:
        store = Store(site.store_path)
        started = time.perf_counter()
        commands = fill(store, plans=plans, per_plan=per_plan, open_commands=open_commands)
        store.close()
        fill_s = time.perf_counter() - started
        site.start_fleet(duration_s=600)
        ready_s = []
        for _ in range(restarts):
            ready_s.append(site.start_serve())
            time.sleep(3.0)  # running, restoring the open commands and ingesting
            site.stop_serve()
        floor = [import_floor_s() for _ in range(3)]
        size_mib = site.store_path.stat().st_size / 2**20
    return {
        "plans": plans,
        "commands": commands,
        "open_commands": open_commands,
        "store_mib": size_mib,
        "fill_s": fill_s,
        "ready_s": ready_s,
        "ready_median_s": statistics.median(ready_s),
        "ready_max_s": max(ready_s),
        "import_floor_s": statistics.median(floor),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--plans", type=int, default=2000)
    parser.add_argument("--commands-per-plan", type=int, default=50)
    parser.add_argument("--open", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = fleetsim.load_1min()
    result = run(args.restarts, args.plans, args.commands_per_plan, args.open)
    result["load_before"], result["load_after"] = load, fleetsim.load_1min()
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"restart over {result['plans']} plans, {result['commands']} commands "
        f"({result['open_commands']} open), store {result['store_mib']:.0f} MiB, "
        f"1-min load {load:.2f}"
    )
    print(
        f"  ready in {result['ready_median_s']:.2f} s median, {result['ready_max_s']:.2f} s max "
        f"(target <= 3 s); importing the CLI alone {result['import_floor_s']:.2f} s (baseline)"
    )


if __name__ == "__main__":
    main()
