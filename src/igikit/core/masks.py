"""Overlap and distance metrics between binary masks, in physical units.

Definitions follow Metrics Reloaded (Maier-Hein et al., Nat Methods 21, 2024) as used by
TrackRAD2025: Dice similarity coefficient, the 95th-percentile Hausdorff distance (HD95, the larger
of the two directed 95th percentiles, as MONAI computes it), the mean average surface distance
(MASD: the mean of the two directed mean surface distances) and the centre-of-mass distance. All
distances are in mm, using the pixel spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from igikit.errors import GeometryError


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred) > 0
    t = np.asarray(truth) > 0
    if p.shape != t.shape:
        raise GeometryError(f"masks differ in shape: {p.shape} vs {t.shape}")
    return p, t


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice similarity coefficient ``2|P∩T| / (|P| + |T|)``; 1.0 when both are empty.

    Examples
    --------
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> b = np.zeros((4, 4), bool); b[1:3] = True
    >>> dice(a, b)
    0.5
    """
    p, t = _check_pair(pred, truth)
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(p, t).sum()) / total


def centroid_mm(mask: np.ndarray, spacing_mm: Sequence[float] | np.ndarray) -> np.ndarray:
    """Centre of mass in mm, NumPy axis order (row, col[, ...]) scaled by ``spacing_mm``.

    ``spacing_mm`` is given in NumPy axis order too (row spacing first). NaN when the mask is empty.
    """
    m = np.asarray(mask) > 0
    if not m.any():
        return np.full(m.ndim, np.nan)
    return np.asarray(ndimage.center_of_mass(m), dtype=np.float64) * np.asarray(spacing_mm, dtype=np.float64)


def _surface(mask: np.ndarray) -> np.ndarray:
    # Border pixels: inside the mask, with at least one face-neighbour outside it (or at the edge).
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1),
                                    border_value=0)
    return mask & ~eroded


def _directed_distances(src: np.ndarray, dst: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    # Distance from each surface point of src to the nearest surface point of dst (mm).
    edt = ndimage.distance_transform_edt(~_surface(dst), sampling=spacing)
    return np.asarray(edt[_surface(src)], dtype=np.float64)


@dataclass(frozen=True)
class MaskComparison:
    """Dice, distances (mm) and centroid error (mm) of a predicted mask against the truth."""

    dsc: float
    hd95_mm: float
    masd_mm: float
    centroid_error_mm: float


def compare_masks(pred: np.ndarray, truth: np.ndarray, spacing_mm: Sequence[float]) -> MaskComparison:
    """Compare ``pred`` with ``truth`` (same shape; ``spacing_mm`` in NumPy axis order).

    An empty prediction (or truth) scores Dice 0 and all distances equal to the image diagonal,
    the TrackRAD2025 convention for a lost target.
    """
    p, t = _check_pair(pred, truth)
    spacing = [float(s) for s in spacing_mm]
    if len(spacing) != p.ndim:
        raise GeometryError(f"{len(spacing)} spacings for a {p.ndim}D mask")
    if not p.any() or not t.any():
        if not p.any() and not t.any():
            return MaskComparison(1.0, 0.0, 0.0, 0.0)
        diagonal = float(np.linalg.norm(np.asarray(p.shape) * np.asarray(spacing)))
        return MaskComparison(0.0, diagonal, diagonal, diagonal)
    d_pt = _directed_distances(p, t, spacing)
    d_tp = _directed_distances(t, p, spacing)
    hd95 = max(float(np.percentile(d_pt, 95)), float(np.percentile(d_tp, 95)))
    masd = 0.5 * (float(d_pt.mean()) + float(d_tp.mean()))
    cerr = float(np.linalg.norm(centroid_mm(p, spacing) - centroid_mm(t, spacing)))
    return MaskComparison(dice(p, t), hd95, masd, cerr)
