"""Settings that load but deserve a word: `config check` prints them, the daemons log them at
start. A static BTC price (hashprices drift with BTC, silently) and the deprecated
`expected_power_w` of agent profiles (older files keep loading; nothing reads it)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from orchestrator.config import parse_config
from orchestrator.config.notices import config_notices

STATIC_BTC_SERVE = """
[http]
port = 0
[store]
path = "{store}"
[[market.feeds]]
type = "nicehash"
btc_price = {{ type = "static", usd_per_btc = 90000.0 }}
[[market.feeds]]
type = "power_static"
usd_per_kwh = 0.045
"""

OLD_AGENT = """
[node]
name = "rig-01"
[gpu]
backend = "fake"
[[profiles]]
id = "trex-kawpow"
kind = "mining"
driver = "sim"
algorithm = "kawpow"
expected_hashrate_hs = 58e6
expected_power_w = 310
sim = {}
"""


def orchestrator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_config_check_warns_about_a_static_btc_price(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(STATIC_BTC_SERVE.format(store=tmp_path / "serve.sqlite3"))
    result = orchestrator("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: valid serve config"
    assert lines[1].startswith(
        "warning: market.feeds.0.btc_price: feed 'nicehash' converts with a static BTC price "
        "(90000 US$/BTC) that never goes stale"
    )
    assert len(lines) == 2


def test_an_agent_file_with_expected_power_w_still_loads_and_is_told_it_is_ignored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(OLD_AGENT)
    result = orchestrator("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        (
            "warning: profiles.0.expected_power_w: profile 'trex-kawpow': expected_power_w is "
            "deprecated and ignored (serve learns power from telemetry); remove it"
        )
    ]


def test_configs_without_either_have_nothing_to_say() -> None:
    serve = parse_config(
        {"market": {"feeds": [{"type": "power_static", "usd_per_kwh": 0.05}]}},
        "serve",
        source="<test>",
    )
    assert config_notices(serve, now_s=1_790_000_000.0) == []
    agent_document = {
        "gpu": {"backend": "fake"},
        "profiles": [
            {
                "id": "trex-kawpow",
                "kind": "mining",
                "driver": "sim",
                "algorithm": "kawpow",
                "expected_hashrate_hs": 58e6,
                "sim": {},
            }
        ],
    }
    agent = parse_config(agent_document, "agent", source="<test>")
    assert config_notices(agent, now_s=1_790_000_000.0) == []


def first_notice(kind: str, path: Path) -> dict[str, object]:
    """Start the daemon as systemd runs it, until its first `config_notice` line (JSON)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", kind, "-c", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in iter(process.stderr.readline, ""):
            lines.append(line)
            if '"config_notice"' in line:
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(timeout=20), "".join(lines)
    finally:
        process.terminate()
        process.wait(timeout=20)
        reader.join(timeout=5)
        assert process.stderr is not None
        process.stderr.close()
    notice: dict[str, object] = next(
        json.loads(line) for line in lines if '"config_notice"' in line
    )
    return notice


def test_serve_logs_a_static_btc_price_at_start(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(STATIC_BTC_SERVE.format(store=tmp_path / "serve.sqlite3"))
    notice = first_notice("serve", path)
    assert notice["level"] == "warning"
    assert notice["key"] == "market.feeds.0.btc_price"
    assert "never goes stale" in str(notice["detail"])


def test_the_agent_logs_its_ignored_expected_power_w_at_start(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    state = tmp_path / "agent"
    path.write_text(
        OLD_AGENT
        + f'[executor]\nstate_dir = "{state / "state"}"\nlog_dir = "{state / "logs"}"\n'
        + "[http]\nport = 0\n"
    )
    notice = first_notice("agent", path)
    assert notice["level"] == "warning"
    assert notice["key"] == "profiles.0.expected_power_w"
    assert "deprecated and ignored" in str(notice["detail"])
