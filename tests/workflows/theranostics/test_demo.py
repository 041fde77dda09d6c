"""``igikit demo theranostics --no-console``: the Lu-177 and Ho-166 demo end to end, with its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from igikit.supervise.audit import AuditLog
from tests.conftest import run_cli


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
    index = (out / "report.html").read_text()
    assert "lu177/report.html" in index and "Post-treatment" in index
    assert "tumour" in r.stdout and "GBq" in r.stdout
