"""The gating workflow under supervision, on a small phantom case: alerts hold the beam until a
human acknowledges them, a pause holds it at once, a level-2 veto keeps a beam-on decision from
ever taking effect, and every decision is logged exactly once (by the session)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from igikit.io.trackrad import CineCase
from igikit.sim import CinePhantomSpec, make_case
from igikit.stream import Message, Sink
from igikit.supervise import Actor, AuditLog, AutonomyPolicy, FrameState, HumanAction, SupervisedSession
from igikit.supervise.records import DecisionRecord
from igikit.workflows.mrgrt.workflow import GatingRun, GatingSettings, SupervisionSettings, run_gating

OLIVIA = Actor("olivia", "operator")
RATE_HZ = 6.0
DROPOUT_FRAME = 20
SETTINGS = GatingSettings(margin_mm=4.0)


@pytest.fixture(scope="module")
def case(data_dir: Path) -> CineCase:
    spec = CinePhantomSpec(
        case_id="SUP", background="magdeburg_liver", duration_s=9.0, frame_rate_hz=RATE_HZ, amplitude_si_mm=8.0,
        target_radius_mm=8.0, target_contrast=0.6, snr=25.0, seed=3,  # with a 4 mm margin: mostly inside
    )
    return make_case(spec, data_dir)


class _Clock:
    """Session time that follows the replayed frames (fast replays: veto windows in stream time)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class _AtFrame(Sink):
    """Calls ``action(frame_id)`` after every frame (a human at the console, in the test's script)
    and moves the fake clock to the next frame's time."""

    def __init__(self, action: Callable[[Message], None], clock: _Clock | None = None) -> None:
        self.action, self.clock = action, clock
        super().__init__("human")

    def receive(self, message: Message) -> None:
        if self.clock is not None:
            self.clock.now = 1_000.0 + message.acquisition_time_s + 1.0 / RATE_HZ
        self.action(message)


def _session(tmp_path: Path, level: int, clock: _Clock, *, veto_window_s: float = 0.5) -> SupervisedSession:
    return SupervisedSession(
        AuditLog(tmp_path / "audit.db"), workflow="mrgrt", session_id="sup", level=level,
        # the handover trips with the gate's confidence interlock (on the calibrated confidence)
        policy=AutonomyPolicy(veto_window_s=veto_window_s, handover_confidence=SETTINGS.confidence_threshold()),
        safe_values={"beam": "hold"},
        clock=clock,
    )


def _run(case: CineCase, tmp_path: Path, session: SupervisedSession, sink: Sink, **kw: object) -> GatingRun:
    return run_gating(
        case, SETTINGS, tmp_path, fast=True, record=False, session=session,
        supervision=SupervisionSettings(level=int(session.level), headless=False), sinks=[sink], **kw,  # type: ignore[arg-type]
    )


def _by_frame(run: GatingRun) -> dict[int, dict[str, object]]:
    return {int(f["frame_id"]): f for f in run.frames}


def _audit_is_whole(run: GatingRun, session: SupervisedSession) -> list[object]:
    """The log verifies and holds each gate decision exactly once."""
    audit = session.audit
    assert audit.verify().ok
    records = [e.record for e in audit.records()]
    beam = [(e.seq, e.record) for e in audit.records() if getattr(e.record, "component", "") == "igikit.mrgrt.gate"]
    assert [seq for seq, _ in beam] == [seq for seq, _ in run.decisions]
    keys = [(r.input_frame_ids, r.explanation) for _, r in beam]  # type: ignore[union-attr]
    assert len(keys) == len(set(keys)) == len(run.frames) + sum(1 for c in run.commands if c.frame_id >= 0
                                                                  and c.reason in ("source_lost",))
    return records


