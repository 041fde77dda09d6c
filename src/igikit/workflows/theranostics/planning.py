"""Treatment planning formulas: the Y-90 partition model and linear-quadratic BED.

Both are plain functions; the command line (``igikit plan y90``, ``igikit bed``) wraps them and
reads limits from a patient profile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
