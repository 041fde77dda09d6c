"""Pivot calibration: the tip of a tracked pointer from poses recorded while it pivots about its tip.

Each pose ``(R_i, t_i)`` (tool to tracker, mm) satisfies ``R_i p_tip + t_i = p_pivot`` with the tip
offset ``p_tip`` (tool coordinates) and the pivot point ``p_pivot`` (tracker coordinates) unknown.

- ``lsq``: the algebraic one-step least-squares solve of the stacked ``[R_i | -I] x = -t_i``
  (Yaniv, SPIE Medical Imaging 2015, 9415:941527; as scikit-surgerycalibration's
  ``pivot_calibration_aos``).
- ``ransac``: the same equations, with hypotheses from random pose subsets scored by the median tip
  residual (least median of squares, Rousseeuw 1984), inliers within a robust multiple of that
  scale, then a least-squares refit on the inliers until the inlier set settles. Slipped poses
  (the tip moved off the divot) and tracking glitches are left out instead of pulling the tip.
- ``sphere``: the tool origins lie on a sphere about the pivot point (algebraic sphere fit,
  Kasa 1976); the tip offset is the mean of the pivot point brought into each tool frame.

``rms_mm`` is the 3D RMS distance of the computed tip positions ``R_i p_tip + t_i`` from the pivot
point (scikit-surgery reports the per-axis value, 3D / sqrt(3)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from igikit.errors import InputError

Method = Literal["lsq", "ransac", "sphere"]
METHODS: tuple[str, ...] = ("lsq", "ransac", "sphere")

#: Largest tolerated deviation of a pose's rotation from orthonormal (max |R^T R - I|).
ORTHONORMAL_TOL = 1e-3
#: Smallest singular value of the stacked system, relative to the largest, for enough rotation.
MIN_CONDITION = 1e-2
#: Inlier threshold in units of the robust scale (median tip residual): sqrt(chi2_3(0.999)) / 1.538,
#: the 99.9% point of the distance of an isotropic 3D Gaussian error over its median.
INLIER_FACTOR = 2.62


@dataclass(frozen=True, eq=False)
class PivotResult:
    """The result of :func:`pivot_calibration`.

    ``residuals_mm`` (one per pose) is the distance of each pose's computed tip from the pivot
    point; ``rms_mm`` is their RMS over the inliers (3D); ``inliers`` marks the poses used.
    """

    tip_offset_mm: np.ndarray
    pivot_point_mm: np.ndarray
    rms_mm: float
    inliers: np.ndarray
    residuals_mm: np.ndarray
    method: str

    @property
    def inlier_count(self) -> int:
        """How many poses the final solution uses."""
        return int(np.count_nonzero(self.inliers))


def rotation_errors(poses: np.ndarray) -> np.ndarray:
    """Per pose ``max |R^T R - I|`` of ``(N, 4, 4)`` poses, with ``inf`` for a reflection."""
    r = poses[:, :3, :3]
    err = np.abs(np.swapaxes(r, 1, 2) @ r - np.eye(3)).max(axis=(1, 2))
    err = np.where(np.linalg.det(r) <= 0, np.inf, err)
    out: np.ndarray = err
    return out


def as_poses(poses: npt.ArrayLike, *, tol: float = ORTHONORMAL_TOL) -> np.ndarray:
    """``poses`` as a finite, rigid ``(N, 4, 4)`` float array, else InputError naming the bad row.

    Rows are counted from 1 (the pose's position in the input).
    """
    try:
        p = np.asarray(poses, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"poses must be numbers: {exc}") from None
    if p.ndim != 3 or p.shape[1:] != (4, 4):
        raise InputError(f"poses must be an N x 4 x 4 array of homogeneous matrices, got shape {p.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(p), axis=(1, 2)))
    if bad.size:
        raise InputError(f"pose {bad[0] + 1} is not finite (NaN or infinity)")
    bottom = np.flatnonzero(np.abs(p[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=1) > 1e-9)
    if bottom.size:
        raise InputError(f"pose {bottom[0] + 1}: the last row of a pose must be 0, 0, 0, 1")
    err = rotation_errors(p)
    bad = np.flatnonzero(err > tol)
    if bad.size:
        i = int(bad[0])
        what = "is a reflection" if np.isinf(err[i]) else f"is not orthonormal (max |RᵀR − I| = {err[i]:.3g})"
        raise InputError(f"pose {i + 1}: the rotation {what}; tolerance {tol:g}")
    return p


def _system(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = poses.shape[0]
    a = np.empty((n, 3, 6))
    a[:, :, :3] = poses[:, :3, :3]
    a[:, :, 3:] = -np.eye(3)
    return a.reshape(3 * n, 6), -poses[:, :3, 3].reshape(-1)


def _solve_lsq(poses: np.ndarray) -> np.ndarray:
    a, b = _system(poses)
    s = np.linalg.svd(a, compute_uv=False)
    if s[-1] < MIN_CONDITION * s[0]:
        raise InputError(
            f"too little rotation in the {poses.shape[0]} poses to find the tip (the system is rank-deficient: "
            f"smallest/largest singular value {s[-1] / s[0]:.2g} < {MIN_CONDITION:g}); pivot the tool "
            "about its tip in two directions, by 20 degrees or more"
        )
    x: np.ndarray = np.linalg.lstsq(a, b, rcond=None)[0]
    return x


def tip_residuals(poses: np.ndarray, tip_offset_mm: np.ndarray, pivot_point_mm: np.ndarray) -> np.ndarray:
    """Distance (mm) of each pose's computed tip ``R_i tip + t_i`` from the pivot point."""
    tips = np.einsum("nij,j->ni", poses[:, :3, :3], tip_offset_mm) + poses[:, :3, 3]
    out: np.ndarray = np.linalg.norm(tips - pivot_point_mm, axis=1)
    return out


def _batch_solve(poses: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Least-squares solutions ``(B, 6)`` for pose subsets ``samples`` ``(B, k)`` (normal equations)."""
    r = poses[samples, :3, :3]  # (B, k, 3, 3)
    t = poses[samples, :3, 3]  # (B, k, 3)
    k = samples.shape[1]
    ata = np.zeros((samples.shape[0], 6, 6))
    ata[:, :3, :3] = k * np.eye(3)
    ata[:, 3:, 3:] = k * np.eye(3)
    ata[:, :3, 3:] = -np.swapaxes(r, 2, 3).sum(axis=1)
    ata[:, 3:, :3] = -r.sum(axis=1)
    atb = np.concatenate([-np.einsum("bkji,bkj->bi", r, t), t.sum(axis=1)], axis=1)
    # a degenerate subset gives a singular system: a tiny ridge keeps the batch solvable, and its
    # (useless) hypothesis then simply scores badly
    ata += 1e-9 * np.eye(6)
    out: np.ndarray = np.linalg.solve(ata, atb[..., None])[..., 0]
    return out


def _ransac(
    poses: np.ndarray, *, iterations: int, sample_size: int, threshold_mm: float | None, seed: int | None
) -> tuple[np.ndarray, np.ndarray]:
    n = poses.shape[0]
    rng = np.random.default_rng(seed)
    samples = np.argsort(rng.random((iterations, n)), axis=1)[:, :sample_size]
    x = _batch_solve(poses, samples)
    tips = np.einsum("nij,bj->bni", poses[:, :3, :3], x[:, :3]) + poses[None, :, :3, 3]
    res = np.linalg.norm(tips - x[:, None, 3:], axis=2)
    best = int(np.argmin(np.median(res, axis=1)))
    residuals = res[best]
    thr = threshold_mm if threshold_mm is not None else INLIER_FACTOR * float(np.median(residuals))
    inliers = np.zeros(n, dtype=bool)
    for _ in range(50):
        new = residuals <= thr
        if np.count_nonzero(new) < 3:
            raise InputError(
                f"ransac found fewer than 3 consistent poses (threshold {thr:.3g} mm); "
                "check the recording or raise the threshold"
            )
        if np.array_equal(new, inliers):
            break
        inliers = new
        x = _solve_lsq(poses[inliers])
        residuals = tip_residuals(poses, x[:3], x[3:])
        if threshold_mm is None:
            # the scale comes from the inliers alone, so that the fixed point does not depend on
            # how many outliers there were: a clean and a contaminated recording settle alike
            thr = INLIER_FACTOR * float(np.median(residuals[inliers]))
    return x, inliers


def _sphere(poses: np.ndarray) -> np.ndarray:
    origins = poses[:, :3, 3]
    centre0 = origins.mean(axis=0)
    o = origins - centre0  # centred for conditioning: the tracker is often metres away
    a = np.hstack([2.0 * o, np.ones((o.shape[0], 1))])
    s = np.linalg.svd(a, compute_uv=False)
    if s[-1] < 1e-6 * s[0]:
        raise InputError(
            "too little rotation in the poses to fit a sphere to the tool positions (rank-deficient); "
            "pivot the tool about its tip in two directions"
        )
    sol = np.linalg.lstsq(a, np.sum(o**2, axis=1), rcond=None)[0]
    pivot = sol[:3] + centre0
    tips = np.einsum("nji,nj->ni", poses[:, :3, :3], pivot - origins)  # R_i^T (pivot - t_i)
    return np.concatenate([tips.mean(axis=0), pivot])


def pivot_calibration(
    poses_4x4: npt.ArrayLike,
    method: Method | str = "lsq",
    *,
    threshold_mm: float | None = None,
    iterations: int = 500,
    seed: int | None = 0,
) -> PivotResult:
    """Tip offset (tool frame) and pivot point (tracker frame) from tool-to-tracker poses.

    Parameters
    ----------
    poses_4x4
        ``(N, 4, 4)`` rigid tool-to-tracker matrices (mm), N >= 3, with rotation about two axes.
    method
        ``"lsq"`` (algebraic least squares, Yaniv 2015), ``"ransac"`` (robust to slipped poses)
        or ``"sphere"`` (sphere fit to the tool origins).
    threshold_mm
        ``ransac`` only: inlier distance; default :data:`INLIER_FACTOR` times the median residual.
    iterations, seed
        ``ransac`` only: number of random hypotheses and the random seed (deterministic by default).

    Raises
    ------
    InputError
        Fewer than 3 poses, non-rigid or non-finite poses, an unknown method, or too little
        rotation to determine the tip (never an identity result with zero error).
    """
    poses = as_poses(poses_4x4)
    n = poses.shape[0]
    if n < 3:
        raise InputError(f"pivot calibration needs 3 or more poses, got {n}")
    if method == "lsq":
        x = _solve_lsq(poses)
        inliers = np.ones(n, dtype=bool)
    elif method == "ransac":
        if threshold_mm is not None and not (np.isfinite(threshold_mm) and threshold_mm > 0):
            raise InputError(f"the ransac threshold must be a positive distance in mm, got {threshold_mm}")
        if iterations < 1:
            raise InputError(f"ransac needs 1 or more iterations, got {iterations}")
        _solve_lsq(poses)  # the rank check on all poses: a clear message before any sampling
        x, inliers = _ransac(poses, iterations=iterations, sample_size=min(6, n), threshold_mm=threshold_mm, seed=seed)
    elif method == "sphere":
        x = _sphere(poses)
        inliers = np.ones(n, dtype=bool)
    else:
        raise InputError(f"unknown pivot method {method!r}; use one of {', '.join(METHODS)}")
    residuals = tip_residuals(poses, x[:3], x[3:])
    return PivotResult(
        tip_offset_mm=x[:3].copy(),
        pivot_point_mm=x[3:].copy(),
        rms_mm=float(np.sqrt(np.mean(residuals[inliers] ** 2))),
        inliers=inliers,
        residuals_mm=residuals,
        method=str(method),
    )
