"""A simulated fleet for the benchmarks: realistic telemetry, published without Python in the way.

Python MQTT clients move about 10k messages/s, far less than mosquitto does, so a load
generator built on one would measure itself. This one builds every node's `NodeTelemetry`
once with the fake GPU backend (the same readings an agent would send: 8 GPUs, processes,
workload, hashrate), encodes each as a complete MQTT 3.1.1 PUBLISH packet (QoS 0), and then
only writes pre-built bytes to a socket: `blast` sends them as fast as the kernel takes them,
`paced` sends one per node per interval in small batches (the fleet's real 1 Hz load).

Also here: the machine's description, CPU and RSS of a process from /proc, a bench site's
serve config (written as TOML), and a tiny MQTT connect used by the generator.

Run as a process of its own so that its CPU is not the daemon's:
`python bench/fleetsim.py --port P --nodes 1250 --rate 1250 --duration-s 30`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.agents.gpu.fake import FakeGpuBackend  # noqa: E402
from orchestrator.protocol import NodeTelemetry, Topics, WorkloadReport, encode  # noqa: E402

SITE = "bench"
PREFIX = f"fleet/v1/{SITE}"
GPUS_PER_NODE = 8
# a mixed site: consumer cards mine, datacentre cards serve AI (as in the demo)
NODE_MODELS = ["rtx-3090", "rtx-3090", "rtx-4090", "a100-sxm4-80gb"]
NODE_WORKLOADS = {"rtx-3090": "mine:kawpow", "rtx-4090": "mine:kawpow"}
HASHRATE_HS = {"rtx-3090": 58e6, "rtx-4090": 115e6}
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ payloads


def node_name(index: int) -> str:
    return f"sim-{index:05d}"


def node_telemetry(node: str, index: int, *, now_s: float) -> NodeTelemetry:
    model = NODE_MODELS[index % len(NODE_MODELS)]
    workload = NODE_WORKLOADS.get(model, "ai:acme")
    backend = FakeGpuBackend(
        node=node,
        gpus=GPUS_PER_NODE,
        models=[model],
        seed=index,
        initial_workloads=[workload],
        clock=lambda: now_s,
    )
    backend.open()
    report = WorkloadReport(
        workload=workload, since_s=now_s - 7200.0, hashrate_hs=HASHRATE_HS.get(model)
    )
    gpus = tuple(gpu.model_copy(update={"workload": report}) for gpu in backend.sample())
    return NodeTelemetry(
        node=node,
        seq=1,
        sent_at_s=now_s,
        agent_version="0.1.0",
        nvml_backend="fake",
        driver_version=backend.driver_version(),
        gpus=gpus,
    )


def fleet_messages(nodes: int, *, first: int = 0) -> list[tuple[str, bytes]]:
    """`(topic, payload)` for nodes `first .. first + nodes - 1`."""
    topics = Topics(PREFIX)
    now_s = time.time()
    return [
        (topics.telemetry(node_name(i)), encode(node_telemetry(node_name(i), i, now_s=now_s)))
        for i in range(first, first + nodes)
    ]


# ------------------------------------------------------------------ MQTT 3.1.1, by hand


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def publish_packet(topic: str, payload: bytes) -> bytes:
    body = _string(topic) + payload
    return b"\x30" + _remaining_length(len(body)) + body


def connect(host: str, port: int, client_id: str) -> socket.socket:
    """An MQTT connection (clean session, no keepalive) ready for QoS 0 publishes."""
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    variable = _string("MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big")
    body = variable + _string(client_id)
    sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
    connack = sock.recv(4)
    if len(connack) != 4 or connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"broker refused the connection: {connack!r}")
    return sock


def blast(host: str, port: int, packets: list[bytes], *, total: int) -> float:
    """Send `total` messages (cycling over the nodes) as fast as possible; return seconds."""
    sock = connect(host, port, f"fleetsim-blast-{os.getpid()}")
    chunk = b"".join(packets)
    started = time.perf_counter()
    sent = 0
    while sent + len(packets) <= total:
        sock.sendall(chunk)
        sent += len(packets)
    if sent < total:
        sock.sendall(b"".join(packets[: total - sent]))
    elapsed_s = time.perf_counter() - started
    sock.sendall(b"\xe0\x00")
    sock.close()
    return elapsed_s


def paced(host: str, port: int, packets: list[bytes], *, rate: float, duration_s: float) -> int:
    """One message per node in turn at `rate` messages/s, in 20 ms batches; return the count."""
    sock = connect(host, port, f"fleetsim-paced-{os.getpid()}")
    batch_s = 0.02
    per_batch = rate * batch_s
    started = time.monotonic()
    sent = 0
    owed = 0.0
    position = 0
    while time.monotonic() - started < duration_s:
        owed += per_batch
        count = int(owed)
        owed -= count
        batch = []
        for _ in range(count):
            batch.append(packets[position])
            position = (position + 1) % len(packets)
        if batch:
            sock.sendall(b"".join(batch))
            sent += len(batch)
        next_at = started + (sent / rate if rate else batch_s)
        time.sleep(max(0.0, min(batch_s, next_at - time.monotonic())))
    sock.sendall(b"\xe0\x00")
    sock.close()
    return sent


# ------------------------------------------------------------------ processes and the machine


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def load_1min() -> float:
    return os.getloadavg()[0]


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(mem_kib / 1024**2, 1),
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


# ------------------------------------------------------------------ a bench site's serve config


def toml_text(document: dict[str, Any]) -> str:
    """TOML for a document of tables whose values are written inline (enough for a config)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    head = [f"{json.dumps(k)} = {value(v)}" for k, v in document.items() if not isinstance(v, dict)]
    tables = []
    for key, table in document.items():
        if isinstance(table, dict):
            tables.append(f"[{key}]")
            tables.extend(f"{json.dumps(k)} = {value(v)}" for k, v in table.items())
    return "\n".join([*head, *tables, ""])


