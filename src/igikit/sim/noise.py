"""MR magnitude noise and frame corruptions for phantoms.

Magnitude MR images carry Rician noise: the magnitude of the true (real) signal plus complex white
Gaussian noise of standard deviation ``sigma`` per channel (Gudbjartsson & Patz, MRM 34, 1995).
Where there is no signal its mean is ``sigma * sqrt(pi / 2)``, not zero; at high SNR it tends to
Gaussian noise of standard deviation ``sigma``.
"""

from __future__ import annotations

import numpy as np

from igikit.errors import InputError


def add_rician_noise(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``signal`` plus complex Gaussian noise (Rician), float32.

    Parameters
    ----------
    signal
        Noise-free magnitude image (any shape), >= 0.
    sigma
        Standard deviation of the noise in each of the real and imaginary channels.
    rng
        Random generator; each call draws fresh noise.

    Returns
    -------
    numpy.ndarray
        ``|signal + n_re + i n_im|``, same shape, float32.

    Examples
    --------
    >>> import numpy as np
    >>> noisy = add_rician_noise(np.zeros((200, 200)), 10.0, np.random.default_rng(0))
    >>> round(float(noisy.mean()) / (10.0 * np.sqrt(np.pi / 2)), 1)
    1.0
    """
    if not sigma >= 0:
        raise InputError(f"noise sigma must be >= 0, got {sigma}")
    s = np.asarray(signal, dtype=np.float32)
    re = s + rng.normal(0.0, sigma, s.shape).astype(np.float32)
    im = rng.normal(0.0, sigma, s.shape).astype(np.float32)
    return np.asarray(np.hypot(re, im), dtype=np.float32)


def add_ghosting(signal: np.ndarray, strength: float, shift_px: int, axis: int) -> np.ndarray:
    """Add motion ghosts: faint copies of the image shifted by ``±shift_px`` along the phase-encode axis.

    Motion during a segmented or repeated acquisition modulates k-space along the phase-encode
    direction, which replicates the moving anatomy as ghosts displaced along that direction (Wood
    & Henkelman, Med Phys 12, 1985). Each of the two copies has ``strength / 2`` of the signal and
    wraps around the field of view, as ghosts do.

    Parameters
    ----------
    signal
        Noise-free (H, W) image.
    strength
        Total ghost intensity relative to the image (0.2 = two copies at 10 % each).
    shift_px
        Displacement of the copies (pixels).
    axis
        0 for phase encoding along rows (SI), 1 along columns (AP).
    """
    s = np.asarray(signal, dtype=np.float32)
    ghosts = np.roll(s, shift_px, axis=axis) + np.roll(s, -shift_px, axis=axis)
    return np.asarray(s + 0.5 * strength * ghosts, dtype=np.float32)
