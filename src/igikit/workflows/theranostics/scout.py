"""Radioembolisation scouts: VOI volumes, counts, T/N and lung shunt from images; predicted and delivered dose.

A scout (Tc-99m MAA before Y-90, a 250 MBq Ho-166 scout before Ho-166) shows where the treatment's
microspheres will go. From the scout SPECT and a label image of the VOIs (normal liver, tumour,
lungs) this module derives what the partition model and the Ho-166 plan need:

* volumes (mL) by voxel counting, with a standard error from a boundary uncertainty of half a voxel
  (uniformly distributed, so ``S h / sqrt(3)`` for surface ``S`` and half-voxel ``h``; the surface
  from the voxel faces on the boundary times 2/3, the mean ratio of a surface's area to the sum of
  its axis projections, Cauchy's projection formula);
* counts per VOI (sum of the image, any unit) with a standard error from the image's own voxel
  noise (the variance of the image less its 1-voxel Gaussian smoothing, corrected for what the
  smoothing removes; independent voxel noise assumed), optionally corrected for partial volume with
  the geometric transfer matrix of :mod:`.pipeline` (``resolution_mm``);
* the tumour-to-normal ratio ``T/N = (C_T / V_T) / (C_N / V_N)`` and the lung shunt fraction
  ``LSF = C_lung / (C_lung + C_N + C_T)`` (Ho et al., Eur J Nucl Med 23 (1996) 947).

With a plan's activity the scout also predicts the treatment's absorbed-dose map (local
deposition), which a post-treatment SPECT, registered to the scout, checks voxel by voxel
(:func:`compare_doses`; Smits et al., Eur J Nucl Med Mol Imaging 47 (2020) 798, compared Ho-166
scout and treatment this way).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from igikit.core.image import Image
from igikit.errors import InputError
from igikit.workflows.theranostics.dose import SOFT_TISSUE_G_ML, local_deposition_dose, permanent_implant_tia
from igikit.workflows.theranostics.pipeline import ACTIVITY_UNITS, gtm_correct

#: Units a scout may hold: an activity concentration, or plain counts (only ratios are used).
COUNT_UNITS: tuple[str, ...] = ("counts", "cnts", "count", "cts")

#: The VOI groups of a scout, in the order of :meth:`ScoutVois.inputs`.
GROUPS: tuple[str, ...] = ("normal_liver", "tumour", "lung")


def parse_labels(text: str, what: str) -> tuple[int, ...]:
    """``"5"`` or ``"5,8"`` -> label values (positive integers)."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise InputError(f"{what} must be label values (whole numbers, comma-separated), got {text!r}") from None
        if value <= 0:
            raise InputError(f"{what} must be positive label values, got {value}")
        out.append(value)
    if not out:
        raise InputError(f"{what} needs at least one label value")
    return tuple(out)


