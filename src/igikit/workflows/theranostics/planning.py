"""Treatment planning formulas: the Y-90 partition model and BSA method, the scout-based microsphere
plan (Ho-166), linear-quadratic BED, the Lu-177 next cycle, and the propagation of uncertainty.

All are plain functions; the command line (``igikit plan y90|ho166|lu177``, ``igikit bed``) wraps
them, reads limits and defaults from a patient profile, and :mod:`.scout` derives their inputs from
scout images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from igikit.errors import InputError
from igikit.workflows.theranostics.nuclides import local_deposition_gy_per_gbq_kg


def _positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise InputError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value}")
    return v


def bed_lq(
    doses_gy: Sequence[float] | float,
    *,
    alpha_beta_gy: float,
    repair_half_time_h: float,
    effective_half_time_h: float,
) -> float:
    """Biologically effective dose (Gy) of radionuclide therapy cycles, summed over cycles.

    Linear-quadratic model with mono-exponentially decreasing dose rate and mono-exponential repair
    (Dale 1985, Br J Radiol 58:515; for Lu-177 kidneys: Bodei et al. 2008, EJNMMI 35:1847)::

        BED = sum_i D_i + D_i^2 T_rep / ((alpha/beta) (T_rep + T_eff))

    with ``T_rep`` and ``T_eff`` the repair and effective half-times (the same for every cycle;
    complete repair between cycles).

    Examples
    --------
    >>> round(bed_lq([5.0, 5.0], alpha_beta_gy=2.5, repair_half_time_h=2.8, effective_half_time_h=50.0), 4)
    11.0606
    """
    d = np.atleast_1d(np.asarray(doses_gy, dtype=np.float64))
    if d.size == 0 or not np.all(np.isfinite(d)) or np.any(d < 0):
        raise InputError(f"doses must be non-negative numbers (Gy), got {d.tolist()}")
    ab = _positive(alpha_beta_gy, "alpha/beta")
    trep = _positive(repair_half_time_h, "repair half-time")
    teff = _positive(effective_half_time_h, "effective half-time")
    g = trep / (ab * (trep + teff))
    return float(np.sum(d + d * d * g))


@dataclass(frozen=True)
class PartitionPlan:
    """Result of the Y-90 partition model (all activities in GBq, doses in Gy, masses in kg)."""

    activity_gbq: float
    liver_activity_gbq: float
    tumour_gy: float
    normal_liver_gy: float
    lung_gy: float
    lung_limit_gy: float
    limits_ok: bool

    def explanation(self) -> str:
        """One sentence with the numbers behind the plan."""
        verdict = "within" if self.limits_ok else "ABOVE"
        return (
            f"{self.activity_gbq:.2f} GBq: normal liver {self.normal_liver_gy:.0f} Gy, tumour "
            f"{self.tumour_gy:.0f} Gy, lung {self.lung_gy:.1f} Gy (limit {self.lung_limit_gy:.0f}, {verdict})"
        )


def partition_model_y90(
    *,
    normal_liver_gy: float,
    tumour_kg: float,
    normal_liver_kg: float,
    tn_ratio: float,
    lung_shunt_fraction: float,
    lung_kg: float = 1.0,
    lung_limit_gy: float = 30.0,
    gy_per_gbq_kg: float | None = None,
) -> PartitionPlan:
    """Activity for a prescribed normal-liver dose with the partition model (Ho et al. 1996).

    With ``K`` = 49.67 Gy kg/GBq (Y-90, full decay, local deposition), tumour-to-normal uptake ratio
    ``R`` and lung shunt fraction ``F`` (Ho et al., Eur J Nucl Med 23 (1996) 947; Gulec et al.,
    J Nucl Med 47 (2006) 1209)::

        A_liver = D_N (M_N + R M_T) / K        A = A_liver / (1 - F)
        D_T = R D_N                            D_lung = K A F / M_lung

    Examples
    --------
    >>> p = partition_model_y90(normal_liver_gy=40, tumour_kg=0.2, normal_liver_kg=1.3, tn_ratio=4,
    ...                         lung_shunt_fraction=0.05)
    >>> round(p.activity_gbq, 2), round(p.tumour_gy), round(p.lung_gy, 1)
    (1.78, 160, 4.4)
    """
    dn = _positive(normal_liver_gy, "normal-liver dose")
    mt = _positive(tumour_kg, "tumour mass", allow_zero=True)
    mn = _positive(normal_liver_kg, "normal-liver mass")
    r = _positive(tn_ratio, "tumour-to-normal ratio")
    f = _positive(lung_shunt_fraction, "lung shunt fraction", allow_zero=True)
    if f >= 1:
        raise InputError(f"lung shunt fraction must be below 1, got {f}")
    ml = _positive(lung_kg, "lung mass")
    k = local_deposition_gy_per_gbq_kg("Y-90") if gy_per_gbq_kg is None else _positive(gy_per_gbq_kg, "K")
    a_liver = dn * (mn + r * mt) / k
    a_total = a_liver / (1.0 - f)
    lung = k * a_total * f / ml
    return PartitionPlan(
        activity_gbq=a_total,
        liver_activity_gbq=a_liver,
        tumour_gy=r * dn,
        normal_liver_gy=dn,
        lung_gy=lung,
        lung_limit_gy=float(lung_limit_gy),
        limits_ok=bool(lung <= lung_limit_gy),
    )


@dataclass(frozen=True)
class Lu177CyclePlan:
    """The next Lu-177 cycle's activity that keeps the cumulative kidney BED at its limit.

    Activities in GBq, doses and BEDs in Gy; ``activity_low_gbq`` / ``activity_high_gbq`` carry the
    kidney dose's relative standard error (from the TIA fit) into the activity (one standard error
    higher dose per GBq gives the lower activity).
    """

    activity_gbq: float
    activity_low_gbq: float
    activity_high_gbq: float
    kidney_gy_per_gbq: float
    kidney_gy_next: float
    bed_done_gy: float
    bed_total_gy: float
    bed_limit_gy: float
    effective_half_time_h: float
    alpha_beta_gy: float
    repair_half_time_h: float
    cycles_done: int
    limits_ok: bool

    def explanation(self) -> str:
        """One sentence with the numbers behind the plan."""
        if not self.limits_ok:
            return (f"0 GBq: kidney BED after {self.cycles_done} cycle(s) is already {self.bed_done_gy:.1f} Gy, "
                    f"at or above the {self.bed_limit_gy:.0f} Gy limit")
        return (
            f"{self.activity_gbq:.2f} GBq (range {self.activity_low_gbq:.2f}-{self.activity_high_gbq:.2f}): kidney "
            f"{self.kidney_gy_per_gbq:.3f} Gy/GBq, {self.kidney_gy_next:.2f} Gy this cycle; cumulative kidney BED "
            f"{self.bed_done_gy:.1f} Gy after {self.cycles_done} cycle(s) + this cycle = {self.bed_total_gy:.1f} Gy "
            f"(limit {self.bed_limit_gy:.0f}; alpha/beta {self.alpha_beta_gy:g} Gy, "
            f"repair {self.repair_half_time_h:g} h, T_eff {self.effective_half_time_h:.1f} h)"
        )


def _max_dose_for_bed(bed_gy: float, g: float) -> float:
    """The dose ``D`` with ``D + g D^2 = bed_gy`` (``g > 0``), by the stable form of the quadratic root."""
    return 2.0 * bed_gy / (1.0 + math.sqrt(1.0 + 4.0 * g * bed_gy))


def plan_lu177_next_cycle(
    *,
    kidney_gy: float,
    administered_gbq: float,
    effective_half_time_h: float,
    bed_limit_gy: float,
    alpha_beta_gy: float,
    repair_half_time_h: float,
    cycles_done: int = 1,
    kidney_gy_rel_se: float = 0.0,
) -> Lu177CyclePlan:
    """Activity of the next Lu-177 cycle that brings the cumulative kidney BED to ``bed_limit_gy``.

    Cycle-1 dosimetry gives the kidney dose per administered activity ``d = D_1 / A_1`` (Gy/GBq)
    and the kidney's effective half-time. Each of the ``cycles_done`` cycles is taken to have given
    ``D_1`` (only cycle 1 was measured), complete repair between cycles, and the next cycle the same
    kinetics, so with ``g = T_rep / ((alpha/beta) (T_rep + T_eff))`` (:func:`bed_lq`)::

        BED_done = n (D_1 + g D_1^2)
        D_next   = largest D with D + g D^2 <= limit - BED_done
        A_next   = D_next / d

    (Bodei et al., EJNMMI 35 (2008) 1847: kidney BED limits 28 Gy with risk factors, 40 Gy without.)

    Examples
    --------
    >>> p = plan_lu177_next_cycle(kidney_gy=4.0, administered_gbq=7.4, effective_half_time_h=40.0,
    ...                           bed_limit_gy=28.0, alpha_beta_gy=2.5, repair_half_time_h=2.8)
    >>> round(p.activity_gbq, 2), round(p.bed_total_gy, 6)
    (30.48, 28.0)
    """
    d1 = _positive(kidney_gy, "kidney dose of cycle 1")
    a1 = _positive(administered_gbq, "administered activity")
    teff = _positive(effective_half_time_h, "kidney effective half-time")
    limit = _positive(bed_limit_gy, "kidney BED limit")
    ab = _positive(alpha_beta_gy, "alpha/beta")
    trep = _positive(repair_half_time_h, "repair half-time")
    if int(cycles_done) != cycles_done or cycles_done < 1:
        raise InputError(f"cycles done must be a whole number >= 1, got {cycles_done}")
    rel = _positive(kidney_gy_rel_se, "relative standard error", allow_zero=True)
    g = trep / (ab * (trep + teff))
    per_gbq = d1 / a1
    bed_done = cycles_done * bed_lq(d1, alpha_beta_gy=ab, repair_half_time_h=trep, effective_half_time_h=teff)
    room = limit - bed_done
    ok = room > 0
    d_next = _max_dose_for_bed(room, g) if ok else 0.0
    act = d_next / per_gbq
    low = d_next / (per_gbq * (1.0 + rel))
    high = d_next / (per_gbq * max(1.0 - rel, 1e-9)) if rel < 1 else math.inf
    return Lu177CyclePlan(
        activity_gbq=act,
        activity_low_gbq=low,
        activity_high_gbq=high,
        kidney_gy_per_gbq=per_gbq,
        kidney_gy_next=d_next,
        bed_done_gy=bed_done,
        bed_total_gy=bed_done + (d_next + g * d_next**2),
        bed_limit_gy=limit,
        effective_half_time_h=teff,
        alpha_beta_gy=ab,
        repair_half_time_h=trep,
        cycles_done=int(cycles_done),
        limits_ok=bool(ok),
    )


# ----------------------------------------------------------------------------- uncertainty
def propagate(
    fn: Callable[[np.ndarray], np.ndarray], x: Sequence[float] | np.ndarray, se: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Value and first-order standard error of ``fn(x)`` for independent inputs with errors ``se``.

    Central differences of ``fn`` (a vector function of the vector ``x``) with steps of a hundredth
    of each input's standard error (inputs without error are skipped); GUM (JCGM 100:2008) law of
    propagation of uncertainty, uncorrelated inputs.

    Examples
    --------
    >>> v, s = propagate(lambda x: np.array([x[0] * x[1]]), [2.0, 3.0], [0.1, 0.0])
    >>> round(float(v[0]), 6), round(float(s[0]), 6)
    (6.0, 0.3)
    """
    x0 = np.asarray(x, dtype=np.float64)
    s0 = np.asarray(se, dtype=np.float64)
    value = np.atleast_1d(np.asarray(fn(x0), dtype=np.float64))
    var = np.zeros_like(value)
    for i in range(x0.size):
        if not s0[i] > 0:
            continue
        h = 0.01 * s0[i]
        up, down = x0.copy(), x0.copy()
        up[i] += h
        down[i] -= h
        grad = (np.atleast_1d(fn(up)) - np.atleast_1d(fn(down))) / (2.0 * h)
        var += (grad * s0[i]) ** 2
    return value, np.sqrt(var)


