"""`orchestrator curtail` as an operator runs it: the CLI in a subprocess against a real
`serve` with tokens, a real agent and a real mosquitto. It declares, lists and cancels
windows, prints serve's refusals plainly with exit 1, and warns when a forecast says a
reserved contract cannot be kept whole."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.agents.agent import NodeAgent
from orchestrator.demo.broker import MosquittoBroker
from orchestrator.serve import CentralDaemon
from tests.central.harness import agent_config, running
from tests.central.test_curtailment_api import RICH, workloads
from tests.central.test_overrides_api import OPERATOR, VIEWER, config
from tests.waiting import eventually

pytestmark = pytest.mark.slow

# a POSIX zone needing no tz database: two hours east of UTC, named XST
LOCAL_TZ = "XST-2"


async def curtail(*args: str, token: str | None) -> tuple[int, str, str]:
    """`orchestrator curtail ARGS` with `token` in $ORCHESTRATOR_TOKEN: (exit, stdout, stderr)."""
    env = {**os.environ, "ORCHESTRATOR_TOKEN": token or "", "TZ": LOCAL_TZ}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator",
        "curtail",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    assert b"Traceback" not in stderr, stderr.decode()
    return process.returncode, stdout.decode(), stderr.decode()


async def test_curtail_adds_lists_refuses_and_cancels_windows_against_serve(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    central = CentralDaemon(config(mosquitto, **RICH))
    agent = NodeAgent(agent_config(mosquitto, "rig", gpus=4))
    async with running(agent), running(central):
        assert central.http is not None
        url = central.http.url
        await eventually(
            lambda: (
                central.policy.last is not None
                and sorted(map(str, workloads(central)))
                == ["ai:acme", "ai:acme", "mine:kawpow", "mine:kawpow"]
            ),
            what="two GPUs on acme and two mining",
        )

        # a viewer may read but not declare; no token at all is told what to do
        rc, _, err = await curtail(
            "add", "--cap-kw", "0.7", "--duration", "10m", "--reason", "x", "--url", url,
            token=VIEWER,
        )  # fmt: skip
        assert rc == 1
        assert "error: HTTP 403: needs the operator role" in err
        assert "operator role" in err.splitlines()[-1]
        rc, _, err = await curtail("list", "--url", url, token=None)
        assert rc == 1
        assert "HTTP 401" in err
        assert "ORCHESTRATOR_TOKEN" in err
        assert central.curtailments.history() == []

        # refused windows: serve's reason, and each bad field of a body that does not validate
        tomorrow_s = round(central.clock()) + 86_400
        start = datetime.fromtimestamp(tomorrow_s, UTC).isoformat()
        earlier = datetime.fromtimestamp(tomorrow_s - 60, UTC).isoformat()
        rc, out, err = await curtail(
            "add", "--cap-kw", "0.5", "--start", start, "--end", earlier, "--reason", "DR",
            "--url", url, token=OPERATOR,
        )  # fmt: skip
        assert (rc, out) == (1, "")
        assert err.splitlines()[0] == "error: HTTP 400: the window ends before it starts"
        rc, _, err = await curtail(
            "add", "--cap-kw", "0.5", "--duration", "1h", "--reason", "", "--url", url,
            token=OPERATOR,
        )  # fmt: skip
        assert rc == 1
        assert "error: HTTP 400: invalid curtailment window" in err
        assert "  reason: String should have at least 1 character" in err
        assert central.curtailments.history() == []

        # tomorrow at 0.45 kW leaves acme one GPU short: created, with a warning line
        rc, out, err = await curtail(
            "add", "--cap-kw", "0.45", "--start", start, "--duration", "1h", "--reason", "DR",
            "--url", url, token=OPERATOR,
        )  # fmt: skip
        assert rc == 0, err
        (ahead,) = central.curtailments.history()
        assert out.splitlines()[1].startswith(f"{ahead['id']}  upcoming  cap 0.45 kW")
        local = datetime.fromtimestamp(tomorrow_s + 7200, UTC)  # XST is UTC+2
        utc = datetime.fromtimestamp(tomorrow_s, UTC)
        (start_line,) = (line for line in out.splitlines() if line.startswith("  from "))
        assert start_line.startswith(f"  from {local:%Y-%m-%d %H:%M} XST (")
        assert start_line.endswith(f"{utc:%H:%M} UTC)")
        (short,) = ahead["forecast"]["shortfalls"]
        warnings = [line.strip() for line in out.splitlines() if "WARNING" in line]
        assert warnings == [
            (
                "WARNING: at this cap reserved contract acme cannot be kept whole: "
                f"1/2 GPUs, 1 short (penalty {short['penalty_usd_per_hour']:.2f} $/h)"
            )
        ]

        # now, for ten minutes, as JSON: in force at once, and the forecast is fine
        rc, out, err = await curtail(
            "add", "--cap-kw", "0.7", "--start", "now", "--duration", "10m",
            "--reason", "ERCOT EEA1", "--json", "--url", url, token=OPERATOR,
        )  # fmt: skip
        assert rc == 0, err
        now_window = json.loads(out)
        assert (now_window["state"], now_window["by"], now_window["forecast"]["ok"]) == (
            "in_force",
            "alice",
            True,
        )
        assert now_window["end_s"] - now_window["start_s"] == 600

        # a viewer lists them, its token in a file
        token_file = tmp_path / "viewer.token"
        token_file.write_text(VIEWER + "\n")
        rc, out, err = await curtail(
            "list", "--url", url, "--token-file", str(token_file), token=None
        )
        assert rc == 0, err
        assert out.splitlines()[0] == "cap in force: 0.7 kW (configured: none)"
        assert (
            f"{now_window['id']}  in_force  cap 0.7 kW  source operator  reason: ERCOT EEA1" in out
        )
        assert f"{ahead['id']}  upcoming" in out
        assert "forecast: ok, every reserved contract kept whole" in out
        assert "cannot be kept whole" in out

        rc, out, err = await curtail("cancel", now_window["id"], "--url", url, token=OPERATOR)
        assert (rc, out) == (0, f"cancelled {now_window['id']}\n"), err
        rc, out, err = await curtail("cancel", now_window["id"], "--url", url, token=OPERATOR)
        assert (rc, out) == (1, "")
        assert err == f"error: HTTP 404: no window '{now_window['id']}' to cancel\n"

        rc, out, err = await curtail("list", "--json", "--url", url, token=VIEWER)
        assert rc == 0, err
        listed = json.loads(out)
        states = {w["id"]: w["state"] for w in listed["windows"]}
        assert states == {now_window["id"]: "cancelled", ahead["id"]: "upcoming"}
        assert listed["effective_cap_kw"] is None
