"""Open a local HTML page in headless Chromium over the DevTools protocol (tests only).

A small driver instead of Selenium: Chromium is started with ``--remote-debugging-port=0``,
its chosen port is read from ``DevToolsActivePort`` in the throw-away profile, and one
websocket (aiohttp, which Ray already installs) sends ``Page.navigate``, reads every image's
load state with ``Runtime.evaluate`` and takes a full-page ``Page.captureScreenshot``, while
console errors, uncaught exceptions and failed loads are collected from the events.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGES_JS = ("JSON.stringify(Array.from(document.images).map(i => "
             "[i.getAttribute('src'), i.complete && i.naturalWidth > 0]))")
SIZE_JS = "JSON.stringify([document.documentElement.scrollWidth, " \
          "document.documentElement.scrollHeight])"


@dataclass(frozen=True)
class PageCheck:
    images: tuple[tuple[str, bool], ...]  # (src, loaded)
    errors: tuple[str, ...]  # console errors, exceptions, failed loads
    screenshot: bytes  # PNG


def chromium() -> str | None:
    """The Chromium binary on PATH (Debian: ``chromium``), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def open_page(page: Path, width: int = 1200, timeout: float = 60.0) -> PageCheck:
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={profile}",
             f"--window-size={width},900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = _port(Path(profile), timeout)
            return asyncio.run(_drive(port, page.resolve().as_uri(), width, timeout))
        finally:
            process.terminate()
            process.wait(timeout=10)


def _port(profile: Path, timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.is_file() and marker.read_text().strip():
            return int(marker.read_text().splitlines()[0])
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


async def _drive(port: int, url: str, width: int, timeout: float) -> PageCheck:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        target = next(t for t in targets if t["type"] == "page")
        async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            cdp = _Session(ws)
            for domain in ("Page", "Runtime", "Log", "Network"):
                await cdp.call(f"{domain}.enable")
            await cdp.call("Page.navigate", url=url)
            await asyncio.wait_for(cdp.wait_event("Page.loadEventFired"), timeout)
            images = json.loads((await cdp.call("Runtime.evaluate", expression=IMAGES_JS))
                                ["result"]["value"])
            size = json.loads((await cdp.call("Runtime.evaluate", expression=SIZE_JS))
                              ["result"]["value"])
            await cdp.call("Emulation.setDeviceMetricsOverride", width=width,
                           height=min(int(size[1]), 16000), deviceScaleFactor=1, mobile=False)
            shot = await cdp.call("Page.captureScreenshot", format="png")
            return PageCheck(tuple((str(s), bool(ok)) for s, ok in images), tuple(cdp.errors),
                             base64.b64decode(shot["data"]))


class _Session:
    """Request/response over one DevTools websocket; events are scanned for errors."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.errors: list[str] = []
        self.seen: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self._event(message)

    async def wait_event(self, method: str) -> None:
        while method not in self.seen:
            self._event(await self.ws.receive_json())

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method", ""), message.get("params", {})
        self.seen.append(method)
        if method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(f"console: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            self.errors.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url')}")
        elif method == "Network.loadingFailed":
            self.errors.append(f"load failed: {params.get('errorText')}")