def probability_below(value: float, se: float, limit: float) -> float:
    """P(true value <= limit) for a normal estimate ``value`` with standard error ``se`` (0 or 1 when exact)."""
    if not se > 0 or not math.isfinite(se):
        return 1.0 if value <= limit else 0.0
    return 0.5 * (1.0 + math.erf((limit - value) / (se * math.sqrt(2.0))))


# ----------------------------------------------------------------------------- body surface area
#: BSA formulas for people: Mosteller, N Engl J Med 317 (1987) 1098; DuBois & DuBois, Arch Intern
#: Med 17 (1916) 863. Animals: Meeh's formula ``K W^(2/3) / 100`` (m^2, W in kg) with the species
#: constant ``K`` from the profile (dog 10.1, cat 10.0).
BSA_FORMULAS: tuple[str, ...] = ("mosteller", "dubois", "meeh")


def body_surface_area_m2(
    *, weight_kg: float, height_m: float | None = None, formula: str = "mosteller", meeh_k: float | None = None
) -> float:
    """Body surface area (m^2) by Mosteller, DuBois (height and weight) or Meeh (weight, species constant).

    Examples
    --------
    >>> round(body_surface_area_m2(weight_kg=73.0, height_m=1.76), 3)
    1.889
    >>> round(body_surface_area_m2(weight_kg=73.0, height_m=1.76, formula="dubois"), 3)
    1.889
    >>> round(body_surface_area_m2(weight_kg=20.0, formula="meeh", meeh_k=10.1), 3)
    0.744
    """
    w = _positive(weight_kg, "body weight (kg)")
    if formula == "meeh":
        if meeh_k is None:
            raise InputError("the Meeh BSA formula needs the species constant K (physiology.bsa_meeh_k)")
        return _positive(meeh_k, "Meeh constant") * w ** (2.0 / 3.0) / 100.0
    if formula not in BSA_FORMULAS:
        raise InputError(f"unknown BSA formula {formula!r}; choose from {', '.join(BSA_FORMULAS)}")
    if height_m is None:
        raise InputError(f"the {formula} BSA formula needs the height (--height-m or physiology.height_m)")
    h_cm = _positive(height_m, "height (m)") * 100.0
    if formula == "mosteller":
        return math.sqrt(h_cm * w / 3600.0)
    return 0.007184 * w**0.425 * h_cm**0.725


