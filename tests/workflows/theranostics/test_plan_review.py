"""``igikit console --proposals``: plans appended by ``igikit plan ... --audit`` are reviewed in the console.

Real plans (Y-90 by hand, Ho-166 from a simulated scout, Lu-177 from a dosimetry JSON) go to one
audit log; the console serves those nobody has answered, each with its summary; only a physicist
approves or vetoes (an operator or observer gets 403, logged as refused); the answer lands in the
same hash-chained log, and a plan that was answered no longer waits when the log is opened again.
"""

from __future__ import annotations

import re
import sqlite3
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from igikit.console.app import create_app
from igikit.console.users import UserStore, load_secret
from igikit.errors import InputError
from igikit.io.image import write_image
from igikit.sim.spect import microsphere_study
from igikit.supervise import AuditLog, HumanAction
from igikit.supervise.records import DecisionRecord
from igikit.supervise.session import unanswered_proposals
from igikit.workflows.theranostics.plan_commands import open_plan_review
from tests.conftest import assert_input_error, run_cli
from tests.console.conftest import served_process
from tests.workflows.theranostics.test_plan_lu177 import _dosimetry

with warnings.catch_warnings():  # starlette suggests httpx2 over httpx; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORDS = {"paula": "physicist-pass-3", "otto": "operator-pass-3", "oscar": "observer-pass-3"}
ROLES = {"paula": "physicist", "otto": "operator", "oscar": "observer"}


@dataclass(frozen=True)
class Plans:
    log: Path
    users: Path
    seq: dict[str, int]  # nuclide -> the plan's row in the log


def _plan(log: Path, *argv: Any) -> int:
    result = run_cli("plan", *argv, "--audit", log)
    assert result.returncode == 0, result.stderr
    return int(re.search(r"\(seq (\d+)\)", result.stdout).group(1))  # type: ignore[union-attr]


def _plans(folder: Path) -> Plans:
    """Three real plans in one new audit log, and a users file with one user of each role."""
    folder.mkdir(parents=True, exist_ok=True)
    study = microsphere_study(seed=0)
    write_image(study.scout, folder / "scout.nii.gz")
    write_image(study.labels, folder / "voi.nii.gz")
    log = folder / "plans.db"
    seq = {
        "Y-90": _plan(log, "y90", "--normal-liver-gy", "40", "--tumour-kg", "0.2", "--normal-liver-kg", "1.4",
                      "--tn", "4", "--lsf", "0.06"),
        "Ho-166": _plan(log, "ho166", "--scout", folder / "scout.nii.gz", "--voi", folder / "voi.nii.gz",
                        "--resolution-mm", "15"),
        "Lu-177": _plan(log, "lu177", "--dosimetry", _dosimetry(folder), "--administered-gbq", "7.4",
                        "--kidney-voi", "2,3"),
    }
    users = folder / "users.db"
    store = UserStore(users, create=True)
    for name, role in ROLES.items():
        store.add(name, role, PASSWORDS[name])
    store.close()
    return Plans(log, users, seq)


def _login(client: TestClient, name: str) -> dict[str, str]:
    r = client.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf"]}


def _pending(client: TestClient) -> dict[int, dict[str, Any]]:
    """The pending panel's entries by their plan's seq."""
    return {p["seq"]: p for p in client.get("/api/state").json()["state"]["pending"]}


def _actions(log: Path) -> list[HumanAction]:
    with AuditLog(log, create=False) as audit:
        return [e.record for e in audit.records() if isinstance(e.record, HumanAction)]


