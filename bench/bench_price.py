"""Benchmark: from a price move to the first switch command, at 10,000 GPUs under load.

Run as `python bench/bench_price.py [--moves N] [--json]`. The bench site's kawpow hashprice
comes from an `http_json` feed served by this script (polled every 0.5 s); the rest of the
market is static. With the fleet settled and publishing 1,250 snapshots a second, the price
is moved (down 100x, then back up, `--moves` times): mining stops paying on the consumer
cards, so the next plan switches thousands of GPUs to idle (and back). The figure is the time
from the moment the feed first served the new price to `serve` (the daemon learns of the
move) to the first command on `nodes/+/commands`, seen by a subscriber here; it includes the
poll's handling, the 0.25 s policy tick, the plan at 10k GPUs, the store write of the plan's
commands and the publication. Also reported: when the last command of that plan went out.
Baseline: the plan's own duration (`orchestrator_plan_duration_seconds`). Target: <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiomqtt
import benchsite
import fleetsim

from orchestrator.demo.broker import free_port

HIGH, LOW = 1.2e-8, 1.2e-10


class PriceServer:
    def __init__(self) -> None:
        self.value = HIGH
        self.changed_at: float | None = None
        self.first_served_at: float | None = None
        self.port = free_port()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"price": server.value}).encode()
                if server.changed_at is not None and server.first_served_at is None:
                    server.first_served_at = time.time()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def move(self, value: float) -> None:
        self.value = value
        self.first_served_at = None
        self.changed_at = time.time()


def feeds(port: int) -> list[dict[str, Any]]:
    others = [f for f in fleetsim.STATIC_FEEDS if f.get("algorithm") != "kawpow"]
    live = {
        "type": "http_json",
        "name": "kawpow-live",
        "url": f"http://127.0.0.1:{port}/price",
        "json_path": "price",
        "unit": "usd_per_hs_day",
        "algorithm": "kawpow",
        "interval_s": 0.5,
        "staleness_s": 120.0,
    }
    return [live, *others]


async def watch(
    site: benchsite.BenchSite, prices: PriceServer, moves: int
) -> list[dict[str, float]]:
    results = []
    async with aiomqtt.Client(
        "127.0.0.1", site.broker.port, max_queued_incoming_messages=1_000_000
    ) as client:
        await client.subscribe(f"{fleetsim.PREFIX}/nodes/+/commands", qos=1)
        messages = client.messages
        for k in range(moves):
            prices.move(LOW if k % 2 == 0 else HIGH)
            target = "idle" if k % 2 == 0 else "mine:kawpow"
            first = last = None
            seen: set[str] = set()
            while True:
                try:
                    message = await asyncio.wait_for(anext(messages), timeout=5.0 if seen else 30.0)
                except TimeoutError:
                    break
                now_s = time.time()
                command = json.loads(bytes(message.payload))
                fresh = command["issued_at_s"] >= (prices.changed_at or 0.0)
                if not fresh or command["workload"] != target or command["command_id"] in seen:
                    continue  # a retry of an earlier move's command
                seen.add(command["command_id"])
                first = first or now_s
                last = now_s
            count = len(seen)
            served = prices.first_served_at
            if first is None or served is None:
                raise RuntimeError("no command followed the price move")
            results.append(
                {"first_s": first - served, "last_s": (last or first) - served, "commands": count}
            )
            await asyncio.sleep(15.0)  # the fleet's unanswered commands time out or settle
    return results


def run(moves: int) -> dict[str, object]:
    prices = PriceServer()
    with benchsite.BenchSite(market_feeds=feeds(prices.port)) as site:
        site.start_serve()
        site.start_fleet(duration_s=900)
        site.wait_for_gpus(site.nodes * fleetsim.GPUS_PER_NODE)
        time.sleep(12)  # past the warm-up: the settled fleet's first plan holds
        results = asyncio.run(watch(site, prices, moves))
        metrics = benchsite.http_get(f"{site.url}/metrics")[1].decode()
    plan_sum = plan_count = 0.0
    for line in metrics.splitlines():
        if line.startswith("orchestrator_plan_duration_seconds_sum"):
            plan_sum = float(line.split()[-1])
        elif line.startswith("orchestrator_plan_duration_seconds_count"):
            plan_count = float(line.split()[-1])
    firsts = [r["first_s"] for r in results]
    return {
        "moves": results,
        "first_command_median_s": statistics.median(firsts),
        "first_command_max_s": max(firsts),
        "plan_mean_s": plan_sum / plan_count if plan_count else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = fleetsim.load_1min()
    result = run(args.moves)
    result["load_before"], result["load_after"] = load, fleetsim.load_1min()
    if args.json:
        print(json.dumps(result))
        return
    print(f"price reaction at 10k GPUs under 1,250 msg/s, 1-min load {load:.2f}")
    moves, plan_mean_s = result["moves"], result["plan_mean_s"]
    assert isinstance(moves, list)
    assert isinstance(plan_mean_s, float)
    for move in moves:
        print(
            f"  move: first command after {move['first_s']:.2f} s, "
            f"last of {move['commands']} after {move['last_s']:.2f} s"
        )
    print(
        f"  first command: median {result['first_command_median_s']:.2f} s, "
        f"max {result['first_command_max_s']:.2f} s (target <= 1 s); "
        f"a plan takes {plan_mean_s * 1000:.0f} ms (baseline)"
    )


if __name__ == "__main__":
    main()