#: SIR-Spheres instructions for use (Sirtex): activity reduction by lung shunt fraction
#: (upper bound of the LSF band, fraction of the BSA activity kept); above the last band, no treatment.
BSA_LSF_REDUCTION: tuple[tuple[float, float], ...] = ((0.10, 1.0), (0.15, 0.8), (0.20, 0.6))


@dataclass(frozen=True)
class BsaPlan:
    """The SIR-Spheres BSA method's activity (GBq), for comparison with the partition model."""

    activity_gbq: float
    bsa_m2: float
    formula: str
    tumour_fraction: float
    lsf_factor: float

    def explanation(self) -> str:
        """One sentence with the numbers behind it."""
        return (f"BSA method {self.activity_gbq:.2f} GBq (BSA {self.bsa_m2:.2f} m2 by {self.formula}, tumour "
                f"{100 * self.tumour_fraction:.1f}% of the liver, lung-shunt factor {self.lsf_factor:g})")


def bsa_method_y90(*, bsa_m2: float, tumour_ml: float, liver_ml: float, lung_shunt_fraction: float,
                   formula: str = "mosteller") -> BsaPlan:
    """Y-90 resin-microsphere activity by the BSA method (SIR-Spheres instructions for use; Kennedy et al.,
    Int J Radiat Oncol Biol Phys 68 (2007) 13)::

        A [GBq] = BSA [m^2] - 0.2 + V_tumour / (V_tumour + V_normal liver)

    reduced by 20 % for a lung shunt of 10-15 %, 40 % for 15-20 %; 0 above 20 %.

    Examples
    --------
    >>> round(bsa_method_y90(bsa_m2=1.8, tumour_ml=200, liver_ml=1300, lung_shunt_fraction=0.05).activity_gbq, 4)
    1.7333
    """
    bsa = _positive(bsa_m2, "body surface area")
    vt = _positive(tumour_ml, "tumour volume", allow_zero=True)
    vn = _positive(liver_ml, "normal-liver volume")
    f = _positive(lung_shunt_fraction, "lung shunt fraction", allow_zero=True)
    factor = 0.0
    for upper, keep in BSA_LSF_REDUCTION:
        if f <= upper:
            factor = keep
            break
    frac = vt / (vt + vn)
    return BsaPlan(max(bsa - 0.2 + frac, 0.0) * factor, bsa, formula, frac, factor)