def test_a_physicist_approves_and_vetoes_plans_from_the_log_and_they_stay_answered(tmp_path: Path) -> None:
    plans = _plans(tmp_path)
    ho, y90, lu = plans.seq["Ho-166"], plans.seq["Y-90"], plans.seq["Lu-177"]
    store = UserStore(plans.users, create=False)
    session = open_plan_review(plans.log, session_id="review-1")
    app = create_app(session, store, secret=load_secret(tmp_path / "secret"), title="plans")
    try:
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            otto = _login(client, "otto")
            pending = _pending(client)
            assert sorted(pending) == sorted(plans.seq.values())
            card = pending[ho]
            assert card["approver_roles"] == ["physicist"] and card["kind"] == "proposed"
            summary = dict(card["summary"])
            assert summary["nuclide"] == "Ho-166" and summary["profile"] == "adult"
            assert re.fullmatch(r"\d+ ± \d+ MBq = \d+\.\d\d GBq", summary["activity"]), summary["activity"]
            assert "perfused liver (prescribed) 60.0 Gy" in summary["absorbed dose"]
            assert re.search(r"tumour \d+\.\d ± \d+\.\d Gy", summary["absorbed dose"])
            assert summary["limits"].startswith("lung ") and "<= 30 Gy" in summary["limits"]
            assert summary["limits"].endswith(": met")
            lu_summary = dict(pending[lu]["summary"])
            assert lu_summary["nuclide"] == "Lu-177" and "range" in lu_summary["activity"]
            assert "cumulative kidney BED" in lu_summary["limits"]

            # an operator and an observer may not sign a plan off: 403, and the attempt is logged
            r = client.post(f"/api/pending/{card['pending_id']}/approve", json={"reason": "looks fine"},
                            headers=otto)
            assert r.status_code == 403, r.text
            assert "physicist" in r.json()["detail"]
            oscar = _login(client, "oscar")
            r = client.post(f"/api/pending/{card['pending_id']}/veto", json={}, headers=oscar)
            assert r.status_code == 403, r.text
            assert "only a physicist may veto" in r.json()["detail"]

            paula = _login(client, "paula")
            r = client.post(f"/api/pending/{card['pending_id']}/approve",
                            json={"reason": "lung dose and T/N checked on the scout"}, headers=paula)
            assert r.status_code == 200, r.text
            r = client.post(f"/api/pending/{pending[y90]['pending_id']}/veto",
                            json={"reason": "tumour mass to be re-contoured"}, headers=paula)
            assert r.status_code == 200, r.text
            assert sorted(_pending(client)) == [lu]
            # pausing the console does not drop a plan that waits for its physicist
            assert client.post("/api/pause", json={}, headers=paula).status_code == 200
            assert sorted(_pending(client)) == [lu]
    finally:
        session.audit.close()
        store.close()

    answers = [(a.action, a.operator, a.role, a.responds_to_seq, a.refused) for a in _actions(plans.log)
               if a.action in ("approve", "veto")]
    assert answers == [("approve", "otto", "operator", ho, True), ("veto", "oscar", "observer", ho, True),
                       ("approve", "paula", "physicist", ho, False), ("veto", "paula", "physicist", y90, False)]
    verify = run_cli("audit", "verify", plans.log)
    assert verify.returncode == 0 and "hash chain intact" in verify.stdout, verify.stdout + verify.stderr
    shown = run_cli("audit", "show", plans.log)
    assert shown.returncode == 0, shown.stderr
    assert f"approve -> #{ho}  by paula (physicist)\n        lung dose and T/N checked on the scout" in shown.stdout
    assert f"veto -> #{y90}  by paula (physicist)" in shown.stdout
    assert f"approve -> #{ho}  by otto (operator)  REFUSED" in shown.stdout

    # restart: read back from the log, only the Lu-177 plan still waits
    session = open_plan_review(plans.log, session_id="review-2")
    try:
        assert [p.seq for p in session.pending()] == [lu]
        with AuditLog(plans.log, create=False) as other:
            assert [s for s, _ in unanswered_proposals(other, decision="plan_activity")] == [lu]
        from igikit.supervise.session import Actor

        session.approve(session.pending()[0].pending_id, Actor("paula", "physicist"), reason="BED within limit")
    finally:
        session.audit.close()
    with pytest.raises(InputError, match="no plan awaits approval"):
        open_plan_review(plans.log, session_id="review-3")
    result = run_cli("console", "--proposals", plans.log, "--users", plans.users, "--port", "0", timeout=60)
    assert_input_error(result, str(plans.log), "no plan awaits approval")
    assert run_cli("audit", "verify", plans.log).returncode == 0