def scout_values(image: Image, what: str = "scout") -> np.ndarray:
    """The scout's voxel values (any linear unit: Bq/mL or counts) after checking they can be one."""
    if image.is_series or image.dim != 3:
        raise InputError(f"{what} must be one 3D SPECT image")
    if image.modality in ("CT", "MR", "RTDOSE", "US"):
        raise InputError(f"{what} is a {image.modality} image, not a scout SPECT")
    if image.units:
        key = image.units.strip().lower().replace(" ", "")
        if key not in ACTIVITY_UNITS and key not in COUNT_UNITS:
            raise InputError(f"{what} holds {image.units!r}, not counts or activity concentration")
    arr = np.asarray(image.array, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or infinite values")
    if np.any(arr < 0):
        raise InputError(f"{what} contains negative values (min {arr.min():.4g})")
    if not np.any(arr > 0):
        raise InputError(f"{what} is empty (no counts)")
    return arr


def surface_area_mm2(mask: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Surface area (mm^2) of a voxel mask: boundary faces times 2/3 (Cauchy's projection formula)."""
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    sx, sy, sz = (float(v) for v in spacing_mm)
    face = {0: sx * sy, 1: sx * sz, 2: sy * sz}  # array axes z, y, x: the face normal to each
    total = sum(float(np.count_nonzero(np.diff(m, axis=a))) * face[a] for a in range(3))
    return total * 2.0 / 3.0


def voxel_noise_variance(arr: np.ndarray, mask: np.ndarray) -> float:
    """Variance of independent voxel noise inside ``mask``, from the image less its 1-voxel smoothing.

    For white noise of variance ``s2``, ``x - G x`` (``G`` a normalised separable Gaussian, sigma one
    voxel) has variance ``s2 (1 - 2 g0^3 + (sum g^2)^3)`` with ``g`` the 1D kernel; that factor is
    divided out. Structure in the image adds to the estimate, so it errs on the large side.
    """
    from scipy.ndimage import gaussian_filter

    x = np.asarray(arr, dtype=np.float64)
    resid = x - gaussian_filter(x, 1.0, mode="nearest")
    g = np.exp(-0.5 * np.arange(-4, 5) ** 2)
    g /= g.sum()
    factor = 1.0 - 2.0 * g[4] ** 3 + float(np.sum(g * g)) ** 3
    return float(np.mean(resid[mask] ** 2) / factor) if np.any(mask) else 0.0


@dataclass(frozen=True)
class ScoutVois:
    """What a scout says about its VOIs: volumes (mL) and counts (image units x mL), with standard errors.

    Counts are sums of the image over each VOI times the voxel volume, so that an image in Bq/mL
    gives Bq; only their ratios enter the plans. ``corrected`` says whether they were corrected for
    partial volume (GTM).
    """

    volume_ml: Mapping[str, float]
    volume_se_ml: Mapping[str, float]
    counts: Mapping[str, float]
    counts_se: Mapping[str, float]
    total_counts: float
    corrected: bool

    def inputs(self) -> tuple[list[float], list[float]]:
        """``([V_N, V_T, C_N, C_T, C_lung], standard errors)``: the independent inputs of the plans."""
        x = [self.volume_ml["normal_liver"], self.volume_ml["tumour"],
             *(self.counts[g] for g in GROUPS)]
        se = [self.volume_se_ml["normal_liver"], self.volume_se_ml["tumour"],
              *(self.counts_se[g] for g in GROUPS)]
        return x, se

    @property
    def tn_ratio(self) -> float:
        """Tumour-to-normal-liver concentration ratio."""
        return tn_ratio(np.asarray(self.inputs()[0]))

    @property
    def lung_shunt_fraction(self) -> float:
        """Lung counts over lung + liver counts."""
        return lung_shunt(np.asarray(self.inputs()[0]))

    @property
    def tumour_share(self) -> float:
        """Share of the liver's counts in the tumour."""
        x = self.inputs()[0]
        return x[3] / (x[2] + x[3])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "volume_ml": dict(self.volume_ml),
            "volume_se_ml": dict(self.volume_se_ml),
            "counts": dict(self.counts),
            "counts_se": dict(self.counts_se),
            "partial_volume_corrected": self.corrected,
            "tn_ratio": self.tn_ratio,
            "lung_shunt_fraction": self.lung_shunt_fraction,
        }


def tn_ratio(x: np.ndarray) -> float:
    """T/N from ``[V_N, V_T, C_N, C_T, C_lung]``."""
    return float((x[3] / x[1]) / (x[2] / x[0]))


def lung_shunt(x: np.ndarray) -> float:
    """Lung shunt fraction from ``[V_N, V_T, C_N, C_T, C_lung]``."""
    return float(x[4] / (x[4] + x[2] + x[3]))


def voi_masks(
    labels: Image, reference: Image, groups: Mapping[str, Sequence[int]], where: str = "VOI label image"
) -> dict[str, np.ndarray]:
    """One boolean mask per group of label values; every group must have voxels and groups must not share labels."""
    reference.require_same_grid(labels, where)
    lab = np.asarray(labels.array)
    if lab.dtype.kind == "f":
        if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise InputError(f"{where} must hold whole-number labels")
        lab = lab.astype(np.int64)
    seen: dict[int, str] = {}
    masks = {}
    for name, values in groups.items():
        for v in values:
            if v in seen:
                raise InputError(f"label {v} is given both as {seen[v]} and as {name}")
            seen[v] = name
        mask = np.isin(lab, list(values))
        if not mask.any():
            raise InputError(f"{where} has no voxel with the {name.replace('_', ' ')} label(s) "
                             f"{', '.join(map(str, values))}")
        masks[name] = mask
    return masks


def analyse_scout(
    scout: Image,
    labels: Image,
    *,
    liver_labels: Sequence[int] = (1,),
    tumour_labels: Sequence[int] = (5,),
    lung_labels: Sequence[int] = (7,),
    resolution_mm: float | None = None,
) -> ScoutVois:
    """Volumes, counts and their standard errors for the normal liver, tumour and lungs of a scout.

    ``labels`` (on the scout's grid) assign label values to VOIs; the normal liver is
    ``liver_labels`` (the perfused liver outside the tumours), the tumour ``tumour_labels``, the
    lungs ``lung_labels``. With ``resolution_mm`` (the scout's FWHM) the counts are corrected for
    partial volume by the geometric transfer matrix over these three groups, the rest of the labels
    and the unlabelled background.
    """
    arr = scout_values(scout)
    masks = voi_masks(labels, scout, {"normal_liver": liver_labels, "tumour": tumour_labels, "lung": lung_labels})
    spacing = scout.spacing_mm
    vml = float(np.prod(spacing)) / 1000.0
    half = 0.5 * float(np.mean(spacing))
    volume = {g: float(masks[g].sum()) * vml for g in GROUPS}
    volume_se = {g: surface_area_mm2(masks[g], spacing) * half / math.sqrt(3.0) / 1000.0 for g in GROUPS}
    counts = {g: float(arr[masks[g]].sum()) * vml for g in GROUPS}
    counts_se = {g: math.sqrt(voxel_noise_variance(arr, masks[g]) * masks[g].sum()) * vml for g in GROUPS}
    if resolution_mm is not None:
        lab = np.asarray(labels.array).astype(np.int64)
        grouped = np.where(lab > 0, len(GROUPS) + 1, 0)  # other labelled tissue
        for k, g in enumerate(GROUPS, start=1):
            grouped[masks[g]] = k
        corrected = gtm_correct(arr * vml, grouped, spacing, resolution_mm)
        for k, g in enumerate(GROUPS, start=1):
            ratio = corrected[k] / counts[g] if counts[g] > 0 else 1.0
            counts[g], counts_se[g] = corrected[k], counts_se[g] * ratio
    for g in ("normal_liver", "lung"):
        if not counts[g] > 0:
            raise InputError(f"the scout has no counts in the {g.replace('_', ' ')} VOI")
    return ScoutVois(volume, volume_se, counts, counts_se, float(arr.sum()) * vml, resolution_mm is not None)


def density_map(masks: Mapping[str, np.ndarray], liver_g_ml: float, shape: tuple[int, ...]) -> np.ndarray:
    """Mass density (g/mL): the profile's liver density in the liver and tumour VOIs, soft tissue elsewhere."""
    rho = np.full(shape, SOFT_TISSUE_G_ML)
    rho[masks["normal_liver"] | masks["tumour"]] = liver_g_ml
    return rho


def predicted_dose(
    scout: Image, activity_gbq: float, nuclide_name: str, density_g_ml: float | np.ndarray
) -> np.ndarray:
    """Absorbed dose (Gy) the scout predicts for ``activity_gbq``: its image scaled to that activity, local deposition.

    Every count in the scout's field of view stands for the same share of the treatment activity
    (the treatment goes where the scout went; nothing outside the field of view).
    """
    from igikit.workflows.theranostics.nuclides import nuclide

    arr = scout_values(scout)
    activity_bq = arr / arr.sum() * activity_gbq * 1e9
    tia = permanent_implant_tia(activity_bq, nuclide(nuclide_name).half_life_s)
    return local_deposition_dose(tia, scout.spacing_mm, nuclide_name, density_g_ml=density_g_ml)


def delivered_dose(
    post: Image, hours: float | None, nuclide_name: str, density_g_ml: float | np.ndarray
) -> np.ndarray:
    """Absorbed dose (Gy) from a quantitative post-treatment SPECT (Bq/mL at ``hours`` after administration)."""
    from igikit.workflows.theranostics.dose import voxel_volume_ml
    from igikit.workflows.theranostics.nuclides import nuclide
    from igikit.workflows.theranostics.pipeline import activity_concentration_bq_ml

    conc = activity_concentration_bq_ml(post, "post-treatment image")
    nuc = nuclide(nuclide_name)
    tia = permanent_implant_tia(conc * voxel_volume_ml(post.spacing_mm), nuc.half_life_s,
                                time_s=(hours or 0.0) * 3600.0)
    return local_deposition_dose(tia, post.spacing_mm, nuclide_name, density_g_ml=density_g_ml)


@dataclass(frozen=True)
class DoseComparison:
    """Delivered (post-treatment) against predicted (scout) dose, voxel by voxel inside the perfused liver.

    ``mean_difference_gy`` is delivered minus predicted, averaged over the voxels; ``vois`` holds per
    VOI the mean predicted and delivered dose and their difference (Gy and %).
    """

    mean_difference_gy: float
    mean_abs_difference_gy: float
    rms_difference_gy: float
    correlation: float
    vois: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {"mean_difference_gy": self.mean_difference_gy, "mean_abs_difference_gy": self.mean_abs_difference_gy,
                "rms_difference_gy": self.rms_difference_gy, "correlation": self.correlation,
                "vois": {k: dict(v) for k, v in self.vois.items()}}

    def explanation(self) -> str:
        """One sentence."""
        parts = [f"{k.replace('_', ' ')} {v['predicted_gy']:.0f} -> {v['delivered_gy']:.0f} Gy "
                 f"({v['difference_pct']:+.0f}%)" for k, v in self.vois.items()]
        return (f"post-treatment vs scout prediction: mean difference {self.mean_difference_gy:+.1f} Gy, voxel "
                f"correlation {self.correlation:.2f}; " + ", ".join(parts))


def compare_doses(
    predicted_gy: np.ndarray, delivered_gy: np.ndarray, masks: Mapping[str, np.ndarray]
) -> DoseComparison:
    """Compare two dose maps on one grid inside the perfused liver (normal liver and tumour masks), and per VOI."""
    p = np.asarray(predicted_gy, dtype=np.float64)
    d = np.asarray(delivered_gy, dtype=np.float64)
    if p.shape != d.shape:
        raise InputError(f"dose maps differ in shape: {p.shape} and {d.shape}")
    region = masks["normal_liver"] | masks["tumour"]
    diff = d[region] - p[region]
    corr = float(np.corrcoef(p[region], d[region])[0, 1]) if region.sum() > 1 and p[region].std() > 0 and \
        d[region].std() > 0 else math.nan
    vois = {}
    for name, mask in masks.items():
        pm, dm = float(p[mask].mean()), float(d[mask].mean())
        vois[name] = {"predicted_gy": pm, "delivered_gy": dm, "difference_gy": dm - pm,
                      "difference_pct": 100.0 * (dm / pm - 1.0) if pm > 0 else math.nan}
    return DoseComparison(float(diff.mean()), float(np.abs(diff).mean()), float(np.sqrt(np.mean(diff**2))), corr, vois)
