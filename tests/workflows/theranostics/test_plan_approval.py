"""A plan is a decision proposal that a physicist approves in the console, with its explanation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from igikit.console.app import create_app
from igikit.console.users import UserStore, load_secret
from igikit.supervise import AuditLog, DecisionRecord, SupervisedSession
from tests.conftest import run_cli

with warnings.catch_warnings():  # starlette suggests httpx2 over httpx; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORDS = {"paula": "physicist-pass-2", "otto": "operator-pass-2"}


def test_a_physicist_approves_a_y90_plan_in_the_console(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = run_cli(
        "plan", "y90", "--normal-liver-gy", "40", "--tumour-kg", "0.2", "--normal-liver-kg", "1.4", "--tn", "4",
        "--lsf", "0.06", "--json", str(out),
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(out.read_text())
    record = DecisionRecord.from_dict(plan["decision"])
    assert record.decision == "plan_activity" and "GBq" in record.explanation

    audit = AuditLog(tmp_path / "audit.db")
    session = SupervisedSession(audit, workflow="theranostics", session_id="plan-test", level=1)
    verdict = session.submit(record)
    assert verdict.pending_id is not None and verdict.value is None  # level 1: proposed, nothing in effect
    store = UserStore(tmp_path / "users.db", create=True)
    store.add("paula", "physicist", PASSWORDS["paula"])
    store.add("otto", "operator", PASSWORDS["otto"])
    app = create_app(session, store, secret=load_secret(tmp_path / "secret"), title="plan")
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        r = client.post("/api/login", json={"name": "paula", "password": PASSWORDS["paula"]})
        assert r.status_code == 200, r.text
        headers = {"X-CSRF-Token": r.json()["csrf"]}
        state = client.get("/api/state").json()["state"]
        (pending,) = state["pending"]
        assert pending["explanation"] == record.explanation
        r = client.post(f"/api/pending/{pending['pending_id']}/approve", json={"reason": "plan checked"},
                        headers=headers)
        assert r.status_code == 200, r.text
        assert client.get("/api/state").json()["state"]["pending"] == []
    actions = [e.record for e in audit.records() if e.kind == "human_action"]
    assert [(a.action, a.operator, a.role, a.reason) for a in actions] == [  # type: ignore[attr-defined]
        ("approve", "paula", "physicist", "plan checked")
    ]
    assert audit.verify().ok
    audit.close()
    store.close()
