"""A real browser opens the built book: headless Debian ``chromium`` loads the index and the results page with
no console errors, uncaught exceptions or failed loads, and saves full-page screenshots under ``artifacts/``.

Chromium is driven through the DevTools protocol (a websocket, tornado's client) so that console messages
come with their level: ``console.error``, ``Runtime.exceptionThrown`` and ``Log.entryAdded`` at level error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_book import built_book  # noqa: F401  (session fixture, built once)
from test_notebooks import ROOT, smoke_book  # noqa: F401

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "artifacts" / "browser"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")]


class _DevTools:
    """A minimal DevTools-protocol session on one page target: commands, and the page's problems."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.problems: list[str] = []
        self.loads = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        future = self.pending[number] = asyncio.get_running_loop().create_future()
        await self.socket.write_message(json.dumps({"id": number, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def listen(self) -> None:
        while (message := await self.socket.read_message()) is not None:
            data = json.loads(message)
            if data.get("id") in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            self._event(data.get("method"), data.get("params", {}))

    def _event(self, method: str | None, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.problems.append(f"uncaught: {details.get('exception', {}).get('description') or details['text']}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.problems.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.problems.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}".strip())
        elif method == "Page.loadEventFired":
            self.loads += 1


# tables whose columns do not all show: a table wider than the article, or inside a box that scrolls sideways
CUT_TABLES = """Array.from(document.querySelectorAll('article table')).filter(t => {
  const article = t.closest('article');
  if (t.getBoundingClientRect().right > article.getBoundingClientRect().right + 1) return true;
  for (let box = t.parentElement; box && box !== article; box = box.parentElement) {
    if (box.scrollWidth > box.clientWidth + 1 && getComputedStyle(box).overflowX !== 'visible') return true;
  }
  return false;
}).map(t => Array.from(t.querySelectorAll('th')).map(h => h.innerText.trim()).filter(Boolean).slice(0, 4).join(' | '))"""


async def _visit(websocket_url: str, url: str, screenshot: Path, width: int = 1280) -> tuple[list[str], dict[str, Any]]:
    from tornado.websocket import websocket_connect

    socket = await websocket_connect(websocket_url, max_message_size=256 * 2**20)
    tools = _DevTools(socket)
    listener = asyncio.create_task(tools.listen())
    try:
        for domain in ("Runtime", "Log", "Page"):
            await tools.call(f"{domain}.enable")
        await tools.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1,
                         mobile=False)
        await tools.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while tools.loads == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # redirects, deferred scripts
        page = (await tools.call("Runtime.evaluate", returnByValue=True, expression=(
            "({url: location.href, title: document.title, h1: (document.querySelector('h1') || {}).textContent,"
            " images: Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth]),"
            " tables: document.querySelectorAll('table').length, text: document.body.innerText,"
            " prev_next: Array.from(document.querySelectorAll('.prev-next-area a')).map(a => a.innerText),"
            " open_hidden: document.querySelectorAll('details.hide[open], details.above-input[open]').length,"
            " height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth,"
            " scroll_x: window.scrollX, cut_tables: " + CUT_TABLES + "})")))["result"]["value"]
        height = min(int(page["height"]), 12000)
        shot = await tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return tools.problems, page
    finally:
        listener.cancel()
        socket.close()


def _devtools_port(log: Path, process: subprocess.Popen, timeout_s: float = 30) -> int:
    """The port chromium prints as ``DevTools listening on ws://127.0.0.1:<port>/...`` to its stderr (a file)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if found := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", log.read_text(errors="replace")):
            return int(found.group(1))
        time.sleep(0.1)
    raise AssertionError(f"chromium did not start its DevTools endpoint:\n{log.read_text(errors='replace')[-2000:]}")


def _open(url: str, screenshot: Path, width: int = 1280) -> tuple[list[str], dict[str, Any]]:
    """Start chromium with a fresh profile, load ``url`` in a window ``width`` pixels wide and return
    (problems, page facts)."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        log = Path(profile) / "stderr.log"
        with log.open("w") as stderr:
            process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}/data",
                                        "--remote-debugging-port=0", "about:blank"],
                                       stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            port = _devtools_port(log, process)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
                target = next(t for t in json.load(reply) if t["type"] == "page")
            return asyncio.run(_visit(target["webSocketDebuggerUrl"], url, screenshot, width))
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """End the chromium started here with its helper processes: its own session, so its group id is its pid."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        process.poll()  # reap the main process
        try:
            os.killpg(process.pid, 0)  # is any process of the group left?
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def test_index_opens_without_console_errors(built_book):
    problems, page = _open(built_book.as_uri(), ARTIFACTS / "index.png")
    assert problems == []
    assert page["url"].endswith("book/intro.html")  # index.html redirects to the root page
    assert "shapnas" in page["h1"]
    assert (ARTIFACTS / "index.png").read_bytes()[:4] == b"\x89PNG"


def test_results_pages_open_without_console_errors(built_book):
    html = built_book.parent
    for name, page_path in (("results", html / "book" / "datasets" / "results.html"),
                            ("04_shapley_pruning", html / "book" / "datasets" / "acdc" / "04_shapley_pruning.html")):
        problems, page = _open(page_path.as_uri(), ARTIFACTS / f"{name}.png")
        assert problems == [], name
        assert page["tables"] >= 1, name
        broken = [src for src, width in page["images"] if width == 0]
        assert not broken, f"{name}: images that did not load: {broken}"


def test_dataset_pages_have_distinct_titles_and_no_visible_boilerplate(built_book):
    html = built_book.parent / "book" / "datasets" / "acdc"
    titles = []
    for stem in ("01_data", "03_search"):
        problems, page = _open((html / f"{stem}.html").as_uri(), ARTIFACTS / f"acdc-{stem}.png")
        assert problems == [], stem
        assert page["title"].startswith("ACDC · "), page["title"]
        assert page["h1"].startswith("ACDC · "), page["h1"]
        text = page["text"]
        for boilerplate in ("cfg = ", "warnings.filterwarnings", "NBVAL", "assert check", " if ran else None"):
            assert boilerplate not in text, f"{stem}: {boilerplate!r} is visible"
        assert "This page: profile smoke, seed 0" in text, stem  # the provenance line under the title
        assert page["open_hidden"] == 0, stem  # hidden inputs stay folded
        if stem == "03_search":  # the previous/next links name the dataset too
            assert any("ACDC · 2." in link for link in page["prev_next"]), page["prev_next"]
            assert any("ACDC · 4." in link for link in page["prev_next"]), page["prev_next"]
        titles.append(page["title"])
    assert len(set(titles)) == len(titles)


def test_every_table_column_is_visible_at_1400_px(built_book):
    """No table is cut at the right edge or hidden behind a sideways scroll bar in a 1400 px window: the
    results page and the chapters with the widest tables (metrics per class, ablations, stability)."""
    html = built_book.parent / "book" / "datasets"
    pages = {"results": html / "results.html",
             **{stem: html / "acdc" / f"{stem}.html" for stem in ("01_data", "04_shapley_pruning", "05_ablations",
                                                                  "06_stability")}}
    for name, page_path in pages.items():
        problems, page = _open(page_path.as_uri(), ARTIFACTS / f"{name}-1400.png", width=1400)
        assert problems == [], name
        assert page["cut_tables"] == [], f"{name}: tables cut at the right edge: {page['cut_tables']}"
