"""From quantitative activity images to an absorbed-dose map and per-VOI statistics.

This composes the algorithms of :mod:`.dose`, :mod:`.tac` and :mod:`.nuclides` for images that hold
activity concentration (Bq/mL) on one grid:

* one image without a time: a permanent implant imaged at administration (physical decay only);
* one image at ``t`` h: physical decay only from ``t`` on, decayed back to administration;
* several images at known times: per voxel, trapezoids with a physical-decay tail give the spatial
  distribution of the TIA; per VOI, a fitted curve (AICc choice, :func:`.tac.fit_time_activity`)
  gives the VOI's TIA, and the VOI's voxels are rescaled so that they sum to it.

Several time points are registered rigidly into the earliest one's frame and resampled onto its
grid first (:mod:`.registration`), unless ``register=False`` (pre-registered data, which must then
share the earliest image's grid). Not done here: reading decay-correction tags beyond what
:func:`igikit.io.image.read_image` applies.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from igikit.core.image import Image
from igikit.errors import GeometryError, InputError
from igikit.workflows.theranostics.dose import (
    SOFT_TISSUE_G_ML,
    kernel_dose,
    local_deposition_dose,
    permanent_implant_tia,
    voxel_volume_ml,
)
from igikit.workflows.theranostics.nuclides import nuclide
from igikit.workflows.theranostics.registration import RigidRegistration, register_time_points
from igikit.workflows.theranostics.tac import TacFit, fit_time_activity, trapezoid_tia

log = logging.getLogger(__name__)

#: Activity-concentration units igikit accepts, with their factor to Bq/mL.
ACTIVITY_UNITS: dict[str, float] = {
    "bq/ml": 1.0, "bqml": 1.0, "bq/cc": 1.0, "kbq/ml": 1e3, "mbq/ml": 1e6, "bq/l": 1e-3,
}
METHODS = ("kernel", "local")


@dataclass(frozen=True)
class VoiDose:
    """Dose statistics of one VOI (label)."""

    label: int
    volume_ml: float
    tia_mbq_h: float
    tia_se_mbq_h: float
    mean_gy: float
    d2_gy: float
    d50_gy: float
    d98_gy: float
    min_gy: float
    max_gy: float
    fit: TacFit | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the contract's keys."""

        def clean(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        out: dict[str, Any] = {
            k: clean(getattr(self, k))
            for k in ("tia_mbq_h", "tia_se_mbq_h", "mean_gy", "d2_gy", "d50_gy", "d98_gy", "min_gy", "max_gy",
                      "volume_ml")
        }
        out["fit"] = self.fit.to_dict() if self.fit is not None else {"model": "physical"}
        return out


@dataclass(frozen=True)
class DoseResult:
    """An absorbed-dose map (Gy) on the activity grid and the statistics of each VOI.

    Attributes
    ----------
    dose
        Absorbed dose (Gy) on the grid of the earliest image.
    vois
        Statistics per VOI label.
    notes
        What was assumed or corrected, one sentence each.
    times_h
        Times of the images, sorted (``None`` for a permanent implant imaged at administration).
    activity
        The earliest image in Bq/mL (the reference of the registration and of the dose grid).
    voi_activity_mbq
        Per VOI label, its activity (MBq) at each time point, after partial-volume correction where
        requested: the points the time-activity fit saw.
    registrations
        Per time point (sorted), its rigid registration to the earliest (``None`` for the earliest
        and when registration was off).
    """

    dose: Image
    vois: dict[int, VoiDose] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    times_h: tuple[float | None, ...] = ()
    activity: Image | None = None
    voi_activity_mbq: dict[int, tuple[float, ...]] = field(default_factory=dict)
    registrations: tuple[RigidRegistration | None, ...] = ()


def activity_concentration_bq_ml(image: Image, what: str = "image") -> np.ndarray:
    """The image's values in Bq/mL, after checking that they are activity concentrations.

    Images whose units are recorded must hold an activity concentration (``Bq/mL``, ``kBq/mL``...);
    CT, MR and dose images are refused. Images without recorded units (plain NIfTI) are taken as
    Bq/mL, with a note in the log (-v). Negative or non-finite values are refused.
    """
    if image.is_series:
        raise InputError(f"{what} is a time series; give one file per time point with @HOURS")
    if image.dim != 3:
        raise InputError(f"{what} is {image.dim}D; dosimetry needs a 3D activity image")
    if image.modality in ("CT", "MR", "RTDOSE", "US"):
        raise InputError(f"{what} is a {image.modality} image, not activity concentration (Bq/mL)")
    factor = 1.0
    if image.units:
        key = image.units.strip().lower().replace(" ", "")
        if key not in ACTIVITY_UNITS:
            raise InputError(f"{what} holds {image.units!r}, not activity concentration (Bq/mL)")
        factor = ACTIVITY_UNITS[key]
    else:
        log.info("%s records no units; taking its values as activity concentration in Bq/mL", what)
    arr = np.asarray(image.array, dtype=np.float64) * factor
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or infinite activity")
    if np.any(arr < 0):
        raise InputError(f"{what} contains negative activity (min {arr.min():.4g} Bq/mL)")
    return arr


def _check_labels(labels: Image, reference: Image) -> np.ndarray:
    reference.require_same_grid(labels, "VOI label image")
    lab = np.asarray(labels.array)
    if lab.dtype.kind == "f":
        if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise InputError("VOI label image must hold whole-number labels")
        lab = lab.astype(np.int64)
    if np.any(lab < 0):
        raise InputError("VOI label image holds negative labels")
    if not np.any(lab > 0):
        raise InputError("VOI label image has no voxel inside any VOI (all labels are 0)")
    return lab.astype(np.int64)


@dataclass(frozen=True)
class GtmMatrix:
    """The geometric transfer matrix of a label image at one resolution (:func:`gtm_matrix`).

    ``ids`` are the VOI labels, ``weights[i, j]`` the mean over region ``i`` of region ``j``'s
    blurred indicator, regions being the VOIs in ``ids`` order and then the rest of the image
    (``background``: whether that rest has any voxel).
    """

    ids: tuple[int, ...]
    weights: np.ndarray
    background: bool


def _blurred_ones(shape: tuple[int, ...], sigma_vox: Sequence[float]) -> np.ndarray:
    """``gaussian_filter(ones(shape), sigma, mode="constant")``, by its separability (three 1D filters)."""
    from scipy.ndimage import gaussian_filter1d

    out = np.ones((1, 1, 1))
    for axis, (n, sg) in enumerate(zip(shape, sigma_vox, strict=True)):
        line = gaussian_filter1d(np.ones(n), sg, mode="constant")
        out = out * line.reshape([-1 if a == axis else 1 for a in range(3)])
    return out


def gtm_matrix(labels: np.ndarray, spacing_mm: Sequence[float], fwhm_mm: float) -> GtmMatrix:
    """Geometric transfer matrix of the VOIs of ``labels`` for a Gaussian PSF of ``fwhm_mm``.

    Each VOI's indicator is blurred inside its bounding box padded by the filter's reach (4 sigma,
    SciPy's truncation), which gives the same numbers as blurring the whole image; the rest of the
    image's blurred indicator is the blurred image of ones (separable) less the VOIs'.
    """
    from scipy.ndimage import gaussian_filter

    if not math.isfinite(fwhm_mm) or fwhm_mm <= 0:
        raise InputError(f"--resolution-mm must be a positive FWHM in mm, got {fwhm_mm}")
    lab = np.asarray(labels)
    sigma_vox = [fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / s for s in reversed(tuple(spacing_mm))]
    reach = [int(4.0 * sg + 0.5) + 1 for sg in sigma_vox]
    counts = np.bincount(lab.ravel())
    ids = tuple(int(v) for v in np.flatnonzero(counts) if v > 0)
    index = {v: k for k, v in enumerate(ids)}
    n_bg = int(counts[0]) if counts.size else 0
    n = len(ids) + (1 if n_bg else 0)
    w = np.zeros((n, n))
    rest = _blurred_ones(lab.shape, sigma_vox)  # becomes the background's blurred indicator
    region_index = np.zeros(counts.size, dtype=np.int64)
    for v, k in index.items():
        region_index[v] = k
    for v in ids:
        where = np.argwhere(lab == v)
        lo = np.maximum(where.min(axis=0) - reach, 0)
        hi = np.minimum(where.max(axis=0) + np.asarray(reach) + 1, lab.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        sub = lab[box]
        blurred = gaussian_filter((sub == v).astype(np.float64), sigma_vox, mode="constant")
        # the box edge is either the image edge or beyond the filter's reach, so this is exact
        sums = np.bincount(sub.ravel(), weights=blurred.ravel(), minlength=counts.size)
        col = index[v]
        for u in ids:
            w[index[u], col] = sums[u] / counts[u]
        if n_bg:
            w[-1, col] = sums[0] / n_bg
        rest[box] -= blurred
    if n_bg:
        sums = np.bincount(lab.ravel(), weights=rest.ravel(), minlength=counts.size)
        for u in ids:
            w[index[u], -1] = sums[u] / counts[u]
        w[-1, -1] = sums[0] / n_bg
    return GtmMatrix(ids, w, bool(n_bg))


def gtm_correct(
    activity_bq: np.ndarray,
    labels: np.ndarray,
    spacing_mm: Sequence[float],
    fwhm_mm: float,
    *,
    matrix: GtmMatrix | None = None,
) -> dict[int, float]:
    """Partial-volume-corrected total activity (Bq) per VOI: geometric transfer matrix.

    Rousset, Ma & Evans, J Nucl Med 39 (1998) 904: each region (the VOIs and the rest of the image)
    is blurred with the system's Gaussian point-spread function (FWHM in mm); ``W[i, j]`` is the
    mean in region ``i`` of region ``j``'s blurred indicator, and the true region means solve
    ``W t = observed``. Assumes uniform activity within each region. ``matrix`` (from
    :func:`gtm_matrix` on the same labels, spacing and FWHM) saves recomputing ``W`` for every time
    point.
    """
    lab = np.asarray(labels)
    gtm = matrix if matrix is not None else gtm_matrix(lab, spacing_mm, fwhm_mm)
    counts = np.bincount(lab.ravel())
    sums = np.bincount(lab.ravel(), weights=np.asarray(activity_bq, dtype=np.float64).ravel(), minlength=counts.size)
    observed = [sums[i] / counts[i] for i in gtm.ids] + ([sums[0] / counts[0]] if gtm.background else [])
    true_means = np.linalg.lstsq(gtm.weights, np.asarray(observed), rcond=None)[0]
    return {i: float(max(true_means[k], 0.0) * counts[i]) for k, i in enumerate(gtm.ids)}


def compute_dose(
    images: Sequence[Image],
    times_h: Sequence[float | None],
    nuclide_name: str,
    *,
    method: str = "kernel",
    density_g_ml: float | np.ndarray = SOFT_TISSUE_G_ML,
    labels: Image | None = None,
    resolution_mm: float | None = None,
    register: bool = True,
    names: Sequence[str] | None = None,
) -> DoseResult:
    """Absorbed dose (Gy) from activity-concentration images at known times after administration.

    Parameters
    ----------
    images
        3D images in Bq/mL (see :func:`activity_concentration_bq_ml`). The earliest one gives the
        grid of the dose and of the VOI labels.
    times_h
        Hours after administration of each image; ``None`` only for a single image (permanent
        implant imaged at administration).
    nuclide_name
        ``"Y-90"``, ``"Ho-166"``, ``"Lu-177"``, ``"I-131"``...
    method
        ``"kernel"`` (dose-voxel-kernel convolution) or ``"local"`` (local energy deposition).
    density_g_ml
        A number or a map on the image grid (g/mL).
    labels
        Optional VOI label image on the same grid; statistics per label value > 0.
    resolution_mm
        System FWHM (mm); when given, VOI activities are corrected for partial volume (GTM).
    register
        Register each later time point rigidly into the earliest one's frame and resample it onto
        its grid (:func:`.registration.register_time_points`). ``False`` for pre-registered images,
        which must then share the earliest image's grid.
    names
        A name per image (file names) for error messages; default ``"image k"``.
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose kernel or local")
    notes: list[str] = []
    if not images:
        raise InputError("no activity image given")
    if len(images) != len(times_h):
        raise InputError(f"{len(times_h)} times for {len(images)} images")
    nuc = nuclide(nuclide_name)
    if len(images) > 1 and any(t is None for t in times_h):
        raise InputError("several images need a time each: write IMAGE@HOURS (hours after administration)")
    labels_of = list(names) if names is not None else [f"image {k}" for k in range(1, len(images) + 1)]
    if len(labels_of) != len(images):
        raise InputError(f"{len(labels_of)} names for {len(images)} images")
    order = [int(i) for i in np.argsort([t if t is not None else 0.0 for t in times_h], kind="stable")]
    times = [times_h[i] for i in order]
    conc = [activity_concentration_bq_ml(images[i], labels_of[i]) for i in order]
    if any(t is not None and (not math.isfinite(t) or t < 0) for t in times):
        raise InputError(f"times must be non-negative hours after administration, got {list(times_h)}")
    if len(set(times)) != len(times):
        raise InputError(f"two images share the same time: {list(times_h)}")
    # the earliest image, in Bq/mL, is the reference of the registration, the dose and the VOIs
    sorted_images = [images[i].with_array(c, units="Bq/mL") for i, c in zip(order, conc, strict=True)]
    ref = sorted_images[0]
    registrations: list[RigidRegistration | None] = [None] * len(sorted_images)
    if len(images) > 1 and register:
        sorted_images, registrations = register_time_points(sorted_images, names=[labels_of[i] for i in order])
        conc = [np.asarray(im.array, dtype=np.float64) for im in sorted_images]
        moved = [r for r in registrations if r is not None]
        worst = max(moved, key=lambda r: float(np.linalg.norm(r.translation_mm)))
        notes.append(f"{len(moved)} time point(s) registered rigidly to the one at {times[0]:g} h (largest shift "
                     f"{float(np.linalg.norm(worst.translation_mm)):.1f} mm)")
    else:
        for k, im in enumerate(sorted_images[1:], start=2):
            if not ref.same_grid(im):
                raise GeometryError(
                    f"time point {k} ({labels_of[order[k - 1]]}) is not on the earliest image's grid (size "
                    f"{im.size} vs {ref.size}); let igikit register it (drop --no-register) or resample it first"
                )
    vml = voxel_volume_ml(ref.spacing_mm)
    act_bq = np.stack([c * vml for c in conc])  # (T, z, y, x) Bq per voxel
    if len(conc) == 1:
        t0 = times[0] or 0.0
        tia_bq_s = permanent_implant_tia(act_bq[0], nuc.half_life_s, time_s=t0 * 3600.0)
        notes.append("one time point: physical decay only (permanent implant)")
    else:
        t_h = np.asarray(times, dtype=np.float64)
        tia_bq_s = trapezoid_tia(t_h, act_bq, nuc.half_life_h) * 3600.0

    lab = _check_labels(labels, ref) if labels is not None else None
    fits: dict[int, TacFit] = {}
    if lab is not None:
        ids = [int(v) for v in np.unique(lab) if v > 0]
        flat = lab.ravel()
        per_time = np.array([np.bincount(flat, weights=a.ravel(), minlength=max(ids) + 1)[ids]
                             for a in act_bq])  # (T, n_vois) Bq
        if resolution_mm is not None:
            gtm = gtm_matrix(lab, ref.spacing_mm, resolution_mm)
            for ti, a in enumerate(act_bq):
                corrected = gtm_correct(a, lab, ref.spacing_mm, resolution_mm, matrix=gtm)
                per_time[ti] = [corrected[i] for i in ids]
            notes.append(f"VOI activities corrected for partial volume (GTM, FWHM {resolution_mm} mm)")
        for col, i in enumerate(ids):
            mask = lab == i
            if len(conc) == 1:
                t0_s = (times[0] or 0.0) * 3600.0
                target = float(permanent_implant_tia(per_time[0, col], nuc.half_life_s, time_s=t0_s))
            else:
                fit = fit_time_activity(np.asarray(times, dtype=np.float64), per_time[:, col] / 1e6, nuc.half_life_h)
                fits[i] = fit
                target = fit.tia * 1e6 * 3600.0
            current = float(tia_bq_s[mask].sum())
            if current > 0:
                tia_bq_s[mask] *= target / current
            elif mask.any():
                tia_bq_s[mask] = target / mask.sum()

    if method == "local":
        dose = local_deposition_dose(tia_bq_s, ref.spacing_mm, nuc.name, density_g_ml=density_g_ml)
    else:
        dose = kernel_dose(tia_bq_s, ref.spacing_mm, nuc.name, density_g_ml=density_g_ml)
    dose_image = ref.with_array(dose.astype(np.float32), modality="RTDOSE", units="Gy", meta={"nuclide": nuc.name})

    vois: dict[int, VoiDose] = {}
    if lab is not None:
        for i in [int(v) for v in np.unique(lab) if v > 0]:
            mask = lab == i
            d = dose[mask]
            voi_fit = fits.get(i)
            tia_mbq_h = float(tia_bq_s[mask].sum() / 1e6 / 3600.0)
            vois[i] = VoiDose(
                label=i,
                volume_ml=float(mask.sum() * vml),
                tia_mbq_h=tia_mbq_h,
                tia_se_mbq_h=voi_fit.tia_se if voi_fit is not None else math.nan,
                mean_gy=float(d.mean()),
                d2_gy=float(np.percentile(d, 98)),
                d50_gy=float(np.percentile(d, 50)),
                d98_gy=float(np.percentile(d, 2)),
                min_gy=float(d.min()),
                max_gy=float(d.max()),
                fit=voi_fit,
            )
    voi_activity: dict[int, tuple[float, ...]] = {}
    if lab is not None:
        voi_activity = {i: tuple(float(v) / 1e6 for v in per_time[:, col]) for col, i in enumerate(ids)}
    return DoseResult(dose_image, vois, tuple(notes), times_h=tuple(times), activity=ref,
                      voi_activity_mbq=voi_activity, registrations=tuple(registrations))
