#!/usr/bin/env bash
# Set up (venv, dependencies, mosquitto when possible) and run the demo: scripts/demo.sh [demo options]
source "$(dirname "$0")/bootstrap.sh"
ensure_mosquitto optional
ensure_venv
exec "$VENV/bin/orchestrator" demo "$@"
