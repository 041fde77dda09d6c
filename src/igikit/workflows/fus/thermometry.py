"""Proton-resonance-frequency (PRF) shift MR thermometry from complex images.

The resonance frequency of water protons falls by about 0.01 ppm per °C, so the phase of a gradient
echo changes with temperature (Ishihara et al. 1995; Rieke & Butts Pauly 2008). igikit uses the
convention of issue 5::

    delta_phi = 2 pi * 42.577e6 * alpha * 1e-6 * b0_t * te_s * delta_T      (radians)

with ``alpha`` in ppm/°C (default -0.01). The phase change is measured against a reference:

* **baseline subtraction**: the complex ratio ``z_t * conj(z_ref)`` of the current frame and an
  unheated baseline (the mean of the first frames), whose angle is the phase change without any
  spatial unwrapping; the series is unwrapped in time (consecutive changes stay below pi, i.e.
  below ~39 °C per frame at 1.5 T, TE 20 ms);
* **drift correction**: the phase change in an unheated reference region, fitted by a polynomial of
  order 0-2 per slice (robust to outliers), is the B0 drift and is subtracted everywhere
  (Wlodarczyk et al. 1999; Rieke & Butts Pauly 2008, section "B0 drift");
* **multi-baseline (atlas)**: for periodic (breathing) motion a library of unheated frames covering
  the cycle is acquired first; each frame is compared with the library entry whose magnitude is
  most similar (least squared difference), which removes the phase of the moved anatomy
  (de Senneville et al. 2005; Vigen et al. 2003);
* **referenceless**: no baseline; the background phase of the current frame is fitted by a
  polynomial outside the heated region and extrapolated into it (Rieke et al. 2004). igikit fits
  the polynomial to the *phase gradients* (angles of neighbour products), which never wrap, then
  the constant term from the complex mean, so the image phase need not be unwrapped.

The temperature noise follows from the magnitude SNR: the phase of a complex voxel of magnitude
``A`` with Gaussian noise of standard deviation ``sigma`` per channel has standard deviation
``sigma / A = 1 / SNR`` (Conturo & Smith 1990), so a baseline-subtracted temperature has

    sigma_T = sqrt(1 / SNR_t^2 + 1 / (N_b SNR_b^2)) / |2 pi gamma alpha B0 TE|,

``N_b`` the number of averaged baseline frames (one library entry for multi-baseline, no baseline
term for referenceless). Voxels whose ``sigma_T`` exceeds a limit (default 2 °C) are not trusted.

References
----------
.. [1] V. Rieke and K. Butts Pauly, "MR thermometry," J. Magn. Reson. Imaging 27:376-390, 2008.
.. [2] T. E. Conturo and G. D. Smith, "Signal-to-noise in phase angle reconstruction: dynamic range
   extension using phase reference offsets," Magn. Reson. Med. 15:420-437, 1990.
.. [3] V. Rieke et al., "Referenceless PRF shift thermometry," Magn. Reson. Med. 51:1223-1231, 2004.
.. [4] B. D. de Senneville, C. Mougenot and C. T. W. Moonen, "Real-time adaptive methods for
   treatment of mobile organs by MRI-controlled high-intensity focused ultrasound," Magn. Reson.
   Med. 57:319-330, 2007; and de Senneville et al., "Motion correction in MR thermometry of
   abdominal organs," Magn. Reson. Med. 53:1076, 2005.
.. [5] Y. Ishihara et al., "A precise and fast temperature mapping using water proton chemical
   shift," Magn. Reson. Med. 34:814-823, 1995.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from igikit.errors import InputError
from igikit.workflows.fus.thermal_dose import LESION_THRESHOLD_MIN, DoseAccumulator, lesion_mask

#: Gyromagnetic ratio of the proton over 2 pi (Hz/T), the value of issue 5's convention.
GAMMA_HZ_PER_T = 42.577e6
#: PRF thermal coefficient of water (ppm/°C), Rieke & Butts Pauly 2008.
DEFAULT_ALPHA_PPM_PER_C = -0.01
#: Voxels whose temperature standard deviation exceeds this (°C) are not trusted.
DEFAULT_MAX_UNCERTAINTY_C = 2.0
#: Uncertainty written for voxels without signal (°C); stands for "no measurement".
NO_SIGNAL_UNCERTAINTY_C = 999.0

_FLOAT32_MAX = float(np.finfo(np.float32).max)

Method = Literal["baseline", "multibaseline", "referenceless"]
METHODS: tuple[str, ...] = ("baseline", "multibaseline", "referenceless")


# ------------------------------------------------------------------------------ conversion
def prf_phase_per_degree(*, te_s: float, b0_t: float, alpha_ppm_per_c: float = DEFAULT_ALPHA_PPM_PER_C) -> float:
    """Phase change per °C (rad/°C): ``2 pi * 42.577e6 * alpha * 1e-6 * b0_t * te_s``.

    Raises
    ------
    InputError
        If TE or B0 is not a positive finite number, or alpha is zero or not finite.

    Examples
    --------
    >>> round(prf_phase_per_degree(te_s=0.02, b0_t=1.5), 5)
    -0.08026
    """
    for name, value in (("te_s", te_s), ("b0_t", b0_t)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(alpha_ppm_per_c) and alpha_ppm_per_c != 0):
        raise InputError(f"alpha_ppm_per_c must be a non-zero number, got {alpha_ppm_per_c!r}")
    return 2.0 * math.pi * GAMMA_HZ_PER_T * alpha_ppm_per_c * 1e-6 * b0_t * te_s


def phase_to_temperature_change(
    delta_phase: npt.ArrayLike, *, te_s: float, b0_t: float, alpha_ppm_per_c: float = DEFAULT_ALPHA_PPM_PER_C
) -> np.ndarray:
    """Temperature change (°C) of a PRF phase change (rad); the inverse of :func:`temperature_change_to_phase`."""
    return np.asarray(delta_phase) / prf_phase_per_degree(te_s=te_s, b0_t=b0_t, alpha_ppm_per_c=alpha_ppm_per_c)


def temperature_change_to_phase(
    delta_t_c: npt.ArrayLike, *, te_s: float, b0_t: float, alpha_ppm_per_c: float = DEFAULT_ALPHA_PPM_PER_C
) -> np.ndarray:
    """PRF phase change (rad) of a temperature change (°C), issue 5's convention."""
    return np.asarray(delta_t_c) * prf_phase_per_degree(te_s=te_s, b0_t=b0_t, alpha_ppm_per_c=alpha_ppm_per_c)


