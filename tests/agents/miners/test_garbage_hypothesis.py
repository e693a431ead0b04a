"""No input, however broken, makes a parser raise anything but `MinerApiError`.

Random bytes, random JSON, and -- more searching -- real fixtures with random values spliced
into random places. A parser that returns must return only finite, non-negative hashrates.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.agents.miners import MINER_APIS, MinerApiError, MinerReading, parse_miner
from tests.agents.miners.conftest import FIXTURES

FIXTURE_DOCS = {
    path.name: json.loads(path.read_bytes()) for path in sorted(FIXTURES.glob("*.json"))
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
odd_scalars: st.SearchStrategy[object] = st.sampled_from(
    [
        None,
        -1,
        -0.5,
        0,
        1e308,
        10**30,
        True,
        "",
        "NaN",
        "31.2 MH/s",
        "-5 M",
        "zz:00.0",
        [],
        {},
        "0000:01:00.0",
        "1:0",
        3.5,
    ]
)


def _check(api: str, raw: bytes | str | Any) -> None:
    try:
        reading = parse_miner(api, raw)
    except MinerApiError:
        return
    assert isinstance(reading, MinerReading)
    for rate in (reading.total_hashrate_hs, *(d.hashrate_hs for d in reading.devices)):
        assert rate is None or (math.isfinite(rate) and rate >= 0)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(api=st.sampled_from(MINER_APIS), raw=st.binary(max_size=200))
def test_random_bytes(api: str, raw: bytes) -> None:
    _check(api, raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(api=st.sampled_from(MINER_APIS), value=json_values)
def test_random_json(api: str, value: object) -> None:
    _check(api, json.dumps(value).encode())


def _mutate(doc: Any, path: list[int], replacement: Any) -> Any:
    """Replace the node reached by following `path` (indices mod children count)."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return replacement
    step, rest = path[0], path[1:]
    if isinstance(doc, dict):
        key = sorted(doc)[step % len(doc)]
        return {**doc, key: _mutate(doc[key], rest, replacement)}
    position = step % len(doc)
    return [*doc[:position], _mutate(doc[position], rest, replacement), *doc[position + 1 :]]


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    api=st.sampled_from(MINER_APIS),
    name=st.sampled_from(sorted(FIXTURE_DOCS)),
    path=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=5),
    replacement=odd_scalars | json_values,
)
def test_real_fixtures_with_spliced_garbage(
    api: str, name: str, path: list[int], replacement: object
) -> None:
    _check(api, _mutate(FIXTURE_DOCS[name], path, replacement))
