"""``igikit console --session`` on a session file recorded by the gating workflow: the console reads
the workflow's result names (decision, confidence, contours, displacements), not the stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from igikit.sim import CinePhantomSpec, make_case
from igikit.supervise import AuditLog, FrameState, SupervisedSession
from igikit.workflows.mrgrt.workflow import GatingSettings, run_gating


@pytest.fixture(scope="module")
def gate_session(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = CinePhantomSpec(
        case_id="REC", background="magdeburg_liver", duration_s=4.0, frame_rate_hz=6.0, amplitude_si_mm=8.0,
        target_radius_mm=8.0, target_contrast=0.6, snr=25.0, seed=3,
    )
    out = tmp_path_factory.mktemp("rec")
    run = run_gating(make_case(spec, data_dir), GatingSettings(margin_mm=4.0), out, fast=True)
    assert run.session_path is not None
    return run.session_path


def test_a_gate_recording_replays_with_its_own_decisions(gate_session: Path, tmp_path: Path) -> None:
    from igikit.console.feed import STAND_IN_LABEL, ReplayFeed

    session = SupervisedSession(AuditLog(tmp_path / "a.db"), workflow="mrgrt", level=3, safe_values={"beam": "hold"})
    states: list[FrameState] = []
    session.subscribe_frames(states.append)
    feed = ReplayFeed(gate_session, session, rate_hz=200.0)
    assert STAND_IN_LABEL not in feed.describe()
    feed.start()
    feed._thread.join(timeout=30)
    assert feed.error is None and len(states) == feed.recording.n_frames == 24
    last = states[-1]
    labels = {o.label for o in last.overlays}
    assert {"gating boundary", "target (tracked)", "target (predicted)"} <= labels
    assert {"tracked SI (mm)", "predicted SI (mm)"} <= set(last.trace)
    assert abs(states[0].trace["tracked SI (mm)"]) < 1e-6  # displacement from the planned target
    assert all(s.explanation.startswith("beam ") and STAND_IN_LABEL not in s.explanation for s in states)
    beam = [e.record for e in session.audit.records() if getattr(e.record, "decision", "") == "beam"]
    assert len(beam) == 24 and all(r.component == "recorded" for r in beam)  # type: ignore[union-attr]
