"""Trackers on a real liver frame moved by a known breathing translation, with a known target."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from igikit.io.trackrad import read_case
from igikit.workflows.mrgrt.metrics import evaluate_sequence
from igikit.workflows.mrgrt.tracking import (
    EnsembleTracker,
    RegistrationTracker,
    TemplateTracker,
    Tracker,
    TrackResult,
    make_tracker,
    robust_consensus,
    track_sequence,
)

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


# --- robustness on small phantoms from igikit.sim (real anatomy, known truth) ---------------------

ROBUST_METHODS = ["template", "registration", "ensemble"]


def _phantom(data_dir, **spec):
    from igikit.sim.cine import CinePhantomSpec, make_case

    base = dict(background="magdeburg_liver", frame_rate_hz=6.0, duration_s=4.0, amplitude_si_mm=14.0,
                rotation_deg=1.0, seed=11)
    case = make_case(CinePhantomSpec(**{**base, **spec}), data_dir)
    spacing = (case.pixel_spacing_mm[1], case.pixel_spacing_mm[0])
    return case.frames.astype(np.float32), case.labels, spacing


@pytest.fixture(scope="module")
def corrupted_case(data_dir):
    """24 frames, a 9 mm target, a strong noise burst on frame 6 and ghosting on frames 12 and 13."""
    corruptions = [{"frame": 6, "kind": "noise_burst", "strength": 6.0},
                   {"frame": 12, "kind": "ghosting", "strength": 0.5, "shift_fraction": 0.3},
                   {"frame": 13, "kind": "ghosting", "strength": 0.5, "shift_fraction": 0.4}]
    from igikit.sim.cine import FrameCorruption

    return _phantom(data_dir, case_id="CORRUPT", target_radius_mm=9.0, target_contrast=0.4, snr=20.0,
                    corruptions=tuple(FrameCorruption(**c) for c in corruptions))


@pytest.mark.parametrize("method", ROBUST_METHODS)
def test_corrupted_frames_do_not_derail_the_tracker(corrupted_case, method) -> None:
    frames, truth, spacing = corrupted_case
    res = track_sequence(frames, truth[:, :, 0], spacing, method)
    m = evaluate_sequence(res.labels, truth, spacing)
    cen = np.array([np.nan if v is None else v for v in m["centroid_mm"]])
    # On and after the corrupted frames the target is still where it is (held or re-found) ...
    assert np.nanmax(cen[6:]) < 4.0, cen
    assert np.nanmean(cen[14:]) < 1.5, cen
    assert min(v for v in m["dsc"][14:] if v is not None) > 0.75
    # ... and the corrupted frames are reported with a lower confidence than the clean ones.
    clean = np.median(res.confidence[[t for t in range(1, 24) if t not in (6, 12, 13)]])
    assert max(res.confidence[6], res.confidence[12]) < 0.6 * clean, res.confidence


@pytest.fixture(scope="module")
def faint_through_slice_case(data_dir):
    """A 5.5 mm target 15 % darker than the liver, SNR 12, moving 4 mm through the slice (radius 5.5 -> 3.8 mm)."""
    return _phantom(data_dir, case_id="FAINT", target_radius_mm=5.5, target_contrast=-0.15, snr=12.0,
                    out_of_plane_mm=4.0, duration_s=5.0, seed=5)


@pytest.mark.parametrize("method", ROBUST_METHODS)
def test_small_low_contrast_target_moving_through_the_slice_is_not_lost(faint_through_slice_case, method) -> None:
    frames, truth, spacing = faint_through_slice_case
    res = track_sequence(frames, truth[:, :, 0], spacing, method)
    m = evaluate_sequence(res.labels, truth, spacing)
    worst_centroid = max(v for v in m["centroid_mm"] if v is not None)
    assert worst_centroid < 3.0, m["centroid_mm"]  # never off the target (its radius is >= 3.7 mm)
    assert min(v for v in m["dsc"] if v is not None) > 0.3
    assert m["mean_dsc"] > 0.75, m["mean_dsc"]


class _Liar(Tracker):
    """A member that follows the truth, then from ``after`` on confidently reports a place 15 mm away."""

    name = "liar"

    def __init__(self, truth: np.ndarray, after: int) -> None:
        self.truth, self.after, self.t = truth, after, 0

    def _start(self) -> None:
        self.t = 0

    def update(self, frame: np.ndarray) -> TrackResult:
        self.t += 1
        soft = self.truth[:, :, self.t].astype(np.float32)
        if self.t >= self.after:
            soft = np.roll(soft, round(15.0 / self.spacing[0]), axis=1)
        return self.result(soft, 0.95)


def test_robust_consensus_discounts_an_outlier_and_keeps_the_prior_when_all_disagree() -> None:
    cents = np.array([[10.0, 20.0], [10.4, 20.0], [30.0, 20.0]])  # two members agree, one is 20 mm away
    prior = np.array([1.0, 1.0, 1.0])
    c = robust_consensus(cents, prior, agreement_mm=3.0)
    assert np.allclose(c.position_mm, [10.2, 20.0], atol=1e-6)  # the plain mean would be 16.8
    assert c.weights[2] < 1e-12 * c.weights[0]
    assert np.allclose(c.offset_mm, [0.2, 0.2, 19.8], atol=1e-6)
    assert np.allclose(c.nearness, np.exp(-((c.offset_mm / 3.0) ** 2)))
    # every member far from every other: no one is discounted, the prior-weighted mean stays
    far = np.array([[0.0, 0.0], [100.0, 0.0]])
    c = robust_consensus(far, np.array([3.0, 1.0]), agreement_mm=1.0)
    assert np.array_equal(c.weights, [3.0, 1.0]) and np.allclose(c.position_mm, [25.0, 0.0])


def test_ensemble_confidence_falls_when_members_disagree_and_the_majority_wins(moving_case) -> None:
    frames, truth = moving_case
    ens = EnsembleTracker(members=[TemplateTracker(), RegistrationTracker(), _Liar(truth, after=15)])
    res = track_sequence(frames, truth[:, :, 0], SPACING, ens)
    before, after = res.confidence[2:15], res.confidence[15:]
    assert np.median(after) < 0.6 * np.median(before), res.confidence
    m = evaluate_sequence(res.labels, truth, SPACING)
    assert max(v for v in m["centroid_mm"][15:] if v is not None) < 2.0  # the two that agree carry it
    # With only the liar and one honest member nobody can tell who is right: the confidence says so.
    pair = track_sequence(frames, truth[:, :, 0], SPACING,
                          EnsembleTracker(members=[RegistrationTracker(), _Liar(truth, after=15)]))
    assert np.max(pair.confidence[16:]) < 0.35, pair.confidence
