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

#: Label value of each VOI in :attr:`SpectPhantom.labels` and :attr:`MicrosphereStudy.labels` (both lungs
#: share one label: a lung shunt goes to both).
LABELS: dict[str, int] = {"liver": 1, "kidney_left": 2, "kidney_right": 3, "spleen": 4, "tumour": 5, "body": 6,
                          "lung_left": 7, "lung_right": 7}

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


def _random_motion(rng: np.random.Generator, shift_mm: float, rotation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """A translation of exactly ``shift_mm`` in a random direction and rotations up to ``rotation_deg``."""
    u = rng.normal(size=3)
    return u / np.linalg.norm(u) * shift_mm, rng.uniform(-1.0, 1.0, 3) * math.radians(rotation_deg)


@dataclass(frozen=True)
class _Grid:
    """A voxel grid with ellipsoidal organs on it, and what every scan of them needs."""

    shape_zyx: tuple[int, int, int]
    spacing_mm: float
    origin: tuple[float, float, float]
    organs: tuple[Organ, ...]
    centres: np.ndarray  # (N, 3) voxel centres x, y, z in mm
    offsets: np.ndarray  # (27, 3) sub-sample offsets in a voxel
    inside_of: dict[int, list[int]]
    true_volume: dict[str, float]

    @classmethod
    def make(cls, shape_zyx: tuple[int, int, int], spacing_mm: float, organs: Sequence[Organ]) -> _Grid:
        nz, ny, nx = shape_zyx
        origin = tuple(-(n - 1) / 2.0 * spacing_mm for n in (nx, ny, nz))
        sub = (np.arange(3) - 1.0) / 3.0 * spacing_mm
        offsets = np.stack(np.meshgrid(sub, sub, sub, indexing="ij"), -1).reshape(-1, 3)
        axes = [np.arange(n) * spacing_mm + o for n, o in zip((nz, ny, nx), origin[::-1], strict=True)]
        zz, yy, xx = np.meshgrid(*axes, indexing="ij")
        centres = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], -1)
        return cls((nz, ny, nx), float(spacing_mm), origin, tuple(organs), centres, offsets,  # type: ignore[arg-type]
                   _containment(organs), _true_volumes(organs))

    def labels(self) -> np.ndarray:
        """Label image (values of :data:`LABELS`) at the reference pose, voxel centres inside each organ."""
        idx = _label_field(self.centres, self.organs).reshape(self.shape_zyx)
        lab = np.zeros(self.shape_zyx, np.uint8)
        for k, o in enumerate(self.organs, start=1):
            if o.name in LABELS:
                lab[idx == k] = LABELS[o.name]
        return lab

    def shares(self, shift: np.ndarray, angles: np.ndarray) -> list[np.ndarray]:
        """Per organ, the fraction of each voxel it fills in the moved patient (later organs win)."""
        rot = _rotation(angles)
        moved = (self.centres - shift) @ rot
        occ = [_occupancy(moved, self.offsets, o, rot, self.spacing_mm) for o in self.organs]
        share: list[np.ndarray] = [np.empty(0)] * len(self.organs)
        for k in reversed(range(len(self.organs))):
            share[k] = occ[k] - sum((share[j] for j in self.inside_of[k]), np.zeros_like(occ[k]))
        return share

    def scan(
        self,
        conc_mbq_ml: Sequence[float],
        shift: np.ndarray,
        angles: np.ndarray,
        *,
        fwhm_mm: float,
        counts_per_mbq: float,
        rng: np.random.Generator,
        modulation: Sequence[np.ndarray | None] | None = None,
    ) -> np.ndarray:
        """One scan (Bq/mL, float32): organ concentrations (MBq/mL) voxelised, blurred, counted.

        ``modulation`` (per organ, a field over the voxels with mean 1 over the organ, or ``None``)
        makes the uptake within an organ non-uniform.
        """
        from scipy.ndimage import gaussian_filter

        share = self.shares(shift, angles)
        conc = np.zeros(self.centres.shape[0])
        for k, c in enumerate(conc_mbq_ml):
            field = None if modulation is None else modulation[k]
            conc += share[k] * c * (1.0 if field is None else field.ravel())
        sigma_vox = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / self.spacing_mm
        blurred = gaussian_filter(conc.reshape(self.shape_zyx), sigma_vox, mode="constant")
        vol_ml = self.spacing_mm**3 / 1000.0
        mbq_per_voxel = np.maximum(blurred, 0.0) * vol_ml
        if math.isfinite(counts_per_mbq):
            mbq_per_voxel = rng.poisson(mbq_per_voxel * counts_per_mbq) / counts_per_mbq
        out: np.ndarray = (mbq_per_voxel / vol_ml * 1e6).astype(np.float32)
        return out


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
    if len(times_h) == 0 or any(not math.isfinite(t) or t < 0 for t in times_h):
        raise InputError(f"scan times must be non-negative hours, got {list(times_h)}")
    if not (fwhm_mm > 0 and spacing_mm > 0 and counts_per_mbq > 0 and administered_mbq > 0):
        raise InputError("fwhm_mm, spacing_mm, counts_per_mbq and administered_mbq must be positive")
    rng = np.random.default_rng(seed)
    grid = _Grid.make(shape_zyx, spacing_mm, organs)
    images, shifts, rotations = [], [], []
    for i, t in enumerate(times_h):
        shift, angles = (np.zeros(3), np.zeros(3)) if i == 0 else _random_motion(rng, shift_mm, rotation_deg)
        conc = [o.activity_mbq(t, administered_mbq, half_life_h) / grid.true_volume[o.name] for o in organs]
        bq_ml = grid.scan(conc, shift, angles, fwhm_mm=fwhm_mm, counts_per_mbq=counts_per_mbq, rng=rng)
        images.append(Image(bq_ml, spacing_mm=(spacing_mm,) * 3, origin_mm=grid.origin, modality="NM",
                            units="Bq/mL", meta={"time_h": float(t)}))
        shifts.append(tuple(float(v) for v in shift))
        rotations.append(tuple(float(math.degrees(v)) for v in angles))
    true_volume, origin, lab = grid.true_volume, grid.origin, grid.labels()
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


