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
