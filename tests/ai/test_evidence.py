"""Explanations on request: computed on a worker thread, saved as PNG evidence, linked from the
tracker's decision record in the audit log."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest

from igikit.errors import InputError

from .conftest import LEARN, tiny_config


@pytest.fixture
def session(tmp_path):
    from igikit.supervise import AuditLog, SupervisedSession

    audit = AuditLog(tmp_path / "audit.db")
    yield SupervisedSession(audit, workflow="mrgrt", session_id="explain-test", level=3, safe_values={"beam": "hold"})
    audit.close()


def test_explanation_is_logged_with_its_evidence(tracked, sequence, session, tmp_path) -> None:
    from igikit.ai.evidence import ExplanationService
    from igikit.supervise import DecisionRecord

    tracker, seq = tracked
    _, truth = sequence
    events = []
    session.subscribe(events.append)
    service = ExplanationService(tracker, session, tmp_path / "evidence", frame_offset=0)
    try:
        last = truth.shape[2] - 1
        future = service.request(last - 2, requested_by="olivia")
        result = future.result(timeout=120)
    finally:
        service.close()
    # computed on the service's worker, not on the calling (tracking) thread
    assert result.thread_name.startswith("igikit-explain") and result.thread_name != threading.current_thread().name
    assert result.frame_index == last - 2
    entry = next(e for e in session.audit.records() if e.seq == result.seq)
    record = entry.record
    assert isinstance(record, DecisionRecord) and record.decision == "target"
    assert record.component == "igikit.ai.tracker" and record.input_frame_ids == (last - 2,)
    assert record.confidence == pytest.approx(seq.confidence[last - 2], abs=1e-9)
    assert record.evidence is not None and record.evidence.kind == "path"
    png = result.path.read_bytes()
    assert record.evidence.ref == str(result.path) and png.startswith(b"\x89PNG")
    assert record.data["evidence_sha256"] == hashlib.sha256(png).hexdigest()
    assert record.data["requested_by"] == "olivia"
    # the network looked at the target: most of the occlusion evidence lies near it
    assert result.saliency_near_target > 0.5, result.saliency_near_target
    assert f"{result.saliency_near_target:.0%}" in record.explanation
    assert [e.kind for e in events if e.seq == result.seq] == ["evidence"]
    # nothing was put into effect and no alert raised by an explanation
    assert session.snapshot()["alerts"] == [] and session.effective_value("beam") == "hold"


def test_requests_are_checked_at_once(sequence, tracked, session, tmp_path) -> None:
    from igikit.ai.evidence import ExplanationService
    from igikit.ai.tracker import AITracker
    from igikit.workflows.mrgrt.tracking import TemplateTracker

    frames, truth = sequence
    with pytest.raises(InputError, match="no AI tracker"):
        ExplanationService(TemplateTracker(), session, tmp_path)
    learning = AITracker(LEARN, tiny_config())
    learning.start(frames[:, :, 0], truth[:, :, 0], (1.0, 1.0))
    learning.update(frames[:, :, 1])
    with pytest.raises(InputError, match="learning phase"):
        ExplanationService(learning, session, tmp_path).request()
    tracker, _ = tracked
    service = ExplanationService(tracker, session, tmp_path, max_queued=1)
    try:
        with pytest.raises(InputError, match="not among the network's last"):
            service.request(2)  # a learning-phase frame: the network never saw it
        first = service.request()
        with pytest.raises(InputError, match="being computed"):
            service.request()
        first.result(timeout=120)
        service.request().result(timeout=120)  # free again once shown
    finally:
        service.close()


def test_ensemble_member_is_found_and_a_tracker_can_come_later(session, tmp_path) -> None:
    from igikit.ai.evidence import ExplanationService, find_ai_tracker
    from igikit.ai.tracker import ai_ensemble

    ens = ai_ensemble(learning_frames=LEARN, config=tiny_config())
    assert find_ai_tracker(ens) is ens.ai
    current: list[object] = []  # a workflow that builds its tracker at the first frame
    service = ExplanationService(lambda: current[0] if current else None, session, tmp_path)
    with pytest.raises(InputError, match="no tracker yet"):
        service.request()
    current.append(ens)
    with pytest.raises(InputError, match="learning phase"):
        service.request()
    service.close()


def test_saliency_share_near_target() -> None:
    from igikit.ai.evidence import saliency_near_target

    mask = np.zeros((20, 20), bool)
    mask[8:12, 8:12] = True
    on = np.zeros((20, 20))
    on[9, 9] = 1.0
    off = np.zeros((20, 20))
    off[0, 19] = 1.0
    assert saliency_near_target(on, mask, (1.0, 1.0)) == 1.0
    assert saliency_near_target(off, mask, (1.0, 1.0)) == 0.0
    assert saliency_near_target(np.zeros((20, 20)), mask, (1.0, 1.0)) == 0.0
