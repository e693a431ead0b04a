"""The status page in a real headless Chromium against the demo's fleet: what it shows, and
that its controls reach the API (and show the API's refusals in its own words)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import pytest

from orchestrator.demo.broker import free_port
from orchestrator.domain import workload_kind
from tests.statuspage.browser import CTRL, Page
from tests.statuspage.conftest import ARTIFACTS, OPERATOR, VIEWER, Site

pytestmark = pytest.mark.slow

CELLS = "[...document.querySelectorAll('#grid button.c')]"


def expected_kind(gpu: dict[str, Any]) -> str:
    """The grid's class for a GPU of /api/v1/state, by the page's documented rules."""
    if gpu["state"] in {"unhealthy", "lost"}:
        return "k-bad"
    if gpu["state"] == "unknown" or gpu["workload"] == "unknown":
        return "k-off"
    return {"mining": "k-mine", "ai": "k-ai", "idle": "k-idle"}.get(
        workload_kind(gpu["workload"]).value, "k-off"
    )


async def page_cells(page: Page) -> dict[str, str]:
    cells = await page.evaluate(f"{CELLS}.map(c => [c.dataset.gpu, c.className])")
    return {gpu: next(c for c in cls.split() if c.startswith("k-")) for gpu, cls in cells}


async def open_with_token(page: Page, site: Site, token: str = OPERATOR) -> None:
    await page.open(f"{site.url}/#token={token}")
    await page.wait_for(f"{CELLS}.length === 8", what="the grid to show the 8 GPUs")


async def test_the_page_shows_the_fleet_prices_contracts_and_decisions(
    site: Site, page: Page
) -> None:
    await open_with_token(page, site)
    # the token went from the address bar into this tab's storage
    assert await page.evaluate("location.hash") == ""
    assert await page.evaluate("sessionStorage.getItem('orchestrator.token')") == OPERATOR

    # every GPU in its node, with the class of what the API says it runs
    async def grid_matches_api() -> bool:
        state = await site.get("/api/v1/state")
        wanted = {gpu["gpu"]: expected_kind(gpu) for n in state["nodes"] for gpu in n["gpus"]}
        return await page_cells(page) == wanted

    for _ in range(50):
        if await grid_matches_api():
            break
        await page.evaluate("new Promise(r => setTimeout(r, 200))")
    else:
        raise AssertionError(f"the grid never matched /api/v1/state: {await page_cells(page)}")
    kinds = set((await page_cells(page)).values())
    assert {"k-mine", "k-ai"} <= kinds, kinds
    nodes = await page.evaluate(
        "[...document.querySelectorAll('#grid .node')].map(n =>"
        " [n.querySelector('.node-name').textContent, n.querySelectorAll('button.c').length])"
    )
    assert nodes == [[f"node-0{i}", 2] for i in range(1, 5)]
    assert "4 of 4 nodes online" in await page.text("#summary")

    # prices: each algorithm's hashprice and the power price, from the newest plan
    await page.wait_for("document.querySelector('#market table')", what="the prices table")
    market = await page.text("#market")
    for algorithm in ("kawpow", "etchash", "autolykos"):
        assert algorithm in market
    assert "per MH/s·day" in market
    assert "per kWh" in market
    assert "Plan #" in market

    # contracts: rate, committed, planned, serving, availability this period
    await page.wait_for(
        "document.querySelector('#contracts tr[data-contract=spot]')", what="the contracts table"
    )
    acme_row = "#contracts tr[data-contract=acme]"
    await page.wait_for(
        f"document.querySelector('{acme_row}').innerText.includes('of 99.0 %')",
        what="acme's availability this period against its target",
    )
    acme = await page.text(acme_row)
    assert "$1.40/GPU·h" in acme
    assert "\t12\t" in acme  # committed
    assert "$0.30/GPU·h" in await page.text("#contracts tr[data-contract=spot]")

    # decisions: the planner's, with their reasons; plans without switches on request
    await page.click("#quiet-plans")
    await page.wait_for(
        "document.querySelector('#decisions li[data-kind=plan]')", what="a plan in the decisions"
    )
    assert "plan #" in await page.text("#decisions")

    # a click on a GPU explains it: candidates with $/h, the choice, the reason
    await page.click('#grid button[data-gpu="node-03:0"]')
    await page.wait_for(
        "document.querySelector('#explain tr.chosen')", what="the explanation of node-03:0"
    )
    explanation = await page.text("#explain")
    assert "node-03:0" in explanation
    assert "/h" in explanation
    view = await site.get("/api/v1/gpus/node-03:0/explain")
    assert view["reason"] in explanation

    await page.screenshot(ARTIFACTS / "status-page.png")
    assert page.exceptions == []


async def test_a_pin_through_the_page_reaches_the_api_and_is_listed_and_deleted(
    site: Site, page: Page
) -> None:
    await open_with_token(page, site)
    await page.wait_for(
        "[...document.querySelectorAll('#workload-select option')].some(o => o.value === 'idle')",
        what="the workloads to choose from",
    )
    await page.click('#grid button[data-gpu="node-01:0"]', modifiers=CTRL)
    await page.click('#grid button[data-gpu="node-01:1"]', modifiers=CTRL)
    assert await page.text("#selected-count") == "2"
    await page.select("#workload-select", "idle")
    await page.type("#reason", "bench test, ticket 7")
    await page.click("#pin-button")
    await page.wait_for(
        "document.querySelector('#control-result.ok')",
        what="the page to report the override",
    )
    assert "Pinned to idle" in await page.text("#control-result")

    overrides = (await site.get("/api/v1/overrides"))["overrides"]
    assert [(o["gpus"], o["workload"], o["reason"], o["by"]) for o in overrides] == [
        (["node-01:0", "node-01:1"], "idle", "bench test, ticket 7", "olga")
    ]
    override_id = overrides[0]["id"]
    row = f"#overrides tr[data-override='{override_id}']"
    await page.wait_for(f"document.querySelector({json.dumps(row)})", what="the override's row")
    assert "bench test, ticket 7" in await page.text(row)

    await page.click(f"{row} button[data-delete]")
    await page.wait_for(
        f"!document.querySelector({json.dumps(row)})", what="the row to go after deleting"
    )
    assert (await site.get("/api/v1/overrides"))["overrides"] == []


async def test_an_sla_refusal_shows_the_api_text_and_force_sends_it_again(
    site: Site, page: Page
) -> None:
    """node-03's L40S GPUs serve acme: draining them would leave acme shorter: 409."""
    await open_with_token(page, site)
    await page.wait_for(
        "document.querySelector('#explain') && document.querySelector('#market table')",
        what="a first plan",
    )
    await page.select("#node-select", "node-03")
    await page.type("#reason", "fan replacement")
    await page.click("#drain-button")
    await page.wait_for(
        "document.querySelector('#control-result.bad')", what="the page to show the refusal"
    )
    refusal = await page.text("#control-result")
    assert "refused: acme would be short" in refusal
    assert "send force=true" in refusal
    assert await page.evaluate("!document.querySelector('#force-button').hidden")
    assert (await site.get("/api/v1/overrides"))["overrides"] == []
    await page.screenshot(ARTIFACTS / "status-page-refused.png")

    await page.click("#force-button")
    await page.wait_for(
        "document.querySelector('#control-result.ok')", what="the forced drain to be accepted"
    )
    assert "Drained 2 GPU(s)" in await page.text("#control-result")
    overrides = (await site.get("/api/v1/overrides"))["overrides"]
    assert [(o["gpus"], o["workload"]) for o in overrides] == [
        (["node-03:0", "node-03:1"], "drain")
    ]


