import numpy as np
import pytest

from igikit.errors import InputError
from igikit.workflows.mrgrt.gating import Gate, GatingConfig, decision_record

SP = (1.0, 1.0)


def _disc(shift_rows=0.0, shape=(80, 80), r=10):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (yy - 40 - shift_rows) ** 2 + (xx - 40) ** 2 <= r**2


def test_geometry_and_hysteresis() -> None:
    gate = Gate(_disc(), SP, GatingConfig(margin_mm=3, threshold_pct=5, hysteresis_pct=2))
    d = gate.decide(_disc(0), confidence=0.9, frame_age_ms=50)
    assert d.beam_on and d.outside_pct == 0 and d.reason == "resuming"
    far = gate.decide(_disc(8), confidence=0.9, frame_age_ms=50)
    assert not far.beam_on and far.outside_pct > 5 and far.outside_mm == pytest.approx(5.0, abs=1.0)
    assert "outside" in far.explanation and "limit 5.0%" in far.explanation
    # between the two limits: stays held (hysteresis) ...
    mid = next(s for s in np.arange(3.0, 8.0, 0.25) if 3.0 < Gate(_disc(), SP).geometry(_disc(s))[0] <= 5.0)
    assert not gate.decide(_disc(mid), confidence=0.9, frame_age_ms=50).beam_on
    # ... but the same position keeps an already-on beam on
    gate.decide(_disc(0), confidence=0.9, frame_age_ms=50)
    assert gate.decide(_disc(mid), confidence=0.9, frame_age_ms=50).beam_on


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"confidence": 0.3, "frame_age_ms": 50}, "low_confidence"),
        ({"confidence": 0.9, "frame_age_ms": 900}, "stale_frame"),
        ({"confidence": 0.9, "frame_age_ms": 50, "source_ok": False}, "source_lost"),
        ({"confidence": float("nan"), "frame_age_ms": 50}, "invalid_input"),
    ],
)
def test_interlocks_hold_the_beam_whatever_the_geometry(kwargs, reason) -> None:
    gate = Gate(_disc(), SP)
    assert gate.decide(_disc(), confidence=0.9, frame_age_ms=10).beam_on
    d = gate.decide(_disc(), **kwargs)
    assert not d.beam_on and d.safety and d.reason == reason
    rec = decision_record(d, frame_id=7, frame_time_s=1.25)
    assert rec.value == "hold" and rec.safety and rec.input_frame_ids == (7,)
    assert rec.explanation.startswith("beam hold:")


def test_missing_mask_and_bad_config() -> None:
    gate = Gate(_disc(), SP)
    assert gate.decide(None, confidence=0.9, frame_age_ms=10).reason == "invalid_input"
    with pytest.raises(InputError):
        GatingConfig(threshold_pct=5, hysteresis_pct=6)
    with pytest.raises(InputError):
        Gate(np.zeros((5, 5)), SP)


def test_prediction_uncertainty_shrinks_the_boundary_at_most_by_the_margin() -> None:
    cfg = GatingConfig(margin_mm=3.0, threshold_pct=5.0, hysteresis_pct=0.0, uncertainty_factor=1.0)
    moved = _disc(2.5)  # 2.5 mm off: inside the 3 mm margin, 7 % outside a boundary shrunk by 2 mm
    on = Gate(_disc(), (1.0, 1.0), cfg).decide(moved, confidence=0.9, frame_age_ms=10, uncertainty_mm=0.5)
    assert on.beam_on
    held = Gate(_disc(), (1.0, 1.0), cfg).decide(moved, confidence=0.9, frame_age_ms=10, uncertainty_mm=2.0)
    assert not held.beam_on and held.reason == "outside"
    assert "less 2.0 mm for the prediction uncertainty (RMS 2.0 mm)" in held.explanation
    gate = Gate(_disc(), (1.0, 1.0), cfg)
    assert gate.shrink_mm(10.0) == 3.0 and gate.shrink_mm(float("nan")) == 0.0
    # Shrunk by the whole margin, the window is about the target itself: centred, the beam may go on.
    assert gate.decide(_disc(), confidence=0.9, frame_age_ms=10, uncertainty_mm=10.0).beam_on
    off = Gate(_disc(), (1.0, 1.0), GatingConfig(margin_mm=3.0, uncertainty_factor=0.0))
    assert off.decide(moved, confidence=0.9, frame_age_ms=10, uncertainty_mm=2.0).beam_on


def test_prediction_scorer_is_causal_and_exact_on_linear_motion() -> None:
    from igikit.workflows.mrgrt.operators import PredictionScorer

    scorer = PredictionScorer(weight=0.5)
    velocity = np.array([10.0, -4.0])  # mm/s
    for k in range(20):
        t = 0.25 * k
        scorer.measured(t, velocity * t)
        # predicted for t + 0.3 s with a constant 2 mm error along SI: scored once the frame after it arrives
        scorer.predicted(t + 0.3, velocity * (t + 0.3) + np.array([2.0, 0.0]))
        if k <= 1:
            assert np.isnan(scorer.rms_mm)  # nothing due yet: no measurement after t + 0.3 s
    assert scorer.n_scored == 18
    assert scorer.rms_mm == pytest.approx(2.0, abs=1e-9)
