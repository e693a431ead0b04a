"""Readiness probes and draining against stub servers with the real endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from orchestrator.agents.inference import (
    in_flight_from_metrics,
    probe_readiness,
    readiness_url,
    wait_drained,
)
from orchestrator.demo.broker import free_port
from tests.agents.inference.stub_servers import stub_server

SERVERS = ["vllm", "tgi", "triton", "ollama", "http"]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def test_each_server_is_probed_on_its_own_endpoint_unless_the_url_names_one() -> None:
    base = "http://127.0.0.1:8000"
    assert readiness_url("vllm", base) == f"{base}/health"
    assert readiness_url("tgi", base + "/") == f"{base}/health"
    assert readiness_url("triton", base) == f"{base}/v2/health/ready"
    assert readiness_url("ollama", "127.0.0.1:11434") == "http://127.0.0.1:11434/api/version"
    assert readiness_url("triton", f"{base}/v2/models/llama/ready") == (
        f"{base}/v2/models/llama/ready"
    )


@pytest.mark.parametrize("kind", SERVERS)
async def test_a_ready_server_is_ready(kind: str, session: aiohttp.ClientSession) -> None:
    async with stub_server(kind) as server:
        readiness = await probe_readiness(session, kind, server.url, timeout_s=2)
    assert readiness.ready is True
    assert readiness.status == 200


@pytest.mark.parametrize("kind", ["vllm", "tgi", "triton", "http"])
async def test_a_server_answering_503_is_not_ready(
    kind: str, session: aiohttp.ClientSession
) -> None:
    async with stub_server(kind, ready=False) as server:
        readiness = await probe_readiness(session, kind, server.url, timeout_s=2)
    assert readiness.ready is False
    assert readiness.status == 503
    if kind == "tgi":
        assert readiness.detail == "HTTP 503: unhealthy"  # TGI's own error body


async def test_ollama_is_ready_when_it_answers_its_version_and_lists_loaded_models(
    session: aiohttp.ClientSession,
) -> None:
    async with stub_server("ollama") as server:
        readiness = await probe_readiness(session, "ollama", server.url, timeout_s=2)
    assert readiness.ready is True
    assert readiness.models == ("mistral:latest",)
    assert readiness.detail == "ollama 0.5.1; models: mistral:latest"


async def test_a_server_that_does_not_answer_in_time_is_not_ready(
    session: aiohttp.ClientSession,
) -> None:
    async with stub_server("vllm", delay_s=0.6) as server:
        readiness = await probe_readiness(session, "vllm", server.url, timeout_s=0.2)
    assert readiness.ready is False
    assert readiness.status is None
    assert "no answer in 0.2 s" in readiness.detail


async def test_nothing_listening_is_not_ready(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    readiness = await probe_readiness(session, "tgi", url, timeout_s=1)
    assert readiness.ready is False
    assert "ClientConnectorError" in readiness.detail


def test_in_flight_requests_are_summed_from_the_servers_own_gauges() -> None:
    vllm = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="m"} 2.0\n'
        'vllm:num_requests_waiting{model_name="m"} 3.0\n'
        'vllm:num_requests_swapped{model_name="m"} 9.0\n'
    )
    assert in_flight_from_metrics("vllm", vllm) == 5
    assert in_flight_from_metrics("tgi", "tgi_queue_size 4\ntgi_batch_current_size 1\n") == 5
    triton = (
        'nv_inference_pending_request_count{model="a",version="1"} 1\n'
        'nv_inference_pending_request_count{model="b",version="1"} 2\n'
    )
    assert in_flight_from_metrics("triton", triton) == 3
    assert in_flight_from_metrics("vllm", "tgi_queue_size 4\n") is None  # not this server's


async def test_draining_waits_until_nothing_is_in_flight(session: aiohttp.ClientSession) -> None:
    async with stub_server("vllm", in_flight=3) as server:
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, setattr, server, "in_flight", 0)
        result = await wait_drained(
            session, "vllm", server.url, metrics_url=None, timeout_s=5, poll_s=0.05
        )
    assert (result.drained, result.observed, result.in_flight) == (True, True, 0)
    assert 0.25 <= result.waited_s < 2


async def test_draining_is_bounded_when_requests_stay_in_flight(
    session: aiohttp.ClientSession,
) -> None:
    async with stub_server("tgi", in_flight=2) as server:
        result = await wait_drained(
            session, "tgi", server.url, metrics_url=None, timeout_s=0.3, poll_s=0.05
        )
    assert (result.drained, result.observed, result.in_flight) == (False, True, 2)
    assert result.detail.startswith("2 requests still in flight")


async def test_without_an_in_flight_gauge_draining_is_a_bounded_grace_period(
    session: aiohttp.ClientSession,
) -> None:
    async with stub_server("ollama") as server:
        result = await wait_drained(
            session, "ollama", server.url, metrics_url=None, timeout_s=0.2, poll_s=0.05
        )
    assert (result.drained, result.observed) == (False, False)
    assert 0.15 <= result.waited_s < 1