def phase_difference(frames: npt.ArrayLike, baseline: npt.ArrayLike) -> np.ndarray:
    """Phase change ``angle(frames * conj(baseline))`` in (-pi, pi], free of the image's own wraps.

    Examples
    --------
    >>> import numpy as np
    >>> z0 = np.exp(3.0j)
    >>> round(float(phase_difference(z0 * np.exp(0.5j), z0)), 6)
    0.5
    """
    return np.angle(np.asarray(frames) * np.conj(np.asarray(baseline)))


#: atan(a) = a * P(a^2) on [0, 1], P of degree 7 fitted for the least maximum error (3.8e-8 rad in float64).
_ATAN_COEF = (
    0.999999335733753,
    -0.3332986145888014,
    0.1994657393430219,
    -0.13908673656349785,
    0.09642316353025655,
    -0.055914029451211364,
    0.021864188045109825,
    -0.004054920292337533,
)


def _fold(r: np.ndarray, flag: np.ndarray, offset: float) -> None:
    """``r <- offset - r`` where ``flag``, in place, by arithmetic (``np.where`` is several times slower)."""
    f = flag.astype(r.dtype)
    g = f * r.dtype.type(-2.0)
    g += r.dtype.type(1.0)
    r *= g
    f *= r.dtype.type(offset)
    r += f


def fast_angle(z: npt.ArrayLike) -> np.ndarray:
    """``np.angle(z)`` in (-pi, pi] by a polynomial arctangent, 3-4 times faster on complex64.

    NumPy's ``arctan2`` calls the scalar C library per element, whereas these ~25 elementwise
    operations are vectorised: the real-time thermometry's phase costs ~0.4 ms instead of ~1.5 ms per
    frame of 3 x 128 x 128. The octant is reduced to ``a = min(|x|, |y|) / max(|x|, |y|)`` in [0, 1],
    ``atan(a) = a P(a^2)`` with a degree-7 minimax-fitted ``P`` (3.8e-8 rad in exact arithmetic), then
    folded back. Maximum error against ``np.angle`` of the same values in complex128: 3.2e-7 rad in
    float32 (``np.angle`` of complex64 itself: 2.5e-7 rad), i.e. 4e-6 °C at 1.5 T, TE 20 ms. Signed
    zeros follow ``np.angle``; complex64 gives float32, anything else float64.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.exp(1j * np.array([-3.0, -1.0, 0.0, 0.5, 2.0, np.pi]))
    >>> bool(np.allclose(fast_angle(z), np.angle(z), atol=1e-9, rtol=0))
    True
    """
    arr = np.asarray(z)
    ftype = np.float32 if arr.dtype == np.complex64 else np.float64
    x = np.ascontiguousarray(arr.real, dtype=ftype)
    y = np.ascontiguousarray(arr.imag, dtype=ftype)
    ax, ay = np.abs(x), np.abs(y)
    big = np.maximum(ax, ay)
    big += np.finfo(ftype).tiny  # 0 / 0 -> 0 for z = 0, as np.angle
    a = np.minimum(ax, ay)
    a /= big
    s = a * a
    coef = [ftype(c) for c in _ATAN_COEF]
    r = s * coef[-1]
    for c in reversed(coef[1:-1]):
        r += c
        r *= s
    r += coef[0]
    r *= a
    _fold(r, ay > ax, math.pi / 2)
    _fold(r, np.signbit(x), math.pi)
    np.copysign(r, y, out=r)
    return r


def unwrap_in_time(phase: npt.ArrayLike) -> np.ndarray:
    """Unwrap a phase-change series along time (axis 0): consecutive changes stay within pi.

    Exact as long as no voxel's temperature changes by more than ``pi / |k|`` between frames
    (~39 °C at 1.5 T, TE 20 ms), so no spatial unwrapping is needed for heating.
    """
    return np.unwrap(np.asarray(phase, dtype=np.float64), axis=0)


# ----------------------------------------------------------------------------- polynomials
def polynomial_basis(shape: tuple[int, int], order: int) -> np.ndarray:
    """2D polynomial terms ``x^i y^j`` (``i + j <= order``) on coordinates scaled to [-1, 1].

    Returns a read-only array ``(n_terms, H, W)`` (cached per shape and order); term 0 is the constant.
    """
    if order not in (0, 1, 2, 3):
        raise InputError(f"polynomial order must be 0, 1, 2 or 3, got {order}")
    return _basis(int(shape[0]), int(shape[1]), int(order))


@functools.lru_cache(maxsize=16)
def _basis(h: int, w: int, order: int) -> np.ndarray:
    y = np.linspace(-1.0, 1.0, h) if h > 1 else np.zeros(1)
    x = np.linspace(-1.0, 1.0, w) if w > 1 else np.zeros(1)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    terms = [xx**i * yy**j for total in range(order + 1) for j in range(total + 1) for i in (total - j,)]
    basis = np.stack(terms)
    basis.setflags(write=False)
    return basis


