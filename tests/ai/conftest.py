"""A small synthetic cine series (a textured background and a moving disc) and a trained AI tracker."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

SIZE = 80
LEARN = 12


def disc_sequence(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames and truth (H, W, T): a bright 6-px disc moving over a fixed smooth texture, with noise."""
    rng = np.random.default_rng(seed)
    background = ndimage.gaussian_filter(rng.normal(size=(SIZE, SIZE)), 3) * 40 + 100
    rr, cc = np.indices((SIZE, SIZE))
    frames = np.zeros((SIZE, SIZE, n), np.float32)
    truth = np.zeros((SIZE, SIZE, n), np.uint8)
    for t in range(n):
        cr = 40 + 9 * np.sin(2 * np.pi * t / 11)
        cc0 = 38 + 4 * np.sin(2 * np.pi * t / 11 + 0.8)
        disc = np.hypot(rr - cr, cc - cc0) <= 6
        frames[:, :, t] = background + 60 * disc + rng.normal(0, 4, (SIZE, SIZE))
        truth[:, :, t] = disc
    return frames, truth


def tiny_config():
    from igikit.ai.personalize import PersonalizeConfig

    return PersonalizeConfig(roi_px=32, target_radius_px=6.0, channels=(4, 8, 16), heads=3, steps=80, batch=8,
                             lr=1e-2, time_limit_s=40.0, max_shift_px=6.0)


@pytest.fixture(scope="session")
def sequence() -> tuple[np.ndarray, np.ndarray]:
    return disc_sequence()


@pytest.fixture(scope="session")
def tracked(sequence):
    """An AI tracker run through the whole sequence (trained on frames 0..LEARN-1)."""
    from igikit.ai.tracker import AITracker
    from igikit.workflows.mrgrt.tracking import track_sequence

    frames, truth = sequence
    tracker = AITracker(LEARN, tiny_config())
    seq = track_sequence(frames, truth[:, :, 0], (1.0, 1.0), tracker)
    return tracker, seq
