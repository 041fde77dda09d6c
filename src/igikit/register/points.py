"""Point-based registration with fiducial (FRE) and target (TRE) registration errors.

:func:`rigid_register` is the least-squares rigid (or similarity) fit of corresponding points:
Arun, Huang & Blostein, IEEE PAMI 9 (1987) 698, with Umeyama's correction against reflections and
his closed-form scale (IEEE PAMI 13 (1991) 376). :func:`predict_tre` predicts the RMS target
registration error from the fiducial localisation error (FLE) by Fitzpatrick, West & Maurer, IEEE
TMI 17 (1998) 694, eq. 46; :func:`simulate_tre` checks that prediction by Monte Carlo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from igikit.core.transform import Transform
from igikit.errors import InputError

#: Points whose second-largest spread is below this fraction of the largest count as collinear.
COLLINEAR_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class PointRegistration:
    """The result of :func:`rigid_register`.

    ``transform`` maps MOVING points into FIXED (``p_fixed = s R p_moving + t``); ``residuals_mm``
    holds one distance per fiducial after the fit and ``fre_mm`` their RMS.
    """

    transform: Transform
    scale: float
    fre_mm: float
    residuals_mm: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        """The 4x4 homogeneous MOVING-to-FIXED matrix."""
        return self.transform.matrix

    @property
    def worst_fiducial(self) -> int | None:
        """Index of the fiducial whose residual stands out (see :func:`standout`), else None."""
        return standout(self.residuals_mm)


def standout(residuals_mm: npt.ArrayLike, *, factor: float = 2.0, floor_mm: float = 1e-6) -> int | None:
    """Index of the largest residual when it exceeds ``factor`` times the RMS of the others.

    A single fiducial that was mislocalised (or mis-numbered) shows up this way; with evenly spread
    residuals there is no culprit and the answer is None.
    """
    r = np.asarray(residuals_mm, dtype=np.float64).reshape(-1)
    if r.size < 2:
        return None
    worst = int(np.argmax(r))
    others = np.delete(r, worst)
    if r[worst] > floor_mm and r[worst] > factor * float(np.sqrt(np.mean(others**2))):
        return worst
    return None


def as_points(points: npt.ArrayLike, name: str = "points", *, minimum: int = 1) -> np.ndarray:
    """``points`` as a finite float ``(N, 3)`` array with at least ``minimum`` rows, else InputError."""
    try:
        p = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numbers: {exc}") from None
    if p.ndim == 1 and p.size == 3:
        p = p.reshape(1, 3)
    if p.ndim != 2 or p.shape[1] != 3:
        raise InputError(f"{name} must be rows of x, y, z (an N x 3 array), got shape {p.shape}")
    if p.shape[0] < minimum:
        raise InputError(f"{name}: {minimum} or more points are needed, got {p.shape[0]}")
    bad = np.flatnonzero(~np.all(np.isfinite(p), axis=1))
    if bad.size:
        raise InputError(f"{name}: point {bad[0] + 1} is not finite (NaN or infinity)")
    return p


def _check_spread(p: np.ndarray, name: str) -> None:
    c = p - p.mean(axis=0)
    # singular values of the centred points from their 3x3 scatter matrix (cheaper than an N x 3 SVD)
    s = np.sqrt(np.maximum(np.linalg.eigvalsh(c.T @ c)[::-1], 0.0))
    if s[0] == 0.0 or s[1] <= COLLINEAR_TOL * s[0]:
        raise InputError(
            f"{name}: the points are collinear (or coincide); a registration needs 3 or more points "
            "that are not on one line"
        )


def _fit(fixed: np.ndarray, moving: np.ndarray, scale: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched Umeyama fit: ``(..., N, 3)`` pairs -> rotations ``(..., 3, 3)``, scales, translations."""
    mu_f = fixed.mean(axis=-2)
    mu_m = moving.mean(axis=-2)
    fc = fixed - mu_f[..., None, :]
    mc = moving - mu_m[..., None, :]
    cov = np.swapaxes(fc, -1, -2) @ mc  # sum_i f_i m_i^T
    u, d, vt = np.linalg.svd(cov)
    # Umeyama: flip the weakest axis when the best orthogonal matrix would be a reflection
    sign = np.sign(np.linalg.det(u @ vt))
    sign = np.where(sign == 0, 1.0, sign)
    diag = np.ones(d.shape)
    diag[..., 2] = sign
    rot = (u * diag[..., None, :]) @ vt
    if scale:
        s = np.sum(d * diag, axis=-1) / np.sum(mc**2, axis=(-1, -2))
    else:
        s = np.ones(d.shape[:-1])
    t = mu_f - s[..., None] * np.einsum("...ij,...j->...i", rot, mu_m)
    return rot, s, t