def _median(values: np.ndarray) -> float:
    """Median of a 1D array by partial sort (``np.median`` without its checks; the input is reordered)."""
    n = values.size
    half = n // 2
    if n % 2:
        values.partition(half)
        return float(values[half])
    values.partition((half - 1, half))
    return 0.5 * float(values[half - 1] + values[half])


def _robust_lstsq(design_t: np.ndarray, values: np.ndarray, reject: float, iterations: int) -> np.ndarray:
    """Least squares that drops samples whose residual exceeds ``reject`` robust standard deviations.

    ``design_t`` is the transposed design matrix ``(terms, samples)``. Dropped samples get weight 0
    in the normal equations instead of being copied out (half the cost per iteration).
    """
    n_terms, n = design_t.shape
    if n < n_terms:
        raise InputError(
            f"only {n} usable reference voxels for a fit with {n_terms} terms; "
            "enlarge the reference region or lower the polynomial order"
        )
    keep: np.ndarray | None = None
    weight = np.ones(n)
    coef = np.zeros(n_terms)
    for it in range(iterations + 1):
        weighted = design_t if keep is None else design_t * weight
        try:
            # normal equations: a few terms, well-conditioned on [-1, 1] coordinates, and far cheaper
            # than an SVD in a real-time loop
            coef = np.linalg.solve(weighted @ design_t.T, weighted @ values)
        except np.linalg.LinAlgError:
            rows = slice(None) if keep is None else keep
            coef = np.linalg.lstsq(design_t.T[rows], values[rows], rcond=None)[0]
        if it == iterations:
            break
        residual = values - coef @ design_t
        kept = residual.copy() if keep is None else residual[keep]
        centre = _median(kept)
        kept -= centre
        np.abs(kept, out=kept)
        # a floor of 1e-4 rad (~0.001 °C) keeps noise-free data from rejecting its own rounding
        spread = max(1.4826 * _median(kept), 1e-4)
        residual -= centre
        new_keep = np.abs(residual, out=residual) <= reject * spread
        unchanged = bool(new_keep.all()) if keep is None else np.array_equal(new_keep, keep)
        if unchanged or new_keep.sum() < n_terms:
            break
        keep = new_keep
        np.copyto(weight, keep)
    return coef


