"""``igikit navigate`` as a user runs it: simulated tracker, a replayed recording, OpenIGTLink at
full rate (every pose recorded), the supervised session and the console hook, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from igikit.stream.recorder import read_session
from igikit.supervise.audit import AuditLog
from tests.conftest import assert_input_error, run_cli
from tests.workflows.surgery.navigation_helpers import TOOL, navigator, phantom, tracker_from_image, write_inputs

HEADER = "t_s," + ",".join(f"m{r}{c}" for r in range(4) for c in range(4))


def _decisions(audit_path: Path) -> list[dict]:
    with AuditLog(audit_path, create=False) as log:
        rows = [json.loads(e.payload) for e in log.tail(10_000) if e.kind == "decision"]
    return [r for r in rows if r["decision"].startswith("proximity.")]


def test_navigate_simulated_tracker(tmp_path: Path) -> None:
    files = write_inputs(tmp_path)
    out = tmp_path / "run"
    metrics = tmp_path / "metrics.json"
    r = run_cli(
        "navigate",
        files["plan"],
        "--simulate",
        "--fast",
        "--fiducials-tracker",
        files["tracker"],
        "--pivot",
        files["pivot"],
        "--fle-mm",
        "0.5",
        "--speed-mm-s",
        "25",
        "--out-dir",
        out,
        "--json",
        metrics,
    )
    assert r.returncode == 0, r.stderr
    m = json.loads(metrics.read_text())
    n = m["poses"]
    assert n > 150 and m["rate_hz"] == pytest.approx(40.0, rel=0.02)
    # the straight path passes the portal vein at 4 mm: a warning, never critical (margin 2 mm)
    pv = m["structures"]["portal vein"]
    assert 2.5 < pv["min_distance_mm"] < 5.0 and pv["updates_warning"] > 0 and pv["updates_critical"] == 0
    assert m["structures"]["hepatic vein"]["updates_warning"] == 0
    levels = [w["level"] for w in m["warnings"]["log"]]
    assert levels == ["warning", "clear"]
    assert m["final"]["target_distance_mm"] < 2.0
    assert m["registration"]["fiducials"] == 7 and m["registration"]["fle_mm"] == 0.5
    assert m["update_ms"]["p99"] is not None and m["stream_alerts"] == []
    # every pose and every update in the session file
    s = read_session(out / "navigation.h5")
    assert s.n_frames == n and s.frames.shape[1:] == (4, 4) and s.closed_cleanly
    assert {"tip_mm", "tre_mm", "distance_portal_vein_mm", "level_portal_vein", "update_ms"} <= set(s.results)
    # the warning is a decision record whose explanation carries the numbers
    dec = _decisions(out / "audit.db")
    assert [d["value"] for d in dec] == ["warning", "clear"]
    assert dec[0]["safety"] is True and "TRE at tip" in dec[0]["explanation"]
    assert dec[0]["data"]["structure"] == "portal vein" and dec[0]["data"]["tre_mm"] > 0
    assert (out / "report.html").read_text().count("<img") == 2
    assert "portal vein: closest" in r.stdout and "report:" in r.stdout


def _recorded_poses(tmp_path: Path, n: int, rate_hz: float) -> tuple[Path, np.ndarray]:
    """A pose recording along the planned path, as ``igikit igtl record`` writes it (CSV)."""
    from igikit.workflows.surgery.tracker import SimulatedTracker, needle_insertion

    ph = phantom()
    path = needle_insertion(ph.entry_mm, ph.target_mm, speed_mm_s=110.0 / (n / rate_hz))
    sim = SimulatedTracker(path, tracker_from_image(), TOOL, rate_hz=rate_hz)
    times = np.arange(n) / rate_hz
    poses = np.stack([sim.true_pose(float(t))[0] for t in times])
    rows = [f"{t:.6f}," + ",".join(f"{v:.9g}" for v in p.reshape(-1)) for t, p in zip(times, poses, strict=True)]
    csv = tmp_path / "poses.csv"
    csv.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return csv, poses


def test_navigate_replays_a_recording_pose_for_pose(tmp_path: Path) -> None:
    files = write_inputs(tmp_path)
    csv, poses = _recorded_poses(tmp_path, 240, 60.0)
    out = tmp_path / "replay"
    r = run_cli(
        "navigate",
        files["plan"],
        "--replay",
        csv,
        "--fast",
        "--fiducials-tracker",
        files["tracker"],
        "--pivot",
        files["pivot"],
        "--smooth",
        "--out-dir",
        out,
    )
    assert r.returncode == 0, r.stderr
    s = read_session(out / "navigation.h5")
    np.testing.assert_allclose(s.frames, poses, atol=1e-6)  # every pose, in order, as recorded
    np.testing.assert_allclose(s.acquisition_time_s, np.arange(240) / 60.0, atol=1e-6)


def test_navigate_over_openigtlink_records_every_pose(tmp_path: Path) -> None:
    """A tracker bursting 400 TRANSFORMs (as fast as the socket takes them, two devices interleaved):
    pyigtl's client would keep only the latest per device; every one of the tool's must arrive."""
    from igikit.io.igtl import IGTLServer

    files = write_inputs(tmp_path)
    _, poses = _recorded_poses(tmp_path, 400, 60.0)
    out = tmp_path / "igtl"
    with IGTLServer("127.0.0.1", 0) as server:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "igikit.cli",
                "navigate",
                str(files["plan"]),
                "--igtl",
                f"127.0.0.1:{server.port}",
                "--device",
                "NeedleToTracker",
                "--fiducials-tracker",
                str(files["tracker"]),
                "--pivot",
                str(files["pivot"]),
                "--out-dir",
                str(out),
                "--lost-ms",
                "2000",
                "--frozen-ms",
                "2000",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.wait_for_clients(1, 60.0), proc.communicate(timeout=5)
            t0 = 1_700_000_000.0
            for k, p in enumerate(poses):
                server.send_transform("NeedleToTracker", p, timestamp_s=t0 + k / 60.0)
                server.send_transform("ReferenceToTracker", np.eye(4), timestamp_s=t0 + k / 60.0)
            assert server.flush(10.0)
            time.sleep(0.5)
        finally:
            server.stop()  # the tracker leaves: navigate ends after the queued poses
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    s = read_session(out / "navigation.h5")
    assert s.n_frames == 400
    np.testing.assert_allclose(s.frames, poses, atol=1e-4)  # TRANSFORM carries float32
    assert "400 poses" in stdout


def test_console_hook_publishes_scene_and_tool(tmp_path: Path) -> None:
    """The session carries the 3D scene once and a tool state per update (what the console draws)."""
    from igikit.workflows.surgery.navigate_command import (
        SupervisionOptions,
        execute_navigation,
        open_navigation_session,
    )
    from igikit.workflows.surgery.tracker import SimulatedTracker, needle_insertion

    nav = navigator()
    ph = phantom()
    session = open_navigation_session(tmp_path / "audit.db", SupervisionOptions())
    if not hasattr(session, "publish_scene"):
        pytest.skip("this SupervisedSession has no 3D scene hook")
    tools = []
    session.subscribe_tool(tools.append)
    path = needle_insertion(ph.entry_mm, ph.target_mm, speed_mm_s=40.0)
    src = SimulatedTracker(path, tracker_from_image(), TOOL, rate_hz=40.0, pace=False)
    facts = execute_navigation(
        nav,
        src,
        out_dir=tmp_path,
        session=session,
        headless=True,
        labels=ph.labels,
        title="t",
        lost_after_s=0.5,
        frozen_after_s=0.5,
    )
    session.audit.close()
    scene = session.latest_scene
    assert scene is not None and {m.name for m in scene.meshes} == {"portal vein", "hepatic vein", "lesion"}
    np.testing.assert_allclose(scene.target_mm, ph.target_mm)
    assert len(tools) == facts["poses"]
    last = session.latest_tool
    assert last is not None and last.tre_mm == pytest.approx(facts["final"]["tre_mm"], abs=1e-3)
    assert set(last.distances_mm) == {"portal vein", "hepatic vein"}
    warned = [t for t in tools if t.warnings]
    assert warned and "portal vein" in warned[0].warnings[0] and "TRE at tip" in warned[0].warnings[0]


def test_navigate_console_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    import os
    import re
    import signal
    import urllib.request

    files = write_inputs(tmp_path)
    env = {**os.environ, "IGIKIT_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "igikit.cli",
            "navigate",
            str(files["plan"]),
            "--simulate",
            "--fast",
            "--speed-mm-s",
            "40",
            "--console",
            "--port",
            "0",
            "--out-dir",
            str(tmp_path / "c"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(ln.rstrip() for ln in proc.stdout), daemon=True)  # type: ignore[union-attr]
    reader.start()

    def wait_for(pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for ln in list(lines):
                if m := re.search(pattern, ln):
                    return m
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in:\n" + "\n".join(lines))

    try:
        url = wait_for(r"igikit console: (http://127\.0\.0\.1:\d+)", 60).group(1)
        wait_for("the console keeps serving", 120)
        with urllib.request.urlopen(f"{url}/", timeout=10) as page:
            assert page.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    text = "\n".join(lines)
    assert "console stopped" in text and "Traceback" not in text
    assert (tmp_path / "c" / "report.html").is_file()


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("plan_text", "fragment"),
    [
        ("labels: labels.nii.gz\nstructures: [{name: v, label: 2}]\nfiducials: fid_image.csv\n", "lacks 'target_mm'"),
        (
            "labels: labels.nii.gz\ntarget_mm: [0, 0]\nstructures: [{name: v, label: 2}]\nfiducials: fid_image.csv\n",
            "target_mm must be 3 finite numbers",
        ),
        (
            "labels: nope.nii.gz\ntarget_mm: [0, 0, 0]\nstructures: [{name: v, label: 2}]\nfiducials: fid_image.csv\n",
            "not found",
        ),
        (
            "labels: labels.nii.gz\ntarget_mm: [0, 0, 0]\nstructures: [{name: v, label: 9}]\n"
            "fiducials: fid_image.csv\n",
            "label 9 (v) does not occur",
        ),
        (
            "labels: labels.nii.gz\ntarget_mm: [0, 0, 0]\nstructures: [{name: v, label: 2, colour: red}]\n"
            "fiducials: fid_image.csv\n",
            "unknown key 'colour'",
        ),
        ("labels: labels.nii.gz\ntarget_mm: [0, 0, 0]\nstructures: [{name: v, label: 2}]\n", "fiducials"),
        (
            "labels: labels.nii.gz\ntarget_mm: [0, 0, 0]\nstructures: [{name: v, label: 2}]\nspeed: 3\n"
            "fiducials: fid_image.csv\n",
            "unknown key 'speed'",
        ),
        ("[1, 2", "invalid YAML"),
    ],
)
def test_navigate_bad_plan(tmp_path: Path, plan_text: str, fragment: str) -> None:
    files = write_inputs(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(plan_text)
    out = tmp_path / "out"
    r = run_cli("navigate", bad, "--simulate", "--fast", "--out-dir", out)
    assert_input_error(r, fragment)
    assert not out.exists()  # nothing left behind
    assert files["plan"].is_file()


def test_navigate_bad_options_and_files(tmp_path: Path) -> None:
    files = write_inputs(tmp_path)
    plan = files["plan"]
    base = ("navigate", plan, "--out-dir", tmp_path / "o")
    few = tmp_path / "few.csv"
    few.write_text("x,y,z\n0,0,0\n1,0,0\n0,1,0\n")
    assert_input_error(run_cli(*base, "--simulate", "--fiducials-tracker", few), "3 fiducials, but the plan has 7")
    assert_input_error(
        run_cli(
            *base, "--replay", tmp_path / "none.csv", "--pivot", files["pivot"], "--fiducials-tracker", files["tracker"]
        ),
        "none.csv",
    )
    assert_input_error(
        run_cli(*base, "--replay", files["plan"], "--pivot", files["pivot"], "--fiducials-tracker", files["tracker"]),
        "unknown pose recording extension",
    )
    assert_input_error(run_cli(*base, "--simulate", "--tip-offset-mm", "1,2"), "--tip-offset-mm must be three")
    assert_input_error(run_cli(*base, "--simulate", "--fle-mm", "-1"), "--fle-mm")
    assert_input_error(
        run_cli(*base, "--igtl", "localhost:99999", "--pivot", files["pivot"], "--fiducials-tracker", files["tracker"]),
        "HOST:PORT",
    )
    assert_input_error(
        run_cli(*base, "--replay", files["tracker"], "--fiducials-tracker", files["tracker"]),
        "tool calibration is missing",
    )
    assert_input_error(run_cli(*base, "--replay", files["tracker"], "--pivot", files["pivot"]), "--fiducials-tracker")
    nan = tmp_path / "nan.csv"
    nan.write_text(HEADER + "\n0," + ",".join(["nan"] * 16) + "\n")
    assert_input_error(
        run_cli(*base, "--replay", nan, "--pivot", files["pivot"], "--fiducials-tracker", files["tracker"]), "NaN"
    )
    bad_pivot = tmp_path / "p.json"
    bad_pivot.write_text("{}")
    assert_input_error(run_cli(*base, "--simulate", "--pivot", bad_pivot), "tip_offset_mm")
    r = run_cli("navigate", plan)  # no source
    assert r.returncode == 2 and "one of the arguments" in r.stderr
    assert not (tmp_path / "o").exists()


def test_pose_recording_formats(tmp_path: Path) -> None:
    from igikit.errors import InputError
    from igikit.workflows.surgery.tracker import read_pose_recording

    csv, poses = _recorded_poses(tmp_path, 30, 20.0)
    rec = read_pose_recording(csv)
    np.testing.assert_allclose(rec.poses, poses, atol=1e-6)
    np.testing.assert_allclose(rec.times_s, np.arange(30) / 20.0, atol=1e-9)
    no_t = tmp_path / "no_t.csv"
    no_t.write_text("\n".join(line.split(",", 1)[1] for line in csv.read_text().splitlines()) + "\n")
    with pytest.raises(InputError, match="--rate-hz"):
        read_pose_recording(no_t)
    assert read_pose_recording(no_t, rate_hz=10.0).times_s[-1] == pytest.approx(2.9)
    back = tmp_path / "back.csv"
    lines = csv.read_text().splitlines()
    back.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    with pytest.raises(InputError, match="backwards"):
        read_pose_recording(back)
    assert math.isfinite(rec.times_s.sum())
