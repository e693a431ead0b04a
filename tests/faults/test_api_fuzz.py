"""The HTTP API fuzzed from its own OpenAPI document by schemathesis, against a running
`serve` (a real process, with agents and a plan): no 5xx, and no write accepted without the
operator role. Runs schemathesis' CLI as a subprocess and reads every exchange from its HAR
report, so the counts cover each request, not only the failing ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import record
from tests.faults.site import OPERATOR, VIEWER, Site, store_snapshot
from tests.faults.test_process_faults import baseline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def fuzz(site: Site, workdir: Path, token: str | None, *, max_time_s: int) -> list[tuple[str, int]]:
    """One schemathesis run; (method, status) of every request it made."""
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    har = workdir / f"{'anonymous' if token is None else token[:12]}.har"
    argv = [
        st, "run", f"{site.url}/api/v1/openapi.json",
        "--checks", "not_a_server_error",
        "--max-examples", "25",
        "--max-time", str(max_time_s),
        "--seed", "20261126",
        "--workers", "1",
        "--report", "har", "--report-har-path", str(har),
        "--warnings", "off",
    ]  # fmt: skip
    if token is not None:
        argv += ["--header", f"Authorization: Bearer {token}"]
    result = subprocess.run(  # noqa: PLW1510  (the exit status is judged from the HAR)
        argv, cwd=workdir, capture_output=True, text=True, timeout=max_time_s + 60
    )
    assert har.exists(), result.stdout[-4000:] + result.stderr[-2000:]
    assert "Schema Error" not in result.stdout, result.stdout[-4000:]
    entries = json.loads(har.read_text())["log"]["entries"]
    return [(e["request"]["method"], int(e["response"]["status"])) for e in entries]


async def test_the_api_fuzzed_from_its_openapi_document_gives_no_5xx_and_no_unauthorised_write(
    site: Site, tmp_path: Path
) -> None:
    await baseline(site)  # agents report and a plan exists, so nothing answers "no plan yet"
    before = store_snapshot(site)
    unauthorised: list[tuple[str, int]] = []
    for token in (None, VIEWER):
        unauthorised += fuzz(site, tmp_path, token, max_time_s=8)
    writes_accepted = sum(1 for m, s in unauthorised if m in WRITES and 200 <= s < 300)
    after_unauthorised = store_snapshot(site)
    operator = fuzz(site, tmp_path, OPERATOR, max_time_s=15)
    exchanges = unauthorised + operator
    server_errors = [(m, s) for m, s in exchanges if s >= 500]
    assert site.serve.alive
    counts = {
        "faults_injected": len(exchanges),
        "requests_without_operator_role": len(unauthorised),
        "writes_without_operator_role": sum(1 for m, _ in unauthorised if m in WRITES),
        "server_errors_5xx": len(server_errors),
        "unauthorised_writes_accepted": writes_accepted
        + len(after_unauthorised.overrides - before.overrides)
        + (after_unauthorised.audit - before.audit),
        "operator_writes_accepted": sum(1 for m, s in operator if m in WRITES and 200 <= s < 300),
    }
    record("HTTP API fuzzed from its OpenAPI document (schemathesis)", **counts)
    assert counts["server_errors_5xx"] == 0, server_errors[:10]
    assert counts["unauthorised_writes_accepted"] == 0
    assert counts["writes_without_operator_role"] > 0  # the fuzzer did try to write
