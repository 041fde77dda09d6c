"""``igikit demo theranostics``: the Lu-177 and Ho-166 demo end to end, with its outputs; served, a physicist
approves its plans in the console and the answers name the plans' rows in the same audit log."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import httpx
import pytest

from igikit.supervise import DecisionRecord, HumanAction
from igikit.supervise.audit import AuditLog
from igikit.supervise.session import unanswered_proposals
from igikit.workflows.theranostics.plan_commands import PLAN_DECISION
from tests.conftest import assert_input_error, run_cli


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = run_cli("demo", "theranostics", "--no-console", "--out-dir", out)
    assert r.returncode == 0, r.stderr
    for rel in ("report.html", "lu177/report.html", "lu177/dose.nii.gz", "lu177/dose.json", "ho166/report.html",
                "ho166/plan.json", "ho166/predicted_dose.nii.gz", "audit.db"):
        assert (out / rel).is_file(), rel
    dose = json.loads((out / "lu177" / "dose.json").read_text())
    assert {v["fit"]["model"] for v in dose["vois"].values()} == {"hybrid"}  # four points
    plan = json.loads((out / "ho166" / "plan.json").read_text())
    assert plan["activity_gbq"] == pytest.approx(6.0, rel=0.05) and plan["post_treatment"]["correlation"] > 0.8
    with AuditLog(out / "audit.db", create=False) as audit:
        assert audit.verify().ok
        decisions = [e.record for e in audit.records()]
    assert [d.component for d in decisions] == ["theranostics.plan_lu177", "theranostics.plan_ho166"]
    assert all(d.proposal for d in decisions)
    with AuditLog(out / "audit.db", create=False) as audit:
        waiting = unanswered_proposals(audit, decision=PLAN_DECISION)
    assert [(seq, rec.component) for seq, rec in waiting] == [
        (1, "theranostics.plan_lu177"), (2, "theranostics.plan_ho166")]  # one row per plan, both awaiting approval
    index = (out / "report.html").read_text()
    assert "lu177/report.html" in index and "Post-treatment" in index
    assert "tumour" in r.stdout and "GBq" in r.stdout


def _printed_password(lines: list[str], deadline_s: float = 10.0) -> str:
    """The demo physicist's password from the ``log in as: demo / PASSWORD`` line."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = [re.match(r"log in as: demo / (\S+)", line) for line in list(lines)]
        password = next((m.group(1) for m in found if m), None)
        if password:
            return password
        time.sleep(0.1)
    raise AssertionError("no login line:\n" + "\n".join(lines))


def test_served_demo_approvals_answer_the_plans_in_the_log(tmp_path: Path) -> None:
    from igikit.console.server import free_port
    from tests.console.conftest import served_process

    out = tmp_path / "served"
    log = out / "audit.db"
    argv = [sys.executable, "-m", "igikit.cli", "demo", "theranostics", "--out-dir", str(out),
            "--port", str(free_port())]
    with served_process(argv, out, start_timeout_s=300) as served:
        assert any("2 plans awaiting a physicist's approval" in line for line in served.lines), served.lines
        with httpx.Client(base_url=served.url, timeout=30) as client:
            r = client.post("/api/login", json={"name": "demo", "password": _printed_password(served.lines)})
            assert r.status_code == 200, r.text
            headers = {"X-CSRF-Token": r.json()["csrf"]}
            pending = client.get("/api/state").json()["state"]["pending"]
            assert [(p["seq"], p["decision"], p["restored"]) for p in pending] == [
                (1, PLAN_DECISION, True), (2, PLAN_DECISION, True)]
            assert "Lu-177" in str(pending[0]["summary"]) and "Ho-166" in str(pending[1]["summary"])
            for p in pending:
                r = client.post(f"/api/pending/{p['pending_id']}/approve", json={"reason": "plan checked"},
                                headers=headers)
                assert r.status_code == 200, r.text
            assert client.get("/api/state").json()["state"]["pending"] == []
    with AuditLog(log, create=False) as audit:
        assert unanswered_proposals(audit, decision=PLAN_DECISION) == []
        records = [e.record for e in audit.records()]
    plans = [r for r in records if isinstance(r, DecisionRecord) and r.decision == PLAN_DECISION]
    assert [p.component for p in plans] == ["theranostics.plan_lu177", "theranostics.plan_ho166"]  # not re-logged
    approvals = [(a.action, a.operator, a.role, a.responds_to_seq, a.refused) for a in records
                 if isinstance(a, HumanAction)]
    assert approvals == [("approve", "demo", "physicist", 1, False), ("approve", "demo", "physicist", 2, False)]
    verify = run_cli("audit", "verify", log)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = run_cli("console", "--proposals", log, "--users", out / "users.db", "--port", "0", timeout=60)
    assert_input_error(again, "no plan awaits approval")