# ------------------------------------------------------------------ radioembolisation (microspheres)
#: Geometry of the radioembolisation phantom: a liver (1.39 L) with a 50 mL tumour, two lungs above
#: it (0.42 L each), in a body with no uptake (microspheres stay where the blood takes them).
#: Kinetics are unused: microspheres are permanent implants.
MICROSPHERE_ORGANS: tuple[Organ, ...] = (
    Organ("body", (0.0, 0.0, 0.0), (165.0, 110.0, 170.0), 0.0, math.inf, 0.0),
    Organ("liver", (-50.0, 0.0, -40.0), (85.0, 65.0, 60.0), 0.0, math.inf, 0.0),
    Organ("lung_left", (75.0, 15.0, 70.0), (45.0, 45.0, 50.0), 0.0, math.inf, 0.0),
    Organ("lung_right", (-75.0, 15.0, 75.0), (45.0, 45.0, 50.0), 0.0, math.inf, 0.0),
    Organ("tumour", (-45.0, -20.0, -30.0), (22.85, 22.85, 22.85), 0.0, math.inf, 0.0),
)

#: Organs whose microsphere uptake is non-uniform (the perfused liver).
_PERFUSED = ("liver", "tumour")
_LUNGS = ("lung_left", "lung_right")


@dataclass(frozen=True)
class MicrosphereStudy:
    """A scout (Ho-166 or Tc-99m MAA) and a post-treatment SPECT of one liver, with the truth behind them.

    Both images hold activity concentration (Bq/mL) at administration (decay-corrected), the scout
    at the reference pose (the VOIs in ``labels`` are drawn on it), the post-treatment scan after a
    rigid patient shift of ``treatment_shift_mm``.

    Attributes
    ----------
    scout, treatment
        The two SPECT images (Bq/mL).
    labels
        VOIs at the scout's pose (:data:`LABELS`: liver 1, tumour 5, body 6, lungs 7).
    true_volume_ml
        Analytic organ volumes (the tumour's taken out of the liver's).
    scout_mbq, treatment_mbq
        Administered activities (MBq).
    tn_scout, tn_treatment, lsf_scout, lsf_treatment
        Tumour-to-normal-liver concentration ratio and lung shunt fraction of each administration.
    true_scout_mbq, true_treatment_mbq
        Activity per voxel (MBq) before blur and noise, both at the reference pose: what a perfect
        camera would see (the post-treatment truth moved back into the scout's frame).
    treatment_shift_mm
        Translation of the patient at the post-treatment scan (x, y, z), mm.
    """

    scout: Image
    treatment: Image
    labels: Image
    organs: tuple[Organ, ...]
    true_volume_ml: dict[str, float]
    scout_mbq: float
    treatment_mbq: float
    tn_scout: float
    tn_treatment: float
    lsf_scout: float
    lsf_treatment: float
    true_scout_mbq: np.ndarray
    true_treatment_mbq: np.ndarray
    treatment_shift_mm: tuple[float, float, float]
    fwhm_mm: float
    counts_per_mbq: float

    def true_fraction(self, which: str, organ: str) -> float:
        """Fraction of the ``"scout"`` or ``"treatment"`` activity that ``organ`` holds (``"lungs"``: both)."""
        tn, lsf = (self.tn_scout, self.lsf_scout) if which == "scout" else (self.tn_treatment, self.lsf_treatment)
        return _microsphere_fraction(organ, tn, lsf, self.true_volume_ml)


