"""Synthetic MR thermometry frames: the real background, PRF phase, drift, motion and noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from igikit.errors import InputError
from igikit.sim.thermometry import (
    breathing_displacement_mm,
    fourier_shift,
    load_complex_background,
    noise_sigma_for_snr,
    synthesize_frames,
)
from igikit.workflows.fus import prf_phase_per_degree


def test_real_background_is_native_resolution(data_dir: Path) -> None:
    bg = load_complex_background(data_dir / "thermometry" / "gre_baseline_complex.mat")
    assert bg.shape == (128, 128) and np.iscomplexobj(bg)
    assert np.abs(bg).max() > 1000
    assert load_complex_background(data_dir / "thermometry" / "gre_baseline_complex.mat", size=32).shape == (32, 32)
    with pytest.raises(InputError, match="not found"):
        load_complex_background(data_dir / "nothing.mat")


def test_phase_drift_motion_and_noise() -> None:
    bg = np.full((16, 16), 100.0 + 0j)
    temps = np.full((3, 16, 16), 37.0)
    temps[:, 8, 8] = [37.0, 47.0, 57.0]
    times = np.array([0.0, 1.0, 2.0])
    syn = synthesize_frames(temps, times, bg, te_s=0.02, b0_t=1.5, drift_rad_per_s=0.1)
    k = prf_phase_per_degree(te_s=0.02, b0_t=1.5)
    assert np.angle(syn.frames[2, 8, 8] / syn.frames[0, 8, 8]) == pytest.approx(np.angle(np.exp(1j * (20 * k + 0.2))))
    assert np.angle(syn.frames[1, 0, 0] / syn.frames[0, 0, 0]) == pytest.approx(0.1, abs=1e-6)
    moved = synthesize_frames(
        temps, times, bg, te_s=0.02, b0_t=1.5, motion_amplitude_mm=(2.0, 0.0), motion_period_s=4.0
    )
    # at t = 2 s (half a period) the tissue is 2 mm right: the hot voxel is at x = 10
    assert moved.temperature_c[2, 8, 10] == pytest.approx(57.0, abs=1e-6)
    assert np.allclose(moved.displacement_mm[:, 0], [0.0, 1.0, 2.0])
    sigma = noise_sigma_for_snr(bg, 20.0)
    noisy = synthesize_frames(
        np.full((200, 16, 16), 37.0), np.arange(200.0), bg, te_s=0.02, b0_t=1.5, noise_sigma=sigma
    )
    assert np.std(noisy.frames.real) == pytest.approx(sigma, rel=0.05)
    assert breathing_displacement_mm([0.0, 2.0], (0.0, 8.0), 4.0).tolist() == [[0.0, 0.0], [0.0, 8.0]]
    shifted = fourier_shift(np.eye(8), (1.0, 1.0))
    assert np.allclose(shifted.real, np.roll(np.eye(8), 1, axis=(0, 1)), atol=1e-9)
    with pytest.raises(InputError, match="frame times"):
        synthesize_frames(temps, times[:2], bg, te_s=0.02, b0_t=1.5)


def test_multislice_background_is_varied() -> None:
    bg = np.arange(16.0).reshape(4, 4) + 1j
    syn = synthesize_frames(np.full((2, 3, 4, 4), 37.0), [0.0, 1.0], bg, te_s=0.02, b0_t=1.5)
    assert syn.frames.shape == (2, 3, 4, 4)
    assert not np.allclose(syn.frames[0, 0], syn.frames[0, 1])
