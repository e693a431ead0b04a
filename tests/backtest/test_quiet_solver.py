"""HiGHS writes nothing: `orchestrator backtest`'s stdout is the report and nothing else.

HiGHS prints a copyright banner ("Running HiGHS 1.16.0 ... Copyright") the first time a
`highspy.Highs()` is made in a process; `orchestrator.policy.milp` avoids it. The banner
goes to file descriptor 1 from C++, past `sys.stdout`, so only a real subprocess sees it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRICES = ROOT / "orchestrator" / "backtest" / "data" / "hashprice-randomx-equihash-2020.csv"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=50, check=False, cwd=ROOT
    )


def test_backtest_stdout_is_the_report_without_the_highs_banner() -> None:
    """The shipped 2020 example: stdout starts with the report's first line, no HiGHS text."""
    result = _run(
        "-m",
        "orchestrator",
        "backtest",
        "-c",
        str(ROOT / "config" / "backtest-2020.toml"),
        "--prices",
        str(PRICES),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("backtest 2020-01-01T00:00Z"), result.stdout[:300]
    assert "HiGHS" not in result.stdout
    assert "Copyright" not in result.stdout
    assert "hindsight optimum" in result.stdout  # the backtest's own solves did run
    assert "HiGHS" not in result.stderr


def test_a_fresh_process_solving_both_paths_writes_only_its_own_output() -> None:
    """The first solve of a process (LP, then branch and bound) prints nothing of HiGHS."""
    script = (
        "from orchestrator.policy.milp import Milp\n"
        "m = Milp()\n"
        "r = m.add_row(-1e30, 3.0)\n"
        "m.add_column(1.0, 0.0, 1.0, [(r, 2.0)], integer=True)\n"
        "m.add_column(1.0, 0.0, 1.0, [(r, 2.0)], integer=True)\n"
        "print(sum(m.solve() or []))\n"
    )
    result = _run("-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1.0\n"  # LP optimum 1.5 is fractional: branch and bound ran
    assert result.stderr == ""