@pytest.mark.parametrize("level", [3, 2])
def test_a_low_confidence_alert_holds_the_beam_until_a_human_acknowledges(
    case: CineCase, tmp_path: Path, level: int
) -> None:
    frames = case.frames.copy()
    frames[:, :, DROPOUT_FRAME] = 0  # a blank frame (a dropout): tracking confidence falls
    bad = dataclasses.replace(case, frames=frames)
    clock = _Clock()
    session = _session(tmp_path, level, clock)
    acked: list[int] = []

    def human(message: Message) -> None:
        # the operator looks at the alert only 16 frames later
        if message.frame_id == DROPOUT_FRAME + 16:
            for alert in session.open_alerts():
                session.acknowledge(alert.alert_id, OLIVIA, reason="artefact on one frame, target visible again")
                acked.append(alert.alert_id)

    run = _run(bad, tmp_path, session, _AtFrame(human, clock))
    rows = _by_frame(run)
    assert rows[DROPOUT_FRAME]["gate_reason"] == "low_confidence" and not rows[DROPOUT_FRAME]["beam_command_on"]
    assert rows[DROPOUT_FRAME]["confidence"] < SETTINGS.confidence_threshold()
    records = _audit_is_whole(run, session)
    alerts = [r for r in records if getattr(r, "decision", "") == "alert"]
    kind = "handover" if level == 3 else "low_confidence"
    assert [a.value for a in alerts] == [kind] and alerts[0].input_frame_ids == (DROPOUT_FRAME,)  # type: ignore[attr-defined]
    assert acked == [1]
    waiting = range(DROPOUT_FRAME, DROPOUT_FRAME + 17)
    # the gate wanted the beam on again while the alert was open, but it stayed held ...
    assert any(rows[k]["beam_on"] for k in waiting)
    assert not any(rows[k]["beam_command_on"] for k in waiting)
    assert {rows[k]["supervision"] for k in waiting if rows[k]["beam_on"]} == {"safe_state"}
    assert not any(c.beam_on for c in run.commands if DROPOUT_FRAME <= c.frame_id <= DROPOUT_FRAME + 16)
    # ... and after the acknowledgement the automation acts again
    assert any(rows[k]["beam_command_on"] for k in rows if k > DROPOUT_FRAME + 16)
    (ack,) = [r for r in records if isinstance(r, HumanAction) and r.action == "acknowledge"]
    alert_seq = next(e.seq for e in session.audit.records() if getattr(e.record, "decision", "") == "alert")
    assert ack.operator == "olivia" and ack.responds_to_seq == alert_seq
    assert run.supervision["alerts"] == {kind: 1} and run.supervision["people"] == ["olivia (operator)"]
    assert run.supervision["acknowledged_automatically"] == 0


def test_pause_holds_the_beam_until_resume(case: CineCase, tmp_path: Path) -> None:
    clock = _Clock()
    session = _session(tmp_path, 3, clock)
    paused: list[int] = []
    resumed: list[int] = []

    def human(message: Message) -> None:
        on = bool(message.results["beam_command_on"])
        if not paused and on:
            session.pause(OLIVIA, reason="patient moved")
            paused.append(message.frame_id)
        elif paused and not resumed and message.frame_id >= paused[0] + 12:
            session.resume(OLIVIA, reason="patient settled")
            resumed.append(message.frame_id)

    run = _run(case, tmp_path, session, _AtFrame(human, clock))
    rows = _by_frame(run)
    assert paused and resumed
    held = range(paused[0] + 1, resumed[0] + 1)
    assert any(rows[k]["beam_on"] for k in held)  # the gate said on ...
    assert not any(rows[k]["beam_command_on"] for k in held)  # ... the beam held
    assert {rows[k]["supervision"] for k in held if rows[k]["beam_on"]} == {"safe_state"}
    assert any(rows[k]["beam_command_on"] for k in rows if k > resumed[0])
    records = _audit_is_whole(run, session)
    actions = [(r.action, r.operator) for r in records if isinstance(r, HumanAction)]
    assert actions == [("pause", "olivia"), ("resume", "olivia")]
    assert run.supervision["human_actions"] == {"pause": 1, "resume": 1}


