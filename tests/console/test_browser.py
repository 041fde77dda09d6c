"""The console in a real browser (Debian's headless Chromium driven by Playwright): log in, watch
frames arrive, acknowledge an alert, see the action in the log; an observer's click is refused
(403) and logged; only a physicist changes the autonomy level. Screenshots go to test-output/console/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from igikit.supervise import AuditLog, HumanAction

from .conftest import PASSWORDS, ROOT_OUTPUT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = ROOT_OUTPUT / "console"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian chromium not installed (make test installs it)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def open_as(browser, url: str, name: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORDS[name])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#console-view:not([hidden])", timeout=10_000)
    poll(page, "window.igikitStats && window.igikitStats.frames > 2")
    return context, page


def poll(page, expression: str, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``expression`` is true in the page (page.wait_for_function needs eval, which the CSP forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        page.wait_for_timeout(50)


def actions(path: Path) -> list[HumanAction]:
    with AuditLog(path, create=False) as audit:
        return [e.record for e in audit.records() if e.kind == "human_action"]  # type: ignore[misc]


def wait_alert(page) -> str:  # type: ignore[no-untyped-def]
    card = page.wait_for_selector("#alerts li[data-alert-id]", timeout=15_000)
    return str(card.get_attribute("data-alert-id"))


def test_operator_sees_frames_acknowledges_an_alert_and_cannot_change_autonomy(browser, running_console) -> None:
    context, page = open_as(browser, running_console.url, "olivia")
    try:
        first = page.evaluate("window.igikitStats.frames")
        first_id = page.evaluate("window.igikitStats.lastFrameId")
        page.wait_for_timeout(1500)
        assert page.evaluate("window.igikitStats.frames") >= first + 8  # 8 Hz: about 12 in 1.5 s
        assert page.evaluate("window.igikitStats.lastFrameId") > first_id
        assert int(page.inner_text("#frame-count")) >= first + 8
        assert page.inner_text("#who-role") == "operator"
        assert page.inner_text("#beam") in ("BEAM ON", "BEAM HOLD")
        page.screenshot(path=str(SHOTS / "operator_live.png"))

        alert_id = wait_alert(page)
        page.screenshot(path=str(SHOTS / "operator_alert.png"))
        page.fill("#reason", "target visible again")
        page.click(f"#alerts li[data-alert-id='{alert_id}'] button.ack")
        entry = page.wait_for_selector("#log li[data-kind=acknowledged]", timeout=10_000)
        assert f"alert {alert_id} acknowledged by olivia (operator)" in entry.inner_text()
        page.screenshot(path=str(SHOTS / "operator_acknowledged.png"))
        ack = [a for a in actions(running_console.audit_path) if a.action == "acknowledge" and not a.refused]
        assert ack and ack[-1].operator == "olivia" and ack[-1].reason == "target visible again"

        page.select_option("#level-select", "3")
        with page.expect_response("**/api/autonomy") as response:
            page.click("#set-level")
        assert response.value.status == 403
        page.wait_for_selector("#toast:not([hidden])")
        assert "Refused (403)" in page.inner_text("#toast")
        page.screenshot(path=str(SHOTS / "operator_autonomy_refused.png"))
        refused = [a for a in actions(running_console.audit_path) if a.action == "set_autonomy"]
        assert refused[-1].refused and refused[-1].operator == "olivia" and refused[-1].role == "operator"
        assert running_console.session.level == 2
    finally:
        context.close()


def test_observer_click_is_refused_and_logged(browser, running_console) -> None:
    context, page = open_as(browser, running_console.url, "oscar")
    try:
        assert "observer" in page.inner_text("#role-note")
        alert_id = wait_alert(page)
        with page.expect_response(f"**/api/alerts/{alert_id}/acknowledge") as response:
            page.click(f"#alerts li[data-alert-id='{alert_id}'] button.ack")
        assert response.value.status == 403
        page.wait_for_selector("#toast:not([hidden])")
        assert "Refused (403)" in page.inner_text("#toast")
        page.wait_for_selector("#log li[data-kind=refused]", timeout=10_000)
        page.screenshot(path=str(SHOTS / "observer_refused.png"))
        refused = [a for a in actions(running_console.audit_path) if a.operator == "oscar"]
        assert refused and all(a.refused and a.role == "observer" for a in refused)
        assert refused[-1].action == "acknowledge"
    finally:
        context.close()


def test_physicist_changes_the_autonomy_level(browser, running_console) -> None:
    context, page = open_as(browser, running_console.url, "paul")
    try:
        page.select_option("#level-select", "3")
        page.fill("#reason", "tracking stable for 5 min")
        page.wait_for_timeout(1200)  # two state refreshes (0.5 s) must not undo the level picked
        assert page.evaluate("document.getElementById('level-select').value") == "3"
        with page.expect_response("**/api/autonomy") as response:
            page.click("#set-level")
        assert response.value.status == 200
        poll(page, "document.getElementById('level').textContent.startsWith('3')")
        entry = page.wait_for_selector("#log li[data-kind=autonomy]", timeout=10_000)
        assert "by paul (physicist)" in entry.inner_text()
        page.screenshot(path=str(SHOTS / "physicist_autonomy.png"))
        done = [a for a in actions(running_console.audit_path) if a.action == "set_autonomy" and not a.refused]
        assert done[-1].operator == "paul" and done[-1].value == 3
        assert running_console.session.level == 3
    finally:
        context.close()
