"""`config check` (and serve at start) warn about schedule windows whose start or end the
clocks skip or repeat in their zone, naming the next date within a year of `now_s`."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config import parse_config
from orchestrator.config.notices import config_notices
from orchestrator.config.policy import ContractsSection, window_clock_notices
from tests.test_config_notices import first_notice

NEW_YEAR_2024_S = datetime(2024, 1, 1, tzinfo=UTC).timestamp()


def contracts(*windows: dict[str, object]) -> ContractsSection:
    return ContractsSection.model_validate(
        {
            "reserved": [
                {
                    "id": "night",
                    "rate_usd_per_gpu_hour": 2.0,
                    "committed_gpus": 1,
                    "schedule": list(windows),
                }
            ]
        }
    )


def chicago(days: list[str], start: str, end: str) -> dict[str, object]:
    return {"days": days, "start": start, "end": end, "timezone": "America/Chicago"}


def test_a_start_the_clocks_skip_is_named_with_its_date_and_the_real_opening() -> None:
    notices = window_clock_notices(contracts(chicago(["sun"], "02:30", "06:00")), NEW_YEAR_2024_S)
    assert notices == [
        (
            "contracts.reserved.0.schedule.0.start",
            (
                "reserved contract 'night': window 1 starts at 02:30, which does not exist in "
                "America/Chicago on Sun 2024-03-10 (clocks jump from 02:00 to 03:00): that day it "
                "opens at 03:00 CDT, the first instant after the gap"
            ),
        )
    ]


def test_an_end_in_the_repeated_hour_is_named_with_its_first_occurrence() -> None:
    notices = window_clock_notices(
        contracts(chicago(["fri"], "08:00", "12:00"), chicago(["sat"], "22:00", "01:30")),
        NEW_YEAR_2024_S,
    )
    assert notices == [
        (
            "contracts.reserved.0.schedule.1.end",
            (
                "reserved contract 'night': window 2 ends at 01:30, which happens twice in "
                "America/Chicago on Sun 2024-11-03 (clocks go back from 02:00 to 01:00): that day "
                "it closes at the first of the two, 01:30 CDT"
            ),
        )
    ]


def test_both_edges_are_named_and_the_next_date_is_after_now() -> None:
    """After the 2024 change, the next is 2025's; each edge gets its own line."""
    after_s = datetime(2024, 3, 11, tzinfo=UTC).timestamp()
    notices = window_clock_notices(contracts(chicago(["sun"], "01:30", "02:30")), after_s)
    assert [key for key, _ in notices] == [
        "contracts.reserved.0.schedule.0.start",
        "contracts.reserved.0.schedule.0.end",
    ]
    assert "happens twice in America/Chicago on Sun 2024-11-03" in notices[0][1]
    assert "does not exist in America/Chicago on Sun 2025-03-09" in notices[1][1]


def test_windows_clear_of_clock_changes_have_nothing_to_say() -> None:
    quiet = contracts(
        chicago(["mon", "tue", "wed", "thu", "fri"], "02:30", "06:00"),  # US changes on Sundays
        chicago(["sun"], "03:00", "01:00"),
        {"days": ["sun"], "start": "02:30", "end": "03:00"},  # UTC never changes
    )
    assert window_clock_notices(quiet, NEW_YEAR_2024_S) == []


def test_config_notices_carry_the_warning_for_serve() -> None:
    document = {"contracts": contracts(chicago(["sun"], "02:30", "06:00")).model_dump()}
    serve = parse_config(document, "serve", source="<test>")
    (notice,) = config_notices(serve, now_s=NEW_YEAR_2024_S)
    assert notice[0] == "contracts.reserved.0.schedule.0.start"


SERVE = """
[http]
port = 0
[store]
path = "{store}"
[[contracts.reserved]]
id = "night"
rate_usd_per_gpu_hour = 2.0
committed_gpus = 1
schedule = [{{ days = ["sun"], start = "02:30", end = "06:00", timezone = "America/Chicago" }}]
"""


def test_config_check_prints_the_warning_and_still_passes(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(SERVE.format(store=tmp_path / "serve.sqlite3"))
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: valid serve config"
    # the date depends on the real clock: US clocks spring forward on a Sunday in March
    pattern = (
        r"warning: contracts\.reserved\.0\.schedule\.0\.start: reserved contract 'night': "
        r"window 1 starts at 02:30, which does not exist in America/Chicago on Sun "
        r"\d{4}-03-(0[89]|1[0-4]) \(clocks jump from 02:00 to 03:00\): that day it opens at "
        r"03:00 CDT, the first instant after the gap"
    )
    assert len(lines) == 2
    assert re.fullmatch(pattern, lines[1]), lines[1]


def test_serve_logs_the_warning_at_start(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(SERVE.format(store=tmp_path / "serve.sqlite3"))
    notice = first_notice("serve", path)
    assert notice["level"] == "warning"
    assert notice["key"] == "contracts.reserved.0.schedule.0.start"
    assert "the first instant after the gap" in str(notice["detail"])
