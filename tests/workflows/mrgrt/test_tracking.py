"""Trackers on a real liver frame moved by a known breathing translation, with a known target."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from igikit.io.trackrad import read_case
from igikit.workflows.mrgrt.metrics import evaluate_sequence
from igikit.workflows.mrgrt.tracking import make_tracker, track_sequence

SPACING = (1.818, 1.818)


@pytest.fixture(scope="module")
def moving_case(data_dir):
    """30 frames: the real magdeburg frame 0 with a 10 mm-radius lesion, shifted by a known motion."""
    base = read_case(data_dir / "cine/magdeburg_liver").frames[:, :, 0].astype(np.float64)
    h, w = base.shape
    yy, xx = np.mgrid[0:h, 0:w]
    centre = (70.0, 60.0)
    lesion = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) * SPACING[0] ** 2 <= 10.0**2
    img = base + 0.6 * np.percentile(base, 95) * ndimage.gaussian_filter(lesion.astype(float), 1.0)
    rng = np.random.default_rng(7)
    t = np.arange(30) / 6.0
    shift_mm = np.c_[12.0 * np.sin(2 * np.pi * t / 4.0) ** 2, 3.0 * np.sin(2 * np.pi * t / 4.0)]
    frames, labels = [], []
    sigma = 0.03 * np.percentile(base, 95)
    for s in shift_mm / np.asarray(SPACING):
        moved = ndimage.shift(img, s, order=1, mode="nearest")
        noisy = np.hypot(moved + rng.normal(0, sigma, moved.shape), rng.normal(0, sigma, moved.shape))
        frames.append(noisy)
        labels.append(ndimage.shift(lesion.astype(float), s, order=1) >= 0.5)
    return np.stack(frames, 2).astype(np.float32), np.stack(labels, 2).astype(np.uint8)


@pytest.mark.parametrize("method", ["template", "registration", "ensemble"])
def test_trackers_follow_known_motion_and_beat_copy(moving_case, method) -> None:
    frames, truth = moving_case
    copy = evaluate_sequence(track_sequence(frames, truth[:, :, 0], SPACING, "copy").labels, truth, SPACING)
    res = track_sequence(frames, truth[:, :, 0], SPACING, method)
    m = evaluate_sequence(res.labels, truth, SPACING)
    assert m["mean_dsc"] > 0.85, m["mean_dsc"]
    assert m["mean_centroid_mm"] < 1.5, m["mean_centroid_mm"]
    assert m["mean_dsc"] > copy["mean_dsc"] + 0.1
    assert res.labels.dtype == np.uint8 and res.labels.shape == frames.shape
    assert np.all((res.confidence >= 0) & (res.confidence <= 1))


def test_tracking_is_causal(moving_case) -> None:
    frames, truth = moving_case
    a = track_sequence(frames, truth[:, :, 0], SPACING, "ensemble")
    altered = frames.copy()
    altered[:, :, 20:] = altered[:, :, 20:][::-1, ::-1]  # change only the future
    b = track_sequence(altered, truth[:, :, 0], SPACING, "ensemble")
    assert np.array_equal(a.labels[:, :, :20], b.labels[:, :, :20])
    assert np.allclose(a.confidence[:20], b.confidence[:20])


@pytest.mark.parametrize("method", ["template", "registration", "ensemble"])
def test_confidence_falls_when_the_target_is_gone(moving_case, method) -> None:
    frames, truth = moving_case
    lost = frames.copy()
    rng = np.random.default_rng(1)
    lost[:, :, 15:] = rng.permutation(lost[:, :, 15:].reshape(-1)).reshape(lost[:, :, 15:].shape)
    res = track_sequence(lost, truth[:, :, 0], SPACING, method)
    assert np.mean(res.confidence[1:15]) > 0.5
    assert np.max(res.confidence[17:]) < 0.3


def test_unknown_method_and_empty_label_are_refused() -> None:
    from igikit.errors import InputError

    with pytest.raises(InputError, match="unknown tracking method"):
        make_tracker("sam9")
    with pytest.raises(InputError, match="empty"):
        make_tracker("template").start(np.zeros((8, 8)), np.zeros((8, 8)), (1.0, 1.0))
