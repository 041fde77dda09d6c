"""PRF thermometry on frames with known temperature: round trip, drift, motion, referenceless, noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from igikit.errors import InputError
from igikit.sim.thermometry import load_complex_background, synthesize_frames
from igikit.workflows.fus import (
    RealtimeThermometry,
    estimate_noise_sigma,
    fit_background_phase,
    prf_phase_per_degree,
    prf_thermometry,
    referenceless_background_phase,
    select_baselines,
    temperature_uncertainty,
)

TE, B0 = 0.02, 1.5


def _hot_series(
    shape: tuple[int, ...], n: int, peak_c: float, center: tuple[int, int], width: float = 3.0
) -> np.ndarray:
    """37 °C plus a Gaussian spot rising linearly over the frames (frame 0 unheated)."""
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    spot = np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * width**2))
    ramp = np.linspace(0.0, 1.0, n).reshape(-1, *([1] * len(shape)))
    return 37.0 + peak_c * ramp * np.broadcast_to(spot, shape)[None]


@pytest.fixture(scope="module")
def background(data_dir: Path) -> np.ndarray:
    """The real complex GRE background, central 64 x 64 (the animal and the coupling cone)."""
    bg = load_complex_background(data_dir / "thermometry" / "gre_baseline_complex.mat", size=64)
    return bg


@pytest.fixture(scope="module")
def bright(background: np.ndarray) -> np.ndarray:
    mag = np.abs(background)
    return mag > 0.15 * np.percentile(mag, 99)


def _brightest(background: np.ndarray) -> tuple[int, int]:
    from scipy import ndimage

    smooth = ndimage.uniform_filter(np.abs(background), 7)
    smooth[:20] = 0  # below the coupling cone: the animal
    y, x = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    return int(y), int(x)


def test_round_trip_exact_through_phase_wraps(background: np.ndarray, bright: np.ndarray) -> None:
    # +60 °C is 4.8 rad at 1.5 T / 20 ms: the phase wraps; temporal unwrapping follows it
    center = _brightest(background)
    temps = _hot_series(background.shape, 12, 60.0, center)
    syn = synthesize_frames(temps, np.arange(12) * 2.0, background, te_s=TE, b0_t=B0)
    res = prf_thermometry(syn.frames, np.arange(12) * 2.0, te_s=TE, b0_t=B0, noise_sigma=1.0)
    assert res.temperature_c.dtype == np.float32
    err = np.abs(res.temperature_c - temps)[:, bright]
    assert err.max() < 1e-2
    assert float(res.temperature_c[-1][center]) == pytest.approx(97.0, abs=1e-2)
    assert res.lesion[center] == 1 and res.cem43_min[center] > 240
    assert res.trusted[:, bright].mean() > 0.99


def test_drift_correction_with_and_without_a_reference_mask(background: np.ndarray, bright: np.ndarray) -> None:
    center = _brightest(background)
    times = np.arange(10) * 3.0
    temps = _hot_series(background.shape, 10, 20.0, center)
    syn = synthesize_frames(
        temps, times, background, te_s=TE, b0_t=B0, drift_rad_per_s=0.02, drift_gradient_rad_per_s=(0.01, -0.008)
    )
    yy, xx = np.mgrid[:64, :64]
    reference = bright & ((yy - center[0]) ** 2 + (xx - center[1]) ** 2 > 12**2)
    hot = (temps[-1] - 37) > 2
    uncorrected = prf_thermometry(syn.frames, times, te_s=TE, b0_t=B0, noise_sigma=1.0)
    assert np.abs(uncorrected.temperature_c[-1] - temps[-1])[hot].mean() > 3.0
    for mask in (reference, None):
        res = prf_thermometry(syn.frames, times, te_s=TE, b0_t=B0, noise_sigma=1.0, drift_order=1, reference_mask=mask)
        assert np.abs(res.temperature_c - temps)[:, bright].max() < 0.05, mask is None


def test_fit_background_phase_rejects_outliers() -> None:
    yy, xx = np.mgrid[:32, :32] / 31.0
    drift = 0.4 + 0.3 * xx - 0.2 * yy + 0.5 * xx * yy
    data = drift.copy()
    data[10:14, 10:14] += 2.0  # a heated patch inside the "reference"
    fit = fit_background_phase(data, np.ones((32, 32), bool), order=2)
    assert np.abs(fit - drift).max() < 1e-9
    stack = fit_background_phase(np.stack([data, data]), np.ones((2, 32, 32), bool), order=2)
    assert stack.shape == (2, 32, 32)
    with pytest.raises(InputError, match="usable reference voxels"):
        fit_background_phase(data, np.zeros((32, 32), bool), order=1)
    with pytest.raises(InputError, match="order"):
        fit_background_phase(data, np.ones((32, 32), bool), order=5)


def test_multibaseline_removes_periodic_motion(background: np.ndarray, bright: np.ndarray) -> None:
    center = _brightest(background)
    period, dt, n_atlas = 4.0, 0.5, 8  # the library covers exactly one breathing cycle
    times = np.arange(32) * dt
    temps = np.full((32, 64, 64), 37.0)
    temps[n_atlas:] = _hot_series(background.shape, 24, 15.0, center)
    syn = synthesize_frames(
        temps, times, background, te_s=TE, b0_t=B0, motion_amplitude_mm=(0.0, 5.0), motion_period_s=period
    )
    hot = (syn.temperature_c - 37.0) > 3
    single = prf_thermometry(syn.frames, times, te_s=TE, b0_t=B0, noise_sigma=1.0)
    multi = prf_thermometry(
        syn.frames, times, te_s=TE, b0_t=B0, noise_sigma=1.0, method="multibaseline", baseline_frames=n_atlas
    )
    rmse_single = float(np.sqrt(np.mean((single.temperature_c - syn.temperature_c)[hot] ** 2)))
    rmse_multi = float(np.sqrt(np.mean((multi.temperature_c - syn.temperature_c)[hot] ** 2)))
    assert rmse_single > 3.0
    assert rmse_multi < 0.2  # sub-voxel interpolation of the moved complex image, not the method
    # the chosen library frame is at the same point of the breathing cycle (inhale and exhale look alike)
    assert np.allclose(syn.displacement_mm[multi.baseline_index], syn.displacement_mm, atol=1e-9)
    mags = np.abs(syn.frames)
    assert select_baselines(mags[8:12], mags[:8]).tolist() == [0, 1, 2, 3]
    with pytest.raises(InputError, match="multibaseline"):
        prf_thermometry(syn.frames, times, te_s=TE, b0_t=B0, method="multibaseline")


def test_referenceless_on_a_smooth_wrapped_background() -> None:
    yy, xx = np.mgrid[:64, :64] / 63.0 * 2 - 1
    phase = 2.0 + 7.0 * xx - 5.0 * yy + 3.0 * xx * yy + 2.0 * yy**2  # wraps many times
    background = 800.0 * np.exp(1j * phase)
    r2 = (yy * 32) ** 2 + (xx * 32) ** 2
    temps = 37.0 + 25.0 * np.exp(-r2 / (2 * 3.0**2))[None] * np.linspace(0, 1, 5).reshape(-1, 1, 1)
    syn = synthesize_frames(temps, np.arange(5.0), background, te_s=TE, b0_t=B0)
    ring = (r2 > 16**2) & (r2 < 30**2)
    res = prf_thermometry(
        syn.frames, np.arange(5.0), te_s=TE, b0_t=B0, method="referenceless", reference_mask=ring, noise_sigma=1.0
    )
    assert np.abs(res.temperature_c - temps).max() < 1e-3  # float32 frames
    fitted = referenceless_background_phase(background, ring, order=2)
    assert np.abs(np.angle(background * np.exp(-1j * fitted))).max() < 1e-9
    # no mask: outlier rejection finds the heated spot by itself
    auto = prf_thermometry(syn.frames, np.arange(5.0), te_s=TE, b0_t=B0, method="referenceless", noise_sigma=1.0)
    assert np.abs(auto.temperature_c - temps).max() < 0.5


def test_uncertainty_matches_measured_noise() -> None:
    rng = np.random.default_rng(3)
    shape, n, sigma = (24, 24), 400, 25.0
    magnitude = np.linspace(400, 1600, shape[1])[None, :].repeat(shape[0], axis=0)
    clean = magnitude * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))
    frames = clean[None] + sigma * (rng.standard_normal((n, *shape)) + 1j * rng.standard_normal((n, *shape)))
    assert estimate_noise_sigma(frames) == pytest.approx(sigma, rel=0.05)
    engine = RealtimeThermometry(te_s=TE, b0_t=B0, noise_sigma=sigma)
    engine.set_baseline(clean[None])  # a noise-free baseline: only the frame's noise
    temps = np.stack([engine.update(f, float(t)).temperature_c for t, f in enumerate(frames)])
    measured = temps.std(axis=0)
    theory = temperature_uncertainty(magnitude, sigma, te_s=TE, b0_t=B0)
    assert np.allclose(measured / theory, 1.0, atol=0.15)
    assert float(np.mean(measured / theory)) == pytest.approx(1.0, abs=0.03)
    # a baseline of N averaged noisy frames adds 1/N of the frame's variance
    both = temperature_uncertainty(magnitude, sigma, te_s=TE, b0_t=B0, baseline_magnitude=magnitude, n_baseline=4)
    assert np.allclose(both, theory * np.sqrt(1.25))
    k = abs(prf_phase_per_degree(te_s=TE, b0_t=B0))
    assert float(theory[0, 0]) == pytest.approx(sigma / 400.0 / k)


def test_noisy_voxels_are_not_trusted() -> None:
    rng = np.random.default_rng(0)
    mag = np.ones((3, 16, 16)) * 1000.0
    mag[:, :, :4] = 0.0  # air
    frames = mag * np.exp(1j * 0.1) + 10.0 * (rng.standard_normal(mag.shape) + 1j * rng.standard_normal(mag.shape))
    res = prf_thermometry(frames, [0.0, 1.0, 2.0], te_s=TE, b0_t=B0)
    assert res.trusted[:, :, 4:].all()
    assert not res.trusted[:, :, :4].any()
    assert res.lesion[:, :4].sum() == 0
    assert res.uncertainty_c[:, :, :4].min() > 2.0


def test_multislice_and_input_errors() -> None:
    rng = np.random.default_rng(1)
    frames = (1000 + rng.normal(0, 5, (4, 3, 16, 16)) + 1j * rng.normal(0, 5, (4, 3, 16, 16))).astype(np.complex64)
    res = prf_thermometry(frames, np.arange(4) * 2.0, te_s=TE, b0_t=B0, drift_order=0)
    assert res.temperature_c.shape == (4, 3, 16, 16) and res.cem43_min.shape == (3, 16, 16)
    with pytest.raises(InputError, match="not complex"):
        prf_thermometry(np.abs(frames), np.arange(4.0), te_s=TE, b0_t=B0)
    bad = frames.copy()
    bad[2, 0, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        prf_thermometry(bad, np.arange(4.0), te_s=TE, b0_t=B0)
    with pytest.raises(InputError, match="te_s"):
        prf_thermometry(frames, np.arange(4.0), te_s=0.0, b0_t=B0)
    with pytest.raises(InputError, match="frame times"):
        prf_thermometry(frames, np.arange(3.0), te_s=TE, b0_t=B0)
    with pytest.raises(InputError, match="reference mask"):
        prf_thermometry(frames, np.arange(4.0), te_s=TE, b0_t=B0, drift_order=1, reference_mask=np.ones((16, 16)))
    engine = RealtimeThermometry(te_s=TE, b0_t=B0)
    with pytest.raises(InputError, match="set_baseline"):
        engine.update(frames[0], 0.0)
    engine.set_baseline(frames[:2])
    with pytest.raises(InputError, match="shape"):
        engine.update(frames[0, 0], 0.0)
    with pytest.raises(InputError, match="unknown thermometry method"):
        RealtimeThermometry(te_s=TE, b0_t=B0, method="magic")


def test_fast_angle_matches_numpy() -> None:
    from igikit.workflows.fus.thermometry import fast_angle

    rng = np.random.default_rng(5)
    z = (rng.standard_normal(200_000) + 1j * rng.standard_normal(200_000)) * 10.0 ** rng.uniform(-3, 6, 200_000)
    edges = np.array([0, -0.0, 1, -1, 1j, -1j, 1 + 1j, -1 - 1j, complex(-1, -0.0), complex(-0.0, 0), 3e38 + 1j])
    z = np.concatenate([z, edges])
    reference = np.angle(z)
    for dtype, tolerance in ((np.complex64, 4e-7), (np.complex128, 1e-7)):
        got = fast_angle(z.astype(dtype))
        assert got.dtype == (np.float32 if dtype == np.complex64 else np.float64)
        assert np.abs(got - reference).max() < tolerance
    assert np.array_equal(np.signbit(fast_angle(edges)), np.signbit(np.angle(edges)))


def test_realtime_uncertainty_is_the_documented_one() -> None:
    rng = np.random.default_rng(2)
    base = (800 * np.exp(1j * rng.uniform(-3, 3, (2, 16, 16))) * rng.uniform(0, 2, (2, 16, 16))).astype(np.complex64)
    frames = base[None] + rng.normal(0, 5, (3, 2, 16, 16)) + 1j * rng.normal(0, 5, (3, 2, 16, 16))
    th = RealtimeThermometry(te_s=TE, b0_t=B0, noise_sigma=5.0)
    th.set_baseline(frames[:2].astype(np.complex64))
    out = th.update(frames[2].astype(np.complex64), 1.0)
    expected = temperature_uncertainty(
        np.abs(frames[2].astype(np.complex64)), 5.0, te_s=TE, b0_t=B0,
        baseline_magnitude=np.abs(
            frames[:2].astype(np.complex64).mean(axis=0, dtype=np.complex128).astype(np.complex64)
        ),
        n_baseline=2,
    )
    assert np.array_equal(out.uncertainty_c, expected)
