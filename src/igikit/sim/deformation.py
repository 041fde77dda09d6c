"""Smooth breathing deformations of a 2D sagittal slice, and the tools to apply them.

Breathing moves abdominal and lower thoracic organs mostly superior-inferior (SI), most strongly
just below the diaphragm, with a smaller anterior-posterior (AP) component, a slight rotation, and
almost no motion of the spine and back muscles (Seppenwoolde et al., IJROBP 53, 2002; von
Siebenthal et al., PMB 52, 2007). :class:`BreathingMotionModel` holds that spatial pattern as
displacement fields per unit of drive, so one frame's field is a weighted sum of three maps.

Image axes: rows run superior to inferior (+y, mm), columns anterior to posterior (+x, mm), as in
the real sagittal cines this project uses. Fields are ``(H, W, 2)`` arrays of ``(dx, dy)`` in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from igikit.errors import InputError


@dataclass(frozen=True, eq=False)
class BreathingMotionModel:
    """Forward displacement fields per unit of breathing drive on a frame grid.

    A material point at ``x`` moves to ``x + u(x)`` with
    ``u = si_mm * si_field + ap_mm * ap_field + rotation_rad * rotation_field``.
    All three fields are normalised at ``anchor_mm`` (the target's centre): there the SI field is
    exactly (0, 1), the AP field exactly (-1, 0) (anterior) and the rotation field zero, so the
    anchor moves by exactly the commanded ``(-ap_mm, si_mm)``.

    Parameters
    ----------
    si_field, ap_field, rotation_field
        ``(H, W, 2)`` float32 maps of ``(dx, dy)`` (mm per mm, mm per mm, mm per radian).
    spacing_mm
        ``(dx, dy)`` pixel spacing (mm).
    anchor_mm
        ``(x, y)`` of the anchor (mm from the centre of the top-left pixel).
    """

    si_field: np.ndarray
    ap_field: np.ndarray
    rotation_field: np.ndarray
    spacing_mm: tuple[float, float]
    anchor_mm: tuple[float, float]

    @property
    def shape_hw(self) -> tuple[int, int]:
        h, w = self.si_field.shape[:2]
        return (int(h), int(w))

    def displacement(self, si_mm: float, ap_mm: float, rotation_rad: float) -> np.ndarray:
        """Forward displacement ``u`` (H, W, 2), mm: inferior ``si_mm`` and anterior ``ap_mm`` at the anchor."""
        u = si_mm * self.si_field + ap_mm * self.ap_field + rotation_rad * self.rotation_field
        return np.asarray(u, dtype=np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)))


def smooth_random_field(
    shape_hw: tuple[int, int], correlation_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with a Gaussian correlation length (pixels)."""
    sigma = max(float(correlation_px), 1e-6)
    noise = rng.standard_normal(shape_hw)
    field = ndimage.gaussian_filter(noise, sigma, mode="wrap")
    # Sum of squared weights of a 2D sampled Gaussian kernel is 1 / (4 pi sigma^2).
    return np.asarray(field * np.sqrt(4.0 * np.pi * sigma**2))


def breathing_motion_model(
    shape_hw: tuple[int, int],
    spacing_mm: tuple[float, float],
    anchor_mm: tuple[float, float],
    *,
    diaphragm_y_mm: float,
    spine_x_mm: float,
    nonuniformity: float = 1.0,
    rng: np.random.Generator | None = None,
) -> BreathingMotionModel:
    """Build the spatial breathing pattern for one slice.

    Parameters
    ----------
    shape_hw, spacing_mm
        Frame grid: (H, W) pixels and ``(dx, dy)`` mm.
    anchor_mm
        ``(x, y)`` where the fields are normalised (the target's centre), mm.
    diaphragm_y_mm
        Height of the diaphragm dome (mm from the top). SI motion is largest just below it, smaller
        above (chest wall, apex) and slowly smaller far below.
    spine_x_mm
        AP position of the spine / posterior body wall (mm from the left edge): tissue posterior to
        it hardly moves, so the motion there falls off over about a centimetre (a smooth stand-in
        for the sliding interface between organs and the chest wall).
    nonuniformity
        0 gives a pure translation (every pixel moves like the anchor); 1 the full pattern, with a
        smooth random modulation of ±8 % (correlation length 40 mm) on top.
    rng
        Generator for the random modulation (fixed pattern per case).

    Returns
    -------
    BreathingMotionModel
    """
    h, w = shape_hw
    dx, dy = spacing_mm
    if not 0.0 <= nonuniformity <= 1.5:
        raise InputError(f"deformation nonuniformity must be in [0, 1.5], got {nonuniformity}")
    ax, ay = anchor_mm
    if not (0 <= ax <= (w - 1) * dx and 0 <= ay <= (h - 1) * dy):
        raise InputError(f"anchor {anchor_mm} mm lies outside the {w * dx:.0f} x {h * dy:.0f} mm frame")
    rng = rng if rng is not None else np.random.default_rng(0)
    yy, xx = np.meshgrid(np.arange(h) * dy, np.arange(w) * dx, indexing="ij")

    static_posterior = _sigmoid((xx - spine_x_mm) / 12.0)
    si = (0.6 + 0.4 * _sigmoid((yy - (diaphragm_y_mm - 25.0)) / 35.0)) * (
        1.0 - 0.25 * _sigmoid((yy - (diaphragm_y_mm + 120.0)) / 40.0)
    )
    si = si * (1.0 - 0.75 * static_posterior)
    # Anterior motion is largest for the anterior abdominal wall and the organs under the diaphragm.
    ap = (1.0 - 0.7 * _sigmoid((xx - spine_x_mm) / 25.0)) * (0.5 + 0.5 * _sigmoid((yy - diaphragm_y_mm) / 30.0))
    corr_px = 40.0 / float(np.sqrt(dx * dy))
    si = si * (1.0 + 0.08 * smooth_random_field((h, w), corr_px, rng))
    ap = ap * (1.0 + 0.08 * smooth_random_field((h, w), corr_px, rng))

    def normalised(weight: np.ndarray) -> np.ndarray:
        at_anchor = float(ndimage.map_coordinates(weight, [[ay / dy], [ax / dx]], order=1)[0])
        return np.asarray(1.0 + nonuniformity * (weight / at_anchor - 1.0))

    zeros = np.zeros((h, w))
    si_field = np.stack([zeros, normalised(si)], axis=-1)
    ap_field = np.stack([-normalised(ap), zeros], axis=-1)
    # Small-angle rotation about the anchor: (dx, dy) = theta * (-(y - ay), x - ax).
    rotation_field = np.stack([-(yy - ay), xx - ax], axis=-1)
    return BreathingMotionModel(
        si_field=si_field.astype(np.float32),
        ap_field=ap_field.astype(np.float32),
        rotation_field=rotation_field.astype(np.float32),
        spacing_mm=(float(dx), float(dy)),
        anchor_mm=(float(ax), float(ay)),
    )


def _sample_field(field_mm: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Bilinear samples of an (H, W, 2) field at fractional pixel positions (edge values outside)."""
    out = cv2.remap(
        np.ascontiguousarray(field_mm, dtype=np.float32),
        col.astype(np.float32),
        row.astype(np.float32),
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.asarray(out)


def invert_displacement(
    u_mm: np.ndarray, spacing_mm: tuple[float, float], *, iterations: int = 8
) -> np.ndarray:
    """Backward field ``v`` of a forward displacement ``u``: ``y + v(y)`` is where ``y`` came from.

    Solves ``v(y) = -u(y + v(y))`` by fixed-point iteration, which converges when the largest
    displacement gradient is below 1 (a smooth, invertible field); 8 iterations reach the ~0.02 mm
    floor set by OpenCV's bilinear sampling (positions rounded to 1/32 pixel) for breathing fields.
    Chen et al., Med Phys 35(1), 2008, "A simple fixed-point approach to invert a deformation field".

    Parameters
    ----------
    u_mm
        Forward displacement (H, W, 2), ``(dx, dy)`` mm.
    spacing_mm
        ``(dx, dy)`` pixel spacing, mm.
    iterations
        Fixed-point iterations.

    Returns
    -------
    numpy.ndarray
        Backward displacement (H, W, 2), mm, float32.
    """
    h, w = u_mm.shape[:2]
    dx, dy = spacing_mm
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    v = -np.asarray(u_mm, dtype=np.float32)
    for _ in range(iterations):
        v = -_sample_field(u_mm, cols + v[..., 0] / dx, rows + v[..., 1] / dy)
    return np.asarray(v, dtype=np.float32)


def jacobian_determinant(u_mm: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """Determinant of the Jacobian of ``x -> x + u(x)`` (H, W): > 0 everywhere means no folding."""
    dx, dy = spacing_mm
    dux_dy, dux_dx = np.gradient(u_mm[..., 0].astype(np.float64), dy, dx)
    duy_dy, duy_dx = np.gradient(u_mm[..., 1].astype(np.float64), dy, dx)
    return np.asarray((1.0 + dux_dx) * (1.0 + duy_dy) - dux_dy * duy_dx)


def warp_maps(
    v_mm: np.ndarray, spacing_mm: tuple[float, float], factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps that apply a backward field on a grid ``factor`` times finer.

    Pixel centres follow OpenCV's convention (fine pixel ``i`` sits at coarse ``(i + 0.5) / f -
    0.5``), the same one ``cv2.resize`` uses, so upsampling, warping and area-downsampling agree.
    """
    h, w = v_mm.shape[:2]
    dx, dy = spacing_mm
    fine = cv2.resize(np.ascontiguousarray(v_mm, dtype=np.float32), (w * factor, h * factor),
                      interpolation=cv2.INTER_LINEAR)
    rows, cols = np.meshgrid(
        np.arange(h * factor, dtype=np.float32), np.arange(w * factor, dtype=np.float32), indexing="ij"
    )
    map_x = cols + fine[..., 0] * (factor / dx)
    map_y = rows + fine[..., 1] * (factor / dy)
    return map_x.astype(np.float32), map_y.astype(np.float32)
