"""Benchmark: how long a switch wave takes under a binding site cap, and what deciding costs.

Run as `python bench/bench_wave.py [--nodes N] [--json]`. The simulated site of
`tests/central/wavesim.py` (nodes of 8 H200s; on even nodes every GPU mines at 690 W, on odd
nodes every GPU serves AI at 300 W; agents run four switches at a time with the stop, start
and power-ramp timings there) swaps its workloads: the miners go to AI, the AI GPUs go
mining. The serve side is the product's own (`Ingest`, `FleetState`, `Dispatcher` with its
wave, a SQLite `Store` in a temporary folder). Three runs of the same swap:

- `uncapped`: no cap known to the dispatcher (everything sent at once, stops first);
- `capped`: the cap 5 kW above the site's draw before the swap;
- `capped+ramp`: the same cap and a ramp limit of 5 % of the cap a minute.

For each: the simulated seconds until every GPU runs its target (the wave's length), the
peak of the site's metered board power against the cap, and the wall time of the wave's
release decisions (`Dispatcher.release_held`, called once per 0.5 s simulated step, as the
`wave` task would be woken by that step's telemetry and events).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.central.wave import BoardAsWall, WaveSettings  # noqa: E402
from orchestrator.domain import GpuKey  # noqa: E402
from tests.central.wavesim import AI, MINE, SimSite, build_serve  # noqa: E402
from tests.fakes import Clock  # noqa: E402

GPUS_PER_NODE = 8
STEP_S = 0.5


def whole(key: str) -> str:
    return MINE if int(GpuKey.parse(key).node[3:]) % 2 == 0 else AI


async def one_run(nodes: int, *, capped: bool, ramp: bool) -> dict[str, Any]:
    clock = Clock(50_000.0)
    site = SimSite(nodes=nodes, gpus_per_node=GPUS_PER_NODE, initial=whole, clock=clock)
    start_w = sum(site.board_w().values())
    cap_w = start_w + 5_000.0
    settings = WaveSettings(ramp_limit_w_per_minute=0.05 * cap_w if ramp else None)
    with tempfile.TemporaryDirectory() as folder:
        serve = build_serve(
            site,
            clock,
            Path(folder) / "serve.sqlite3",
            power=BoardAsWall(cap_w / 1000.0 if capped else None),
            wave=settings,
        )
        for _ in range(3):
            serve.deliver(site.step())
            clock.advance(STEP_S)
        targets = {key: (AI if w == MINE else MINE) for key, w in site.workloads().items()}
        began_s = clock.now_s
        ordered = time.perf_counter()
        await serve.order(targets)
        order_ms = (time.perf_counter() - ordered) * 1000
        held_at_start = len(serve.dispatcher.held)
        decisions_ms: list[float] = []
        peak_w = 0.0
        while clock.now_s - began_s < 7200.0:
            serve.deliver(site.step())
            serve.dispatcher.expire_overdue()
            if serve.dispatcher.held:
                started = time.perf_counter()
                await serve.dispatcher.release_held()
                decisions_ms.append((time.perf_counter() - started) * 1000)
            peak_w = max(peak_w, sum(site.board_w().values()))
            done = site.idle() and not serve.dispatcher.in_flight and not serve.dispatcher.held
            if done:
                break
            clock.advance(STEP_S)
        serve.store.close()
    decisions_ms.sort()
    return {
        "run": "uncapped" if not capped else ("capped+ramp" if ramp else "capped"),
        "gpus": nodes * GPUS_PER_NODE,
        "completed": site.workloads() == targets,
        "wave_s": round(clock.now_s - began_s, 1),
        "cap_kw": round(cap_w / 1000, 1),
        "peak_kw": round(peak_w / 1000, 1),
        "over_cap_kw": round(max(0.0, peak_w - cap_w) / 1000, 1),
        "held_after_order": held_at_start,
        "order_ms": round(order_ms, 1),
        "decisions": len(decisions_ms),
        "decision_ms_median": round(statistics.median(decisions_ms), 2) if decisions_ms else 0,
        "decision_ms_max": round(decisions_ms[-1], 2) if decisions_ms else 0,
    }


async def main_async(nodes: int) -> list[dict[str, Any]]:
    return [
        await one_run(nodes, capped=False, ramp=False),
        await one_run(nodes, capped=True, ramp=False),
        await one_run(nodes, capped=True, ramp=True),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=125, help="nodes of 8 GPUs (125: 1,000)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import structlog  # noqa: PLC0415  (quiet: one log line per command would drown the figures)

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    results = asyncio.run(main_async(args.nodes))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(
            f"{r['run']:12} {r['gpus']} GPUs: wave {r['wave_s']:7.1f} s simulated,"
            f" peak {r['peak_kw']} kW / cap {r['cap_kw']} kW (over by {r['over_cap_kw']} kW),"
            f" held after order {r['held_after_order']}, order {r['order_ms']} ms,"
            f" {r['decisions']} decisions: median {r['decision_ms_median']} ms,"
            f" max {r['decision_ms_max']} ms, completed {r['completed']}"
        )


if __name__ == "__main__":
    main()
