#!/usr/bin/env bash
# Set up (venv, dependencies, mosquitto) and run every check: lint, types, layers, tests.
source "$(dirname "$0")/bootstrap.sh"
ensure_mosquitto required
ensure_test_tools
ensure_venv
export PATH="$VENV/bin:$PATH"
status=0
say "ruff check"; ruff check orchestrator tests bench scripts || status=1
say "ruff format --check"; ruff format --check orchestrator tests bench scripts || status=1
say "mypy --strict"; mypy || status=1
say "import-linter"; lint-imports || status=1
say "pytest"; python -m pytest "$@" || status=1
exit $status
