"""Absorbed dose from time-integrated activity: local deposition and dose-voxel-kernel convolution.

Units throughout: time-integrated activity (TIA) per voxel in Bq s (number of decays), voxel
spacing in mm, density in g/mL, dose in Gy.

The kernel model
----------------
A voxel kernel ``K[n]`` is the fraction of the electron energy emitted uniformly in voxel 0 that is
absorbed in voxel ``n`` (it sums to 1). It is built from a dose point kernel (DPK) integrated over
source and target voxels:

* DPK: Loevinger's empirical beta point-source function (Loevinger 1956; MIRD Pamphlet 7, Berger
  1971 compares it with Monte Carlo), parameterised by the ICRP-107 beta endpoint of the nuclide,
  scaled with density (distances in g/cm^2) and cut at the Katz & Penfold (1952) extrapolated range
  of the endpoint energy (Loevinger's tail has no range of its own).
* Voxel integration: averaging a radial function over a uniform source voxel and a target voxel
  equals integrating it against the overlap of two boxes, which is a product of one-dimensional
  hat functions. The radial energy distribution ``dPhi/dr`` is therefore sampled on spheres
  (quasi-uniform directions) and each sample is spread over the voxel grid with trilinear weights;
  this is exact up to the quadrature, has no singularity at ``r = 0``, works for any (anisotropic)
  voxel size, and conserves energy by construction.

Limits: electrons only (betas, conversion and Auger electrons all follow the beta DPK); photons are
not transported, which underestimates dose far from the source for photon emitters (Lu-177, I-131,
Ho-166) by the small photon contribution; homogeneous medium (density enters as a mass scaling, see
:func:`kernel_dose`). Validation against Lanconelli et al. (2012) Monte Carlo S-values is in
``docs/benchmarks.md`` and ``tests/workflows/theranostics/test_dose.py``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

from igikit.errors import InputError
from igikit.workflows.theranostics.nuclides import J_PER_MEV, local_deposition_energy_mev, nuclide

#: Density of ICRU soft tissue (g/mL), the medium of the published voxel S-values.
SOFT_TISSUE_G_ML = 1.04


def _spacing3(spacing_mm: npt.ArrayLike) -> tuple[float, float, float]:
    s = np.asarray(spacing_mm, dtype=np.float64).reshape(-1)
    if s.size != 3 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InputError(f"voxel spacing must be three positive numbers (mm), got {s.tolist()}")
    return float(s[0]), float(s[1]), float(s[2])


def voxel_volume_ml(spacing_mm: npt.ArrayLike) -> float:
    """Volume of one voxel (mL) from its spacing (mm)."""
    sx, sy, sz = _spacing3(spacing_mm)
    return sx * sy * sz / 1000.0


def permanent_implant_tia(activity_bq: npt.ArrayLike, half_life_s: float, *, time_s: float = 0.0) -> np.ndarray:
    """Time-integrated activity (Bq s) of activity that stays where it is and only decays.

    ``A(t) * exp(lambda t) / lambda``: the activity measured at ``time_s`` after administration,
    decayed back to administration, times the mean life (MIRD Pamphlet 21, Bolch et al. 2009).
    """
    lam = math.log(2.0) / half_life_s
    return np.asarray(activity_bq, dtype=np.float64) * math.exp(lam * time_s) / lam


def local_deposition_dose(
    tia_bq_s: npt.ArrayLike,
    spacing_mm: npt.ArrayLike,
    nuclide_name: str,
    *,
    density_g_ml: float | npt.ArrayLike = SOFT_TISSUE_G_ML,
    source: str = "clinical",
) -> np.ndarray:
    """Absorbed dose (Gy) when every decay deposits its energy in its own voxel.

    The energy per decay is the clinical constant where clinics use one (Y-90: 1 GBq in 1 kg gives
    49.67 Gy; Ho-166: 15.87 Gy) and ICRP-107 electrons otherwise (see :mod:`.nuclides`).

    Examples
    --------
    >>> tia = np.full((1, 1, 1), 1e9 * nuclide("Y-90").mean_life_s)  # 1 GBq, full decay
    >>> d = local_deposition_dose(tia, (100.0, 100.0, 100.0), "Y-90", density_g_ml=1.0)  # 1 kg
    >>> round(float(d[0, 0, 0]), 2)
    49.67
    """
    tia = np.asarray(tia_bq_s, dtype=np.float64)
    energy_j = local_deposition_energy_mev(nuclide_name, source=source) * J_PER_MEV
    mass_kg = _voxel_mass_kg(spacing_mm, density_g_ml)
    return tia * energy_j / mass_kg


def _voxel_mass_kg(spacing_mm: npt.ArrayLike, density_g_ml: float | npt.ArrayLike) -> np.ndarray:
    rho = np.asarray(density_g_ml, dtype=np.float64)
    if not np.all(np.isfinite(rho)) or np.any(rho <= 0):
        raise InputError("density must be positive and finite everywhere (g/mL)")
    return voxel_volume_ml(spacing_mm) * rho / 1000.0


# ------------------------------------------------------------------------------------- kernels
def katz_penfold_range_mm(energy_mev: float, density_g_ml: float = 1.0) -> float:
    """Extrapolated electron range (mm) for ``0.01 <= E <= 3`` MeV (Katz & Penfold 1952)."""
    e = float(energy_mev)
    r_g_cm2 = 0.412 * e ** (1.265 - 0.0954 * math.log(e))
    return 10.0 * r_g_cm2 / density_g_ml


def loevinger_radial_energy(r_mm: npt.ArrayLike, endpoint_mev: float, density_g_ml: float = 1.0) -> np.ndarray:
    """Loevinger's beta point kernel as radial energy density ``dPhi/dr`` (unnormalised, 1/mm).

    ``4 pi r^2 J(r)`` of Loevinger (1956): with ``y = nu rho r``,
    ``c [1 - (y/c) e^(1 - y/c)] + y e^(1 - y)`` for ``y < c`` and ``y e^(1 - y)`` beyond, where
    ``nu = 18.6 (E0 - 0.036)^-1.37`` cm^2/g and ``c`` = 2, 1.5, 1 for endpoints below 0.5 MeV,
    below 1.5 MeV, and up to 3 MeV (allowed spectrum shape assumed).
    """
    e0 = float(endpoint_mev)
    if not 0.17 <= e0 <= 3.5:
        raise InputError(f"Loevinger's point kernel is defined for beta endpoints 0.17-3 MeV, got {e0:.3g} MeV")
    nu = 18.6 * (e0 - 0.036) ** -1.37
    c = 2.0 if e0 < 0.5 else (1.5 if e0 < 1.5 else 1.0)
    y = nu * density_g_ml * np.asarray(r_mm, dtype=np.float64) / 10.0
    inner = c * (1.0 - (y / c) * np.exp(1.0 - y / c)) + y * np.exp(1.0 - y)
    out: np.ndarray = np.where(y < c, inner, y * np.exp(1.0 - y))
    return out


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = math.pi * (1.0 + math.sqrt(5.0)) * i
    s = np.sqrt(1.0 - z * z)
    return np.stack([s * np.cos(phi), s * np.sin(phi), z], axis=1)


def radial_to_voxel_kernel(
    radii_mm: np.ndarray, weights: np.ndarray, spacing_mm: npt.ArrayLike, *, n_directions: int = 2000
) -> np.ndarray:
    """Voxel kernel (NumPy order ``(z, y, x)``, odd sizes, centre = source) from a radial distribution.

    ``weights[k]`` is the energy fraction deposited in the shell around ``radii_mm[k]``. Each shell is
    sampled on ``n_directions`` quasi-uniform directions and spread trilinearly over the grid: the
    exact source-voxel/target-voxel average (see the module docstring). The result sums to
    ``weights.sum()`` and is symmetrised over the axis reflections.
    """
    spacing = np.asarray(_spacing3(spacing_mm))
    radii = np.asarray(radii_mm, dtype=np.float64).reshape(-1)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    half = np.ceil(radii.max() / spacing).astype(int) + 1  # (x, y, z)
    shape_xyz = tuple(int(v) for v in 2 * half + 1)
    dirs = _fibonacci_sphere(n_directions)
    kernel = np.zeros(int(np.prod(shape_xyz)))
    chunk = max(1, 400_000 // n_directions)
    for start in range(0, radii.size, chunk):
        r = radii[start : start + chunk]
        u = (r[:, None, None] * dirs[None, :, :] / spacing).reshape(-1, 3) + half
        ww = np.repeat(w[start : start + chunk] / n_directions, n_directions)
        fl = np.floor(u).astype(np.int64)
        fr = u - fl
        for corner in np.ndindex(2, 2, 2):
            c = np.asarray(corner)
            wt = ww * np.prod(np.where(c == 1, fr, 1.0 - fr), axis=1)
            flat = np.ravel_multi_index((fl + c).T, shape_xyz)
            kernel += np.bincount(flat, wt, minlength=kernel.size)
    k_xyz = kernel.reshape(shape_xyz)
    for axis in range(3):
        k_xyz = 0.5 * (k_xyz + np.flip(k_xyz, axis=axis))
    return np.ascontiguousarray(k_xyz.transpose(2, 1, 0))


@functools.lru_cache(maxsize=16)
def _kernel_cached(name: str, spacing: tuple[float, float, float], density: float, n_radii: int) -> np.ndarray:
    n = nuclide(name)
    if n.beta_endpoint_mev <= 0:
        raise InputError(f"{n.name} emits no beta particles: the beta dose point kernel does not apply")
    r_max = katz_penfold_range_mm(n.beta_endpoint_mev, density)
    edges = np.linspace(0.0, r_max, n_radii + 1)
    mid = 0.5 * (edges[1:] + edges[:-1])
    w = loevinger_radial_energy(mid, n.beta_endpoint_mev, density) * np.diff(edges)
    n_dir = int(np.clip(8 * (r_max / min(spacing)) ** 2, 500, 4000))
    kernel = radial_to_voxel_kernel(mid, w / w.sum(), spacing, n_directions=n_dir)
    kernel.setflags(write=False)
    return kernel


def energy_kernel(
    nuclide_name: str, spacing_mm: npt.ArrayLike, *, density_g_ml: float = SOFT_TISSUE_G_ML, n_radii: int = 400
) -> np.ndarray:
    """Fraction of the electron energy emitted in the centre voxel that each voxel absorbs.

    NumPy order ``(z, y, x)`` with odd sizes and the source at the centre; sums to 1. Cached per
    nuclide, spacing and density (read-only array). See the module docstring for the model.

    Examples
    --------
    >>> k = energy_kernel("Y-90", (4.42, 4.42, 4.42))
    >>> round(float(k.sum()), 6)
    1.0
    """
    sp = _spacing3(spacing_mm)
    if not math.isfinite(density_g_ml) or density_g_ml <= 0:
        raise InputError(f"density must be positive (g/mL), got {density_g_ml}")
    return _kernel_cached(nuclide(nuclide_name).name, sp, float(density_g_ml), int(n_radii))


def voxel_s_values(
    nuclide_name: str,
    spacing_mm: npt.ArrayLike,
    *,
    density_g_ml: float = SOFT_TISSUE_G_ML,
    electrons: str = "all",
) -> np.ndarray:
    """Voxel S-values in mGy/(MBq s), the unit of published tables (e.g. Lanconelli et al. 2012).

    Parameters
    ----------
    electrons
        ``"all"``: betas, conversion and Auger electrons (ICRP-107); ``"beta"``: betas only, the
        emission set some published tables were computed with.
    """
    if electrons not in ("all", "beta"):
        raise InputError(f"electrons must be 'all' or 'beta', got {electrons!r}")
    n = nuclide(nuclide_name)
    energy = n.electron_energy_mev if electrons == "all" else n.beta_energy_mev
    kernel = energy_kernel(nuclide_name, spacing_mm, density_g_ml=density_g_ml)
    mass_kg = float(_voxel_mass_kg(spacing_mm, density_g_ml))
    return kernel * energy * J_PER_MEV * 1e6 / mass_kg * 1e3


def kernel_dose(
    tia_bq_s: npt.ArrayLike,
    spacing_mm: npt.ArrayLike,
    nuclide_name: str,
    *,
    density_g_ml: float | npt.ArrayLike = SOFT_TISSUE_G_ML,
) -> np.ndarray:
    """Absorbed dose (Gy) by FFT convolution of the TIA (NumPy ``(z, y, x)``) with the voxel kernel.

    The energy absorbed per voxel is ``(TIA * E_electrons) (x) K``; the dose divides it by each voxel's
    own mass. With a scalar density the kernel is computed for that density (exact in a homogeneous
    medium); with a density map the kernel is for soft tissue and the density enters only through the
    voxel mass ("density-weighted" kernel convolution, as in e.g. Dieudonne et al., J Nucl Med 54
    (2013) 236), which is accurate within soft tissues and approximate across lung or bone interfaces.
    """
    from scipy.signal import fftconvolve

    tia = np.asarray(tia_bq_s, dtype=np.float64)
    if tia.ndim != 3:
        raise InputError(f"kernel dose needs a 3D activity map, got shape {tia.shape}")
    rho = np.asarray(density_g_ml, dtype=np.float64)
    kernel_rho = float(rho) if rho.ndim == 0 else SOFT_TISSUE_G_ML
    # spacing is ITK (x, y, z); the kernel comes back in NumPy (z, y, x) order like the array.
    kernel = energy_kernel(nuclide_name, spacing_mm, density_g_ml=kernel_rho)
    energy_j = nuclide(nuclide_name).electron_energy_mev * J_PER_MEV
    absorbed = fftconvolve(tia * energy_j, kernel, mode="same")
    dose: np.ndarray = np.clip(absorbed, 0.0, None) / _voxel_mass_kg(spacing_mm, rho)
    return dose
