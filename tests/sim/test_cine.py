"""Cine phantoms: the truth is exact, the noise is as stated, and the cases are valid TrackRAD folders."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from igikit.errors import InputError
from igikit.io.trackrad import read_case, write_case
from igikit.sim import CinePhantomSpec, FrameCorruption, make_case, render_phantom, spec_for_profile
from igikit.sim.breathing import dominant_rate_per_min


def _centroids_mm(masks: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """(T, 2) centroids (x, y) in mm of (H, W, T) masks or coverage maps."""
    rc = np.array([ndimage.center_of_mass(masks[:, :, k]) for k in range(masks.shape[2])])
    return np.stack([rc[:, 1] * spacing[0], rc[:, 0] * spacing[1]], axis=1)


def _translation_spec(**kw) -> CinePhantomSpec:
    base = dict(
        amplitude_si_mm=20.0, ap_fraction=0.4, rotation_deg=0.0, deformation_nonuniformity=0.0,
        drift_mm_per_min=4.0, snr=None, duration_s=8.0, frame_rate_hz=6.0, seed=2,
    )
    return CinePhantomSpec(**{**base, **kw})


@pytest.mark.parametrize(
    ("background", "radius"), [("eth_thorax", 10.0), ("magdeburg_liver", 5.0)]
)
def test_truth_is_exact_for_a_pure_translation(data_dir, background: str, radius: float) -> None:
    ph = render_phantom(_translation_spec(background=background, target_radius_mm=radius), data_dir)
    case = ph.case
    commanded = np.array(case.meta["truth"]["target_center_mm"])
    moved = commanded - commanded[0]
    assert np.ptp(moved[:, 1]) > 15.0  # it really moves (20 mm SI plus drift)
    # The rendered target (soft coverage) follows the command to a few hundredths of a mm...
    soft = _centroids_mm(ph.coverage, case.pixel_spacing_mm)
    assert np.abs(soft - commanded).max() < 0.05
    # ...and the binary label's centroid within 0.2 mm on average on a 1 mm grid (thresholding a
    # disc on the pixel grid moves its centroid by up to about a third of a pixel in single frames,
    # so on the 1.8 mm Magdeburg grid the bound is 0.15 pixel).
    hard = _centroids_mm(case.labels.astype(float), case.pixel_spacing_mm)
    err = np.linalg.norm((hard - hard[0]) - moved, axis=1)
    pixel = max(case.pixel_spacing_mm)
    assert err.mean() < max(0.2, 0.15 * pixel)
    assert err.max() < 0.35 * pixel
    # The SI amplitude is the stated peak-to-peak (drift excluded); AP is its stated fraction.
    si = np.array(case.meta["truth"]["si_mm"]) - 4.0 * np.arange(case.n_frames) / 6.0 / 60.0
    assert np.ptp(si) == pytest.approx(20.0, abs=1e-3)
    assert np.ptp(case.meta["truth"]["ap_mm"]) == pytest.approx(8.0, abs=1e-3)


@pytest.mark.parametrize(("background", "radius"), [("eth_thorax", 9.0), ("magdeburg_liver", 6.0)])
def test_label_area_matches_the_sphere_cross_section(data_dir, background: str, radius: float) -> None:
    spec = _translation_spec(
        background=background, target_radius_mm=radius, out_of_plane_mm=0.8 * radius, slice_offset_mm=-0.05 * radius,
        duration_s=10.0,
    )
    ph = render_phantom(spec, data_dir)
    dx, dy = ph.case.pixel_spacing_mm
    z = np.array(ph.case.meta["truth"]["target_offset_from_slice_mm"])
    expected = np.pi * (radius**2 - z**2)
    assert expected.max() / expected.min() > 2.0  # the cross-section really changes
    assert np.allclose(ph.case.meta["truth"]["target_radius_in_slice_mm"], np.sqrt(expected / np.pi), atol=1e-3)
    soft_area = ph.coverage.sum(axis=(0, 1)) * dx * dy
    hard_area = ph.case.labels.sum(axis=(0, 1)) * dx * dy
    assert np.allclose(soft_area, expected, rtol=0.01)
    # Thresholding at half coverage gains or loses up to about half a pixel row around the rim.
    rim = 2 * np.pi * np.sqrt(expected / np.pi) * 0.5 * max(dx, dy)
    assert np.all(np.abs(hard_area - expected) < rim)


def test_label_area_under_deformation_follows_the_local_stretch(data_dir) -> None:
    # With the full breathing pattern tissue around the target is stretched or compressed by up to
    # ~20 % (Jacobian 0.8-1.3), and the target with it.
    spec = _translation_spec(background="eth_thorax", target_radius_mm=9.0, deformation_nonuniformity=1.0,
                             rotation_deg=2.0, amplitude_si_mm=25.0)
    ph = render_phantom(spec, data_dir)
    dx, dy = ph.case.pixel_spacing_mm
    soft_area = ph.coverage.sum(axis=(0, 1)) * dx * dy
    assert np.allclose(soft_area, np.pi * 81.0, rtol=0.25)
    assert ph.case.labels.sum(axis=(0, 1)).min() > 0


def test_rician_noise_at_the_stated_snr(data_dir) -> None:
    # Static anatomy (no motion) so every change between frames is noise.
    spec = CinePhantomSpec(
        background="eth_thorax", amplitude_si_mm=0.0, ap_fraction=0.0, rotation_deg=0.0,
        target_contrast=0.3, snr=15.0, duration_s=3.0, frame_rate_hz=6.0, seed=4,
    )
    noisy = make_case(spec, data_dir)
    clean = make_case(dataclasses.replace(spec, snr=None), data_dir)
    sigma = noisy.meta["derived"]["noise_sigma"]
    assert sigma == pytest.approx(noisy.meta["derived"]["tissue_level"] / 15.0, rel=1e-3)
    frames = noisy.frames.astype(float)
    air = clean.frames == 0
    assert air.sum() > 10_000
    # No signal: Rayleigh, mean sigma * sqrt(pi / 2).
    assert frames[air].mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.03)
    # Bright tissue: nearly Gaussian with standard deviation sigma around the clean signal.
    bright = clean.frames > 20 * sigma
    assert (frames - clean.frames)[bright].std() == pytest.approx(sigma, rel=0.05)
    # Fresh noise per frame: consecutive frames' noise is uncorrelated.
    tissue = (clean.frames[:, :, 0] > 5 * sigma) & (clean.frames[:, :, 1] > 5 * sigma)
    d0 = (frames[:, :, 0] - clean.frames[:, :, 0])[tissue]
    d1 = (frames[:, :, 1] - clean.frames[:, :, 1])[tissue]
    assert abs(np.corrcoef(d0, d1)[0, 1]) < 4 / np.sqrt(tissue.sum())


def test_corrupted_frames(data_dir) -> None:
    spec = CinePhantomSpec(
        background="magdeburg_liver", amplitude_si_mm=0.0, ap_fraction=0.0, rotation_deg=0.0, snr=20.0,
        duration_s=2.0, frame_rate_hz=6.0, seed=5,
        corruptions=(FrameCorruption(3, "ghosting", 0.4, 0.5), FrameCorruption(6, "noise_burst", 5.0)),
    )
    case = make_case(spec, data_dir)
    f = case.frames.astype(float)
    clean_diff = np.abs(f[:, :, 2] - f[:, :, 1]).mean()
    assert np.abs(f[:, :, 3] - f[:, :, 2]).mean() > 2 * clean_diff  # ghosts change the frame a lot
    assert np.std(f[:, :, 6] - f[:, :, 5]) > 3 * np.std(f[:, :, 2] - f[:, :, 1])  # louder noise
    assert case.meta["derived"]["corrupted_frames"] == [3, 6]
    assert np.array_equal(case.labels[:, :, 3], case.labels[:, :, 2])  # truth ignores artefacts


def test_same_spec_same_case_and_seed_matters(data_dir) -> None:
    spec = CinePhantomSpec(duration_s=2.0, seed=11)
    a, b = make_case(spec, data_dir), make_case(spec, data_dir)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.labels, b.labels)
    c = make_case(dataclasses.replace(spec, seed=12), data_dir)
    assert not np.array_equal(a.frames, c.frames)
    # The resolved spec reproduces the case exactly.
    again = make_case(CinePhantomSpec.from_dict(a.meta["phantom_spec"]), data_dir)
    assert np.array_equal(a.frames, again.frames)


def test_case_reads_back_as_a_trackrad_folder(data_dir, tmp_path) -> None:
    case = make_case(CinePhantomSpec(case_id="RT_001", background="eth_thorax", duration_s=2.0, seed=3), data_dir)
    assert case.frames.dtype == np.uint16 and case.labels is not None and case.first_label is not None
    assert np.array_equal(case.first_label, case.labels[:, :, 0]) and case.first_label.any()
    back = read_case(write_case(tmp_path, case))
    assert back.case_id == "RT_001"
    assert np.array_equal(back.frames, case.frames)
    assert back.labels is not None and np.array_equal(back.labels, case.labels)
    assert back.first_label is not None and np.array_equal(back.first_label, case.first_label)
    assert back.frame_rate_hz == pytest.approx(6.0)
    assert back.pixel_spacing_mm == pytest.approx(case.pixel_spacing_mm)
    assert back.meta["phantom_spec"]["case_id"] == "RT_001"


def test_pediatric_breathes_faster_than_adult_per_profile(data_dir) -> None:
    from igikit.core.profile import load_profile

    rates = {}
    for name in ("adult", "pediatric"):
        spec = spec_for_profile(
            name, duration_s=40.0, frame_rate_hz=4.0, snr=None, irregularity=0.0, seed=1,
            trace_file="201205181211-LAC-1-N-320-6.csv", trace_start_s=30.0,
        )
        case = make_case(spec, data_dir)
        si = np.array(case.meta["truth"]["si_mm"])
        rates[name] = dominant_rate_per_min(case.frame_times_s(), si)
        assert rates[name] == pytest.approx(load_profile(name).breathing.rate_per_min, rel=0.15)
        assert np.ptp(si) == pytest.approx(load_profile(name).breathing.amplitude_si_mm, rel=1e-3)
    assert rates["pediatric"] > 1.15 * rates["adult"]


@pytest.mark.parametrize(
    "bad",
    [
        dict(target_radius_mm=5.0, out_of_plane_mm=5.0),  # the sphere would leave the slice
        dict(background="knee"),
        dict(frame_rate_hz=0.0),
        dict(corruptions=(FrameCorruption(500, "ghosting", 0.3),)),
        dict(target_contrast=-2.0),
    ],
)
def test_bad_specs_are_input_errors(bad: dict) -> None:
    with pytest.raises(InputError):
        CinePhantomSpec(**bad)


def test_target_outside_the_frame_is_an_input_error(data_dir) -> None:
    with pytest.raises(InputError, match="does not fit"):
        make_case(CinePhantomSpec(target_center_mm=(2.0, 50.0), duration_s=2.0), data_dir)
