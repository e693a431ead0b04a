"""Benchmark: telemetry of 1,250 nodes x 8 GPUs through a real mosquitto into `serve`.

Run as `python bench/bench_ingest.py [--total N] [--json]`. Three subscribers drain the same
burst of `--total` realistic 8-GPU snapshots (about 4.8 kB each, published by
`fleetsim.py` as pre-built packets, so the publisher is never the limit):

- `mosquitto_sub`, mosquitto's own C client, printing only a timestamp per message;
- a bare aiomqtt subscriber that only counts, reading through aiomqtt's public message
  iterator (the baseline the issue names); and the same counter taking each message from
  the client's read callback, where `serve` takes them (the cost of paho's reading alone);
- the central daemon itself (`CentralDaemon`, every task running: ingest, staleness, the
  policy loop with its planner, feeds, HTTP), counted by its own ingest counter.

Each rate is messages over the time from the first to the last message received. Then the
fleet's real load: one message per node per second (1,250 msg/s) for `--steady-s` seconds,
and the daemon's CPU over the second half of it (from /proc/<pid>/stat, planning included).
Targets (issue 7): the daemon >= 50 % of the bare subscriber's rate; the 1 Hz load <= 30 %
of one core. The broker queues up to 1,000,000 messages per client so nothing is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fleetsim

from orchestrator.demo.broker import MosquittoBroker, free_port

NODES = 1250
TOPIC = f"{fleetsim.PREFIX}/nodes/+/telemetry"
IDLE_END_S = 3.0  # a subscriber that heard nothing this long after its last message is done
BROKER_CONFIG = "max_queued_messages 1000000\nmax_queued_bytes 0\nmessage_size_limit 0\n"


# ------------------------------------------------------------------ the subscribers (child roles)


def _report(count: int, first_s: float | None, last_s: float | None, **extra: Any) -> None:
    rate = (count - 1) / (last_s - first_s) if first_s and last_s and last_s > first_s else 0.0
    print(json.dumps({"count": count, "rate": rate, **extra}), flush=True)


async def _bare(port: int, total: int, *, direct: bool = False) -> None:
    """Count messages and nothing else. `direct`: take each message from the client's read
    callback (a queue whose `put_nowait` counts), as `MqttLink` does, instead of through
    aiomqtt's public iterator."""
    import aiomqtt  # noqa: PLC0415  (only this role needs it)

    count = 0
    first_s: float | None = None
    last_s: float | None = None

    def arrived() -> None:
        nonlocal count, first_s, last_s
        last_s = time.perf_counter()
        if first_s is None:
            first_s = last_s
        count += 1

    class Counting(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:  # noqa: ARG002  (only counted)
            arrived()

    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier="bench-bare",
        max_queued_incoming_messages=1_000_000,
        queue_type=Counting if direct else None,
    ) as client:

        async def iterate() -> None:
            async for _ in client.messages:
                arrived()
                if count >= total:
                    return

        await client.subscribe(TOPIC, qos=0)
        print(json.dumps({"ready": True}), flush=True)
        reader = asyncio.create_task(iterate())
        started_s = time.perf_counter()
        while not reader.done() and count < total:  # a look twice a second: nearly free
            await asyncio.sleep(0.5)
            quiet_since_s = started_s if last_s is None else last_s
            if time.perf_counter() - quiet_since_s > (IDLE_END_S if count else 60.0):
                break
        reader.cancel()
    _report(count, first_s, last_s)


async def _serve(port: int, total: int, store: str) -> None:
    """The real central daemon, with a side task that watches its ingest counter."""
    from orchestrator.config import parse_config  # noqa: PLC0415
    from orchestrator.lifecycle import tune_garbage_collector  # noqa: PLC0415
    from orchestrator.logs import configure_logging  # noqa: PLC0415
    from orchestrator.serve import CentralDaemon  # noqa: PLC0415

    document = fleetsim.serve_document(
        broker_port=port, http_port=0, store_path=Path(store), market_feeds=fleetsim.STATIC_FEEDS
    )
    config = parse_config(document, "serve", source="<bench>")
    configure_logging(level="warning", fmt="json")
    daemon = CentralDaemon(config)
    tune_garbage_collector()  # as `orchestrator serve` does
    counter = daemon.ingest._telemetry_count
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await daemon.ready.wait()
    print(json.dumps({"ready": True}), flush=True)
    first_s = last_s = None
    seen = 0
    while seen < total:
        await asyncio.sleep(0.01)
        now_count = int(counter._value.get())
        now_s = time.perf_counter()
        if now_count != seen:
            if first_s is None:
                first_s = now_s
            seen, last_s = now_count, now_s
        elif last_s is not None and now_s - last_s > IDLE_END_S:
            break
    _report(seen, first_s, last_s, plans=daemon.policy.generation)
    if total == 0:  # steady mode: run until told to stop on stdin
        await asyncio.to_thread(sys.stdin.readline)
    stop.set()
    await task


# ------------------------------------------------------------------ the parent


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"child {process.args!r} ended without a result")
    result: dict[str, Any] = json.loads(line)
    return result


