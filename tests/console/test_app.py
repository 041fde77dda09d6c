"""The console's HTTP and WebSocket API without a browser: login, CSRF, roles, refusals in the audit log."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.websockets import WebSocketDisconnect

from igikit.console.app import create_app
from igikit.console.users import UserStore, load_secret
from igikit.supervise import AuditLog, AutonomyPolicy, DecisionRecord, HumanAction, SupervisedSession

from .conftest import PASSWORDS

with warnings.catch_warnings():  # starlette suggests httpx2 over httpx; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture()
def setup(users_path: Path, tmp_path: Path) -> Iterator[tuple[TestClient, SupervisedSession, AuditLog]]:
    audit = AuditLog(tmp_path / "audit.db")
    session = SupervisedSession(
        audit, workflow="mrgrt", level=2, policy=AutonomyPolicy(veto_window_s=30), safe_values={"beam": "hold"}
    )
    store = UserStore(users_path, create=False)
    app = create_app(session, store, secret=load_secret(tmp_path / "secret"), title="unit")
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client, session, audit
    store.close()
    audit.close()


def login(client: TestClient, name: str) -> str:
    r = client.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    return r.json()["csrf"]


def human_actions(audit: AuditLog) -> list[HumanAction]:
    return [e.record for e in audit.records() if e.kind == "human_action"]  # type: ignore[misc]


def test_login_sets_a_strict_httponly_cookie_and_wrong_passwords_fail(setup) -> None:
    client, _, _ = setup
    assert client.get("/api/me").status_code == 401
    assert client.post("/api/login", json={"name": "olivia", "password": "nope-nope"}).status_code == 401
    assert client.post("/api/login", json={"name": "nobody", "password": "whatever1"}).status_code == 401
    assert client.post("/api/login", data={"name": "olivia", "password": PASSWORDS["olivia"]}).status_code == 415
    r = client.post("/api/login", json={"name": "olivia", "password": PASSWORDS["olivia"]})
    cookie = r.headers["set-cookie"].lower()
    assert "samesite=strict" in cookie and "httponly" in cookie
    me = client.get("/api/me").json()
    assert me["role"] == "operator" and "acknowledge" in me["permissions"] and "set_autonomy" not in me["permissions"]
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/console.js"' in page.text and "http" not in page.text.split("<body>")[1][:2000]


def test_posts_need_the_csrf_token_and_the_same_origin(setup) -> None:
    client, session, audit = setup
    csrf = login(client, "olivia")
    assert client.post("/api/pause", json={}).status_code == 403
    assert client.post("/api/pause", json={}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    cross = client.post("/api/pause", json={}, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert cross.status_code == 403
    assert not session.paused and human_actions(audit) == []
    ok = client.post(
        "/api/pause", json={"reason": "check"}, headers={"X-CSRF-Token": csrf, "Origin": "http://127.0.0.1:8000"}
    )
    assert ok.status_code == 200 and session.paused
    assert client.post("/api/resume", json={}, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.post("/api/resume", json={}, headers={"X-CSRF-Token": csrf}).status_code == 409
    assert [(a.action, a.operator, a.refused) for a in human_actions(audit)] == [
        ("pause", "olivia", False),
        ("resume", "olivia", False),
        ("resume", "olivia", True),
    ]


def test_observer_is_refused_with_403_and_the_refusal_is_logged(setup) -> None:
    client, session, audit = setup
    alert = session.raise_alert("low_confidence", "confidence 0.30 below 0.50")
    csrf = login(client, "oscar")
    r = client.post(f"/api/alerts/{alert.alert_id}/acknowledge", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403 and r.json()["seq"] is not None
    assert session.open_alerts()  # still open
    refused = human_actions(audit)[-1]
    assert (refused.action, refused.operator, refused.role, refused.refused) == (
        "acknowledge",
        "oscar",
        "observer",
        True,
    )
    assert refused.responds_to_seq == alert.seq
    assert client.post("/api/alerts/999/acknowledge", json={}, headers={"X-CSRF-Token": csrf}).status_code == 404


def test_operator_acknowledges_and_vetoes_physicist_changes_autonomy(setup) -> None:
    client, session, audit = setup
    alert = session.raise_alert("near_limit", "dose at 95 % of the limit")
    csrf = login(client, "olivia")
    h = {"X-CSRF-Token": csrf}
    assert (
        client.post(f"/api/alerts/{alert.alert_id}/acknowledge", json={"reason": "seen"}, headers=h).status_code == 200
    )
    assert client.post(f"/api/alerts/{alert.alert_id}/acknowledge", json={}, headers=h).status_code == 409
    d = session.submit(
        DecisionRecord(
            decision="beam",
            value="on",
            explanation="beam on: inside",
            confidence=0.9,
            component="t",
            component_version="1",
        )
    )
    assert client.post(f"/api/pending/{d.pending_id}/veto", json={"reason": "no"}, headers=h).status_code == 200
    assert client.post("/api/autonomy", json={"level": 3}, headers=h).status_code == 403
    assert client.post("/api/annotate", json={"text": "patient settled"}, headers=h).status_code == 200
    client.post("/api/logout", headers=h)
    assert client.get("/api/me").status_code == 401
    csrf = login(client, "paul")
    h = {"X-CSRF-Token": csrf}
    assert client.post("/api/autonomy", json={"level": 7}, headers=h).status_code == 400
    r = client.post("/api/autonomy", json={"level": 3, "reason": "stable"}, headers=h)
    assert r.status_code == 200 and r.json()["level"] == 3 and session.level == 3
    log = [(a.action, a.operator, a.role, a.refused) for a in human_actions(audit)]
    assert log == [
        ("acknowledge", "olivia", "operator", False),
        ("acknowledge", "olivia", "operator", True),
        ("veto", "olivia", "operator", False),
        ("set_autonomy", "olivia", "operator", True),
        ("annotate", "olivia", "operator", False),
        ("set_autonomy", "paul", "physicist", False),
    ]
    assert audit.verify().ok
    state = client.get("/api/state").json()
    assert state["state"]["level"] == 3 and any(e["kind"] == "autonomy" for e in state["events"])


def test_websocket_needs_a_login_and_then_streams_state_and_frames(setup) -> None:
    import numpy as np

    from igikit.supervise import FrameState, Overlay

    client, session, _ = setup
    with pytest.raises(WebSocketDisconnect) as exc, client.websocket_connect("ws://127.0.0.1:8000/ws") as ws:
        ws.receive_text()
    assert exc.value.code == 4401
    login(client, "oscar")
    with client.websocket_connect("ws://127.0.0.1:8000/ws") as ws:
        hello = json.loads(ws.receive_text())
        assert hello["type"] == "hello" and hello["role"] == "observer" and hello["events"][0]["kind"] == "started"
        assert json.loads(ws.receive_text())["type"] == "state"
        mask = np.zeros((32, 32), np.uint8)
        mask[10:20, 12:22] = 1
        session.publish_frame(
            FrameState(
                7,
                0.875,
                np.random.default_rng(0).random((32, 32)),
                overlays=(Overlay.outline(mask, "target", "tracked"),),
                beam_on=True,
                output="beam on",
                confidence=0.9,
                trace={"SI (mm)": 1.5},
            )
        )
        for _ in range(20):
            msg = json.loads(ws.receive_text())
            if msg["type"] == "frame":
                break
        assert msg["frame_id"] == 7 and msg["image"].startswith("data:image/jpeg;base64,")
        [overlay] = msg["overlays"]
        xs = [p[0] for p in overlay["paths"][0]]
        ys = [p[1] for p in overlay["paths"][0]]
        assert (min(xs), max(xs), min(ys), max(ys)) == (12, 21, 10, 19)
        assert msg["beam_on"] is True and msg["trace"] == {"SI (mm)": 1.5}
