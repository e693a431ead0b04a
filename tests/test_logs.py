"""JSON log lines stay JSON when a value is NaN or infinite (a rejected price is one)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from orchestrator.logs import configure_logging
from orchestrator.markets import FetchResult, MarketBook, run_feed_once
from orchestrator.markets.quote import SourceBase

NOW_S = 1_714_560_000.0


class NonFinite(SourceBase):
    """Answers a NaN hashprice and an infinite power price."""

    async def fetch(self, now_s: float) -> FetchResult:
        nan = float("nan")
        hashprice = self.hashprice(
            "kawpow", nan, now_s=now_s, url="test:", raw_value=nan, raw_unit="usd_per_hs_day"
        )
        power = self.power(
            float("inf"), now_s=now_s, url="test:", raw_value=float("inf"), raw_unit="usd_per_kwh"
        )
        return FetchResult((hashprice, power), ())


def _strict_json(line: str) -> dict[str, object]:
    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    document = json.loads(line, parse_constant=refuse)
    assert isinstance(document, dict)
    return document


@pytest.fixture
def json_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """JSON logging to the captured stderr; configured by the test itself (pytest swaps
    `sys.stderr` for the call), undone afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield capsys
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_a_rejected_nan_price_is_logged_as_valid_json(
    json_logging: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="info", fmt="json")
    outcome = await run_feed_once(
        NonFinite(name="odd", interval_s=30.0, timeout_s=1.0, staleness_s=120.0),
        MarketBook(),
        NOW_S,
    )
    assert [r.reason for r in outcome.rejected] == ["not_finite", "not_finite"]
    lines = [line for line in json_logging.readouterr().err.splitlines() if line.strip()]
    events = [_strict_json(line) for line in lines]
    rejected = [e for e in events if e["event"] == "feed_value_rejected"]
    assert [(e["key"], e["raw_value"]) for e in rejected] == [
        ("kawpow", "NaN"),
        ("power", "Infinity"),
    ]


def test_non_finite_values_nested_in_an_event_are_strings_and_others_untouched(
    json_logging: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="info", fmt="json")
    structlog.get_logger().info(
        "prices",
        low=float("-inf"),
        quotes={"kawpow": [1.5e-8, float("nan")]},
        pair=(0.05, float("inf")),
        count=3,
        name="NaN stays a name",
    )
    (line,) = [line for line in json_logging.readouterr().err.splitlines() if line.strip()]
    event = _strict_json(line)
    assert event["low"] == "-Infinity"
    assert event["quotes"] == {"kawpow": [1.5e-8, "NaN"]}
    assert event["pair"] == [0.05, "Infinity"]
    assert event["count"] == 3
    assert event["name"] == "NaN stays a name"
