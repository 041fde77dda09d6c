"""Quality control of the AI tracker, end to end to the human: when the network and the registration
tracker disagree, or the network's members disagree (uncertainty), or the network loses the target,
the confidence falls with the reason said, and at autonomy level 3 the gating decision built on it
is handed over to the human (an alert, the beam held) while confident frames act at once."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import LEARN, disc_sequence, tiny_config

N = 40
NOISY = (LEARN + 8, LEARN + 14, LEARN + 20)  # strong noise bursts: registration and network part ways
EMPTY = LEARN + 24  # the target vanishes (e.g. out of plane): the network finds nothing
HANDOVER = 0.6


@pytest.fixture(scope="module")
def run():
    from igikit.ai.tracker import AITracker

    frames, truth = disc_sequence(N, seed=2)
    rng = np.random.default_rng(11)
    for t in NOISY:
        frames[:, :, t] += rng.normal(0, 70, frames.shape[:2]).astype(np.float32)
    background = disc_sequence(N, seed=2)[0][:, :, EMPTY].copy()
    disc = truth[:, :, EMPTY] > 0
    background[disc] = np.median(background[~disc])  # the disc replaced by the tissue around it
    frames[:, :, EMPTY] = background
    tracker = AITracker(LEARN, tiny_config())
    tracker.start(frames[:, :, 0], truth[:, :, 0], (1.0, 1.0))
    results = [None] + [tracker.update(frames[:, :, t]) for t in range(1, N)]
    reasons = {t: r.details for t, r in enumerate(results) if r is not None}
    return tracker, frames, truth, results, reasons


def test_disagreement_and_uncertainty_lower_the_confidence(run) -> None:
    _, _, _, results, details = run
    clean = [t for t in range(LEARN + 1, N) if t not in (*NOISY, EMPTY) and t - 1 not in (*NOISY, EMPTY)]
    clean_conf = np.array([results[t].confidence for t in clean])
    assert np.median(clean_conf) > HANDOVER, clean_conf
    for t in (*NOISY, EMPTY):
        assert results[t].confidence < min(HANDOVER, 0.5 * np.median(clean_conf)), (t, results[t].confidence)
    # beyond the tolerance (3 mm apart or Dice < 0.6) the disagreement is flagged and said
    beyond = [t for t in NOISY if details[t]["qc_distance_mm"] > 3.0 or details[t]["qc_dice"] < 0.6]
    assert beyond, {t: details[t] for t in NOISY}
    assert all(details[t]["qc_disagree"] == 1.0 for t in beyond)
    within = [t for t in range(LEARN + 1, N) if "qc_distance_mm" in details[t] and t not in beyond]
    assert all(details[t]["qc_disagree"] == 0.0 for t in within)
    # uncertainty rises: the network's members agree less on every noisy frame than on any clean one
    assert max(details[t]["agreement"] for t in NOISY) < min(details[t]["agreement"] for t in clean)
    assert details[EMPTY]["fallback"] == 1.0  # nothing found: the registration's answer, at low confidence
    # the raw confidence falls with the distance between the network and the registration tracker
    scored = [t for t in range(LEARN + 1, N) if "qc_distance_mm" in details[t]]
    dist = np.array([details[t]["qc_distance_mm"] for t in scored])
    raw = np.array([details[t]["raw_confidence"] for t in scored])
    assert np.corrcoef(dist, raw)[0, 1] < -0.5


def test_level_3_hands_over_on_the_flagged_frames(run, tmp_path) -> None:
    from igikit.supervise import AuditLog, AutonomyPolicy, SupervisedSession
    from igikit.workflows.mrgrt.gating import Gate, GatingConfig, decision_record
    from igikit.workflows.mrgrt.operators import BeamSupervision

    _, _, truth, results, details = run
    session = SupervisedSession(AuditLog(tmp_path / "audit.db"), workflow="mrgrt", session_id="qc", level=3,
                                policy=AutonomyPolicy(handover_confidence=HANDOVER), safe_values={"beam": "hold"})
    # a generous boundary: the target is always inside, so only the confidence decides
    gate = Gate(truth[:, :, 0], (1.0, 1.0), GatingConfig(margin_mm=20.0, min_confidence=0.2))
    beam = BeamSupervision(session, min_confidence=0.2, stale_after_ms=500.0, headless=True)
    modes, reasons = {}, {}
    for t in range(LEARN + 1, N):
        r = results[t]
        d = gate.decide(r.mask, confidence=r.confidence, frame_age_ms=50.0)
        verdict = beam.authorise(decision_record(d, frame_id=t, frame_time_s=t / 8.0), reason=d.reason,
                                 confidence=r.confidence, near_limit=None, frame_id=t)
        modes[t], reasons[t] = (verdict.mode, verdict.beam_on), d.reason
    for t in (*NOISY, EMPTY):
        mode, on = modes[t]
        # above the gate's own interlock the session hands over; below it the interlock holds and alerts
        assert not on and (mode == "handed_over" or reasons[t] == "low_confidence"), (t, mode, details[t])
    assert any(modes[t][0] == "handed_over" for t in (*NOISY, EMPTY))
    alerts = [e.record for e in session.audit.records() if e.kind == "decision" and e.record.decision == "alert"]
    flagged_frames = {rec.input_frame_ids[0] for rec in alerts}
    assert set((*NOISY, EMPTY)) <= flagged_frames, flagged_frames
    confident = [t for t in modes if results[t].confidence >= HANDOVER]
    assert confident and all(modes[t] == ("applied", True) for t in confident), {t: modes[t] for t in confident}
    session.audit.close()