def fit_background_phase(
    phase: npt.ArrayLike,
    mask: npt.ArrayLike,
    *,
    order: int = 1,
    reject: float = 4.0,
    iterations: int = 2,
    max_voxels: int | None = 4096,
) -> np.ndarray:
    """Fit a smooth polynomial to an (unwrapped) phase map inside ``mask``, slice by slice.

    Parameters
    ----------
    phase
        Phase (rad), ``(H, W)`` or ``(S, H, W)``; for drift correction, the baseline-subtracted and
        time-unwrapped phase change, which is small and smooth in unheated tissue.
    mask
        Voxels to fit (the unheated reference region), same shape as ``phase``.
    order
        Polynomial order per slice: 0 (a constant offset), 1 (plane), 2 (quadratic).
    reject, iterations
        Robustness: voxels whose residual exceeds ``reject`` robust standard deviations (1.4826 MAD)
        are dropped and the fit repeated, up to ``iterations`` times, so that a reference region that
        catches some heating or a vessel does not bias the fit.
    max_voxels
        Fit at most this many reference voxels per slice, evenly strided (``None``: all). A polynomial
        of a few terms is determined far better than the noise of one voxel by 4096 voxels (its
        variance is ``terms / N`` of a voxel's), and the fit stays fast in real time.

    Returns
    -------
    numpy.ndarray
        The fitted polynomial evaluated everywhere (same shape as ``phase``; float32 for a float32
        phase, otherwise float64).

    Raises
    ------
    InputError
        If the shapes differ or a slice has fewer usable reference voxels than polynomial terms.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:16, 0:16]
    >>> drift = 0.3 + 0.01 * xx
    >>> fit = fit_background_phase(drift, np.ones((16, 16), bool), order=1)
    >>> bool(np.allclose(fit, drift))
    True
    """
    values = np.asarray(phase)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    where = np.asarray(mask, dtype=bool)
    if values.shape != where.shape:
        raise InputError(f"reference mask of shape {where.shape} for phase of shape {values.shape}")
    if values.ndim not in (2, 3):
        raise InputError(f"phase must be (H, W) or (S, H, W), got shape {values.shape}")
    slices_v = values if values.ndim == 3 else values[None]
    slices_m = where if where.ndim == 3 else where[None]
    basis = polynomial_basis(slices_v.shape[1:], order)
    flat_basis = basis.reshape(basis.shape[0], -1)
    out = np.empty_like(slices_v)
    for s in range(slices_v.shape[0]):
        sel = np.flatnonzero(slices_m[s])
        if max_voxels is not None and sel.size > max_voxels:
            sel = sel[:: -(-sel.size // max_voxels)]
        # the fit in float64 on the selected voxels; the map in the phase's own precision
        selected = slices_v[s].reshape(-1)[sel].astype(np.float64)
        coef = _robust_lstsq(flat_basis[:, sel], selected, reject, iterations)
        out[s] = (coef @ flat_basis).reshape(out.shape[1:])
    return out if values.ndim == 3 else out[0]


def referenceless_background_phase(
    frame: npt.ArrayLike, mask: npt.ArrayLike, *, order: int = 2, reject: float = 4.0, iterations: int = 2
) -> np.ndarray:
    """Background phase of one complex frame, fitted outside the heated region (referenceless).

    The polynomial ``phi = sum_k c_k B_k`` is fitted to the phase *gradients*
    ``angle(z[i+1] conj(z[i]))`` between neighbours that are both in ``mask`` — which never wrap
    while the background phase changes by less than pi per voxel — using the finite differences of
    the basis, which are exact for polynomials; the constant follows from
    ``angle(sum z exp(-i phi))``. No spatial phase unwrapping is needed (cf. Rieke et al. 2004, who
    fit the unwrapped phase).

    Parameters
    ----------
    frame
        Complex image ``(H, W)`` or ``(S, H, W)``.
    mask
        Voxels of unheated tissue with signal around (and ideally surrounding) the heated region.
    order
        Polynomial order (0-3) per slice.
    reject, iterations
        Outlier rejection as in :func:`fit_background_phase`.

    Returns
    -------
    numpy.ndarray
        The background phase (rad) everywhere; ``angle(frame * exp(-1j * phase))`` is the PRF phase.
    """
    z = np.asarray(frame)
    where = np.asarray(mask, dtype=bool)
    if z.shape != where.shape:
        raise InputError(f"reference mask of shape {where.shape} for a frame of shape {z.shape}")
    zs = z if z.ndim == 3 else z[None]
    ms = where if where.ndim == 3 else where[None]
    basis = polynomial_basis(zs.shape[1:], order)
    out = np.empty(zs.shape, dtype=np.float64)
    for s in range(zs.shape[0]):
        zz, mm = zs[s], ms[s]
        gx = np.angle(zz[:, 1:] * np.conj(zz[:, :-1]))[mm[:, 1:] & mm[:, :-1]]
        gy = np.angle(zz[1:, :] * np.conj(zz[:-1, :]))[mm[1:, :] & mm[:-1, :]]
        bx = (basis[1:, :, 1:] - basis[1:, :, :-1])[:, mm[:, 1:] & mm[:, :-1]]
        by = (basis[1:, 1:, :] - basis[1:, :-1, :])[:, mm[1:, :] & mm[:-1, :]]
        if order == 0:
            coef = np.zeros(0)
        else:
            coef = _robust_lstsq(np.concatenate([bx, by], axis=1), np.concatenate([gx, gy]), reject, iterations)
        smooth = np.tensordot(coef, basis[1:], axes=1) if coef.size else np.zeros(zs.shape[1:])
        if not mm.any():
            raise InputError("the reference region of a slice is empty")
        offset = np.angle(np.sum(zz[mm] * np.exp(-1j * smooth[mm])))
        out[s] = smooth + offset
    return out if z.ndim == 3 else out[0]


# ------------------------------------------------------------------------------ baselines
def block_means(images: npt.ArrayLike, block: int = 4) -> np.ndarray:
    """Means over ``block x block`` tiles of the last two axes (edges that do not fill a tile dropped).

    Comparing anatomy on tile means lets the anatomy, not the pixel noise, decide which frames are
    alike, and makes the comparison ``block^2`` times cheaper.
    """
    arr = np.asarray(images, dtype=np.float64)
    if block <= 1:
        return arr
    h, w = (arr.shape[-2] // block) * block, (arr.shape[-1] // block) * block
    if h == 0 or w == 0:
        return arr
    tiles = arr[..., :h, :w].reshape(*arr.shape[:-2], h // block, block, w // block, block)
    return np.asarray(tiles.mean(axis=(-3, -1)))


def select_baselines(magnitudes: npt.ArrayLike, atlas_magnitudes: npt.ArrayLike, *, block: int = 4) -> np.ndarray:
    """Index of the most similar atlas entry for each frame (least squared magnitude difference).

    Parameters
    ----------
    magnitudes
        Magnitude images, ``(T, ...)``.
    atlas_magnitudes
        Magnitudes of the unheated library frames, ``(K, ...)``.
    block
        Compare :func:`block_means` over ``block x block`` tiles (1: every pixel).

    Returns
    -------
    numpy.ndarray
        ``(T,)`` integer indices into the atlas.

    References
    ----------
    de Senneville et al., Magn. Reson. Med. 53:1076, 2005 (multi-baseline by image similarity).
    """
    m = np.asarray(magnitudes, dtype=np.float64)
    a = np.asarray(atlas_magnitudes, dtype=np.float64)
    if m.shape[1:] != a.shape[1:]:
        raise InputError(f"frames of shape {m.shape[1:]} and atlas entries of shape {a.shape[1:]} differ")
    mf = block_means(m, block).reshape(m.shape[0], -1)
    af = block_means(a, block).reshape(a.shape[0], -1)
    # ||m - a||^2 = ||m||^2 - 2 m.a + ||a||^2; ||m||^2 does not change the argmin.
    cost = (af * af).sum(axis=1)[None, :] - 2.0 * mf @ af.T
    return np.asarray(np.argmin(cost, axis=1))


# ------------------------------------------------------------------------------ noise
def estimate_noise_sigma(frames: npt.ArrayLike, *, max_frames: int = 64) -> float:
    """Noise standard deviation per real/imaginary channel, from the series itself.

    The magnitude difference of two frames of the same anatomy holds twice the noise variance and
    none of the phase changes (heating, drift) that thermometry measures. Each frame is paired with
    the other frame whose magnitude (4 x 4 block means) is most similar — its neighbour in a static series, the same
    breathing phase a cycle away under periodic motion. Where the SNR is high the magnitude noise
    is Gaussian with the channel's sigma (Gudbjartsson & Patz 1995), so the estimate starts on the
    brightest quarter of the voxels and is refined on voxels brighter than 8 sigma. The robust
    spread (1.4826 MAD) of each pair's difference ignores the few voxels that still differ; the
    median over pairs is returned.

    Parameters
    ----------
    frames
        Complex (or magnitude) frames, time first.
    max_frames
        At most this many frames, evenly spread over the series, are compared (cost ``O(n^2)``).

    Raises
    ------
    InputError
        With fewer than two frames (then the noise must be given).
    """
    z = np.asarray(frames)
    if z.shape[0] < 2:
        raise InputError("the noise level cannot be estimated from one frame; give the noise sigma")
    pick = np.unique(np.linspace(0, z.shape[0] - 1, min(z.shape[0], max_frames)).round().astype(int))
    full = np.abs(z[pick]).astype(np.float64)
    mag = full.reshape(pick.size, -1)
    # choose partners on 4 x 4 block means: anatomy decides, not the noise being measured
    coarse = block_means(full, 4).reshape(pick.size, -1)
    sq = (coarse * coarse).sum(axis=1)
    cost = sq[:, None] + sq[None, :] - 2.0 * coarse @ coarse.T
    np.fill_diagonal(cost, np.inf)
    partner = np.argmin(cost, axis=1)
    mean = mag.mean(axis=0)
    bright = mean >= np.quantile(mean, 0.75)
    sigma = 0.0
    for _ in range(3):
        diffs = mag[:, bright] - mag[partner][:, bright]
        med = np.median(diffs, axis=1, keepdims=True)
        sigma = float(np.median(1.4826 * np.median(np.abs(diffs - med), axis=1) / math.sqrt(2.0)))
        # Rician magnitude noise is narrower than the channel noise below SNR ~5: keep voxels above it
        brighter = mean >= 8.0 * sigma
        if brighter.sum() < max(16, bright.sum() // 20) or np.array_equal(brighter, bright):
            break
        bright = brighter
    return sigma


def temperature_uncertainty(
    magnitude: npt.ArrayLike,
    noise_sigma: float,
    *,
    te_s: float,
    b0_t: float,
    alpha_ppm_per_c: float = DEFAULT_ALPHA_PPM_PER_C,
    baseline_magnitude: npt.ArrayLike | None = None,
    n_baseline: int = 1,
) -> np.ndarray:
    """Per-voxel temperature standard deviation (°C) from the magnitude SNR.

    ``sigma_T = sqrt(sigma^2 / A^2 + sigma^2 / (N_b A_b^2)) / |k|`` with ``k`` from
    :func:`prf_phase_per_degree`: the phase noise of a voxel is ``1 / SNR`` (Conturo & Smith 1990),
    and a baseline-subtracted phase carries the noise of both images (the baseline averaged over
    ``n_baseline`` frames). Without ``baseline_magnitude`` (referenceless) only the frame's term.
    Voxels without signal get :data:`NO_SIGNAL_UNCERTAINTY_C`.

    References
    ----------
    Conturo & Smith, Magn. Reson. Med. 15:420, 1990; Rieke & Butts Pauly, JMRI 27:376, 2008.

    Examples
    --------
    >>> import numpy as np
    >>> u = temperature_uncertainty(np.array([100.0]), 5.0, te_s=0.02, b0_t=1.5)
    >>> round(float(u[0]), 3)   # SNR 20 -> 0.05 rad -> 0.62 °C
    0.623
    """
    if not (math.isfinite(noise_sigma) and noise_sigma >= 0):
        raise InputError(f"noise sigma must be a non-negative number, got {noise_sigma!r}")
    k = abs(prf_phase_per_degree(te_s=te_s, b0_t=b0_t, alpha_ppm_per_c=alpha_ppm_per_c))
    # float32 magnitudes (complex64 frames) stay float32: half the memory traffic in real time
    ftype = np.float32 if np.asarray(magnitude).dtype == np.float32 else np.float64
    variance = _phase_variance(np.asarray(magnitude, dtype=ftype), noise_sigma, 1)
    baseline = None
    if baseline_magnitude is not None:
        baseline = _phase_variance(np.asarray(baseline_magnitude, dtype=ftype), noise_sigma, n_baseline)
    return _uncertainty_from_variance(variance, baseline, k)


def _phase_variance(magnitude: np.ndarray, noise_sigma: float, n_average: int) -> np.ndarray:
    """Phase variance ``sigma^2 / (N A^2)`` (rad^2) of a magnitude averaged over ``N`` frames; inf without signal."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        square = magnitude * magnitude
        return np.asarray(
            np.divide(np.asarray(noise_sigma**2 / max(int(n_average), 1), dtype=magnitude.dtype), square, out=square)
        )


def _uncertainty_from_variance(variance: np.ndarray, baseline: np.ndarray | None, k_abs: float) -> np.ndarray:
    """Temperature standard deviation (°C) of a phase variance (plus the baseline's), capped at "no signal"."""
    with np.errstate(invalid="ignore", over="ignore"):
        total = variance if baseline is None else np.add(variance, baseline, out=variance)
        sigma_t = np.sqrt(total, out=total)
        sigma_t *= np.asarray(1.0 / k_abs, dtype=total.dtype)
        # fmin also turns the NaN of 0/0 into "no signal"
        return np.asarray(np.fmin(sigma_t, np.asarray(NO_SIGNAL_UNCERTAINTY_C, dtype=total.dtype), out=sigma_t))


def noise_sigma_for_uncertainty(
    uncertainty_c: float,
    magnitude: float,
    *,
    te_s: float,
    b0_t: float,
    alpha_ppm_per_c: float = DEFAULT_ALPHA_PPM_PER_C,
    n_baseline: int | None = 1,
) -> float:
    """Noise sigma that gives a voxel of ``magnitude`` the temperature standard deviation ``uncertainty_c``.

    The inverse of :func:`temperature_uncertainty` for a voxel whose magnitude is the same in frame
    and baseline; ``n_baseline=None`` for referenceless.
    """
    k = abs(prf_phase_per_degree(te_s=te_s, b0_t=b0_t, alpha_ppm_per_c=alpha_ppm_per_c))
    factor = math.sqrt(1.0 + (1.0 / n_baseline if n_baseline else 0.0))
    return float(uncertainty_c * k * magnitude / factor)


# -------------------------------------------------------------------------- the pipeline
@dataclass(frozen=True)
class ThermometryFrame:
    """What :meth:`RealtimeThermometry.update` returns for one frame (arrays are fresh copies)."""

    frame_time_s: float
    temperature_c: np.ndarray
    uncertainty_c: np.ndarray
    trusted: np.ndarray
    cem43_min: np.ndarray
    baseline_index: int

    @property
    def trusted_fraction(self) -> float:
        """Fraction of voxels trusted in this frame."""
        return float(np.mean(self.trusted))


class RealtimeThermometry:
    """PRF thermometry and thermal dose, updated one complex frame at a time.

    The state that lives across frames: the baseline (or atlas), the previous phase change (for
    temporal unwrapping) and the accumulated CEM43. :func:`prf_thermometry` runs a whole series
    through it, so the offline and the real-time paths are the same code.

    Parameters
    ----------
    te_s, b0_t, alpha_ppm_per_c
        Echo time (s), field strength (T), PRF coefficient (ppm/°C).
    body_temperature_c
        Temperature of the unheated baseline (°C); maps are absolute temperature.
    method
        ``"baseline"``, ``"multibaseline"`` or ``"referenceless"`` (see the module text).
    drift_order
        Order (0-2) of the drift polynomial fitted in the reference region; ``None``: no drift
        correction. For ``referenceless`` it is the background polynomial's order (default 2).
    reference_mask
        Unheated voxels for the drift / background fit, ``([S,] H, W)``. ``None``: every trusted
        voxel, with outlier rejection removing the heated ones.
    noise_sigma
        Noise per channel; ``None``: estimated from the baseline frames (needs two or more).
    max_uncertainty_c
        Voxels whose temperature standard deviation exceeds this are not trusted (°C).
    lesion_threshold_min
        CEM43 (minutes) of a lesion.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> base = 1000 * np.exp(1j * rng.uniform(-3, 3, (8, 8)))
    >>> th = RealtimeThermometry(te_s=0.02, b0_t=1.5, noise_sigma=1.0)
    >>> th.set_baseline(base[None])
    >>> k = prf_phase_per_degree(te_s=0.02, b0_t=1.5)
    >>> out = th.update(base * np.exp(1j * k * 10.0), 3.0)
    >>> round(float(out.temperature_c.mean()), 3)
    47.0
    """

    def __init__(
        self,
        *,
        te_s: float,
        b0_t: float,
        alpha_ppm_per_c: float = DEFAULT_ALPHA_PPM_PER_C,
        body_temperature_c: float = 37.0,
        method: str = "baseline",
        drift_order: int | None = None,
        reference_mask: npt.ArrayLike | None = None,
        noise_sigma: float | None = None,
        max_uncertainty_c: float = DEFAULT_MAX_UNCERTAINTY_C,
        lesion_threshold_min: float = LESION_THRESHOLD_MIN,
    ) -> None:
        if method not in METHODS:
            raise InputError(f"unknown thermometry method {method!r}; choose one of {', '.join(METHODS)}")
        self.k = prf_phase_per_degree(te_s=te_s, b0_t=b0_t, alpha_ppm_per_c=alpha_ppm_per_c)
        self.te_s, self.b0_t, self.alpha_ppm_per_c = float(te_s), float(b0_t), float(alpha_ppm_per_c)
        if not math.isfinite(body_temperature_c):
            raise InputError(f"body temperature must be a number, got {body_temperature_c!r}")
        self.body_temperature_c = float(body_temperature_c)
        self.method = method
        if method == "referenceless" and drift_order is None:
            drift_order = 2
        if drift_order is not None and drift_order not in (0, 1, 2, 3):
            raise InputError(f"drift / background polynomial order must be 0, 1, 2 or 3, got {drift_order}")
        self.drift_order = drift_order
        self.reference_mask = None if reference_mask is None else np.asarray(reference_mask, dtype=bool)
        self.noise_sigma = noise_sigma
        if not (math.isfinite(max_uncertainty_c) and max_uncertainty_c > 0):
            raise InputError(f"max uncertainty must be a positive number of °C, got {max_uncertainty_c!r}")
        self.max_uncertainty_c = float(max_uncertainty_c)
        self.lesion_threshold_min = float(lesion_threshold_min)
        self._atlas: np.ndarray | None = None
        self._atlas_mag: np.ndarray | None = None
        self._atlas_sq: np.ndarray | None = None
        self._atlas_coarse: np.ndarray | None = None
        self._n_baseline = 1
        self._shape: tuple[int, ...] | None = None
        self._previous_phase: np.ndarray | None = None
        self._dose: DoseAccumulator | None = None
        self._baseline_variance: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------------ setup
    def set_baseline(self, frames: npt.ArrayLike) -> None:
        """Give the unheated reference frames ``(N, [S,] H, W)``: averaged (baseline) or a library (multibaseline).

        ``referenceless`` uses them only to estimate the noise when none was given.
        """
        z = np.asarray(frames)
        if z.ndim not in (3, 4) or z.shape[0] < 1:
            raise InputError(f"baseline frames must be (N, [S,] H, W), got shape {z.shape}")
        _check_complex_finite(z, "baseline frames")
        self._shape = tuple(z.shape[1:])
        if self.reference_mask is not None and self.reference_mask.shape != self._shape:
            raise InputError(f"reference mask of shape {self.reference_mask.shape} for frames of shape {self._shape}")
        if self.noise_sigma is None:
            self.noise_sigma = estimate_noise_sigma(z)
        if self.method == "multibaseline":
            if z.shape[0] < 2:
                raise InputError("multibaseline needs a library of two or more unheated frames covering the motion")
            self._atlas = z.astype(np.complex64)
            self._atlas_mag = np.abs(self._atlas).reshape(z.shape[0], -1)
            coarse = block_means(np.abs(self._atlas)).reshape(z.shape[0], -1)
            self._atlas_coarse = coarse
            self._atlas_sq = (coarse**2).sum(axis=1)
            self._n_baseline = 1
        else:
            self._atlas = z.mean(axis=0, dtype=np.complex128).astype(np.complex64)[None]
            self._atlas_mag = np.abs(self._atlas).reshape(1, -1)
            self._n_baseline = int(z.shape[0])
        self._previous_phase = None
        self._baseline_variance = {}
        # complex64 frames give float32 temperatures: their dose rates in float32 (see DoseAccumulator)
        self._dose = DoseAccumulator(self._shape, dtype=np.float32 if z.dtype == np.complex64 else np.float64)

    def _uncertainty(self, mag: np.ndarray, index: int) -> np.ndarray:
        """:func:`temperature_uncertainty` of this frame against atlas entry ``index``, its baseline term cached."""
        assert self.noise_sigma is not None and self._atlas_mag is not None and self._shape is not None
        baseline = None
        if self.method != "referenceless":
            baseline = self._baseline_variance.get(index)
            if baseline is None:
                # the baseline's share of the phase variance, sigma^2 / (N_b A_b^2), fixed per atlas entry
                atlas_mag = self._atlas_mag[index].reshape(self._shape).astype(mag.dtype)
                baseline = _phase_variance(atlas_mag, self.noise_sigma, self._n_baseline)
                self._baseline_variance[index] = baseline
        return _uncertainty_from_variance(_phase_variance(mag, self.noise_sigma, 1), baseline, abs(self.k))

    # ------------------------------------------------------------------------ frames
    def update(self, frame: npt.ArrayLike, time_s: float) -> ThermometryFrame:
        """Temperature, uncertainty, trust and running CEM43 after one more complex frame."""
        if self._atlas is None or self._atlas_mag is None or self._dose is None or self.noise_sigma is None:
            raise InputError("set_baseline must be called before update")
        z = np.asarray(frame)
        if z.shape != self._shape:
            raise InputError(f"frame of shape {z.shape}, the baseline frames are {self._shape}")
        _check_complex_finite(z, "frame")
        mag = np.abs(z)
        index = 0
        if self.method == "multibaseline":
            assert self._atlas_sq is not None and self._atlas_coarse is not None
            # the same criterion as select_baselines, with the library's tile means precomputed
            cost = self._atlas_sq - 2.0 * (self._atlas_coarse @ block_means(mag).reshape(-1))
            index = int(np.argmin(cost))
        uncertainty = self._uncertainty(mag, index)
        trusted = uncertainty <= self.max_uncertainty_c
        fit_mask = trusted if self.reference_mask is None else trusted & self.reference_mask
        if self.method == "referenceless":
            assert self.drift_order is not None
            background = referenceless_background_phase(z, fit_mask, order=self.drift_order)
            phase = fast_angle(z * np.exp(-1j * background))
        else:
            phase = fast_angle(z * np.conj(self._atlas[index]))
        if self._previous_phase is not None:
            # temporal unwrapping: stay within pi of the previous frame's phase change
            turns = phase - self._previous_phase
            turns *= phase.dtype.type(1.0 / (2.0 * np.pi))
            np.rint(turns, out=turns)
            turns *= phase.dtype.type(2.0 * np.pi)
            phase -= turns
        self._previous_phase = phase
        if self.method != "referenceless" and self.drift_order is not None:
            # a new array: the unwrapping keeps the phase before drift correction
            phase = phase - fit_background_phase(phase, fit_mask, order=self.drift_order)
        temperature = phase * phase.dtype.type(1.0 / self.k)
        temperature += phase.dtype.type(self.body_temperature_c)
        dose = self._dose.update(temperature, time_s)
        return ThermometryFrame(
            frame_time_s=float(time_s),
            temperature_c=temperature,
            uncertainty_c=uncertainty,
            trusted=trusted,
            cem43_min=dose.copy(),
            baseline_index=index,
        )


def _check_complex_finite(z: np.ndarray, what: str) -> None:
    if not np.iscomplexobj(z):
        raise InputError(f"{what} are {z.dtype}, not complex: PRF thermometry needs the phase")
    # a NaN or infinity makes the sum non-finite: one pass instead of a mask; a finite sum that
    # overflows only sends it to the exact count
    if not np.isfinite(z.sum()) and not np.all(np.isfinite(z)):
        bad = int(np.count_nonzero(~np.isfinite(z)))
        raise InputError(f"{what} hold {bad} NaN or infinite values")


@dataclass(frozen=True)
class ThermometryResult:
    """A whole series through :func:`prf_thermometry`; arrays are time first, ``(T, [S,] H, W)``.

    Attributes
    ----------
    temperature_c, uncertainty_c
        Absolute temperature and its standard deviation (°C), float32.
    trusted
        uint8, 1 where ``uncertainty_c <= max_uncertainty_c``.
    cem43_min
        Final thermal dose (minutes), float32, ``([S,] H, W)``; :attr:`cem43_series_min` per frame.
    lesion
        uint8, CEM43 >= the lesion threshold in voxels trusted in at least half the frames.
    baseline_index
        Atlas entry used by each frame (0 unless multibaseline).
    parameters
        Method and parameters, for the output file's attributes.
    """

    temperature_c: np.ndarray
    uncertainty_c: np.ndarray
    trusted: np.ndarray
    cem43_min: np.ndarray
    cem43_series_min: np.ndarray
    lesion: np.ndarray
    baseline_index: np.ndarray
    parameters: Mapping[str, Any] = field(default_factory=dict)


def prf_thermometry(
    frames: npt.ArrayLike,
    frame_times_s: npt.ArrayLike,
    *,
    te_s: float,
    b0_t: float,
    alpha_ppm_per_c: float = DEFAULT_ALPHA_PPM_PER_C,
    body_temperature_c: float = 37.0,
    method: str = "baseline",
    baseline_frames: int | None = None,
    drift_order: int | None = None,
    reference_mask: npt.ArrayLike | None = None,
    noise_sigma: float | None = None,
    max_uncertainty_c: float = DEFAULT_MAX_UNCERTAINTY_C,
    lesion_threshold_min: float = LESION_THRESHOLD_MIN,
) -> ThermometryResult:
    """PRF temperature, uncertainty, trust, CEM43 and lesion maps of a complex series.

    Parameters
    ----------
    frames
        Complex frames ``(T, H, W)`` or ``(T, S, H, W)``; the first ``baseline_frames`` are unheated.
    frame_times_s
        Acquisition time of each frame (s), strictly increasing.
    te_s, b0_t, alpha_ppm_per_c, body_temperature_c
        Echo time, field, PRF coefficient, temperature of the baseline.
    method
        ``"baseline"`` (the mean of the first ``baseline_frames`` frames), ``"multibaseline"``
        (those frames are the motion library) or ``"referenceless"``.
    baseline_frames
        Unheated frames at the start; default 1 (baseline and referenceless); multibaseline needs
        at least 2.
    drift_order, reference_mask, noise_sigma, max_uncertainty_c, lesion_threshold_min
        As for :class:`RealtimeThermometry`; ``noise_sigma=None`` estimates it from the series
        (:func:`estimate_noise_sigma`).

    Returns
    -------
    ThermometryResult

    Raises
    ------
    InputError
        For non-complex or non-finite frames, a time count that does not match, non-increasing
        times, a bad method or order, or a reference mask of another shape.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> z = (1000 + rng.normal(0, 5, (4, 16, 16)) + 1j * rng.normal(0, 5, (4, 16, 16))).astype(np.complex64)
    >>> res = prf_thermometry(z, np.arange(4) * 3.0, te_s=0.016, b0_t=1.5)
    >>> res.temperature_c.shape, bool(abs(float(res.temperature_c.mean()) - 37.0) < 0.5)
    ((4, 16, 16), True)
    """
    z = np.asarray(frames)
    if z.ndim not in (3, 4):
        raise InputError(f"frames must be (T, H, W) or (T, S, H, W), got shape {z.shape}")
    _check_complex_finite(z, "frames")
    times = np.asarray(frame_times_s, dtype=np.float64).reshape(-1)
    if times.size != z.shape[0]:
        raise InputError(f"{times.size} frame times for {z.shape[0]} frames")
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise InputError("frame times must be finite and strictly increasing")
    n_base = baseline_frames if baseline_frames is not None else (1 if method != "multibaseline" else 0)
    if method == "multibaseline" and n_base < 2:
        raise InputError("multibaseline needs the number of unheated library frames (baseline_frames >= 2)")
    if not 1 <= n_base <= z.shape[0]:
        raise InputError(f"baseline_frames must be between 1 and the number of frames ({z.shape[0]}), got {n_base}")
    if noise_sigma is None:
        noise_sigma = estimate_noise_sigma(z) if z.shape[0] >= 2 else None
        if noise_sigma is None:
            raise InputError("one frame only: give the noise sigma")
    engine = RealtimeThermometry(
        te_s=te_s,
        b0_t=b0_t,
        alpha_ppm_per_c=alpha_ppm_per_c,
        body_temperature_c=body_temperature_c,
        method=method,
        drift_order=drift_order,
        reference_mask=reference_mask,
        noise_sigma=noise_sigma,
        max_uncertainty_c=max_uncertainty_c,
        lesion_threshold_min=lesion_threshold_min,
    )
    engine.set_baseline(z[:n_base])
    shape = z.shape
    temperature = np.empty(shape, dtype=np.float32)
    uncertainty = np.empty(shape, dtype=np.float32)
    trusted = np.empty(shape, dtype=np.uint8)
    dose_series = np.empty(shape, dtype=np.float32)
    index = np.empty(shape[0], dtype=np.int32)
    for t in range(shape[0]):
        out = engine.update(z[t], float(times[t]))
        temperature[t] = out.temperature_c
        uncertainty[t] = out.uncertainty_c
        trusted[t] = out.trusted
        # noise-only voxels can reach absurd doses; float32 holds them as its largest value
        dose_series[t] = np.minimum(out.cem43_min, _FLOAT32_MAX)
        index[t] = out.baseline_index
    final = dose_series[-1]
    reliable = trusted.mean(axis=0) >= 0.5
    lesion = lesion_mask(final, threshold_min=lesion_threshold_min) & reliable.astype(np.uint8)
    parameters = {
        "method": method,
        "baseline_frames": int(n_base),
        "drift_order": -1 if engine.drift_order is None else int(engine.drift_order),
        "reference_mask": (
            "not used"
            if engine.drift_order is None
            else "given"
            if reference_mask is not None
            else "auto (trusted voxels, outliers rejected)"
        ),
        "te_s": float(te_s),
        "b0_t": float(b0_t),
        "alpha_ppm_per_c": float(alpha_ppm_per_c),
        "body_temperature_c": float(body_temperature_c),
        "noise_sigma": float(noise_sigma),
        "max_uncertainty_c": float(max_uncertainty_c),
        "lesion_threshold_min": float(lesion_threshold_min),
        "phase_per_degree_rad": float(engine.k),
    }
    return ThermometryResult(
        temperature_c=temperature,
        uncertainty_c=uncertainty,
        trusted=trusted,
        cem43_min=final.copy(),
        cem43_series_min=dose_series,
        lesion=lesion,
        baseline_index=index,
        parameters=parameters,
    )
