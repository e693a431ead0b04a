"""The `orchestrator` command as an operator runs it: real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from orchestrator.demo.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def orchestrator(
    *args: str, timeout_s: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


@pytest.mark.parametrize("name", ["serve.toml", "agent.toml"])
def test_the_example_configs_are_valid(name: str) -> None:
    result = orchestrator("config", "check", str(ROOT / "config" / name))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_a_bad_config_exits_2_naming_each_bad_key_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[mqtt]\nport = 70000\nhots = "x"\n[ingest]\nnode_offline_after_s = -1\n')
    result = orchestrator("config", "check", str(path))
    assert result.returncode == 2
    assert "mqtt.port: Input should be less than or equal to 65535 (got 70000)" in result.stderr
    assert "mqtt.hots: unknown key" in result.stderr
    assert "ingest.node_offline_after_s: Input should be greater than 0" in result.stderr


def test_an_agent_config_with_an_unknown_gpu_model_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[gpu]\nbackend = "fake"\n[gpu.fake]\nmodels = ["rtx-9999"]\n')
    result = orchestrator("config", "check", str(path))
    assert result.returncode == 2
    assert "gpu.fake.models" in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [("[mqtt\nport=1", "<toml>"), (None, "<file>")],
    ids=["broken-toml", "missing-file"],
)
def test_an_unreadable_config_exits_2(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "c.toml"
    if content is not None:
        path.write_text(content)
    result = orchestrator("config", "check", str(path))
    assert result.returncode == 2
    assert expected in result.stderr


def test_a_missing_secret_is_a_config_error_at_start(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(
        '[mqtt]\nusername = "serve"\npassword = { env = "ORCH_TEST_UNSET_SECRET" }\n'
        "[http]\nport = 0\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ORCH_TEST_UNSET_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert result.returncode == 2
    assert "mqtt.password: environment variable ORCH_TEST_UNSET_SECRET is not set" in result.stderr


class DemoOutput:
    """The demo's output, read by a thread so that a test can wait for a line with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        self.lines.extend(iter(self.process.stdout.readline, ""))

    def token(self, timeout_s: float) -> str:
        """The operator token the demo prints once it is ready."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.strip().startswith("operator token"):
                    return line.rsplit(" ", 1)[-1].strip()
            assert self.process.poll() is None, "demo exited early:\n" + self.text()
            time.sleep(0.05)
        raise AssertionError(f"the demo printed no token within {timeout_s} s:\n{self.text()}")

    def finish(self, timeout_s: float) -> str:
        """Wait for the demo to end (killing it after `timeout_s`); all it printed."""
        try:
            self.process.wait(timeout=timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._thread.join(timeout=5)
            assert self.process.stdout is not None
            self.process.stdout.close()
        return self.text()

    def text(self) -> str:
        return "".join(self.lines)


def _state(url: str, token: str) -> dict[str, Any] | None:
    request = urllib.request.Request(  # noqa: S310  (loopback http URL built here)
        f"{url}/api/v1/state", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            state: dict[str, Any] = json.load(response)
            return state
    except OSError:
        return None


def _wait_for_gpus(url: str, count: int, output: DemoOutput, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    token = output.token(timeout_s)
    process = output.process
    while time.monotonic() < deadline:
        assert process.poll() is None, "demo exited early"
        state = _state(url, token)
        if state and state["summary"]["gpus_total"] == count:
            return state
        time.sleep(0.1)
    raise AssertionError(f"demo did not show {count} GPUs within {timeout_s} s")


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_the_demo_shows_32_gpus_and_ends_by_itself_with_exit_0(broker: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "demo",
            "--duration",
            "15",
            "--http",
            f"127.0.0.1:{port}",
            "--broker",
            broker,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    demo = DemoOutput(process)
    try:
        state = _wait_for_gpus(url, 32, demo, timeout_s=14)
        assert state["summary"]["nodes_online"] == 4
        assert {n["node"] for n in state["nodes"]} == {f"node-0{i}" for i in range(1, 5)}
        token = demo.token(1)
        request = urllib.request.Request(  # noqa: S310  (loopback http URL built here)
            f"{url}/api/v1/sla", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            sla = json.load(response)
        assert [entry["contract"] for entry in sla["current"]] == ["acme"]
        if broker == "mosquitto":
            _status_and_explain_need_the_token(url, token)
    finally:
        output = demo.finish(timeout_s=20)
    assert process.returncode == 0, output
    assert f"{url}/api/v1/state" in output
    assert f"{url}/#token={token}" in output


def _status_and_explain_need_the_token(url: str, token: str) -> None:
    """The demo's API has tokens: the CLI sends one from the environment, and says what to do
    when it has none instead of failing on the error body."""
    without = orchestrator("status", "--url", url, env={"ORCHESTRATOR_TOKEN": ""})
    assert without.returncode == 1
    assert "HTTP 401" in without.stderr
    assert "ORCHESTRATOR_TOKEN" in without.stderr
    assert "Traceback" not in without.stderr
    status = orchestrator("status", "--url", url, env={"ORCHESTRATOR_TOKEN": token})
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("site ")
    explain = orchestrator("explain", "node-01:0", "--url", url, env={"ORCHESTRATOR_TOKEN": token})
    assert explain.returncode in (0, 1), explain.stderr
    assert "HTTP 401" not in explain.stderr


def _children(pid: int) -> set[int]:
    """The processes `pid` started (Linux: /proc/<pid>/task/<tid>/children)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


