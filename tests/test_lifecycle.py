"""Process-wide settings a daemon applies at start-up."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from orchestrator.lifecycle import tune_garbage_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_the_collector_freezes_start_up_and_examines_young_objects_less_often() -> None:
    survivor = [object() for _ in range(10)]  # something start-up built and keeps
    before = gc.get_freeze_count()
    tune_garbage_collector(young_threshold=12_345)
    assert gc.get_freeze_count() >= before + len(survivor)
    assert gc.get_threshold()[0] == 12_345


@pytest.mark.usefixtures("restored_collector")
def test_cycles_made_after_tuning_are_still_collected() -> None:
    tune_garbage_collector()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2
