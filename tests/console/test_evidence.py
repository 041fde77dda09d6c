"""Explanations in the console: a live AI tracker, "Explain this frame" -> an occlusion map logged as
the tracker's decision record with its evidence, shown next to the frame; the API that serves it
(logged-in users only, evidence files only from the explanation folder and unchanged since logged).
Screenshot: test-output/console/evidence.png."""

from __future__ import annotations

import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ai.conftest import LEARN, disc_sequence, tiny_config

from .conftest import PASSWORDS, ROOT_OUTPUT

with warnings.catch_warnings():  # starlette suggests httpx2 over httpx; httpx works
    warnings.simplefilter("ignore")
    import httpx

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT_OUTPUT / "console"
RATE_HZ = 8.0


@dataclass
class AIConsole:
    url: str
    session: object
    service: object
    tracker: object
    loop_thread: str


@pytest.fixture(scope="module")
def ai_console(users_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AIConsole]:
    """The console over a live AI tracker: a disc sequence played back and forth at 8 Hz, each
    frame tracked and published on the treatment-loop thread."""
    import numpy as np

    from igikit.ai.evidence import ExplanationService
    from igikit.ai.tracker import AITracker
    from igikit.console.app import create_app
    from igikit.console.server import ConsoleServer, free_port
    from igikit.console.users import UserStore, load_secret
    from igikit.supervise import AuditLog, FrameState, Overlay, SupervisedSession

    folder = tmp_path_factory.mktemp("ai-console")
    frames, truth = disc_sequence(40)
    audit = AuditLog(folder / "audit.db")
    session = SupervisedSession(audit, workflow="mrgrt", session_id="ai", level=3, safe_values={"beam": "hold"})
    tracker = AITracker(LEARN, tiny_config())
    service = ExplanationService(tracker, session, folder / "evidence")
    store = UserStore(users_path, create=False)
    app = create_app(session, store, secret=load_secret(folder / "secret"), title="AI tracker", explainer=service)
    server = ConsoleServer(app, port=free_port()).start()
    stop = threading.Event()
    order = [*range(frames.shape[2]), *range(frames.shape[2] - 2, 0, -1)]

    def publish(k: int, image: np.ndarray, mask: np.ndarray, confidence: float, why: str) -> None:
        session.publish_frame(FrameState(k, k / RATE_HZ, image, (Overlay.outline(mask, "target (AI)", "tracked"),),
                                         confidence=confidence, explanation=why))

    def loop() -> None:
        tracker.start(frames[:, :, 0], truth[:, :, 0], (1.0, 1.0))
        publish(0, frames[:, :, 0], truth[:, :, 0], 1.0, "first frame: the given label")
        k = 0
        while not stop.is_set():
            k += 1
            image = frames[:, :, order[k % len(order)]]
            r = tracker.update(image)
            publish(k, image, r.mask, r.confidence, tracker.reason)
            stop.wait(1.0 / RATE_HZ)

    feeder = threading.Thread(target=loop, name="treatment-loop", daemon=True)
    feeder.start()
    try:
        deadline = time.monotonic() + 180
        while not getattr(tracker, "views", None) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert getattr(tracker, "views", None), "the AI tracker never left its learning phase"
        yield AIConsole(server.url, session, service, tracker, feeder.name)
    finally:
        stop.set()
        feeder.join(timeout=10)
        service.close()
        server.stop()
        audit.close()
        store.close()


def client_for(url: str, name: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=url, timeout=120)
    r = client.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    return client, r.json()["csrf"]