def rigid_register(fixed: npt.ArrayLike, moving: npt.ArrayLike, *, scale: bool = False) -> PointRegistration:
    """Least-squares rigid (``scale=True``: similarity) transform mapping ``moving`` onto ``fixed``.

    Arun et al. (1987) with Umeyama's (1991) reflection correction: the result is always a proper
    rotation, also for noisy or planar configurations where plain SVD returns a mirror image.

    Parameters
    ----------
    fixed, moving
        Corresponding points ``(N, 3)`` in mm, N >= 3, not collinear.
    scale
        Also fit an isotropic scale (Umeyama's closed form).

    Examples
    --------
    >>> p = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10.0]])
    >>> reg = rigid_register(p + [1, 2, 3], p)
    >>> np.round(reg.matrix[:3, 3], 9).tolist(), round(reg.fre_mm, 9)
    ([1.0, 2.0, 3.0], 0.0)
    """
    f = as_points(fixed, "fixed points", minimum=3)
    m = as_points(moving, "moving points", minimum=3)
    if f.shape[0] != m.shape[0]:
        raise InputError(f"fixed and moving points must correspond row by row: {f.shape[0]} fixed, {m.shape[0]} moving")
    _check_spread(m, "moving points")
    _check_spread(f, "fixed points")
    rot, s, t = _fit(f, m, scale)
    s_value = float(s)
    transform = Transform.from_rotation_translation(s_value * rot, t, source="moving", target="fixed")
    residuals = np.linalg.norm(transform.apply(m) - f, axis=1)
    return PointRegistration(
        transform=transform,
        scale=s_value,
        fre_mm=float(np.sqrt(np.mean(residuals**2))),
        residuals_mm=residuals,
    )


@dataclass(frozen=True, eq=False)
class FiducialLayout:
    """A fiducial configuration in its principal-axis frame, for repeated TRE predictions.

    Built once (:meth:`of`), it predicts the TRE at any point in microseconds, which a navigation
    loop does for the tool tip at every tracker update.

    Attributes
    ----------
    centroid_mm
        Centroid of the fiducials.
    axes
        ``(3, 3)`` principal axes, one per row.
    f2_mm2
        Mean squared distance of the fiducials from each principal axis (``f_k^2``).
    n
        Number of fiducials.
    """

    centroid_mm: np.ndarray
    axes: np.ndarray
    f2_mm2: np.ndarray
    n: int

    @classmethod
    def of(cls, fiducials_mm: npt.ArrayLike) -> FiducialLayout:
        """The layout of ``(N, 3)`` fiducials, N >= 3, not collinear (else InputError)."""
        fid = as_points(fiducials_mm, "fiducials", minimum=3)
        _check_spread(fid, "fiducials")
        centroid = fid.mean(axis=0)
        fc = fid - centroid
        _, _, axes = np.linalg.svd(fc, full_matrices=False)  # rows: principal axes
        # squared distance from axis k = |p|^2 - (p . v_k)^2
        f2 = np.mean(np.sum(fc**2, axis=1)[:, None] - (fc @ axes.T) ** 2, axis=0)
        return cls(centroid, axes, f2, int(fid.shape[0]))

    def tre_mm(self, targets_mm: np.ndarray, fle_rms_mm: float) -> np.ndarray:
        """Predicted RMS TRE ``(M,)`` at ``(M, 3)`` targets (eq. 46; unchecked input, see :func:`predict_tre`)."""
        tc = np.atleast_2d(targets_mm) - self.centroid_mm
        d2 = np.sum(tc**2, axis=1)[:, None] - (tc @ self.axes.T) ** 2
        tre2 = fle_rms_mm**2 / self.n * (1.0 + np.sum(d2 / self.f2_mm2, axis=1) / 3.0)
        out: np.ndarray = np.sqrt(np.maximum(tre2, 0.0))
        return out


