"""Complex MR thermometry frames with known temperature: a real background, PRF heating, drift, motion, noise.

A simulated temperature series (e.g. from :mod:`igikit.sim.heating`) becomes what a scanner would
stream during MR-guided focused ultrasound:

1. the *real* complex gradient-echo image ``../shared/data/thermometry/gre_baseline_complex.mat``
   (a small-animal MRgHIFU system; its 512 x 512 image is a zero-padded 128 x 128 acquisition, so
   the central 128 x 128 of k-space is the native image) gives the magnitude and the phase texture;
2. the PRF phase of the temperature change, issue 5's convention
   ``delta_phi = 2 pi 42.577e6 alpha 1e-6 B0 TE delta_T`` (the same function thermometry inverts);
3. periodic motion: the tissue (background and heating together) is shifted rigidly, sub-voxel
   (Fourier shift), along a breathing curve ``d(t) = A (1 - cos(2 pi t / P)) / 2``;
4. B0 drift in scanner coordinates, linear in time and in space;
5. complex Gaussian noise of a stated standard deviation per channel (or a stated SNR).

Source of the background: poormanme/smallAnimalMRgHIFU (CC BY-NC 4.0), via ``../shared/data``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from igikit.errors import InputError
from igikit.workflows.fus.thermometry import DEFAULT_ALPHA_PPM_PER_C, temperature_change_to_phase

#: Native matrix of the real background (its k-space extent).
NATIVE_SIZE = 128


def load_complex_background(path: str | Path | None = None, *, size: int = NATIVE_SIZE) -> np.ndarray:
    """The real complex GRE background at its native resolution, centre-cropped to ``size``.

    Parameters
    ----------
    path
        The ``.mat`` file (key ``img``); default ``<data>/thermometry/gre_baseline_complex.mat`` with
        ``<data>`` from :func:`igikit.sim.cine.default_data_dir`.
    size
        Side of the square image returned (<= 128): the central ``size x size`` of the native image.

    Returns
    -------
    numpy.ndarray
        complex128 ``(size, size)``.
    """
    import scipy.io

    if path is None:
        from igikit.sim.cine import default_data_dir

        path = default_data_dir() / "thermometry" / "gre_baseline_complex.mat"
    path = Path(path)
    if not path.is_file():
        raise InputError("real thermometry background not found (is ../shared/data there?)", path)
    try:
        img = np.asarray(scipy.io.loadmat(path)["img"])
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"cannot read the complex background 'img' ({exc})", path) from None
    if img.ndim != 2 or not np.iscomplexobj(img):
        raise InputError(f"'img' must be a 2D complex image, got {img.dtype} {img.shape}", path)
    if not 1 <= size <= NATIVE_SIZE:
        raise InputError(f"size must be 1-{NATIVE_SIZE}, got {size}")
    h, w = img.shape
    kspace = np.fft.fftshift(np.fft.fft2(img))
    n = min(NATIVE_SIZE, h, w)
    r0, c0 = (h - n) // 2, (w - n) // 2
    native = np.fft.ifft2(np.fft.ifftshift(kspace[r0 : r0 + n, c0 : c0 + n])) * (n * n) / (h * w)
    s0 = (n - size) // 2
    return np.asarray(native[s0 : s0 + size, s0 : s0 + size])


def breathing_displacement_mm(times_s: npt.ArrayLike, amplitude_mm: Sequence[float], period_s: float) -> np.ndarray:
    """Rigid displacement ``(T, 2)`` in ITK order (x, y): ``A (1 - cos(2 pi t / P)) / 2`` (0 at exhale)."""
    t = np.asarray(times_s, dtype=np.float64).reshape(-1, 1)
    if period_s <= 0:
        raise InputError(f"breathing period must be positive, got {period_s}")
    return np.asarray(
        np.asarray(amplitude_mm, dtype=np.float64).reshape(1, 2) * (1 - np.cos(2 * np.pi * t / period_s)) / 2
    )


def fourier_shift(image: np.ndarray, shift_px: Sequence[float]) -> np.ndarray:
    """Shift the last two axes by ``(dy, dx)`` voxels (sub-voxel, periodic), by the Fourier shift theorem."""
    h, w = image.shape[-2:]
    ky = np.fft.fftfreq(h).reshape(-1, 1)
    kx = np.fft.fftfreq(w).reshape(1, -1)
    ramp = np.exp(-2j * np.pi * (ky * shift_px[0] + kx * shift_px[1]))
    return np.asarray(np.fft.ifft2(np.fft.fft2(image, axes=(-2, -1)) * ramp, axes=(-2, -1)))


def noise_sigma_for_snr(background: npt.ArrayLike, snr: float, mask: npt.ArrayLike | None = None) -> float:
    """Noise per channel giving ``snr`` = mean magnitude (inside ``mask``, default: the whole image) / sigma."""
    mag = np.abs(np.asarray(background))
    if snr <= 0:
        raise InputError(f"SNR must be positive, got {snr}")
    values = mag if mask is None else mag[np.asarray(mask, dtype=bool)]
    return float(values.mean() / snr)


@dataclass(frozen=True)
class SyntheticThermometry:
    """Simulated complex frames and their truth.

    Attributes
    ----------
    frames
        complex64 ``(T, [S,] H, W)``, what the scanner streams.
    temperature_c
        The true absolute temperature in the image frame (moved with the tissue), float64.
    displacement_mm
        Rigid displacement of the tissue per frame, ``(T, 2)`` ITK order (x, y).
    drift_phase_rad
        The B0 drift phase added to each frame, ``(T, H, W)``.
    noise_sigma
        Noise standard deviation per channel.
    """

    frames: np.ndarray
    temperature_c: np.ndarray
    displacement_mm: np.ndarray
    drift_phase_rad: np.ndarray
    noise_sigma: float


def synthesize_frames(
    temperature_c: npt.ArrayLike,
    times_s: npt.ArrayLike,
    background: npt.ArrayLike,
    *,
    te_s: float,
    b0_t: float,
    alpha_ppm_per_c: float = DEFAULT_ALPHA_PPM_PER_C,
    body_temperature_c: float = 37.0,
    spacing_mm: Sequence[float] = (1.0, 1.0),
    noise_sigma: float = 0.0,
    drift_rad_per_s: float = 0.0,
    drift_gradient_rad_per_s: Sequence[float] = (0.0, 0.0),
    motion_amplitude_mm: Sequence[float] = (0.0, 0.0),
    motion_period_s: float = 4.0,
    seed: int | None = 0,
) -> SyntheticThermometry:
    """Complex MR frames of a known temperature series.

    Parameters
    ----------
    temperature_c
        True absolute temperature in tissue coordinates, ``(T, H, W)`` or ``(T, S, H, W)``.
    times_s
        Frame times (s).
    background
        Complex image ``(H, W)`` (used for every slice, rotated by 90° per slice so that slices
        differ) or ``(S, H, W)``; e.g. :func:`load_complex_background`.
    te_s, b0_t, alpha_ppm_per_c, body_temperature_c
        Sequence and PRF parameters; the heating phase is that of ``temperature - body``.
    spacing_mm
        In-plane spacing (x, y) (mm), for the motion.
    noise_sigma
        Complex Gaussian noise per channel (see :func:`noise_sigma_for_snr`).
    drift_rad_per_s, drift_gradient_rad_per_s
        B0 drift: phase ``t (c0 + cx x + cy y)`` with ``x, y`` in [-1, 1] across the field of view.
    motion_amplitude_mm, motion_period_s
        Peak displacement (x, y) of the breathing motion and its period.
    seed
        Seed of the noise.

    Returns
    -------
    SyntheticThermometry
    """
    temp = np.asarray(temperature_c, dtype=np.float64)
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)
    if temp.ndim not in (3, 4) or temp.shape[0] != times.size:
        raise InputError(f"temperature of shape {temp.shape} for {times.size} frame times")
    bg = np.asarray(background)
    grid = temp.shape[1:]
    if bg.ndim == 2 and temp.ndim == 4:
        bg = np.stack([np.rot90(bg, s) for s in range(grid[0])])
    if bg.shape != grid:
        raise InputError(f"background of shape {bg.shape} for temperature maps of shape {grid}")
    phase = temperature_change_to_phase(
        temp - body_temperature_c, te_s=te_s, b0_t=b0_t, alpha_ppm_per_c=alpha_ppm_per_c
    )
    tissue = bg[None] * np.exp(1j * phase)
    disp = breathing_displacement_mm(times, motion_amplitude_mm, motion_period_s)
    moving = bool(np.any(disp != 0))
    true_moved = temp.copy()
    h, w = grid[-2:]
    yy = np.linspace(-1, 1, h).reshape(-1, 1)
    xx = np.linspace(-1, 1, w).reshape(1, -1)
    drift_map = drift_rad_per_s + drift_gradient_rad_per_s[0] * xx + drift_gradient_rad_per_s[1] * yy
    drift = times.reshape(-1, 1, 1) * drift_map[None]
    rng = np.random.default_rng(seed)
    frames = np.empty(temp.shape, dtype=np.complex64)
    for t in range(times.size):
        frame = tissue[t]
        if moving:
            shift_px = (disp[t, 1] / spacing_mm[1], disp[t, 0] / spacing_mm[0])
            frame = fourier_shift(frame, shift_px)
            true_moved[t] = body_temperature_c + np.real(fourier_shift(temp[t] - body_temperature_c, shift_px))
        frame = frame * np.exp(1j * drift[t])
        if noise_sigma > 0:
            frame = frame + noise_sigma * (rng.standard_normal(grid) + 1j * rng.standard_normal(grid))
        frames[t] = frame
    if not math.isfinite(noise_sigma) or noise_sigma < 0:
        raise InputError(f"noise sigma must be >= 0, got {noise_sigma}")
    return SyntheticThermometry(
        frames=frames,
        temperature_c=true_moved,
        displacement_mm=disp,
        drift_phase_rad=drift,
        noise_sigma=float(noise_sigma),
    )
