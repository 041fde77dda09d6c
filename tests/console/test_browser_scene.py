"""The 3D navigation scene in a real browser (Debian's headless Chromium, WebGL through SwiftShader):
a session publishes a scene made from a small label map and a tool moving toward the target at
30 Hz; the page draws the structures, target, trajectory and tool with three.js served by the
console itself, and its numbers follow the tool. Screenshot: test-output/console/navigation_scene.png."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from igikit.console import vendor

from .conftest import PASSWORDS, ROOT_OUTPUT
from .scene_data import DistanceMaps, ToolFeed, label_map, scene
from .test_browser import ARGS, CHROMIUM, SHOTS, poll

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian chromium not installed (make test installs it)"
)

# WebGL without a GPU: Chromium's software renderer (SwiftShader), which newer Chromium builds want opted into.
SCENE_ARGS = [*ARGS, "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=SCENE_ARGS, headless=True)
        yield b
        b.close()


@dataclass
class NavigationConsole:
    url: str
    session: object
    feed: ToolFeed


@pytest.fixture(scope="module")
def navigation_console(users_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NavigationConsole]:
    """A console whose session publishes a synthetic scene and a tool at 30 Hz (no images)."""
    from igikit.console.app import create_app
    from igikit.console.server import ConsoleServer, free_port
    from igikit.console.users import UserStore, load_secret
    from igikit.supervise import AuditLog, SupervisedSession

    folder = tmp_path_factory.mktemp("navigation")
    audit = AuditLog(folder / "audit.db")
    session = SupervisedSession(audit, workflow="surgery", session_id="scene-test", level=1)
    image = label_map()
    session.publish_scene(scene(image))
    store = UserStore(users_path, create=False)
    app = create_app(session, store, secret=load_secret(folder / "secret"), title="navigation test")
    server = ConsoleServer(app, port=free_port()).start()
    feed = ToolFeed(session, DistanceMaps.of(image), rate_hz=30.0).start()
    try:
        yield NavigationConsole(server.url, session, feed)
    finally:
        feed.stop()
        server.stop()
        audit.close()
        store.close()


def log_in(browser, url: str, name: str = "olivia"):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith(("/favicon.ico", "/api/me"))
            else None
        ),
    )
    page.goto(url)
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORDS[name])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#console-view:not([hidden])", timeout=10_000)
    return context, page, errors


def pixels(page, selector: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    from PIL import Image as PILImage

    box = page.locator(selector).bounding_box()
    assert box is not None
    # the page as shown, cropped (clipped and element screenshots come back without the WebGL canvas)
    shot = np.asarray(PILImage.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
    x, y = round(box["x"]), round(box["y"])
    return shot[y : y + round(box["height"]), x : x + round(box["width"])]


def near(rgb: np.ndarray, colour: str, tol: int = 40) -> int:
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=-1) <= tol).sum())


def test_scene_renders_and_follows_the_tool(browser, navigation_console: NavigationConsole) -> None:
    context, page, errors = log_in(browser, navigation_console.url)
    try:
        poll(page, "window.igikitScene && window.igikitScene.scenes >= 1 && window.igikitScene.toolUpdates > 3", 20)
        stats = page.evaluate("window.igikitScene")
        assert stats["error"] is None and stats["webgl"] is True
        assert stats["meshes"] == 3 and 1000 < stats["triangles"] <= 3 * 2500
        assert stats["three"] == vendor.three_version().split(".")[1]
        assert page.is_visible("#scene-panel") and page.is_hidden("#frame")  # no images in this session
        assert page.inner_text("#scene-title") == "synthetic liver: needle to lesion"
        legend = page.inner_text("#nav-legend")
        assert all(name in legend for name in ("liver", "portal vein", "lesion", "target", "planned trajectory"))

        before = page.evaluate("[window.igikitScene.toolMessages, window.igikitScene.toolUpdates]")
        first_text = page.inner_text("#nav-target")
        first_tip = page.evaluate("window.igikitScene.lastTip")
        page.wait_for_timeout(1500)
        after = page.evaluate("[window.igikitScene.toolMessages, window.igikitScene.toolUpdates]")
        # 30 Hz: about 45 states in 1.5 s reach the page; software WebGL on a loaded machine draws
        # fewer of them (always the newest)
        assert after[0] - before[0] >= 30 and after[1] - before[1] >= 4
        assert page.inner_text("#nav-target") != first_text and first_text.endswith(" mm")
        assert page.evaluate("window.igikitScene.lastTip") != first_tip
        assert page.inner_text("#nav-angle").endswith("°") and page.inner_text("#nav-tre").endswith(" mm")

        # the picture: the yellow target sphere, the cyan trajectory and the structures are drawn
        rgb = pixels(page, "#scene-canvas")
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        assert near(rgb, "#ffd33d") > 30  # target, drawn over the lesion
        assert near(rgb, "#39d0ff", 50) > 10  # planned trajectory and entry point (the tool may cover part)
        assert ((b > r + 60) & (b > g + 40)).sum() > 500  # portal vein
        assert ((r > b + 10) & (r > g + 10) & (r > 40)).sum() > 2000  # liver, semi-transparent

        # near the end of the insertion the tip passes the vessel: the warning is shown in red
        poll(page, "document.querySelectorAll('#nav-warnings li.warning').length > 0", 15)
        warning = page.inner_text("#nav-warnings")
        assert "portal vein" in warning and "TRE at tip" in warning
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / "navigation_scene.png"))

        # orbit with the mouse: the view changes
        box = page.locator("#scene-canvas").bounding_box()
        assert box is not None
        renders = page.evaluate("window.igikitScene.renders")
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 40, steps=6)
        page.mouse.up()
        poll(page, f"window.igikitScene.renders > {renders}")
        assert not errors
    finally:
        context.close()


def test_scene_is_sent_again_when_it_changes(browser, navigation_console: NavigationConsole) -> None:
    from igikit.console.scene import Scene

    context, page, _ = log_in(browser, navigation_console.url, "oscar")
    try:
        poll(page, "window.igikitScene && window.igikitScene.scenes >= 1", 20)
        old = navigation_console.session.latest_scene  # type: ignore[attr-defined]
        navigation_console.session.publish_scene(  # type: ignore[attr-defined]
            Scene(old.meshes[1:], old.target_mm, None, tool_length_mm=old.tool_length_mm, title="re-registered")
        )
        poll(page, "window.igikitScene.scenes >= 2 && window.igikitScene.meshes === 2")
        assert page.inner_text("#scene-title") == "re-registered"
        assert "planned trajectory" not in page.inner_text("#nav-legend")
        navigation_console.session.publish_scene(old)  # type: ignore[attr-defined]
        poll(page, "window.igikitScene.scenes >= 3 && window.igikitScene.meshes === 3")
    finally:
        context.close()


def test_missing_three_js_gives_a_clear_message(browser, navigation_console: NavigationConsole, monkeypatch) -> None:
    monkeypatch.setattr(vendor, "node_modules_candidates", lambda: [ROOT_OUTPUT / "no-such-node_modules"])
    vendor.three_dir.cache_clear()
    vendor.vendor_source.cache_clear()
    context, page, _ = log_in(browser, navigation_console.url)
    try:
        page.wait_for_selector("#scene-message:not([hidden])", timeout=15_000)
        message = page.inner_text("#scene-message")
        assert "3D view unavailable" in message and "npm ci --omit=dev" in message
        poll(page, "window.igikitScene.toolUpdates > 3")  # the numbers still follow the tool
        assert page.inner_text("#nav-target").endswith(" mm") and page.is_hidden("#frame")
        page.screenshot(path=str(SHOTS / "navigation_scene_missing_three.png"))
    finally:
        context.close()
        vendor.three_dir.cache_clear()
        vendor.vendor_source.cache_clear()


def test_cine_sessions_keep_their_page(browser, running_console) -> None:
    context, page, _ = log_in(browser, running_console.url)
    try:
        poll(page, "window.igikitStats && window.igikitStats.frames > 2")
        assert page.is_hidden("#scene-panel") and page.is_visible("#frame")
        assert page.evaluate("window.igikitScene === undefined")  # three.js never loaded
    finally:
        context.close()
