"""Dose to a moving target in the cine plane: planned dose, motion-blurred delivered dose, DVH.

A 2D model in the beam's-eye plane, the one TrackRAD2025 uses for its dose metric: the plan covers
the first-frame target plus a margin with a Gaussian penumbra. During delivery the target moves by
``s(t)`` (true motion) and the aperture by ``b(t)`` (zero when static or gated, the predicted
motion when tracking); a target point ``x`` then receives ``D_plan(x + s(t) - b(t))`` while the
beam is on. The delivered distribution is that dose averaged over beam-on time, so it is directly
comparable with the plan (1.0 = prescription), whatever the duty cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from igikit.errors import InputError


def planned_dose(
    target: np.ndarray, spacing_mm: Sequence[float], *, margin_mm: float = 3.0, penumbra_sigma_mm: float = 4.0
) -> np.ndarray:
    """Plan: 1.0 inside target + margin, with a Gaussian penumbra, renormalised so D98(target) = 1.

    ``spacing_mm`` is (row, col) mm.
    """
    t = np.asarray(target) > 0
    if not t.any():
        raise InputError("the target mask is empty")
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    ptv = ndimage.distance_transform_edt(~t, sampling=spacing) <= margin_mm
    dose = ndimage.gaussian_filter(ptv.astype(np.float64), sigma=penumbra_sigma_mm / spacing)
    return dose / np.percentile(dose[t], 2.0)


def delivered_dose(
    plan: np.ndarray,
    target_shift_mm: np.ndarray,
    beam_shift_mm: np.ndarray,
    beam_on: np.ndarray,
    spacing_mm: Sequence[float],
) -> np.ndarray:
    """Dose received by target points (in the target's frame-0 coordinates), averaged over beam-on time.

    Parameters
    ----------
    plan
        Planned dose (H, W), see :func:`planned_dose`.
    target_shift_mm, beam_shift_mm
        (T, 2) displacement (row, col) mm of the target and of the aperture at each time step.
    beam_on
        (T,) bool.
    spacing_mm
        (row, col) mm.
    """
    s = np.asarray(target_shift_mm, dtype=np.float64)
    b = np.asarray(beam_shift_mm, dtype=np.float64)
    on = np.asarray(beam_on, dtype=bool)
    if s.shape != b.shape or s.ndim != 2 or s.shape[1] != 2 or on.shape != (s.shape[0],):
        raise InputError(f"shifts {s.shape}, {b.shape} and beam {on.shape} must be (T, 2), (T, 2), (T,)")
    if not on.any():
        return np.zeros_like(plan)
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    # Identical relative offsets (a static beam and a still target, or a held beam) need one shift only.
    rel = np.round((s[on] - b[on]) / spacing, 2)
    offsets, counts = np.unique(rel, axis=0, return_counts=True)
    total = np.zeros_like(plan, dtype=np.float64)
    for off, n in zip(offsets, counts, strict=True):
        # x receives plan(x + off): shifting the image by -off samples it there.
        total += n * ndimage.shift(plan, -off, order=1, mode="nearest")
    return total / on.sum()


@dataclass(frozen=True)
class DoseSummary:
    """Target dose relative to the plan (1.0 = prescription)."""

    d98: float
    d2: float
    mean: float


def summarise(dose: np.ndarray, target: np.ndarray) -> DoseSummary:
    """D98 (near-minimum), D2 (near-maximum) and mean of ``dose`` over ``target``."""
    values = np.asarray(dose)[np.asarray(target) > 0]
    if values.size == 0:
        raise InputError("the target mask is empty")
    return DoseSummary(float(np.percentile(values, 2.0)), float(np.percentile(values, 98.0)), float(values.mean()))


def dvh(dose: np.ndarray, target: np.ndarray, bins: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative dose-volume histogram: dose levels and the fraction of the target receiving at least each."""
    values = np.asarray(dose)[np.asarray(target) > 0]
    levels = np.linspace(0.0, max(1.2, float(values.max()) * 1.05), bins)
    fraction = (values[None, :] >= levels[:, None]).mean(axis=1)
    return levels, fraction
