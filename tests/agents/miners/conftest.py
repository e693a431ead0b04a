"""Shared fixtures: the project's own miner payloads, and stub miners run as real processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
STUB = Path(__file__).parent / "stub_miner.py"
UPSTREAM = Path("/work/shared/fixtures/upstream/miners")

StartStub = Callable[..., int]


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def start_stub(tmp_path: Path) -> Iterator[StartStub]:
    """Start `stub_miner.py` as a subprocess on 127.0.0.1; return its port; stop it after."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(api: str, fixture: str | Path, *extra: str) -> int:
        path = fixture if isinstance(fixture, Path) else FIXTURES / fixture
        log = (tmp_path / f"stub-{api}-{len(processes)}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                str(STUB),
                "--api",
                api,
                "--port",
                "0",
                "--fixture",
                str(path),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()
        processes.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip():
            proc.wait(timeout=5)
            pytest.fail(f"stub miner did not start: {(tmp_path / log.name).read_text()}")
        return int(line)

    yield start
    for proc in processes:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        assert proc.stdout is not None
        proc.stdout.close()