def test_a_pause_between_frames_holds_the_beam_before_the_next_frame(case: CineCase, tmp_path: Path) -> None:
    """At the native frame rate: the gate's watchdog follows the session, not only the frames."""
    session = SupervisedSession(  # real time: the replay runs at its frame rate
        AuditLog(tmp_path / "audit.db"), workflow="mrgrt", level=3, safe_values={"beam": "hold"},
        policy=AutonomyPolicy(handover_confidence=0.5),
    )
    paused: list[Message] = []

    def human(message: Message) -> None:
        if not paused and message.results["beam_command_on"]:
            session.pause(OLIVIA, reason="coughing")
            paused.append(message)

    run = run_gating(
        case, SETTINGS, tmp_path, fast=False, record=False, session=session, max_frames=24,
        supervision=SupervisionSettings(headless=False), sinks=[_AtFrame(human)],
    )
    assert paused, "the beam never came on"
    k, t = paused[0].frame_id, paused[0].acquisition_time_s
    (hold,) = [c for c in run.commands if c.reason == "supervision"]
    assert hold.frame_id == k and not hold.beam_on and hold.safety
    assert t < hold.decided_time_s < t + 1.0 / RATE_HZ  # before the next frame arrived
    assert not any(c.beam_on for c in run.commands if c.frame_id > k)


def test_a_level_2_veto_keeps_a_beam_on_decision_from_taking_effect(case: CineCase, tmp_path: Path) -> None:
    clock = _Clock()
    session = _session(tmp_path, 2, clock, veto_window_s=0.5)
    vetoed: list[int] = []

    def on_event(event: object) -> None:
        data = getattr(event, "data", {})
        if getattr(event, "kind", "") == "pending" and data.get("value") == "on" and not vetoed:
            session.veto(data["pending_id"], OLIVIA, reason="wait for the next breath")
            vetoed.append(int(event.seq))  # type: ignore[attr-defined]

    session.subscribe(on_event)  # type: ignore[arg-type]
    run = _run(case, tmp_path, session, _AtFrame(lambda m: None, clock))
    assert vetoed
    records = _audit_is_whole(run, session)
    seq_of = {seq: rec for seq, rec in run.decisions}
    frame = seq_of[vetoed[0]].input_frame_ids[0]
    (veto,) = [r for r in records if isinstance(r, HumanAction) and r.action == "veto"]
    assert veto.responds_to_seq == vetoed[0] and veto.operator == "olivia"
    took = [r for r in records if isinstance(r, DecisionRecord) and "took_effect_seq" in r.data]
    assert took and vetoed[0] not in {r.data["took_effect_seq"] for r in took}
    rows = _by_frame(run)
    # the vetoed beam-on never reached the beam; the next one waited its own veto window
    assert rows[frame]["beam_on"] and not rows[frame]["beam_command_on"]
    first_on = min(k for k in rows if rows[k]["beam_command_on"])
    assert first_on >= frame + 3  # 0.5 s window at 6 Hz
    assert {rows[k]["supervision"] for k in range(frame + 1, first_on) if rows[k]["beam_on"]} <= {"pending"}


def test_every_frame_is_published_for_the_console(case: CineCase, tmp_path: Path) -> None:
    clock = _Clock()
    session = _session(tmp_path, 3, clock)
    states: list[FrameState] = []
    session.subscribe_frames(states.append)
    run = _run(case, tmp_path, session, _AtFrame(lambda m: None, clock), max_frames=36)
    assert [s.frame_id for s in states] == [f["frame_id"] for f in run.frames]
    s = states[-1]
    styles = {o.style for o in s.overlays}
    assert {"boundary", "tracked", "predicted"} <= styles
    assert any(o.kind == "point" for o in s.overlays)
    assert s.beam_on == run.frames[-1]["beam_command_on"] and s.output in ("beam on", "beam hold")
    assert s.confidence is not None and 0 <= s.confidence <= 1
    assert s.explanation.startswith("beam ") and s.explanation.endswith("]")
    assert set(s.trace) == {"tracked SI (mm)", "predicted SI (mm)", "tracked AP (mm)", "predicted AP (mm)"}
    assert s.trace_band == (-4.0, 4.0)
    assert states[0].trace["tracked SI (mm)"] == pytest.approx(0.0, abs=1e-6)
