"""The sonication loop under a supervised session: level-3 handover near a limit, a pause holding the
power, safety stops logged through the session, and the frames the console receives (heat map,
contours, traces) encoded as the page gets them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from igikit.console.broadcast import IntensityWindow, blend_heatmap, encode_frame
from igikit.errors import InputError
from igikit.supervise.audit import AuditLog
from igikit.supervise.session import Actor, FrameState, HeatMap, SupervisedSession, TracePlot
from igikit.workflows.fus.loop import run_sonication
from igikit.workflows.fus.plan import load_plan
from igikit.workflows.fus.supervision import SonicationSupervision
from tests.workflows.fus.test_control import small_plan


def plan_of(tmp_path: Path, **changes: object):  # type: ignore[no-untyped-def]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(small_plan(**changes)))
    return load_plan(path)


def session_of(tmp_path: Path, level: int) -> SupervisedSession:
    return SupervisedSession(AuditLog(tmp_path / "audit.db"), workflow="fus", session_id="t", level=level)


def test_supervised_run_publishes_every_frame_and_logs_the_goal(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    session = session_of(tmp_path, 3)
    states: list[FrameState] = []
    session.subscribe_frames(states.append)
    supervision = SonicationSupervision(session, plan, controller="pid", speed=0)
    run = run_sonication(plan, controller="pid", supervision=supervision)
    assert len(states) == run.times_s.size and supervision.handovers == 0
    assert "sonication complete" in run.stop_reason
    # the power the session let through is the power the simulator got
    assert np.allclose([s.trace["power (W)"] for s in states], run.power_w)
    hottest = states[int(np.argmax(run.controlled_measured_c))]
    assert hottest.heatmap is not None and hottest.heatmap.transparent_below == 40.0
    assert np.nanmax(hottest.heatmap.values) > 50.0
    labels = [o.label for o in states[-1].overlays]
    assert labels == ["target (planned)", "nerve (limit 43 °C)", "lesion (CEM43 ≥ 240 min)"]
    assert states[-1].trace_plot is not None and states[-1].trace_plot.units["power (W)"] == "W"
    decisions = [e.record for e in session.audit.records() if e.kind == "decision"]
    assert any(r.decision == "sonication_power" and "sonication complete" in r.explanation for r in decisions)
    assert sum(r.decision == "sonication" for r in decisions) == run.times_s.size  # every frame's decision
    assert session.audit.verify().ok


def test_level_3_hands_over_near_an_organ_limit_and_holds_the_power(tmp_path: Path) -> None:
    # the nerve 4 mm from the focus with a 45 °C limit: it nears the limit before the target is done
    plan = plan_of(tmp_path, organs_at_risk=[{"name": "nerve", "center_mm": [16.0, 12.0], "radii_mm": [1.0, 3.0],
                                             "limit_c": 45.0}], max_duration_s=120.0)
    session = session_of(tmp_path, 3)
    supervision = SonicationSupervision(session, plan, controller="mpc", near_limit_margin_c=3.0, speed=0)
    run = run_sonication(plan, controller="mpc", supervision=supervision)
    assert supervision.handovers >= 1
    alerts = session.open_alerts()
    assert [a.kind for a in alerts] == ["handover"] and "a safety limit is near" in alerts[0].message
    assert "organ at risk 'nerve'" in alerts[0].message
    # from the handover on, nobody acknowledged: no power, and the nerve never reached its limit
    handed = next(i for i, s in enumerate(run.phase) if s == "control" and run.power_w[i:].max() == 0)
    assert run.power_w[handed:].max() == 0.0
    assert max(np.nanmax(v) for v in run.oar_max_true_c.values()) < 45.0
    assert not run.records or not any(r.safety for r in run.records)


def test_a_pause_holds_the_power_until_resumed(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    session = session_of(tmp_path, 3)
    alice = Actor("alice", "operator")
    supervision = SonicationSupervision(session, plan, controller="pid", speed=0)
    seen: list[float] = []

    def on_frame(state: FrameState) -> None:  # a person pauses at 40 s and resumes at 60 s
        seen.append(state.trace["power (W)"])
        if state.acquisition_time_s == 40.0:
            session.pause(alice, reason="patient moved")
        if state.acquisition_time_s == 60.0:
            session.resume(alice)

    session.subscribe_frames(on_frame)
    run = run_sonication(plan, controller="pid", supervision=supervision)
    t = run.times_s
    assert run.power_w[(t > 40.0) & (t <= 60.0)].max() == 0.0
    assert run.power_w[(t > 60.0) & (t < 70.0)].max() > 0.0
    assert "sonication complete" in run.stop_reason


def test_safety_stop_is_logged_through_the_session_with_an_alert(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, organs_at_risk=[{"name": "nerve", "center_mm": [16.0, 12.0], "radii_mm": [1.0, 3.0],
                                             "limit_c": 40.0}])
    session = session_of(tmp_path, 3)
    events: list[str] = []
    session.subscribe(lambda e: events.append(f"{e.kind}: {e.text}"))
    supervision = SonicationSupervision(session, plan, controller="pid", near_limit_margin_c=0.0, speed=0)
    run = run_sonication(plan, controller="pid", supervision=supervision)
    assert run.stop_reason.startswith("sonication stop: organ at risk 'nerve' reached")
    assert any(e.startswith("decision: sonication stop: organ at risk 'nerve'") and "[applied]" in e for e in events)
    assert [a.kind for a in session.open_alerts()] == ["safety_stop"]
    safety = [e.record for e in session.audit.records() if e.kind == "decision" and e.record.safety]
    assert [r.decision for r in safety] == ["sonication_power", "alert"]  # the stop logged once, by the session


def test_heat_map_encoding() -> None:
    grey = np.full((4, 6), 100, np.uint8)
    values = np.full((4, 6), 37.0)
    values[1, 1], values[1, 2], values[2, 3] = 90.0, 60.0, np.nan
    heat = HeatMap(values, low=37.0, high=90.0, units="°C", label="temperature", transparent_below=40.0)
    out = blend_heatmap(grey, heat)
    assert out.shape == (4, 6, 3)
    assert (out[0, 0] == 100).all() and (out[2, 3] == 100).all()  # below 40 °C and NaN: the frame alone
    assert out[1, 1, 2] > 200 and out[1, 1, 1] > 200  # 90 °C: bright yellow (BGR)
    assert out[1, 2, 2] > out[1, 2, 0] > 0  # 60 °C: red-purple
    state = FrameState(
        0, 0.0, grey.astype(float), heatmap=heat, trace={"a (°C)": 1.0, "p (W)": 0.5},
        trace_plot=TracePlot("T", {"a (°C)": "°C", "p (W)": "W"}, 120.0),
    )
    message = json.loads(encode_frame(state, IntensityWindow(), safe_state=False))
    assert message["image"].startswith("data:image/png;base64,")
    png = cv2.imdecode(np.frombuffer(base64.b64decode(message["image"].split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert png.shape == (4, 6, 3)
    legend = message["heatmap"]
    assert (legend["low"], legend["high"], legend["transparent_below"], legend["units"]) == (37.0, 90.0, 40.0, "°C")
    assert legend["stops"][0][0] == 37.0 and legend["stops"][-1] == [90.0, "#fcffa4"]
    assert message["plot"] == {"title": "T", "units": {"a (°C)": "°C", "p (W)": "W"}, "window_s": 120.0}
    plain = json.loads(encode_frame(FrameState(1, 0.0, grey.astype(float)), IntensityWindow(), safe_state=False))
    assert plain["image"].startswith("data:image/jpeg") and plain["heatmap"] is None and plain["plot"] is None
    with pytest.raises(InputError, match="heat map"):
        FrameState(2, 0.0, grey.astype(float), heatmap=HeatMap(np.zeros((3, 3)), low=0, high=1))
    with pytest.raises(InputError, match="low < high"):
        HeatMap(values, low=5, high=5)
