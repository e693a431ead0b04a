"""Shared fixtures: a real mosquitto on a free loopback port, with its own config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.demo.broker import MosquittoBroker, find_mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A private mosquitto for one test; fails loudly when the binary is missing."""
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: scripts/test.sh installs it when run as root")
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start_sync()
    yield broker
    broker.stop_sync()
