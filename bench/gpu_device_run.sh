#!/usr/bin/env bash
# The GPU checks in one run on a lent GPU machine: `bash bench/gpu_device_run.sh`.
#
# Installs the wheels carried in .whl/ (what the machine's python3 lacks of the project's
# dependencies) into /tmp/site, then runs bench/gpu_check.py (the NVML collector) and
# bench/gpu_e2e.py (broker, serve and agent switching the GPU idle -> AI -> mining -> idle),
# each under its own time limit, about 4 minutes in all. Everything printed is also written
# to $OUT/device_run.log; gpu_check's output to $OUT/gpu_check.txt; gpu_e2e writes
# $OUT/gpu_e2e.json and $OUT/gpu_e2e_logs.tar.gz. Only queries the GPU. Exit status: that of
# gpu_e2e (0 when every check passed), or the first step that failed before it.
#
# Rehearsal without a GPU: GPU_E2E_ARGS="--fake --broker amqtt" bash bench/gpu_device_run.sh
# (the same steps; gpu_check then exits 2, and torch is not needed).
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-e2e-out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_run.log") 2>&1
tee_pid=$!
trap 'exec >&- 2>&-; wait "$tee_pid" 2>/dev/null' EXIT  # the log complete before $OUT goes back
export PYTHONUNBUFFERED=1
started=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

step "machine"
uname -a
nvidia-smi --query-gpu=name,memory.used,memory.total,power.draw,power.limit,utilization.gpu,driver_version --format=csv || true
python3 --version
command -v mosquitto || echo "mosquitto: not installed (gpu_e2e uses amqtt)"

step "install carried wheels"
ls .whl/*.whl >/dev/null || { echo "no .whl/*.whl: carry .whl"; exit 3; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
GPU_E2E_ARGS="${GPU_E2E_ARGS:-}" python3 - <<'EOF' || exit 3
import importlib, importlib.metadata as md, os, zoneinfo
zoneinfo.ZoneInfo("UTC")
fake = "--fake" in os.environ["GPU_E2E_ARGS"].split()
names = ["aiohttp", "prometheus-client", "nvidia-ml-py", "pydantic", "pydantic-core",
         "pydantic-settings", "structlog", "highspy", "aiomqtt", "paho-mqtt", "amqtt",
         "typing-extensions", "numpy", *([] if fake else ["torch"])]
print(" ".join(f"{name}=={md.version(name)}" for name in names))
for module in ["orchestrator.cli", "orchestrator.serve", "orchestrator.agents.agent",
               "amqtt.broker", "highspy", "pynvml", *([] if fake else ["torch"])]:
    importlib.import_module(module)
print("imports ok")
EOF

step "gpu_check"
timeout -k 5 60 python3 bench/gpu_check.py --samples 3 2>&1 | tee "$OUT/gpu_check.txt"
check_rc=${PIPESTATUS[0]}
echo "gpu_check exit code: $check_rc"

step "gpu_e2e"
# shellcheck disable=SC2086  # GPU_E2E_ARGS is a list of options
timeout -k 15 200 python3 bench/gpu_e2e.py --out "$OUT" --budget-s 170 ${GPU_E2E_ARGS:-}
e2e_rc=$?
echo "gpu_e2e exit code: $e2e_rc"

step "after"
nvidia-smi --query-gpu=memory.used,power.draw,utilization.gpu --format=csv || true
ps -eo pid,pgid,etimes,args | grep -E 'gpu_standins|orchestrator (serve|agent)' | grep -v grep || true
step "done"
exit $(( e2e_rc != 0 ? e2e_rc : check_rc ))
