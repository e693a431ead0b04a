"""A real headless Chromium, driven over the Chrome DevTools Protocol with aiohttp.

No browser-automation dependency: Chromium (Debian's package) is started as a child with
`--remote-debugging-port=0`, writes the port it chose to `DevToolsActivePort` in its
profile folder, and the test talks to its one page over a websocket. Clicks and typing are
real input events (`Input.dispatchMouseEvent`, `Input.insertText`), not `element.click()`.
Uncaught exceptions and console errors on the page are collected so that a test can assert
there were none. The flags keep Chromium off the network except for the URLs a test opens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--metrics-recording-only",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]
VIEWPORT = {"width": 1440, "height": 1000}
CTRL = 2  # CDP modifier bit


class PageError(AssertionError):
    """JavaScript on the page threw, or the page never got where the test waited for."""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One tab, with what happened on it (exceptions, console errors)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.exceptions: list[str] = []
        self.console_errors: list[str] = []
        self._reader = asyncio.create_task(self._read(), name="cdp-reader")

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                self._event(data["method"], data.get("params", {}))
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the browser closed the connection"))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            exception = details.get("exception", {})
            self.exceptions.append(exception.get("description") or details.get("text", "?"))
        elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
            self.console_errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.console_errors.append(params["entry"]["text"])

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future
        await self._ws.send_json({"id": command_id, "method": method, "params": params})
        answer = await asyncio.wait_for(future, timeout=30)
        if "error" in answer:
            raise PageError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise)."""
        answer = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise PageError(f"{expression!r} threw: {text}")
        return answer["result"].get("value")

    async def wait_for(self, expression: str, *, what: str, timeout_s: float = 15.0) -> Any:
        """Poll a JavaScript expression until it is truthy; its value (an element: true)."""
        deadline = time.monotonic() + timeout_s
        probe = f"(() => {{ const v = ({expression}); return v instanceof Node ? true : v; }})()"
        while True:
            value = await self.evaluate(probe)
            if value:
                return value
            if time.monotonic() > deadline:
                raise PageError(f"timed out after {timeout_s} s waiting for {what}")
            await asyncio.sleep(0.1)

    async def open(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for(
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            what=f"{url} to load",
        )

    async def click(self, selector: str, *, modifiers: int = 0) -> None:
        """A real left click in the middle of the first element matching `selector`."""
        # where the element is, once nothing covers it there (a panel above may still grow)
        box = await self.wait_for(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return null;
                el.scrollIntoView({{block: 'center'}});
                const r = el.getBoundingClientRect();
                const x = r.x + r.width / 2, y = r.y + r.height / 2;
                return el.contains(document.elementFromPoint(x, y)) ? {{x, y}} : null;
            }})()""",
            what=f"{selector!r} to be on the page and clickable",
            timeout_s=5,
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box["x"],
                y=box["y"],
                button="left" if kind != "mouseMoved" else "none",
                clickCount=1,
                modifiers=modifiers,
            )

    async def type(self, selector: str, text: str) -> None:
        """Focus a field, empty it, and type `text` into it."""
        found = await self.evaluate(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return false;
                el.focus(); el.value = ''; return true;
            }})()"""
        )
        if not found:
            raise PageError(f"nothing on the page matches {selector!r}")
        await self.send("Input.insertText", text=text)

    async def select(self, selector: str, value: str) -> None:
        """Choose an option of a <select>, as a person picking it from the list would."""
        ok = await self.evaluate(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                const wanted = {json.dumps(value)};
                if (!el || ![...el.options].some(o => o.value === wanted)) return false;
                el.value = {json.dumps(value)};
                el.dispatchEvent(new Event('change', {{bubbles: true}}));
                return true;
            }})()"""
        )
        if not ok:
            raise PageError(f"{selector!r} has no option {value!r}")

    async def text(self, selector: str) -> str:
        value = await self.evaluate(
            f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText || ''"
        )
        return str(value)

    async def screenshot(self, path: Path) -> None:
        """The whole page, not just the viewport."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        shot = await self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        )
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))

    async def close(self) -> None:
        await self._ws.close()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self._reader


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def _devtools_port(profile: Path, process: asyncio.subprocess.Process) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise PageError(f"chromium exited with {process.returncode} before it listened")
        if marker.exists():
            lines = marker.read_text().splitlines()
            if lines and lines[0].isdigit():
                return int(lines[0])
        await asyncio.sleep(0.05)
    raise PageError("chromium did not open its DevTools port within 20 s")


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Page]:
    """A headless Chromium with a private profile; yields its page; always stopped after."""
    binary = find_chromium()
    if binary is None:
        raise PageError(
            "chromium is not installed: apt-get install --no-install-recommends chromium"
        )
    await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
    log = await asyncio.to_thread((profile.parent / "chromium.log").open, "wb")
    process = await asyncio.create_subprocess_exec(
        binary,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={VIEWPORT['width']},{VIEWPORT['height']}",
        "about:blank",
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        port = await _devtools_port(profile, process)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            target = next(t for t in targets if t["type"] == "page")
            ws = await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
            page = Page(ws)
            try:
                for domain in ("Page", "Runtime", "Log"):
                    await page.send(f"{domain}.enable")
                await page.send(
                    "Emulation.setDeviceMetricsOverride",
                    **VIEWPORT,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
            finally:
                await page.close()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()
