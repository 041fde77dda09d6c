"""A multi-time-point Lu-177 SPECT phantom with known time-integrated activity (TIA).

Organs are ellipsoids in an elliptic body (liver with a 50 mL tumour inside it, two kidneys, spleen,
the rest of the body). Each organ's activity follows a bi-exponential with uptake,
``A(t) = f A_adm (exp(-k_e t) - exp(-k_u t))`` with ``k_e = lambda_p + ln 2 / T_bio`` and
``k_u = k_e + ln 2 / T_uptake``, uniform over the organ; its TIA ``f A_adm (1/k_e - 1/k_u)`` and its
volume (analytic: the tumour's volume is taken out of the liver's) are the truth.

Each scan is what a quantitative SPECT reconstruction delivers, simplified to the image domain:

1. the patient moves: a rigid shift of ``shift_mm`` (4 mm) in a random direction, optionally a
   random rotation, relative to the first scan (scan 1 defines the VOIs);
2. the activity concentration is voxelised with 3 x 3 x 3 sub-samples per voxel (partial voxels);
3. blurred with an isotropic Gaussian of ``fwhm_mm`` (11 mm; Lu-177 SPECT with resolution
   recovery is 10-15 mm);
4. counted: Poisson noise with ``counts_per_mbq`` expected counts per MBq in a voxel, then scaled
   back to Bq/mL.

The label image (values in :data:`LABELS`) is drawn at scan 1's pose, voxel centres inside each
ellipsoid, as a reader would contour on scan 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from igikit.core.image import Image
from igikit.errors import InputError

#: Label value of each VOI in :attr:`SpectPhantom.labels`.
LABELS: dict[str, int] = {"liver": 1, "kidney_left": 2, "kidney_right": 3, "spleen": 4, "tumour": 5, "body": 6}

#: Lu-177 physical half-life (h), ICRP-107 (6.647 d); kept here so the phantom has no package dependency.
LU177_HALF_LIFE_H = 159.53


@dataclass(frozen=True)
class Organ:
    """One ellipsoidal compartment with bi-exponential kinetics.

    ``centre_mm`` is relative to the body centre, axes ``(x, y, z)`` (x to the patient's left,
    y posterior, z cranial); ``uptake_fraction`` is the coefficient ``f`` of the bi-exponential as a
    fraction of the administered activity (the peak is a little lower).
    """

    name: str
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    uptake_fraction: float
    biological_half_life_h: float
    uptake_half_life_h: float

    def rates_per_h(self, physical_half_life_h: float) -> tuple[float, float]:
        """(k_e, k_u) in 1/h; ``k_u`` is ``inf`` for instantaneous uptake."""
        ke = math.log(2.0) / physical_half_life_h + math.log(2.0) / self.biological_half_life_h
        ku = math.inf if self.uptake_half_life_h <= 0 else ke + math.log(2.0) / self.uptake_half_life_h
        return ke, ku

    def activity_mbq(self, t_h: float, administered_mbq: float, physical_half_life_h: float) -> float:
        """Activity in the whole organ at ``t_h`` hours after administration (MBq)."""
        ke, ku = self.rates_per_h(physical_half_life_h)
        rise = 0.0 if math.isinf(ku) else math.exp(-ku * t_h)
        return self.uptake_fraction * administered_mbq * (math.exp(-ke * t_h) - rise)

    def tia_mbq_h(self, administered_mbq: float, physical_half_life_h: float) -> float:
        """Time-integrated activity from administration to infinity (MBq h)."""
        ke, ku = self.rates_per_h(physical_half_life_h)
        return self.uptake_fraction * administered_mbq * (1.0 / ke - (0.0 if math.isinf(ku) else 1.0 / ku))

    @property
    def ellipsoid_ml(self) -> float:
        """Volume of the ellipsoid (mL), before any organ inside it is taken out."""
        a, b, c = self.semi_axes_mm
        return 4.0 / 3.0 * math.pi * a * b * c / 1000.0


#: The default adult phantom (volumes: liver 1.34 L, kidneys 157 and 141 mL, spleen 201 mL, tumour
#: 50 mL in the liver); kinetics in the range reported for Lu-177 DOTATATE/PSMA (kidney T_eff about
#: 44 h, tumour 89 h, fast renal clearance of the rest of the body).
DEFAULT_ORGANS: tuple[Organ, ...] = (
    Organ("body", (0.0, 0.0, 0.0), (165.0, 110.0, 130.0), 0.30, 12.0, 0.0),
    Organ("liver", (-60.0, 0.0, 45.0), (85.0, 65.0, 60.0), 0.06, 100.0, 1.5),
    Organ("kidney_left", (72.0, 50.0, -40.0), (30.0, 25.0, 50.0), 0.015, 60.0, 1.0),
    Organ("kidney_right", (-72.0, 50.0, -45.0), (30.0, 25.0, 45.0), 0.015, 60.0, 1.0),
    Organ("spleen", (85.0, 15.0, 50.0), (40.0, 28.0, 43.0), 0.01, 80.0, 1.5),
    Organ("tumour", (-55.0, -20.0, 40.0), (22.85, 22.85, 22.85), 0.02, 200.0, 3.0),
)


@dataclass(frozen=True)
class SpectPhantom:
    """Simulated SPECT scans (Bq/mL) with the truth behind them."""

    images: tuple[Image, ...]
    times_h: tuple[float, ...]
    labels: Image
    organs: tuple[Organ, ...]
    true_tia_mbq_h: dict[str, float]
    true_volume_ml: dict[str, float]
    shifts_mm: tuple[tuple[float, float, float], ...]
    rotations_deg: tuple[tuple[float, float, float], ...]
    administered_mbq: float
    fwhm_mm: float
    counts_per_mbq: float
    half_life_h: float


def _rotation(angles_rad: Sequence[float] | np.ndarray) -> np.ndarray:
    ax, ay, az = angles_rad
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _label_field(points: np.ndarray, organs: Sequence[Organ]) -> np.ndarray:
    """Index (1-based, 0 outside) of the last organ containing each point (later organs win)."""
    idx = np.zeros(points.shape[0], dtype=np.int8)
    for k, o in enumerate(organs, start=1):
        d = (points - np.asarray(o.centre_mm)) / np.asarray(o.semi_axes_mm)
        idx[np.einsum("ij,ij->i", d, d) <= 1.0] = k
    return idx


def _containment(organs: Sequence[Organ]) -> dict[int, list[int]]:
    """For each organ, the later organs that lie wholly inside it; refuses organs that straddle."""
    rng = np.random.default_rng(1)
    u = rng.normal(size=(4000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    inside_of: dict[int, list[int]] = {k: [] for k in range(len(organs))}
    for i, outer in enumerate(organs):
        for j in range(i + 1, len(organs)):
            inner = organs[j]
            surface = inner.centre_mm + u * inner.semi_axes_mm
            d = (surface - np.asarray(outer.centre_mm)) / np.asarray(outer.semi_axes_mm)
            inside = np.einsum("ij,ij->i", d, d) <= 1.0
            if inside.all():
                inside_of[i].append(j)
            elif inside.any():
                raise InputError(f"phantom organ {inner.name} straddles the edge of {outer.name}")
    return inside_of


def _true_volumes(organs: Sequence[Organ]) -> dict[str, float]:
    """Analytic volumes: each ellipsoid less what later organs inside it take (later organs win)."""
    inside_of = _containment(organs)
    vol = [0.0] * len(organs)
    for k in reversed(range(len(organs))):
        vol[k] = organs[k].ellipsoid_ml - sum(vol[j] for j in inside_of[k])
    return {o.name: v for o, v in zip(organs, vol, strict=True)}


def _occupancy(moved: np.ndarray, offsets: np.ndarray, organ: Organ, rot: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Fraction of each voxel inside the ellipsoid of the moved patient, by sub-sampling its edge voxels.

    ``moved`` holds the voxel centres in patient coordinates, ``R^T (x - t)`` for scanner point ``x``.
    Voxels whose centre lies deeper than half a voxel diagonal inside (outside) the surface are
    wholly in (out); only the shell between is sub-sampled.
    """
    c, s = np.asarray(organ.centre_mm), np.asarray(organ.semi_axes_mm)
    q = (moved - c) / s
    rho = np.sqrt(np.einsum("ij,ij->i", q, q))
    margin = spacing_mm * math.sqrt(3.0) / 2.0 / float(s.min())
    occ = (rho <= 1.0 - margin).astype(np.float32)
    shell = np.flatnonzero(np.abs(rho - 1.0) < margin)
    if shell.size:
        d = (moved[shell][:, None, :] + (offsets @ rot)[None, :, :] - c) / s
        occ[shell] = np.mean(np.einsum("ijk,ijk->ij", d, d) <= 1.0, axis=1)
    return occ