def test_the_console_command_serves_the_plans_and_logs_the_approval(tmp_path: Path) -> None:
    """The real ``igikit console --proposals`` process: log in over HTTP, approve, stop with Ctrl-C."""
    import httpx

    plans = _plans(tmp_path)
    argv = [sys.executable, "-m", "igikit.cli", "console", "--proposals", str(plans.log), "--users",
            str(plans.users), "--port", "0"]
    with served_process(argv, tmp_path) as served:
        url, lines = served.url, served.lines
        assert "3 plans awaiting a physicist's approval" in "\n".join(lines)
        with httpx.Client(base_url=url, timeout=10) as client:
            r = client.post("/api/login", json={"name": "paula", "password": PASSWORDS["paula"]})
            assert r.status_code == 200, r.text
            headers = {"X-CSRF-Token": r.json()["csrf"]}
            pending = {p["seq"]: p for p in client.get("/api/state").json()["state"]["pending"]}
            pid = pending[plans.seq["Y-90"]]["pending_id"]
            r = client.post(f"/api/pending/{pid}/approve", json={"reason": "checked"}, headers=headers)
            assert r.status_code == 200, r.text
    approvals = [a for a in _actions(plans.log) if a.action == "approve"]
    assert [(a.operator, a.responds_to_seq, a.refused) for a in approvals] == [("paula", plans.seq["Y-90"], False)]
    with AuditLog(plans.log, create=False) as audit:
        assert audit.verify().ok
        assert sorted(s for s, _ in unanswered_proposals(audit)) == [plans.seq["Ho-166"], plans.seq["Lu-177"]]


def test_bad_logs_are_one_line_and_exit_2(tmp_path: Path) -> None:
    users = tmp_path / "users.db"
    base = ("console", "--users", users, "--port", "0", "--proposals")
    assert_input_error(run_cli(*base, tmp_path / "missing.db", timeout=60), "missing.db", "audit log not found")
    text = tmp_path / "notes.db"
    text.write_text("not a database, just some notes\n" * 10)
    assert_input_error(run_cli(*base, text, timeout=60), "notes.db", "not an SQLite database")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE patients (id TEXT)")
    db.close()
    assert_input_error(run_cli(*base, other, timeout=60), "other.db", "not an igikit audit log")
    # an audit log without plans: a gating session's decision and a note
    empty = tmp_path / "session.db"
    with AuditLog(empty) as audit:
        audit.append(DecisionRecord(decision="beam", value="hold", explanation="beam hold: target outside",
                                    confidence=0.9, component="mrgrt.gating", component_version="1"))
        audit.append(HumanAction(action="annotate", operator="paula", role="physicist", reason="note"))
    assert_input_error(run_cli(*base, empty, timeout=60), "session.db", "holds no plan proposal")
    assert_input_error(run_cli(*base, empty, "--loop", timeout=60), "--loop does not apply to --proposals")
    assert not users.exists()  # bad input leaves no users file behind


def test_an_edited_log_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "plans.db"
    _plan(log, "y90", "--normal-liver-gy", "40", "--tumour-kg", "0.2", "--normal-liver-kg", "1.4", "--tn", "4",
          "--lsf", "0.06")
    with sqlite3.connect(log) as db:  # someone lowers the activity behind the log's back
        db.execute("DROP TRIGGER records_no_update")
        edited = db.execute("UPDATE records SET payload = replace(payload, '\"value\":\"1.88 GBq\"', "
                            "'\"value\":\"1.50 GBq\"') WHERE payload LIKE '%\"value\":\"1.88 GBq\"%'")
        assert edited.rowcount == 1
    db.close()
    result = run_cli("console", "--proposals", log, "--users", tmp_path / "users.db", "--port", "0", timeout=60)
    assert_input_error(result, "plans.db", "fails its hash-chain check", "row 1")


def test_restore_proposal_checks_what_it_is_given(tmp_path: Path) -> None:
    from igikit.supervise.session import SupervisedSession

    log = tmp_path / "plans.db"
    seq = _plan(log, "y90", "--normal-liver-gy", "40", "--tumour-kg", "0.2", "--normal-liver-kg", "1.4", "--tn", "4",
                "--lsf", "0.06")
    with AuditLog(log, create=False) as audit:
        session = SupervisedSession(audit, workflow="theranostics", level=1)  # its start row is no proposal
        with pytest.raises(InputError, match="not a decision proposal"):
            session.restore_proposal(seq + 1)
        with pytest.raises(InputError, match="not a decision proposal"):
            session.restore_proposal(seq + 99)
        with pytest.raises(InputError, match="unknown approver role"):
            session.restore_proposal(seq, approver_roles=("surgeon",))
        session.restore_proposal(seq, approver_roles=("physicist",))
        with pytest.raises(InputError, match="already waiting"):
            session.restore_proposal(seq)