async def test_a_viewer_token_reads_the_page_and_sees_the_403_text(site: Site, page: Page) -> None:
    await page.open(site.url + "/")
    await page.wait_for(
        "document.activeElement && document.activeElement.id === 'token'",
        what="the page to ask for a token",
    )
    assert "needs a token" in await page.text("#banner")
    await page.type("#token", VIEWER)
    await page.click("#token-form button[type=submit]")
    await page.wait_for(f"{CELLS}.length === 8", what="the grid, read with the viewer token")
    assert await page.evaluate("document.querySelector('#banner').hidden")

    await page.click('#grid button[data-gpu="node-02:1"]')
    await page.wait_for("document.querySelector('#explain table')", what="the explanation")
    await page.type("#reason", "try")
    await page.click("#pin-button")
    await page.wait_for(
        "document.querySelector('#control-result.bad')", what="the page to show the 403"
    )
    assert "needs the operator role" in await page.text("#control-result")
    assert (await site.get("/api/v1/overrides"))["overrides"] == []


async def test_a_wrong_token_is_refused_with_a_prompt(site: Site, page: Page) -> None:
    await page.open(f"{site.url}/#token=not-a-real-token")
    await page.wait_for(
        "document.querySelector('#banner').textContent.includes('401')",
        what="the page to say the token was refused",
    )
    assert await page.evaluate(f"{CELLS}.length") == 0


async def test_the_url_the_demo_prints_opens_its_fleet(page: Page) -> None:
    """The real `orchestrator demo`: its printed status page URL carries its operator token."""
    port = free_port()
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator",
        "demo",
        "--nodes",
        "2",
        "--gpus-per-node",
        "4",
        "--http",
        f"127.0.0.1:{port}",
        "--duration",
        "40",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert demo.stdout is not None
    try:
        url = None
        async with asyncio.timeout(20):
            while url is None:
                line = (await demo.stdout.readline()).decode()
                assert line, "the demo ended before it printed its URLs"
                if line.strip().startswith("status page:"):
                    url = line.split()[-1]
        assert url.startswith(f"http://127.0.0.1:{port}/#token=")
        await page.open(url)
        await page.wait_for(f"{CELLS}.length === 8", what="the demo's 8 GPUs")
        assert await page.evaluate("location.hash") == ""
        kinds = set((await page_cells(page)).values())
        assert kinds <= {"k-mine", "k-ai", "k-idle"}, kinds
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(demo.communicate(), timeout=15)
            except TimeoutError:
                demo.kill()
                await demo.wait()


async def test_the_page_lists_curtailment_windows_with_their_sla_forecast(
    site: Site, page: Page
) -> None:
    await open_with_token(page, site)
    await page.wait_for("document.querySelector('#market table')", what="a first plan")
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    now_s = (await site.get("/api/v1/state"))["generated_at_s"]
    window = {
        "cap_kw": 0.1,  # tomorrow, below acme's 12 committed GPUs: a shortfall, said now
        "start_s": now_s + 86_400,
        "duration_s": 3600,
        "reason": "utility DR test",
    }
    async with site.session.post(
        f"{site.url}/api/v1/curtailments", headers=headers, json=window
    ) as response:
        assert response.status == 201, await response.text()
        created = await response.json()
    assert created["forecast"]["ok"] is False
    row = f"#curtailments tr[data-curtailment='{created['id']}']"
    await page.wait_for(f'document.querySelector("{row}")', what="the window in the panel")
    text = await page.text(row)
    assert "0.1 kW" in text
    assert "upcoming" in text
    assert "utility DR test — operator" in text
    assert "acme short" in text
    assert await page.evaluate(f'document.querySelector("{row} td.bad") !== null')
    assert page.exceptions == []