def a100_count(nodes: int) -> int:
    return sum(GPUS_PER_NODE for i in range(nodes) if NODE_MODELS[i % 4] == "a100-sxm4-80gb")


def serve_document(
    *,
    broker_port: int,
    http_port: int,
    store_path: Path,
    market_feeds: list[dict[str, Any]],
    nodes: int = 1250,
) -> dict[str, Any]:
    """The serve config of a bench site, in which the simulated fleet is already optimal.

    The demo's mining profiles; one reserved contract that commits every A100 the simulated
    fleet has (they report `ai:acme`), and prices under which the consumer cards are best
    mining kawpow (as they report). So the planner holds, as on a settled site, and a bench
    measures ingest rather than a stream of switches that simulated nodes never carry out.
    """
    from orchestrator.demo import DEMO_POLICY  # noqa: PLC0415  (heavy; only the bench needs it)

    acme = {
        "id": "acme",
        "rate_usd_per_gpu_hour": 1.40,
        "committed_gpus": a100_count(nodes),
        "eligible_models": ["NVIDIA A100-SXM4-80GB"],
        "penalty_usd_per_gpu_hour": 6.0,
        "switch_downtime_s": 120.0,
    }
    return {
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "site": SITE, "client_id": "bench"},
        "http": {"host": "127.0.0.1", "port": http_port, "tokens": [BENCH_TOKEN]},
        "log": {"level": "warning", "format": "json"},
        "ingest": {"node_offline_after_s": 10.0},
        "store": {"path": str(store_path)},
        "market": {"feeds": market_feeds},
        "mining_profiles": DEMO_POLICY["mining_profiles"],
        "contracts": {"reserved": [acme]},
        "planner": DEMO_POLICY["planner"],
    }


STATIC_FEEDS: list[dict[str, Any]] = [
    {"type": "static", "name": "kawpow", "algorithm": "kawpow", "value": 1.2e-8},
    {"type": "static", "name": "etchash", "algorithm": "etchash", "value": 1.0e-9},
    {"type": "static", "name": "autolykos", "algorithm": "autolykos", "value": 4.0e-10},
    {"type": "power_static", "name": "power", "usd_per_kwh": 0.06},
]

# `orchestrator token new`'s shape; the token itself is "bench-operator-token"
BENCH_TOKEN_VALUE = "bench-operator-token"  # noqa: S105  (a throwaway site's token)
BENCH_TOKEN = {
    "name": "bench",
    "role": "operator",
    "sha256": __import__("hashlib").sha256(BENCH_TOKEN_VALUE.encode()).hexdigest(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description="publish a simulated fleet's telemetry")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nodes", type=int, default=1250)
    parser.add_argument("--first", type=int, default=0, help="index of the first node")
    parser.add_argument("--rate", type=float, default=None, help="messages/s; none: blast")
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--total", type=int, default=50_000, help="messages to blast")
    args = parser.parse_args()
    packets = [publish_packet(t, p) for t, p in fleet_messages(args.nodes, first=args.first)]
    print(json.dumps({"ready": True, "bytes_per_message": len(packets[0])}), flush=True)
    if args.rate is None:
        elapsed_s = blast(args.host, args.port, packets, total=args.total)
        print(json.dumps({"sent": args.total, "seconds": elapsed_s}), flush=True)
    else:
        sent = paced(args.host, args.port, packets, rate=args.rate, duration_s=args.duration_s)
        print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    main()
