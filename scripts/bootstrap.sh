#!/usr/bin/env bash
# Sourced by scripts/demo.sh and scripts/test.sh: create or reuse .venv, install what is missing.
# System packages (mosquitto) are installed with apt when run as root on Debian/Ubuntu;
# otherwise a clear message says what to install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
cd "$ROOT"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

apt_install() {
    # apt_install PACKAGE...: install Debian packages when we can, else explain
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing system packages: $*"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null || say "apt-get update failed; trying the install anyway"
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    else
        return 1
    fi
}

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        local python
        python="$(find_python)" || {
            apt_install python3 python3-venv python3-pip && python="$(find_python)"
        } || die "Python 3.11 or newer is needed (install python3 and python3-venv)"
        say "creating virtual environment in .venv with $python"
        "$python" -m venv "$VENV" 2>/dev/null || {
            apt_install python3-venv && "$python" -m venv "$VENV"
        } || die "cannot create a virtual environment (install python3-venv)"
    fi
    # reinstall only when the dependency list changed
    local stamp="$VENV/.installed" want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing the orchestrator and its dependencies into .venv"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
        "$VENV/bin/python" -m pip install -q -e ".[dev]"
        echo "$want" >"$stamp"
    fi
}

ensure_test_tools() {
    # the tests meet real software: dockerd (with a busybox image they build), promtool and
    # prometheus, headless chromium (with a font for its screenshots), systemd-analyze
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    [ -x /bin/busybox ] || missing+=(busybox-static)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    [ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}" ||
            die "the tests need ${missing[*]}: run this as root on Debian/Ubuntu, or 'sudo apt-get install ${missing[*]}'"
    fi
}

mosquitto_bin() {
    command -v mosquitto 2>/dev/null || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; }
}

ensure_mosquitto() {
    # ensure_mosquitto required|optional
    if [ -n "$(mosquitto_bin)" ]; then return 0; fi
    apt_install mosquitto mosquitto-clients && [ -n "$(mosquitto_bin)" ] && return 0
    if [ "$1" = required ]; then
        die "mosquitto is needed for the tests: run this as root on Debian/Ubuntu, or 'sudo apt-get install mosquitto mosquitto-clients'"
    fi
    say "mosquitto not found; the demo uses the pure-Python amqtt broker (install mosquitto for the real one)"
}
