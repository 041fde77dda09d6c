"""Rician noise has the statistics of the magnitude of a complex Gaussian; ghosts shift along phase encoding."""

from __future__ import annotations

import numpy as np
import pytest

from igikit.errors import InputError
from igikit.sim.noise import add_ghosting, add_rician_noise


def test_zero_signal_gives_rayleigh_statistics() -> None:
    sigma = 12.0
    noisy = add_rician_noise(np.zeros((400, 400)), sigma, np.random.default_rng(0))
    assert noisy.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.01)
    assert noisy.std() == pytest.approx(sigma * np.sqrt(2 - np.pi / 2), rel=0.02)
    assert noisy.min() >= 0


def test_high_snr_tends_to_gaussian_with_the_stated_sigma() -> None:
    sigma, signal = 10.0, 400.0  # SNR 40
    noisy = add_rician_noise(np.full((400, 400), signal), sigma, np.random.default_rng(1))
    # Rician mean is sqrt(A^2 + sigma^2) to first order at high SNR.
    assert noisy.mean() == pytest.approx(np.hypot(signal, sigma), rel=0.002)
    assert noisy.std() == pytest.approx(sigma, rel=0.03)


def test_noise_is_fresh_per_call() -> None:
    rng = np.random.default_rng(2)
    a = add_rician_noise(np.full((64, 64), 100.0), 5.0, rng)
    b = add_rician_noise(np.full((64, 64), 100.0), 5.0, rng)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.1


def test_negative_sigma_is_refused() -> None:
    with pytest.raises(InputError):
        add_rician_noise(np.zeros((4, 4)), -1.0, np.random.default_rng(0))


def test_ghosts_are_shifted_copies_along_the_phase_encode_axis() -> None:
    img = np.zeros((40, 60), dtype=np.float32)
    img[10, 20] = 100.0
    g = add_ghosting(img, 0.2, 15, axis=1)
    assert g[10, 20] == pytest.approx(100.0)
    assert g[10, 35] == pytest.approx(10.0)
    assert g[10, 5] == pytest.approx(10.0)
    assert np.count_nonzero(g) == 3