def _generator(port: int, *extra: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            str(Path(fleetsim.__file__)),
            *("--port", str(port), "--nodes", str(NODES)),
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    _line(process)  # payloads built
    return process


def burst(port: int, subscriber: subprocess.Popen[str], total: int) -> dict[str, Any]:
    _line(subscriber)  # subscribed
    generator = _generator(port, "--total", str(total))
    generator.wait()
    result = _line(subscriber)
    subscriber.wait(timeout=30)
    return result


def mosquitto_sub_rate(port: int, total: int) -> dict[str, Any]:
    sub = subprocess.Popen(
        ["mosquitto_sub", "-p", str(port), "-t", TOPIC, "-C", str(total), "-W", "120", "-F", "%U"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # subscribed (it prints nothing until a message arrives)
    _generator(port, "--total", str(total)).wait()
    out, _ = sub.communicate(timeout=180)
    stamps = [float(line) for line in out.split()]
    span_s = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    return {"count": len(stamps), "rate": (len(stamps) - 1) / span_s if span_s else 0.0}


def steady_cpu(port: int, store: Path, steady_s: float) -> dict[str, Any]:
    serve = _child("--role", "serve", "--port", str(port), "--total", "0", "--store", str(store))
    _line(serve)  # ready
    generator = _generator(port, "--rate", str(NODES), "--duration-s", str(steady_s))
    _line(serve)  # its first message arrived and the watch loop ended
    time.sleep(steady_s / 2)
    cpu0, t0 = fleetsim.cpu_seconds(serve.pid), time.monotonic()
    time.sleep(steady_s / 2 - 2.0)
    cpu1, t1 = fleetsim.cpu_seconds(serve.pid), time.monotonic()
    rss = fleetsim.rss_mib(serve.pid)
    generator.wait()
    assert serve.stdin is not None
    serve.stdin.write("stop\n")
    serve.stdin.flush()
    serve.wait(timeout=30)
    return {"cpu_fraction": (cpu1 - cpu0) / (t1 - t0), "window_s": t1 - t0, "rss_mib": rss}


def run(total: int, steady_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        broker = MosquittoBroker(Path(tmp) / "broker", port=free_port(), extra_config=BROKER_CONFIG)
        broker.start_sync()
        try:
            port = broker.port
            c_client = mosquitto_sub_rate(port, total)
            bare = burst(
                port,
                _child("--role", "bare", "--port", str(port), "--total", str(total)),
                total,
            )
            direct = burst(
                port,
                _child("--role", "bare-direct", "--port", str(port), "--total", str(total)),
                total,
            )
            store = Path(tmp) / "serve.sqlite3"
            serve = burst(
                port,
                _child(
                    "--role",
                    "serve",
                    "--port",
                    str(port),
                    "--total",
                    str(total),
                    "--store",
                    str(store),
                ),
                total,
            )
            steady = steady_cpu(port, Path(tmp) / "steady.sqlite3", steady_s)
        finally:
            broker.stop_sync()
    return {
        "messages": total,
        "mosquitto_sub_rate": c_client["rate"],
        "bare_aiomqtt_rate": bare["rate"],
        "bare_direct_rate": direct["rate"],
        "serve_rate": serve["rate"],
        "serve_received": serve["count"],
        "serve_fraction_of_bare": serve["rate"] / bare["rate"] if bare["rate"] else 0.0,
        "serve_fraction_of_direct": serve["rate"] / direct["rate"] if direct["rate"] else 0.0,
        "steady_cpu_fraction": steady["cpu_fraction"],
        "steady_window_s": steady["window_s"],
        "steady_rss_mib": steady["rss_mib"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    roles = ["bench", "bare", "bare-direct", "serve"]
    parser.add_argument("--role", choices=roles, default="bench")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--total", type=int, default=40_000)
    parser.add_argument("--store", default="")
    parser.add_argument("--steady-s", type=float, default=40.0)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if args.role in ("bare", "bare-direct"):
        asyncio.run(_bare(args.port, args.total, direct=args.role == "bare-direct"))
        return
    if args.role == "serve":
        asyncio.run(_serve(args.port, args.total, args.store))
        return
    load = fleetsim.load_1min()
    result = run(args.total, args.steady_s)
    result["load_before"] = load
    result["load_after"] = fleetsim.load_1min()
    if args.json:
        print(json.dumps(result))
        return
    print(f"ingest: {args.total} snapshots of 8 GPUs, 1-min load {load:.2f}")
    print(f"  mosquitto_sub (C)      {result['mosquitto_sub_rate']:>9.0f} msg/s")
    print(f"  bare aiomqtt           {result['bare_aiomqtt_rate']:>9.0f} msg/s  (baseline)")
    print(
        f"  bare, read callback    {result['bare_direct_rate']:>9.0f} msg/s  "
        "(counting where serve now takes its messages)"
    )
    print(
        f"  serve                  {result['serve_rate']:>9.0f} msg/s  "
        f"{100 * result['serve_fraction_of_bare']:.0f} % of bare (target >= 50 %), "
        f"{100 * result['serve_fraction_of_direct']:.0f} % of the read-callback counter"
    )
    print(
        f"  serve at 1,250 msg/s   {100 * result['steady_cpu_fraction']:>8.1f} % of a core "
        f"(target <= 30 %), RSS {result['steady_rss_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