# ----------------------------------------------------------------------------- Ho-166
@dataclass(frozen=True)
class MicrospherePlan:
    """A scout-based microsphere plan: activity (GBq) and the mean doses (Gy) it predicts, with standard errors.

    ``perfused_gy`` is the prescribed mean dose to the perfused liver (tumour + normal liver).
    """

    nuclide: str
    activity_gbq: float
    activity_se_gbq: float
    perfused_gy: float
    tumour_gy: float
    tumour_se_gy: float
    normal_liver_gy: float
    normal_liver_se_gy: float
    lung_gy: float
    lung_se_gy: float
    lung_limit_gy: float
    limits_ok: bool

    def explanation(self) -> str:
        """One sentence with the numbers behind the plan."""
        verdict = "within" if self.limits_ok else "ABOVE"
        return (
            f"{self.activity_gbq:.2f} GBq {self.nuclide} (±{self.activity_se_gbq:.2f}): perfused liver "
            f"{self.perfused_gy:.0f} Gy, tumour {self.tumour_gy:.0f} ± {self.tumour_se_gy:.2g} Gy, normal liver "
            f"{self.normal_liver_gy:.0f} ± {self.normal_liver_se_gy:.2g} Gy, lung {self.lung_gy:.1f} ± "
            f"{self.lung_se_gy:.2g} Gy (limit {self.lung_limit_gy:.0f}, {verdict})"
        )


