"""Check the real NVML collector on a machine with an NVIDIA GPU.

Opens `NvmlBackend`, samples three times and prints each sample as JSON (one GpuTelemetry per
GPU, exactly what the agent would publish) followed by the time each sample took. Exits 2 with
the collector's own message when NVML is not usable here (no driver, no GPU).

    python bench/gpu_check.py [--samples N] [--interval-s S]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from orchestrator.agents.gpu import NvmlBackend, NvmlUnavailableError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--interval-s", type=float, default=1.0)
    args = parser.parse_args()

    backend = NvmlBackend()
    started = time.perf_counter()
    try:
        backend.open()
    except NvmlUnavailableError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 2
    open_ms = (time.perf_counter() - started) * 1000
    print(
        json.dumps(
            {
                "backend": backend.name,
                "driver_version": backend.driver_version(),
                "open_ms": round(open_ms, 2),
            }
        )
    )
    timings_ms = []
    try:
        for number in range(args.samples):
            if number:
                time.sleep(args.interval_s)
            started = time.perf_counter()
            gpus = backend.sample()
            elapsed_ms = (time.perf_counter() - started) * 1000
            timings_ms.append(elapsed_ms)
            print(
                json.dumps(
                    {
                        "sample": number,
                        "sample_ms": round(elapsed_ms, 3),
                        "gpus": [gpu.model_dump(mode="json", exclude_none=True) for gpu in gpus],
                    },
                    indent=2,
                )
            )
    finally:
        backend.close()
    gpu_count = len(gpus) if timings_ms else 0
    print(
        json.dumps(
            {
                "gpus": gpu_count,
                "sample_ms": [round(t, 3) for t in timings_ms],
                "mean_sample_ms": round(sum(timings_ms) / len(timings_ms), 3)
                if timings_ms
                else None,
                "mean_ms_per_gpu": round(sum(timings_ms) / len(timings_ms) / gpu_count, 3)
                if timings_ms and gpu_count
                else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
