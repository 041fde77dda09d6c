"""The supervised session: autonomy routing with veto windows, alerts that hold the safe state,
pause/resume, role checks with refusals in the audit log, events to subscribers, thread safety."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from igikit.errors import InputError
from igikit.supervise import (
    ActionRefused,
    Actor,
    AuditLog,
    AutonomyPolicy,
    DecisionRecord,
    FrameState,
    HumanAction,
    Overlay,
    SessionEvent,
    SupervisedSession,
)

ALICE = Actor("alice", "operator")
PAT = Actor("pat", "physicist")
OLGA = Actor("olga", "observer")


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def beam(value: str, *, confidence: float = 0.95, safety: bool = False, frame: int = 0) -> DecisionRecord:
    return DecisionRecord(
        decision="beam",
        value=value,
        explanation=f"beam {value}: target 1.2 mm outside the boundary (limit 3.0 mm); confidence {confidence:.2f}",
        confidence=confidence,
        component="test.gate",
        component_version="1",
        frame_time_s=0.125 * frame,
        input_frame_ids=(frame,),
        safety=safety,
    )


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def audit(tmp_path: Path):
    with AuditLog(tmp_path / "session.db") as log:
        yield log


def make(audit: AuditLog, clock: Clock, level: int = 2, **kw) -> tuple[SupervisedSession, list[SessionEvent]]:
    session = SupervisedSession(
        audit,
        workflow="mrgrt",
        session_id="S1",
        level=level,
        safe_values={"beam": "hold"},
        clock=clock,
        policy=AutonomyPolicy(veto_window_s=3.0, handover_confidence=0.6),
        **kw,
    )
    events: list[SessionEvent] = []
    session.subscribe(events.append)
    return session, events


def actions(audit: AuditLog) -> list[HumanAction]:
    return [e.record for e in audit.records() if e.kind == "human_action"]  # type: ignore[misc]


def test_start_is_logged_with_the_level_and_the_safe_value_is_in_effect(audit, clock) -> None:
    session, _ = make(audit, clock, level=2)
    first = next(audit.records()).record
    assert isinstance(first, DecisionRecord) and first.decision == "autonomy" and first.value == 2
    assert "veto window 3 s" in first.explanation
    assert session.effective_value("beam") == "hold"
    assert session.snapshot()["level"] == 2 and not session.in_safe_state


def test_level_2_decision_takes_effect_when_the_veto_window_closes(audit, clock) -> None:
    session, events = make(audit, clock, level=2)
    d = session.submit(beam("on"))
    assert d.mode == "pending" and d.value == "hold" and d.pending_id == 1
    clock.t += 2.0
    again = session.submit(beam("on", frame=1))
    assert again.mode == "pending" and again.pending_id == 1  # the same window, not restarted
    assert session.effective_value("beam") == "hold"
    snap = session.snapshot()
    assert snap["pending"][0]["seconds_left"] == pytest.approx(1.0)
    clock.t += 1.01
    assert session.effective_value("beam") == "on"
    assert session.pending() == []
    took = [e.record for e in audit.records() if e.kind == "decision" and "veto window" in e.record.explanation]
    assert took and took[-1].value == "on" and took[-1].data["took_effect_seq"] == d.seq
    assert [e.kind for e in events].count("took_effect") == 1
    logged = next(e.record for e in audit.records() if e.seq == d.seq)
    assert logged.proposal and logged.data["supervision"]["mode"] == "pending"
    # already in effect: nothing to veto
    assert session.submit(beam("on", frame=2)).mode == "applied"


def test_a_veto_within_the_window_means_it_never_takes_effect(audit, clock) -> None:
    session, events = make(audit, clock, level=2)
    d = session.submit(beam("on"))
    clock.t += 1.0
    session.veto(d.pending_id, ALICE, reason="patient moved")
    clock.t += 10.0
    assert session.effective_value("beam") == "hold"
    veto = actions(audit)[-1]
    assert veto.action == "veto" and veto.operator == "alice" and veto.responds_to_seq == d.seq and not veto.refused
    assert events[-1].kind == "vetoed" and "patient moved" in events[-1].text
    # a late approval of the vetoed decision is refused and logged
    with pytest.raises(ActionRefused) as exc:
        session.approve(d.pending_id, ALICE)
    assert exc.value.status == "conflict"
    late = actions(audit)[-1]
    assert late.refused and late.action == "approve" and late.responds_to_seq == d.seq


def test_approval_takes_effect_at_once_and_a_hold_supersedes_a_pending_on(audit, clock) -> None:
    session, _ = make(audit, clock, level=2)
    d = session.submit(beam("on"))
    session.approve(d.pending_id, ALICE)
    assert session.effective_value("beam") == "on"
    hold = session.submit(beam("hold"))
    assert hold.mode == "applied" and hold.value == "hold"
    d2 = session.submit(beam("on", frame=3))
    assert d2.mode == "pending"
    h2 = session.submit(beam("hold", frame=4))  # towards safe: at once, the pending one is cancelled
    assert h2.mode == "applied" and session.pending() == []
    clock.t += 5
    assert session.effective_value("beam") == "hold"


def test_level_1_proposals_wait_for_approval_and_level_0_only_displays(audit, clock) -> None:
    session, _ = make(audit, clock, level=1)
    p = session.submit(beam("on"))
    assert p.mode == "proposed"
    clock.t += 3600
    assert session.effective_value("beam") == "hold"  # proposals never take effect by themselves
    session.approve(p.pending_id, ALICE)
    assert session.effective_value("beam") == "on"
    session.set_autonomy(0, PAT, reason="manual for the boost")
    assert session.submit(beam("on")).mode == "displayed"
    interlock = session.submit(beam("hold", safety=True, confidence=0.2))
    assert interlock.mode == "applied" and session.effective_value("beam") == "hold"
    assert session.submit(beam("on")).mode == "displayed"
    assert session.effective_value("beam") == "hold"


def test_level_3_hands_over_on_low_confidence_and_the_alert_holds_the_safe_state(audit, clock) -> None:
    session, events = make(audit, clock, level=3)
    assert session.submit(beam("on")).value == "on"
    d = session.submit(beam("on", confidence=0.4, frame=5))
    assert d.mode == "handed_over" and d.value == "hold"
    [alert] = session.open_alerts()
    assert alert.kind == "handover" and alert.severity == "critical" and alert.frame_id == 5
    assert "0.40" in alert.message and session.in_safe_state
    # the condition repeating does not open a second alert
    session.submit(beam("on", confidence=0.3, frame=6))
    assert len(session.open_alerts()) == 1 and session.open_alerts()[0].occurrences == 2
    blocked = session.submit(beam("on", frame=7))
    assert blocked.mode == "safe_state" and blocked.value == "hold"
    assert session.submit(beam("hold", safety=True, frame=8)).mode == "applied"
    session.acknowledge(alert.alert_id, ALICE, reason="seen; target visible again")
    assert not session.in_safe_state
    assert session.effective_value("beam") == "hold"  # leaving the safe state revives nothing
    assert session.submit(beam("on", frame=9)).value == "on"
    ack = actions(audit)[-1]
    assert ack.action == "acknowledge" and ack.responds_to_seq == alert.seq
    kinds = [e.kind for e in events]
    assert kinds.index("alert") < kinds.index("acknowledged")
    assert any(e.kind == "decision" and "[handed over]" in e.text for e in events)


def test_near_limit_hands_over_at_level_3(audit, clock) -> None:
    session, _ = make(audit, clock, level=3)
    d = session.submit(beam("on"), near_limit=True)
    assert d.mode == "handed_over" and "safety limit is near" in session.open_alerts()[0].message


def test_alert_from_the_workflow_cancels_pending_and_keeps_the_safe_state_until_acknowledged(audit, clock) -> None:
    session, _ = make(audit, clock, level=2)
    p = session.submit(beam("on"))
    alert = session.raise_alert("low_confidence", "tracking confidence 0.31 below 0.50", confidence=0.31, frame_id=3)
    assert session.pending() == [] and session.effective_value("beam") == "hold"
    clock.t += 10
    assert session.effective_value("beam") == "hold"
    with pytest.raises(ActionRefused):
        session.approve(p.pending_id, ALICE)  # it was cancelled by the safe state
    logged = next(e.record for e in audit.records() if e.seq == alert.seq)
    assert logged.decision == "alert" and logged.safety and logged.input_frame_ids == (3,)
    session.acknowledge(alert.alert_id, ALICE)
    with pytest.raises(ActionRefused) as exc:
        session.acknowledge(alert.alert_id, PAT)
    assert exc.value.status == "conflict" and actions(audit)[-1].refused
    with pytest.raises(ActionRefused) as exc:
        session.acknowledge(999, ALICE)
    assert exc.value.status == "not_found" and exc.value.seq is None


def test_pause_is_the_safe_state_until_resume(audit, clock) -> None:
    session, events = make(audit, clock, level=3)
    session.submit(beam("on"))
    session.pause(ALICE, reason="patient coughing")
    assert session.paused and session.effective_value("beam") == "hold"
    assert session.submit(beam("on")).mode == "safe_state"
    assert "paused by alice (operator): patient coughing" in session.safe_state_reasons()[0]
    session.raise_alert("near_limit", "dose 95 % of the limit")
    session.resume(ALICE)
    assert not session.paused and session.in_safe_state  # the alert still holds it
    assert "safe state continues" in events[-1].text
    with pytest.raises(ActionRefused) as exc:
        session.resume(ALICE)
    assert exc.value.status == "conflict"
    assert [a.action for a in actions(audit)] == ["pause", "resume", "resume"]
    assert actions(audit)[-1].refused


def test_roles_are_enforced_and_refusals_are_logged_with_who_tried(audit, clock) -> None:
    session, events = make(audit, clock, level=2)
    alert = session.raise_alert("low_confidence", "confidence 0.2")
    for call in (
        lambda: session.acknowledge(alert.alert_id, OLGA),
        lambda: session.pause(OLGA),
        lambda: session.set_autonomy(3, OLGA),
        lambda: session.set_autonomy(3, ALICE),
        lambda: session.annotate("hello", Actor("mallory", "admin")),
    ):
        with pytest.raises(ActionRefused) as exc:
            call()
        assert exc.value.status == "forbidden" and exc.value.seq is not None
    refused = actions(audit)
    assert all(a.refused for a in refused) and len(refused) == 5
    assert [(a.operator, a.role, a.action) for a in refused] == [
        ("olga", "observer", "acknowledge"),
        ("olga", "observer", "pause"),
        ("olga", "observer", "set_autonomy"),
        ("alice", "operator", "set_autonomy"),
        ("mallory", "admin", "annotate"),
    ]
    assert refused[0].responds_to_seq == alert.seq
    assert "allowed: physicist" in refused[3].reason
    assert session.level == 2 and session.in_safe_state
    assert session.set_autonomy("conditional", PAT, reason="stable tracking") == 3
    ok = actions(audit)[-1]
    assert ok.action == "set_autonomy" and ok.value == 3 and ok.role == "physicist" and not ok.refused
    assert events[-1].kind == "autonomy" and "2 (supervised) -> 3 (conditional)" in events[-1].text
    assert sum(e.kind == "refused" for e in events) == 5
    with pytest.raises(InputError):
        session.set_autonomy(7, PAT)
    assert audit.verify().ok


def test_changing_the_level_cancels_pending_decisions(audit, clock) -> None:
    session, events = make(audit, clock, level=2)
    session.submit(beam("on"))
    session.set_autonomy(3, PAT)
    assert session.pending() == [] and any(e.kind == "cancelled" for e in events)
    clock.t += 10
    assert session.effective_value("beam") == "hold"


def test_only_changes_are_announced_but_every_decision_is_logged(audit, clock) -> None:
    session, events = make(audit, clock, level=3)
    for i in range(10):
        session.submit(beam("on", frame=i))
    assert sum(e.kind == "decision" for e in events) == 1
    assert sum(e.kind == "decision" for e in audit.records()) == 1 + 10


def test_subscribers_can_leave_and_a_failing_one_does_not_break_the_session(audit, clock) -> None:
    session, events = make(audit, clock, level=3)

    def broken(event: SessionEvent) -> None:
        raise RuntimeError("viewer crashed")

    session.subscribe(broken)
    late: list[SessionEvent] = []
    leave = session.subscribe(late.append)
    session.annotate("first", ALICE)
    leave()
    session.annotate("second", ALICE)
    assert [e.text for e in late] == ["note by alice (operator): first"]
    assert events[-1].to_dict()["actor"] == "alice"
    assert len(session.events()) >= 3


def test_frames_are_published_to_frame_subscribers_with_a_publish_time(audit, clock) -> None:
    session, _ = make(audit, clock)
    got: list[FrameState] = []
    leave = session.subscribe_frames(got.append)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    state = FrameState(
        3,
        0.375,
        np.zeros((8, 8)),
        overlays=(Overlay.outline(mask, "target"), Overlay.point(3.5, 3.0, "predicted")),
        beam_on=True,
    )
    session.publish_frame(state)
    assert session.latest_frame is got[0]
    leave()
    session.publish_frame(state)
    assert len(got) == 1 and got[0].published_wall_s > 0
    with pytest.raises(InputError):
        FrameState(0, 0.0, np.zeros((2, 2, 2)))
    with pytest.raises(InputError):
        Overlay("point", "p", points_xy=((1, 2), (3, 4)))
    with pytest.raises(InputError):
        Overlay("mask", "m")


def test_concurrent_workflow_and_humans_keep_the_chain_and_state_consistent(audit) -> None:
    session = SupervisedSession(audit, workflow="mrgrt", level=3, safe_values={"beam": "hold"})
    stop = threading.Event()

    def workflow() -> None:
        for i in range(150):
            session.submit(beam("on" if i % 7 else "hold", confidence=0.3 if i % 25 == 0 else 0.9, frame=i))

    def human() -> None:
        while not stop.is_set():
            for alert in session.open_alerts():
                try:
                    session.acknowledge(alert.alert_id, ALICE)
                except ActionRefused:
                    pass
            stop.wait(0.001)

    h = threading.Thread(target=human)
    h.start()
    w = threading.Thread(target=workflow)
    w.start()
    w.join()
    stop.set()
    h.join()
    result = audit.verify()
    assert result.ok and result.n_rows > 150
    for alert in session.open_alerts():
        session.acknowledge(alert.alert_id, ALICE)
    assert not session.in_safe_state
