"""``igikit demo surgery``: the real pivot recording, the phantom, fiducial registration, a needle
insertion that passes near the portal vein (warnings fire), tool-stream alerts, the report; headless
in real time within two minutes, and its written inputs run again through ``igikit navigate``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from igikit.stream.recorder import read_session
from igikit.supervise.audit import AuditLog
from tests.conftest import run_cli


def test_demo_surgery_headless(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "IGIKIT_DATA": str(data_dir)}
    t0 = time.monotonic()
    r = run_cli("demo", "surgery", "--no-console", "--out-dir", out, env=env)
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert wall < 120.0, wall  # the bound for the headless demo, in real time (about 15 s of insertion)
    text = r.stdout
    assert "pivot calibration (ransac) of the real recording" in text and "1151 poses" in text
    assert "fiducial registration: 7 skin fiducials" in text
    assert "margin not guaranteed" in text  # the critical warning with its uncertainty
    assert sorted(p.name for p in out.iterdir()) == [
        "audit.db",
        "fiducials_image.csv",
        "fiducials_tracker.csv",
        "labels.nii.gz",
        "navigation.h5",
        "pivot.json",
        "plan.yaml",
        "report.html",
    ]
    # the warnings are decision records: warning, critical (with an alert), then easing back to clear
    with AuditLog(out / "audit.db", create=False) as log:
        assert log.verify().ok
        rows = [json.loads(e.payload) for e in log.tail(10_000)]
    prox = [x for x in rows if x.get("decision", "").startswith("proximity.portal_vein")]
    assert [x["value"] for x in prox] == ["warning", "critical", "warning", "clear"]
    assert all(x["data"]["supervision"]["mode"] == "applied" for x in prox)
    alerts = [x["data"]["kind"] for x in rows if x.get("decision") == "alert"]
    assert sorted(alerts) == ["proximity", "tool_frozen", "tool_lost"]
    # the occlusion and the freeze were each caught within 200 ms
    report = (out / "report.html").read_text()
    assert report.count("<img") == 2 and "margin not guaranteed" in report
    for kind in ("lost", "frozen"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"tool stream {kind}: alert after"))
        ms = float(line.split("alert after ")[1].split(" ms")[0])
        assert 150 <= ms < 200, line
    s = read_session(out / "navigation.h5")
    assert s.n_frames > 550 and s.closed_cleanly
    # its inputs are a complete navigation: igikit navigate runs on them
    r2 = run_cli(
        "navigate",
        out / "plan.yaml",
        "--simulate",
        "--fast",
        "--fiducials-tracker",
        out / "fiducials_tracker.csv",
        "--pivot",
        out / "pivot.json",
        "--fle-mm",
        "0.8",
        "--out-dir",
        tmp_path / "again",
        "--json",
        tmp_path / "again.json",
    )
    assert r2.returncode == 0, r2.stderr
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["structures"]["portal vein"]["updates_warning"] > 0


def test_demo_surgery_bad_port_and_existing_output(data_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "IGIKIT_DATA": str(data_dir)}
    r = run_cli("demo", "surgery", "--port", "70000", "--out-dir", tmp_path / "x", env=env)
    assert r.returncode == 2 and "--port" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "report.html").write_text("keep me")
    r = run_cli("demo", "surgery", "--no-console", "--fast", "--out-dir", tmp_path / "y", env=env)
    assert r.returncode == 2 and "already exists" in r.stderr
    assert (tmp_path / "y" / "report.html").read_text() == "keep me"
    assert sorted(p.name for p in (tmp_path / "y").iterdir()) == ["report.html"]