def _microsphere_fraction(organ: str, tn: float, lsf: float, v: dict[str, float]) -> float:
    """Fraction of the administered microspheres in ``organ`` (volumes ``v`` in mL)."""
    if organ == "lungs":
        return lsf
    if organ in _LUNGS:
        return lsf * v[organ] / (v["lung_left"] + v["lung_right"])
    liver = v["liver"] + tn * v["tumour"]
    if organ == "liver":
        return (1.0 - lsf) * v["liver"] / liver
    if organ == "tumour":
        return (1.0 - lsf) * tn * v["tumour"] / liver
    return 0.0


def _uptake_field(rng: np.random.Generator, shape: tuple[int, int, int], spacing_mm: float, cv: float,
                  correlation_mm: float) -> np.ndarray:
    """A smooth log-normal field with mean 1 and coefficient of variation ``cv`` (reference grid)."""
    from scipy.ndimage import gaussian_filter

    g = gaussian_filter(rng.standard_normal(shape), correlation_mm / spacing_mm)
    g /= g.std() or 1.0
    s = math.sqrt(math.log(1.0 + cv * cv))
    out: np.ndarray = np.exp(s * g - 0.5 * s * s)
    return out


def _moved_field(field: np.ndarray, grid: _Grid, shift: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """``field`` (reference grid, patient frame) sampled at each voxel of a scan of the moved patient."""
    from scipy.ndimage import map_coordinates

    moved = (grid.centres - shift) @ _rotation(angles)  # patient coordinates of each scan voxel
    index = (moved[:, ::-1] - np.asarray(grid.origin[::-1])) / grid.spacing_mm  # (z, y, x) fractional indices
    out: np.ndarray = map_coordinates(field, index.T, order=1, mode="nearest")
    return out


def microsphere_study(
    *,
    scout_mbq: float = 250.0,
    treatment_mbq: float = 5000.0,
    tn_scout: float = 4.0,
    tn_treatment: float = 3.6,
    lsf_scout: float = 0.06,
    lsf_treatment: float = 0.05,
    heterogeneity_cv: float = 0.25,
    scout_treatment_correlation: float = 0.8,
    correlation_mm: float = 8.0,
    shape_zyx: tuple[int, int, int] = (80, 56, 80),
    spacing_mm: float = 4.42,
    fwhm_mm: float = 15.0,
    counts_per_mbq: float = 2000.0,
    treatment_shift_mm: float = 4.0,
    organs: Sequence[Organ] = MICROSPHERE_ORGANS,
    seed: int = 0,
) -> MicrosphereStudy:
    """Simulate a radioembolisation scout and the post-treatment SPECT of the same liver.

    The scout (a Ho-166 scout dose of about 250 MBq, or Tc-99m MAA) sends ``lsf_scout`` of its
    activity to the lungs (uniformly) and the rest to the liver, tumour and normal liver in the
    concentration ratio ``tn_scout``. The treatment follows the scout imperfectly, as in the clinic:
    its own T/N ratio and lung shunt, and a within-liver uptake pattern (a smooth log-normal field
    with coefficient of variation ``heterogeneity_cv`` and correlation length ``correlation_mm``)
    that correlates with the scout's by ``scout_treatment_correlation``. Each scan is voxelised,
    blurred (``fwhm_mm``, 15 mm: Ho-166 SPECT resolution is poorer than Tc-99m's) and counted
    (Poisson, ``counts_per_mbq`` per MBq in a voxel, so the 250 MBq scout is far noisier than a
    5 GBq treatment) as in :func:`lu177_spect_phantom`.

    Examples
    --------
    >>> s = microsphere_study(shape_zyx=(48, 40, 48), spacing_mm=8.0)
    >>> round(s.true_fraction("scout", "tumour"), 3), round(s.true_volume_ml["tumour"])
    (0.122, 50)
    """
    if not (scout_mbq > 0 and treatment_mbq > 0 and tn_scout > 0 and tn_treatment > 0):
        raise InputError("activities and T/N ratios of the microsphere phantom must be positive")
    if not (0 <= lsf_scout < 1 and 0 <= lsf_treatment < 1 and 0 <= scout_treatment_correlation <= 1):
        raise InputError("lung shunt fractions must lie in [0, 1) and the correlation in [0, 1]")
    names = [o.name for o in organs]
    if any(n not in names for n in (*_PERFUSED, *_LUNGS)):
        raise InputError(f"the microsphere phantom needs organs {', '.join((*_PERFUSED, *_LUNGS))}")
    rng = np.random.default_rng(seed)
    grid = _Grid.make(shape_zyx, spacing_mm, organs)
    ref_share = grid.shares(np.zeros(3), np.zeros(3))
    a = _uptake_field(rng, grid.shape_zyx, spacing_mm, heterogeneity_cv, correlation_mm)
    b = _uptake_field(rng, grid.shape_zyx, spacing_mm, heterogeneity_cv, correlation_mm)
    r = scout_treatment_correlation
    # mix in the log domain so that both fields stay log-normal with the same spread
    fields = {"scout": a, "treatment": np.exp(r * np.log(a) + math.sqrt(1.0 - r * r) * np.log(b))}
    vol_ml = spacing_mm**3 / 1000.0
    shift = np.zeros(3)
    images: dict[str, Image] = {}
    truth: dict[str, np.ndarray] = {}
    setting = {"scout": (scout_mbq, tn_scout, lsf_scout), "treatment": (treatment_mbq, tn_treatment, lsf_treatment)}
    for which, (activity, tn, lsf) in setting.items():
        field = fields[which]
        modulation: list[np.ndarray | None] = []
        conc: list[float] = []
        for k, o in enumerate(organs):
            conc.append(activity * _microsphere_fraction(o.name, tn, lsf, grid.true_volume) / grid.true_volume[o.name])
            if o.name in _PERFUSED:
                w = ref_share[k]
                modulation.append(field / (float(np.sum(w * field.ravel())) / float(np.sum(w))))
            else:
                modulation.append(None)
        truth[which] = sum(
            (ref_share[k] * c * (1.0 if m is None else m.ravel()) for k, (c, m) in enumerate(zip(conc, modulation,
                                                                                                 strict=True))),
            np.zeros(grid.centres.shape[0]),
        ).reshape(grid.shape_zyx) * vol_ml
        if which == "treatment":
            shift, _ = _random_motion(rng, treatment_shift_mm, 0.0)
            modulation = [None if m is None else _moved_field(m, grid, shift, np.zeros(3)) for m in modulation]
        bq_ml = grid.scan(conc, shift, np.zeros(3), fwhm_mm=fwhm_mm, counts_per_mbq=counts_per_mbq, rng=rng,
                          modulation=modulation)
        images[which] = Image(bq_ml, spacing_mm=(spacing_mm,) * 3, origin_mm=grid.origin, modality="NM",
                              units="Bq/mL", meta={"administered_mbq": float(activity)})
    return MicrosphereStudy(
        scout=images["scout"],
        treatment=images["treatment"],
        labels=Image(grid.labels(), spacing_mm=(spacing_mm,) * 3, origin_mm=grid.origin),
        organs=tuple(organs),
        true_volume_ml=grid.true_volume,
        scout_mbq=float(scout_mbq),
        treatment_mbq=float(treatment_mbq),
        tn_scout=float(tn_scout),
        tn_treatment=float(tn_treatment),
        lsf_scout=float(lsf_scout),
        lsf_treatment=float(lsf_treatment),
        true_scout_mbq=truth["scout"],
        true_treatment_mbq=truth["treatment"],
        treatment_shift_mm=tuple(float(v) for v in shift),  # type: ignore[arg-type]
        fwhm_mm=float(fwhm_mm),
        counts_per_mbq=float(counts_per_mbq),
    )
