import numpy as np
import pytest

from igikit.errors import InputError
from igikit.workflows.mrgrt.reference import exhale_reference


def _breathing_disc(n=40, start_phase=0.5):
    """A textured disc whose row follows a breathing curve that dwells at its top (end-exhale)."""
    rng = np.random.default_rng(0)
    background = rng.normal(100, 5, (96, 96))
    t = np.arange(n) / 6.0
    # cos^4 lingers near 0, i.e. at the smallest row (superior): end-exhale
    row = 30 + 20 * np.cos(np.pi * (t / 4.0 + start_phase)) ** 4
    yy, xx = np.mgrid[0:96, 0:96]
    frames = []
    for r in row:
        f = background.copy()
        f[(yy - r) ** 2 + (xx - 48) ** 2 <= 36] += 80
        frames.append(f)
    frames = np.stack(frames, 2).astype(np.float32)
    label0 = ((yy - row[0]) ** 2 + (xx - 48) ** 2 <= 36).astype(np.uint8)
    return frames, label0, row


def test_exhale_reference_picks_the_dwelling_end() -> None:
    frames, label0, row = _breathing_disc()
    ref = exhale_reference(frames, label0, (1.0, 1.0), setup_frames=30)
    assert ref.exhale_at_low_si
    assert row[ref.frame] < row[:30].min() + 2.0  # at the superior, dwelling end
    assert abs(np.nonzero(ref.label)[0].mean() - row[ref.frame]) < 1.0


def test_setup_needs_frames() -> None:
    frames, label0, _ = _breathing_disc(n=5)
    with pytest.raises(InputError):
        exhale_reference(frames, label0, (1.0, 1.0), setup_frames=2)


def test_exhale_at_the_inferior_end_when_the_trace_dwells_there() -> None:
    frames, label0, row = _breathing_disc()
    flipped = frames[::-1].copy()  # rows mirrored: the dwelling end is now the largest row
    ref = exhale_reference(flipped, label0[::-1].copy(), (1.0, 1.0), setup_frames=30)
    assert not ref.exhale_at_low_si
    assert (95 - row)[ref.frame] > (95 - row[:30]).max() - 2.0
