"""The HTML report in a real browser: headless Chromium loads it with no console error, the tables are
there, the hashed filter script runs (and filters), and a screenshot is saved in the test's tmp dir.

Needs Debian ``chromium`` (/usr/bin/chromium); skipped with the reason when it is missing. Chromium is
driven over the DevTools protocol on ``--remote-debugging-pipe`` (fd 3: commands in, fd 4: replies
out, NUL-terminated JSON), with the standard library only.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from harness.report import render_report
from test_report import make_paired_results, make_run_a, make_run_b
from test_report_fixtures import flags, safety_run

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium missing (Debian package chromium)")

# A response that would run script, break the layout or pull a remote image if it were not escaped.
INJECTION = (
    '<script>console.error("injected script ran")</script></td></tr></table>'
    '<img src=x onerror="console.error(\'injected handler ran\')"><img src="http://evil.example/p.png">'
    "{{ 7 * 7 }} {% raw %}"
)


class DevTools:
    """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe."""

    def __init__(self, profile: Path):
        to_child_read, self._write_fd = os.pipe()
        self._read_fd, from_child_write = os.pipe()
        # Park the child's ends above 100 so that placing them on fds 3 and 4 cannot clobber each other.
        child_read = fcntl.fcntl(to_child_read, fcntl.F_DUPFD_CLOEXEC, 100)
        child_write = fcntl.fcntl(from_child_write, fcntl.F_DUPFD_CLOEXEC, 100)
        os.close(to_child_read)
        os.close(from_child_write)

        def place_pipe_fds() -> None:  # runs in the child between fork and exec
            os.dup2(child_read, 3)
            os.dup2(child_write, 4)

        self.process = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=place_pipe_fds, close_fds=False,  # Python's own fds are non-inheritable anyway
        )
        os.close(child_read)
        os.close(child_write)
        self._buffer = b""
        self._last_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")
        call_id = self._last_id
        reply = self.wait_for(lambda: self._replies.pop(call_id, None))
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for(self, found: Callable[[], Any], timeout: float = TIMEOUT_S) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = found()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._read_fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
            *messages, self._buffer = self._buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    self._replies[message["id"]] = message
                else:
                    self.events.append(message)

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.process.wait(timeout=20)
        except Exception:  # noqa: BLE001 - make sure the process we started is gone
            self.process.kill()
            self.process.wait(timeout=20)
        finally:
            os.close(self._write_fd)
            os.close(self._read_fd)


class Page:
    def __init__(self, browser: DevTools):
        self.browser = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False})

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def load(self, url: str) -> None:
        loads = self._count("Page.loadEventFired")
        self.call("Page.navigate", {"url": url})
        self.browser.wait_for(lambda: self._count("Page.loadEventFired") > loads)

    def _count(self, method: str) -> int:
        return sum(1 for e in self.browser.events if e["method"] == method and e.get("sessionId") == self.session)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, and browser log errors (CSP violations, failed loads)."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            params = event.get("params", {})
            if event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif event["method"] == "Runtime.exceptionThrown":
                found.append("exception: " + json.dumps(params["exceptionDetails"])[:500])
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log ({params['entry']['source']}): {params['entry']['text']}")
        return found

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))


@pytest.fixture
def browser(tmp_path: Path):
    devtools = DevTools(tmp_path / "chromium-profile")
    try:
        yield devtools
    finally:
        devtools.close()


def test_error_capture_works(browser, tmp_path: Path):
    # the checks below mean something only if console errors and CSP violations are seen
    probe = tmp_path / "probe.html"
    probe.write_text(
        "<!DOCTYPE html><meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'none'\">"
        "<p>probe</p><script>console.error('blocked')</script>", encoding="utf-8")
    page = Page(browser)
    page.load(probe.as_uri())
    errors = page.errors()
    assert any("Content Security Policy" in e for e in errors), errors
    page.load("data:text/html,<script>console.error('probe error')</script>")
    assert any("probe error" in e for e in page.errors())


def test_report_in_chromium(browser, tmp_path: Path):
    results = tmp_path / "results"
    runs = make_paired_results(results)
    hostile = safety_run(results, "r9-hostile", "m", "hostile <b>", refused=flags(1, 3), texts=[INJECTION] * 3)
    runs = [*runs, hostile, make_run_a(tmp_path / "a"), make_run_b()]
    html_path, _ = render_report(runs, tmp_path / "out", "browser", title="Report <script>alert(1)</script>",
                                 samples_per_task=60)

    page = Page(browser)
    page.load(html_path.as_uri())
    page.screenshot(tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 10_000

    assert page.errors() == []
    assert page.evaluate("document.title") == "Report <script>alert(1)</script>"
    # the tables are there, and the injected </table> closed none of them
    tables = page.evaluate("Array.from(document.querySelectorAll('table')).map(t => t.id || t.className)")
    for table_id in ("overview-table", "comparison-table", "latency-table", "error-table", "sample-table",
                     "environment-table", "provenance-table"):
        assert table_id in tables
    assert tables.count("category-table") == 3
    assert page.evaluate("document.querySelectorAll('#overview-table tbody tr').length") == 6
    # figstep-tiny: 60 samples x 3 defenses + the hostile defense on 3 of them; easy-VQA 40 x 3; mmsafety 4
    assert page.evaluate("document.querySelectorAll('#sample-table tr.response').length") == 183 + 120 + 4
    # injected markup is text: no extra script, image or element came from it
    assert page.evaluate("document.scripts.length") == 1
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"], img[src^=\"http\"]').length") == 0
    assert page.evaluate("document.body.innerText.includes('{{ 7 * 7 }} {% raw %}')")
    assert page.evaluate("Array.from(document.images).every(i => i.src.startsWith('data:image/') && i.naturalWidth > 0)")

    # the filter script ran (CSP hash accepted): the form is shown and filtering hides rows
    assert page.evaluate("document.getElementById('sample-filters').hidden") is False
    visible = ("Array.from(document.querySelectorAll('#sample-table tr.response'))"
               ".filter(r => !r.hidden && !r.parentElement.hidden)")
    page.evaluate("const s = document.querySelector('select[data-filter=verdict]'); s.value = 'refusal';"
                  "s.dispatchEvent(new Event('change'))")
    refusals = page.evaluate(f"{visible}.length")
    assert refusals == 10 + 50 + 12 + 1 + 1  # none, guard, weak, hostile, run A's judged refusal
    assert page.evaluate(f"{visible}.every(r => r.dataset.verdict === 'refusal')")
    assert page.evaluate("document.getElementById('sample-count').textContent") == str(refusals)
    page.evaluate("const t = document.querySelector('select[data-filter=task]'); t.value = 'easyvqa';"
                  "t.dispatchEvent(new Event('change'))")
    assert page.evaluate(f"{visible}.length") == 0
    assert page.evaluate("Array.from(document.querySelectorAll('tbody.sample-group')).every(g => g.hidden)")
    page.evaluate("const v = document.querySelector('select[data-filter=verdict]'); v.value = 'correct';"
                  "v.dispatchEvent(new Event('change'))")
    assert page.evaluate(f"{visible}.length") == 30 + 20 + 30
    page.screenshot(tmp_path / "filtered.png")
    assert page.errors() == []


def test_report_without_script_shows_everything(browser, tmp_path: Path):
    html_path, _ = render_report(make_paired_results(tmp_path / "results"), tmp_path / "out", "noscript",
                                 plots=False)
    page = Page(browser)
    page.call("Emulation.setScriptExecutionDisabled", {"value": True})
    page.load(html_path.as_uri())
    assert page.evaluate("document.getElementById('sample-filters').hidden") is True  # no dead controls
    rows = page.evaluate("Array.from(document.querySelectorAll('#sample-table tr.response'))"
                         ".filter(r => r.offsetParent !== null).length")
    assert rows == 3 * 20 + 3 * 20  # every shown sample's responses are visible
    page.screenshot(tmp_path / "noscript.png")
    assert page.errors() == []
