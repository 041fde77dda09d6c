"""``igikit console --proposals`` in a real browser: a plan from ``igikit plan --audit`` waits with its
summary; the operator's click on Approve is refused (403), the physicist's approval lands in the same
audit log, and a restarted console finds nothing left to approve. Screenshots go to test-output/console/."""

from __future__ import annotations

import sys
from pathlib import Path

from igikit.supervise import AuditLog, HumanAction
from tests.conftest import assert_input_error, run_cli

from .conftest import PASSWORDS, served_process
from .test_browser import SHOTS, browser, pytestmark  # noqa: F401  (browser is a fixture; chromium skip mark)


def _log_in(chromium, url: str, name: str):  # type: ignore[no-untyped-def]
    context = chromium.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORDS[name])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#pending li[data-pending-id]", timeout=10_000)
    return context, page


def test_physicist_approves_a_plan_from_the_log(browser, users_path: Path, tmp_path: Path) -> None:  # noqa: F811
    log = tmp_path / "plans.db"
    plan = run_cli("plan", "y90", "--normal-liver-gy", "40", "--tumour-kg", "0.2", "--normal-liver-kg", "1.4",
                   "--tn", "4", "--lsf", "0.06", "--audit", log)
    assert plan.returncode == 0, plan.stderr
    argv = [sys.executable, "-m", "igikit.cli", "console", "--proposals", str(log), "--users", str(users_path),
            "--port", "0"]
    with served_process(argv, tmp_path) as served:
        url = served.url
        context, page = _log_in(browser, url, "olivia")
        try:
            card = "#pending li[data-seq='1']"
            assert "needs physicist approval" in page.inner_text(card)
            assert "Y-90" in page.inner_text(f"{card} dl.summary") and "MBq" in page.inner_text(f"{card} dl.summary")
            with page.expect_response("**/api/pending/*/approve") as response:
                page.click(f"{card} button.approve")
            assert response.value.status == 403
            page.wait_for_selector("#toast:not([hidden])")
            assert "only a physicist may approve" in page.inner_text("#toast")
        finally:
            context.close()
        context, page = _log_in(browser, url, "paul")
        try:
            page.screenshot(path=str(SHOTS / "plan_proposal.png"))
            page.fill("#reason", "partition model inputs checked")
            with page.expect_response("**/api/pending/*/approve") as response:
                page.click("#pending li[data-seq='1'] button.approve")
            assert response.value.status == 200
            entry = page.wait_for_selector("#log li[data-kind=approved]", timeout=10_000)
            assert "approved by paul (physicist)" in entry.inner_text()
            page.wait_for_selector("#pending li.empty", timeout=10_000)
            page.screenshot(path=str(SHOTS / "plan_approved.png"))
        finally:
            context.close()
    with AuditLog(log, create=False) as audit:
        assert audit.verify().ok
        answers = [(e.record.operator, e.record.responds_to_seq, e.record.refused) for e in audit.records()
                   if isinstance(e.record, HumanAction) and e.record.action == "approve"]
    assert answers == [("olivia", 1, True), ("paul", 1, False)]
    again = run_cli("console", "--proposals", log, "--users", users_path, "--port", "0", timeout=60)
    assert_input_error(again, "no plan awaits approval")