def microsphere_activity(
    *,
    prescribed_gy: float,
    perfused_kg: float,
    tumour_kg: float,
    liver_kg: float,
    tumour_fraction_of_liver: float,
    lung_shunt_fraction: float,
    lung_kg: float,
    nuclide_name: str = "Ho-166",
) -> tuple[float, float, float, float]:
    """(activity GBq, tumour Gy, normal-liver Gy, lung Gy) for a prescribed mean perfused-liver dose.

    Local deposition with ``K`` Gy kg/GBq (Ho-166 15.87; Y-90 49.67, :mod:`.nuclides`); the scout
    gives the lung shunt fraction ``F`` and the share ``f_T`` of the liver's activity that the tumour
    holds (HEPAR, Smits et al., Lancet Oncol 13 (2012) 1025; Ho-166 scout: Smits et al., Eur J Nucl
    Med Mol Imaging 47 (2020) 798)::

        A = D M_perf / (K (1 - F))     D_T = D M_perf f_T / M_T     D_N = D M_perf (1 - f_T) / M_N
        D_lung = K A F / M_lung

    Examples
    --------
    >>> a, t, n, lung = microsphere_activity(prescribed_gy=60, perfused_kg=1.5, tumour_kg=0.05, liver_kg=1.45,
    ...                                      tumour_fraction_of_liver=0.12, lung_shunt_fraction=0.05, lung_kg=1.0)
    >>> round(a, 3), round(t), round(n, 1), round(lung, 2)
    (5.97, 216, 54.6, 4.74)
    """
    d = _positive(prescribed_gy, "prescribed perfused-liver dose")
    mp = _positive(perfused_kg, "perfused-liver mass")
    mt = _positive(tumour_kg, "tumour mass", allow_zero=True)
    mn = _positive(liver_kg, "normal-liver mass")
    ft = _positive(tumour_fraction_of_liver, "tumour share of the liver activity", allow_zero=True)
    f = _positive(lung_shunt_fraction, "lung shunt fraction", allow_zero=True)
    if f >= 1 or ft > 1:
        raise InputError(f"fractions must lie below 1, got lung shunt {f}, tumour share {ft}")
    ml = _positive(lung_kg, "lung mass")
    k = local_deposition_gy_per_gbq_kg(nuclide_name)
    activity = d * mp / (k * (1.0 - f))
    tumour = d * mp * ft / mt if mt > 0 else 0.0
    return activity, tumour, d * mp * (1.0 - ft) / mn, k * activity * f / ml