def test_api_explains_a_frame_and_serves_its_evidence(ai_console: AIConsole) -> None:
    from igikit.supervise import DecisionRecord

    anonymous = httpx.Client(base_url=ai_console.url)
    assert anonymous.get("/api/evidence/1").status_code == 401
    assert anonymous.post("/api/evidence", json={}).status_code == 401
    client, csrf = client_for(ai_console.url, "olivia")
    assert client.get("/api/me").json()["explain"] is True
    assert client.post("/api/evidence", json={}).status_code == 403  # no CSRF token
    headers = {"X-CSRF-Token": csrf}
    assert client.post("/api/evidence", json={"frame_id": 2}, headers=headers).status_code == 409  # learning phase
    assert client.post("/api/evidence", json={"frame_id": "x"}, headers=headers).status_code == 400
    r = client.post("/api/evidence", json={}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    png = client.get(body["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    record = next(e.record for e in ai_console.session.audit.records() if e.seq == body["seq"])
    assert isinstance(record, DecisionRecord) and record.evidence is not None
    assert record.data["requested_by"] == "olivia" and record.input_frame_ids == (body["frame_id"],)
    assert client.get("/api/evidence/1").status_code == 404  # the session's first record has no evidence
    assert client.get("/api/evidence/999999").status_code == 404


def test_evidence_files_outside_the_folder_or_changed_are_not_served(ai_console: AIConsole, tmp_path: Path) -> None:
    import hashlib

    from igikit.supervise import DecisionRecord, Evidence

    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    inside = Path(ai_console.service.folder) / "tampered.png"
    inside.write_bytes(b"\x89PNG\r\n\x1a\n original")
    digest = hashlib.sha256(inside.read_bytes()).hexdigest()

    def log(path: Path, data: dict[str, str]) -> int:
        return ai_console.session.log_evidence(DecisionRecord(
            decision="target", value="network", explanation="test evidence", confidence=0.5, component="test",
            component_version="1", evidence=Evidence.from_path(path), data=data))

    far, changed = log(outside, {}), log(inside, {"evidence_sha256": digest})
    client, _ = client_for(ai_console.url, "oscar")
    assert client.get(f"/api/evidence/{changed}").status_code == 200
    inside.write_bytes(b"\x89PNG\r\n\x1a\n changed")
    assert client.get(f"/api/evidence/{changed}").status_code == 409
    assert client.get(f"/api/evidence/{far}").status_code == 404


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (make test installs it)")
def test_browser_shows_the_explanation_next_to_the_frame(ai_console: AIConsole) -> None:
    from .test_browser import ARGS, poll

    playwright_api = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            pages = []
            for name in ("olivia", "oscar"):
                context = browser.new_context(viewport={"width": 1500, "height": 1100})
                page = context.new_page()
                page.goto(ai_console.url)
                page.fill("#login-name", name)
                page.fill("#login-password", PASSWORDS[name])
                page.click("#login-form button[type=submit]")
                page.wait_for_selector("#evidence:not([hidden])", timeout=10_000)
                pages.append(page)
            operator, observer = pages
            poll(operator, f"window.igikitStats.lastFrameId > {LEARN + 2}", 60)
            frames_before = operator.evaluate("window.igikitStats.frames")
            operator.click("#explain")
            poll(operator, "window.igikitEvidence && window.igikitEvidence.loaded", 120)
            seq = operator.evaluate("window.igikitEvidence.seq")
            # the frame kept streaming while the map was computed on another thread
            assert operator.evaluate("window.igikitStats.frames") > frames_before
            width = operator.evaluate("document.getElementById('evidence-img').naturalWidth")
            assert width == 80  # the whole frame, with the map over the network's window
            caption = operator.inner_text("#evidence-caption")
            assert "occlusion sensitivity" in caption and "of the network's evidence lies within" in caption
            operator.wait_for_selector(f'#log li[data-kind="evidence"][data-seq="{seq}"]', timeout=10_000)
            operator.screenshot(path=str(SHOTS / "evidence.png"))
            # another viewer sees the explanation in the log and opens it there
            item = observer.wait_for_selector(f'#log li[data-kind="evidence"][data-seq="{seq}"]', timeout=10_000)
            item.click()
            poll(observer, f"window.igikitEvidence && window.igikitEvidence.seq === {seq}", 30)
            observer.screenshot(path=str(SHOTS / "evidence_observer.png"))
        finally:
            browser.close()