def predict_tre(fiducials_mm: npt.ArrayLike, targets_mm: npt.ArrayLike, fle_rms_mm: float) -> np.ndarray:
    """RMS target registration error predicted from the fiducial localisation error.

    Fitzpatrick, West & Maurer (1998), eq. 46, for isotropic FLE of RMS (3D) ``fle_rms_mm``::

        TRE^2(r) = FLE^2 / N * (1 + 1/3 * sum_k d_k^2 / f_k^2)

    where, for the principal axes k of the fiducial configuration (through its centroid),
    ``d_k`` is the distance of target ``r`` from axis k and ``f_k`` the RMS distance of the
    fiducials from it. Working in the centroid / principal-axis frame makes the prediction
    invariant when fiducials and targets move rigidly together.

    Parameters
    ----------
    fiducials_mm
        The fiducial configuration ``(N, 3)``, N >= 3, not collinear.
    targets_mm
        Target points ``(M, 3)`` or one point ``(3,)``, in the same frame as the fiducials.
    fle_rms_mm
        RMS 3D fiducial localisation error (mm), >= 0.

    Returns
    -------
    numpy.ndarray
        ``(M,)`` predicted RMS TRE (mm).
    """
    layout = FiducialLayout.of(fiducials_mm)
    tgt = as_points(targets_mm, "targets")
    fle = float(fle_rms_mm)
    if not np.isfinite(fle) or fle < 0:
        raise InputError(f"FLE must be a finite number >= 0 mm, got {fle_rms_mm}")
    return layout.tre_mm(tgt, fle)


def simulate_tre(
    fiducials_mm: npt.ArrayLike,
    targets_mm: npt.ArrayLike,
    fle_rms_mm: float,
    *,
    trials: int = 10_000,
    seed: int | None = 0,
) -> np.ndarray:
    """Monte Carlo RMS TRE: perturb the fiducials with isotropic Gaussian FLE, register, measure.

    Each trial adds independent Gaussian noise of per-axis standard deviation ``fle / sqrt(3)``
    (so RMS 3D ``fle``) to every fiducial, fits the rigid transform back to the true fiducials and
    measures how far each target moves. Returns the RMS over trials, ``(M,)`` mm: the reference
    :func:`predict_tre` is validated against.
    """
    fid = as_points(fiducials_mm, "fiducials", minimum=3)
    tgt = as_points(targets_mm, "targets")
    _check_spread(fid, "fiducials")
    if trials < 1:
        raise InputError(f"trials must be >= 1, got {trials}")
    rng = np.random.default_rng(seed)
    sq = np.zeros(tgt.shape[0])
    done = 0
    while done < trials:
        n = min(2_000, trials - done)
        noisy = fid + rng.normal(scale=float(fle_rms_mm) / np.sqrt(3.0), size=(n, *fid.shape))
        rot, _, t = _fit(np.broadcast_to(fid, noisy.shape), noisy, False)
        # the fitted transform maps the noisy fiducial frame back onto the true one; the error at a
        # target is how far the fit moves it away from itself
        moved = np.einsum("bij,mj->bmi", rot, tgt) + t[:, None, :]
        sq += np.sum((moved - tgt) ** 2, axis=(0, 2))
        done += n
    out: np.ndarray = np.sqrt(sq / trials)
    return out
