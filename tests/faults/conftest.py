"""Fixtures of the fault suite: a restartable mosquitto, a site of real processes, the
broker's view of switch events, and the suite's counts, written to
`test-artifacts/faults.json` at the end of the session (`scripts/render_reliability.py`
turns that file into `docs/reliability.md`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.common import MqttSection
from orchestrator.demo.broker import MosquittoBroker, find_mosquitto
from orchestrator.mqtt import MqttLink
from tests.faults.site import PREFIX, REPO, SITE, EventLog, Site

ARTIFACT = REPO / "test-artifacts" / "faults.json"
_RESULTS: dict[str, dict[str, Any]] = {}


@pytest.fixture
def broker(mosquitto: MosquittoBroker) -> MosquittoBroker:
    """The shared `mosquitto` fixture, under the name this suite gives it: a plain broker
    that a test may stop and start again on the same port."""
    return mosquitto


@pytest.fixture
def site(tmp_path: Path, broker: MosquittoBroker) -> Iterator[Site]:
    site = Site(tmp_path, broker)
    try:
        yield site
    finally:
        site.close()


@pytest.fixture
async def events(broker: MosquittoBroker) -> AsyncIterator[EventLog]:
    """Switch events of every node, as the broker delivers them (while it is up)."""
    log = EventLog()
    link = MqttLink(
        MqttSection(host=broker.host, port=broker.port, site=SITE, reconnect_max_s=0.5),
        client_id="fault-observer",
        subscriptions=[(f"{PREFIX}/nodes/+/events", 1)],
        on_message=log.on_message,
    )
    log.connected = link.connected
    task = asyncio.create_task(link.run(), name="fault-observer")
    await asyncio.wait_for(link.connected.wait(), 5)
    try:
        yield log
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def record(fault: str, **counts: Any) -> None:
    """Keep one test's counts for the summary (last run of a test wins)."""
    _RESULTS[fault] = {"recorded_at_s": round(time.time(), 1), **counts}


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _RESULTS:
        return
    ARTIFACT.parent.mkdir(exist_ok=True)
    previous: dict[str, Any] = {}
    if ARTIFACT.exists():
        with contextlib.suppress(ValueError):
            previous = json.loads(ARTIFACT.read_text()).get("faults", {})
    summary = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)),
            "mosquitto": find_mosquitto(),
        },
        "faults": {**previous, **_RESULTS},
    }
    ARTIFACT.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
