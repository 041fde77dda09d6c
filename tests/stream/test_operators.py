"""Building-block operators on frames with known content."""

from __future__ import annotations

import numpy as np
import pytest

from igikit.errors import InputError
from igikit.stream import (
    Application,
    CollectResults,
    Message,
    NormaliseIntensity,
    PhaseCorrelationMotion,
    SyntheticSource,
)


def test_normalise_maps_percentiles_to_unit_range_and_keeps_the_frame() -> None:
    frame = np.arange(10000, dtype=np.uint16).reshape(100, 100)
    frame.setflags(write=False)
    out = NormaliseIntensity(1.0, 99.0).compute(Message(0, 0.0, 0.0, frame))
    norm = out.results["normalised"]
    assert norm.dtype == np.float32 and norm.min() == 0.0 and norm.max() == 1.0
    assert np.isclose(np.median(norm), 0.5, atol=0.01)
    assert out.frame is frame
    flat = NormaliseIntensity().compute(Message(0, 0.0, 0.0, np.full((8, 8), 7.0)))
    assert np.all(flat.results["normalised"] == 0.0)
    with pytest.raises(InputError):
        NormaliseIntensity(50, 10)


def test_phase_correlation_recovers_the_known_breathing_shift() -> None:
    source = SyntheticSource(
        (128, 112), n_frames=25, rate_hz=5.0, realtime=False, pixel_spacing_mm=(1.5, 2.0), amplitude_mm=12.0
    )
    trace = CollectResults(("shift_mm", "truth_shift_mm", "response"))

    class Track(Application):
        def compose(self) -> None:
            normalise = NormaliseIntensity()
            motion = PhaseCorrelationMotion(source.pixel_spacing_mm)
            self.add_flow(source, normalise)
            self.add_flow(normalise, motion)
            self.add_flow(motion, trace)

    Track().run()
    est, truth = trace.column("shift_mm"), trace.column("truth_shift_mm")
    assert est.shape == (25, 2)
    assert np.ptp(truth[:, 1]) > 11.0  # a full breathing cycle passed
    np.testing.assert_allclose(est[:, 1], truth[:, 1], atol=1.0)  # within half a pixel (2 mm)
    np.testing.assert_allclose(est[:, 0], 0.0, atol=1.0)
    assert trace.column("response").min() > 0.2


def test_phase_correlation_refuses_bad_input() -> None:
    with pytest.raises(InputError, match="spacing"):
        PhaseCorrelationMotion((0.0, 1.0))
    op = PhaseCorrelationMotion(image_key="frame")
    with pytest.raises(InputError, match="2D"):
        op.compute(Message(0, 0.0, 0.0, np.zeros((2, 8, 8))))