@pytest.mark.slow
@pytest.mark.parametrize("duration", [None, "600"])
def test_ctrl_c_ends_the_demo_cleanly_and_its_broker_with_it(duration: str | None) -> None:
    """With or without `--duration`: a demo given a long duration once waited for it to run
    out after Ctrl-C (and, killed meanwhile, left its mosquitto behind)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "demo",
            "--nodes",
            "2",
            "--gpus-per-node",
            "2",
            "--http",
            f"127.0.0.1:{port}",
            *(["--duration", duration] if duration else []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    demo = DemoOutput(process)
    try:
        _wait_for_gpus(url, 4, demo, timeout_s=15)
        brokers = _children(process.pid)
        assert brokers, "the demo runs its own broker"
        process.send_signal(signal.SIGINT)
    finally:
        output = demo.finish(timeout_s=15)
    assert process.returncode == 0, output
    assert "demo stopped" in output
    assert "Traceback" not in output
    assert not any(Path(f"/proc/{pid}").exists() for pid in brokers)


def test_miner_read_prints_a_normalised_reading_as_json() -> None:
    fixture = ROOT / "tests" / "agents" / "miners" / "fixtures" / "gminer-stat.3.x-snakecase.json"
    result = orchestrator("miner", "read", "--api", "gminer", "--file", str(fixture))
    assert result.returncode == 0, result.stderr
    reading = json.loads(result.stdout)
    assert reading["miner"] == "gminer"
    assert reading["total_hashrate_hs"] > 0
    assert all(
        d["pci_bus_id"] is None or d["pci_bus_id"].startswith("0000") for d in reading["devices"]
    )


def test_miner_read_of_garbage_exits_2_with_the_reason(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("<html>502 Bad Gateway</html>")
    result = orchestrator("miner", "read", "--api", "trex", "--file", str(garbage))
    assert result.returncode == 2
    assert "not_json" in result.stderr


def test_config_check_reports_a_contract_that_can_never_be_met(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(
        "[[contracts.reserved]]\n"
        'id = "acme"\nrate_usd_per_gpu_hour = 1.0\ncommitted_gpus = 4\n'
        '[[contracts.reserved.schedule]]\ndays = []\nstart = "08:00"\nend = "08:00"\n'
        "[[contracts.on_demand]]\n"
        'id = "acme"\nrate_usd_per_gpu_hour = 0.2\n'
    )
    result = orchestrator("config", "check", str(path))
    assert result.returncode == 2
    assert "contracts: contract id 'acme' appears more than once" in result.stderr
    assert "window 1 has no days" in result.stderr


def test_explain_shows_a_rolled_back_switch_as_a_failure_with_its_cooldown() -> None:
    from orchestrator.cli import _lifecycle_lines  # noqa: PLC0415

    lines = _lifecycle_lines(
        {
            "desired": "idle",
            "in_flight": None,
            "last_switch": {
                "state": "rolled_back",
                "failed": True,
                "workload": "mine:kawpow",
                "target": "idle",
                "outcome": "verify failed: 1 process; mine:kawpow runs again",
            },
            "cooldown_until_s": 2_000_000_000.0,
        }
    )
    assert lines[0] == "last switch to idle: FAILED, rolled_back; runs mine:kawpow"
    assert "verify failed" in lines[1]
    assert lines[2].startswith("not ordered there again until ")
    flying = {"in_flight": {"workload": "ai:spot", "state": "in_flight", "step": "health"}}
    assert _lifecycle_lines(flying) == ["switching to ai:spot (in_flight, at health)"]
    assert _lifecycle_lines({}) == []


def test_explain_shows_a_switch_the_wave_holds_back_and_why() -> None:
    from orchestrator.cli import _lifecycle_lines  # noqa: PLC0415

    held = {
        "in_flight": None,
        "held": {"workload": "mine:kawpow", "why": "site_power", "rise_w": 600.0},
    }
    assert _lifecycle_lines(held) == [
        "switch to mine:kawpow held back: the site power cap has no room yet (+600 W)"
    ]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--duration", "5x"], "argument --duration: expected a duration like 30m, 2h"),
        (["--duration", "0m"], "argument --duration: must be longer than 0"),
        (["--start", "2026-12-05T14:00", "--duration", "1h"], "has no UTC offset"),
        (["--start", "tomorrow", "--duration", "1h"], "expected an ISO 8601 time with offset"),
        (["--duration", "1h", "--end", "2026-12-05T14:00Z"], "not allowed with argument"),
        ([], "one of the arguments --end --duration is required"),
        (["--end", "now"], "argument --end: a window cannot end now"),
    ],
    ids=["unit", "zero", "naive", "words", "both-ends", "no-end", "end-now"],
)
def test_curtail_add_refuses_bad_input_with_exit_2_before_calling_serve(
    args: list[str], said: str
) -> None:
    # port 9 (discard) would refuse a connection: exit 2, not 1, proves serve was not called
    result = orchestrator(
        "curtail", "add", "--cap-kw", "700", "--reason", "DR", "--url", "http://127.0.0.1:9", *args
    )
    assert result.returncode == 2, result.stderr
    assert said in result.stderr


def test_curtail_add_refuses_a_negative_cap_with_exit_2() -> None:
    result = orchestrator("curtail", "add", "--cap-kw", "-5", "--duration", "1h", "--reason", "x")
    assert result.returncode == 2
    assert "argument --cap-kw: must be 0 or more kW, got -5" in result.stderr


def test_curtail_reads_durations_and_times_with_offsets() -> None:
    from orchestrator.cli.curtail import _duration_s, _when  # noqa: PLC0415

    assert [_duration_s(d) for d in ("90s", "30m", "2h", "1h30m", "1d", "1.5h")] == [
        90.0,
        1800.0,
        7200.0,
        5400.0,
        86400.0,
        5400.0,
    ]
    assert _when("now") is None
    assert _when("2026-12-05T14:00:00+01:00") == _when("2026-12-05T13:00:00Z") == 1796475600.0


def test_curtail_shows_a_forecast_not_yet_checked_and_one_per_short_contract() -> None:
    from orchestrator.cli.curtail import _forecast_lines  # noqa: PLC0415

    assert _forecast_lines({"checked_at_s": None, "note": "not checked: no plan yet"}) == [
        "forecast: not checked: no plan yet"
    ]
    short = {
        "checked_at_s": 1.0,
        "ok": False,
        "shortfalls": [
            {
                "contract": c,
                "committed_gpus": 8,
                "assigned_gpus": 2,
                "shortfall_gpus": 6,
                "penalty_usd_per_hour": 36.0,
            }
            for c in ("acme", "globex")
        ],
    }
    assert _forecast_lines(short) == [
        f"WARNING: at this cap reserved contract {c} cannot be kept whole: 2/8 GPUs, 6 short "
        "(penalty 36.00 $/h)"
        for c in ("acme", "globex")
    ]