def lu177_spect_phantom(
    *,
    times_h: Sequence[float] = (4.0, 24.0, 96.0, 168.0),
    shape_zyx: tuple[int, int, int] = (64, 56, 80),
    spacing_mm: float = 4.8,
    fwhm_mm: float = 11.0,
    counts_per_mbq: float = 2000.0,
    shift_mm: float = 4.0,
    rotation_deg: float = 0.0,
    administered_mbq: float = 7400.0,
    organs: Sequence[Organ] = DEFAULT_ORGANS,
    half_life_h: float = LU177_HALF_LIFE_H,
    seed: int = 0,
) -> SpectPhantom:
    """Simulate Lu-177 SPECT scans at ``times_h`` with blur, Poisson noise and patient shifts.

    Parameters
    ----------
    times_h
        Scan times after administration (h); scan 1 is the reference pose.
    shape_zyx, spacing_mm
        Grid (NumPy order) and isotropic voxel size (mm); 4.8 mm is a common Lu-177 SPECT matrix
        (128 x 128 on a 614 mm detector), 4.42 mm the Lanconelli kernel grid.
    fwhm_mm
        System resolution (FWHM of the Gaussian blur, mm).
    counts_per_mbq
        Expected counts per MBq in a voxel and scan (Poisson noise); ``inf`` for no noise.
        With the default, a liver voxel at 24 h holds about 60 counts (13 % noise).
    shift_mm, rotation_deg
        Size of the random rigid motion of scans 2.. relative to scan 1: a translation of exactly
        ``shift_mm`` in a random direction and rotations up to ``rotation_deg`` about each axis.
    administered_mbq
        Administered activity (MBq).
    organs
        The compartments; the first one is the body and contains the others; later organs are
        painted over earlier ones.
    seed
        Seed of the random motion and noise.

    Examples
    --------
    >>> p = lu177_spect_phantom(times_h=(4.0, 24.0), shape_zyx=(40, 40, 60), counts_per_mbq=math.inf)
    >>> round(p.true_volume_ml["tumour"])
    50
    """
    from scipy.ndimage import gaussian_filter

    if len(times_h) == 0 or any(not math.isfinite(t) or t < 0 for t in times_h):
        raise InputError(f"scan times must be non-negative hours, got {list(times_h)}")
    if not (fwhm_mm > 0 and spacing_mm > 0 and counts_per_mbq > 0 and administered_mbq > 0):
        raise InputError("fwhm_mm, spacing_mm, counts_per_mbq and administered_mbq must be positive")
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape_zyx
    origin = tuple(-(n - 1) / 2.0 * spacing_mm for n in (nx, ny, nz))
    vol_ml = spacing_mm**3 / 1000.0
    true_volume = _true_volumes(organs)
    inside_of = _containment(organs)
    sub = (np.arange(3) - 1.0) / 3.0 * spacing_mm
    offsets = np.stack(np.meshgrid(sub, sub, sub, indexing="ij"), -1).reshape(-1, 3)
    zz, yy, xx = np.meshgrid(*[np.arange(n) * spacing_mm + o for n, o in zip((nz, ny, nx), origin[::-1],
                                                                              strict=True)], indexing="ij")
    centres = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], -1)  # (N, 3) x, y, z in mm

    labels_idx = _label_field(centres, organs).reshape(shape_zyx)
    lab = np.zeros(shape_zyx, np.uint8)
    for k, o in enumerate(organs, start=1):
        if o.name in LABELS:
            lab[labels_idx == k] = LABELS[o.name]
    sigma_vox = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / spacing_mm

    images, shifts, rotations = [], [], []
    for i, t in enumerate(times_h):
        if i == 0:
            shift, angles = np.zeros(3), np.zeros(3)
        else:
            u = rng.normal(size=3)
            shift = u / np.linalg.norm(u) * shift_mm
            angles = rng.uniform(-1.0, 1.0, 3) * math.radians(rotation_deg)
        rot = _rotation(angles)
        # later organs win: an organ's own share is its occupancy less that of the organs inside it
        moved = (centres - shift) @ rot
        occ = [_occupancy(moved, offsets, o, rot, spacing_mm) for o in organs]
        share: list[np.ndarray] = [np.empty(0)] * len(organs)
        for k in reversed(range(len(organs))):
            share[k] = occ[k] - sum((share[j] for j in inside_of[k]), np.zeros_like(occ[k]))
        conc = np.zeros(centres.shape[0])  # MBq/mL
        for k, o in enumerate(organs):
            conc += share[k] * o.activity_mbq(t, administered_mbq, half_life_h) / true_volume[o.name]
        blurred = gaussian_filter(conc.reshape(shape_zyx), sigma_vox, mode="constant")
        mbq_per_voxel = np.maximum(blurred, 0.0) * vol_ml
        if math.isfinite(counts_per_mbq):
            mbq_per_voxel = rng.poisson(mbq_per_voxel * counts_per_mbq) / counts_per_mbq
        bq_ml = (mbq_per_voxel / vol_ml * 1e6).astype(np.float32)
        images.append(Image(bq_ml, spacing_mm=(spacing_mm,) * 3, origin_mm=origin, modality="NM",
                            units="Bq/mL", meta={"time_h": float(t)}))
        shifts.append(tuple(float(v) for v in shift))
        rotations.append(tuple(float(math.degrees(v)) for v in angles))
    labels = Image(lab, spacing_mm=(spacing_mm,) * 3, origin_mm=origin)
    return SpectPhantom(
        images=tuple(images),
        times_h=tuple(float(t) for t in times_h),
        labels=labels,
        organs=tuple(organs),
        true_tia_mbq_h={o.name: o.tia_mbq_h(administered_mbq, half_life_h) for o in organs},
        true_volume_ml=true_volume,
        shifts_mm=tuple(shifts),  # type: ignore[arg-type]
        rotations_deg=tuple(rotations),  # type: ignore[arg-type]
        administered_mbq=float(administered_mbq),
        fwhm_mm=float(fwhm_mm),
        counts_per_mbq=float(counts_per_mbq),
        half_life_h=float(half_life_h),
    )
