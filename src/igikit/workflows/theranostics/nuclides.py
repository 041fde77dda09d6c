"""Radionuclide data for dosimetry, read from packages rather than typed by hand.

* Half-lives: ``radioactivedecay`` (ICRP Publication 107 decay data).
* Emissions (mean energy and yield of every beta, conversion and Auger electron, gamma and X-ray
  line; the beta spectra): ``icrp107-database`` (ICRP Publication 107, Eckerman & Endo 2008).

The only numbers typed here are the *clinical* local-deposition constants of the microsphere
nuclides (absorbed dose of 1 GBq fully decaying in 1 kg), because clinics prescribe with them and
they differ slightly from what ICRP-107 electrons alone give:

============  ==================  =================  ==================================================
nuclide       clinical (Gy/GBq/kg)  ICRP-107 e- only   source of the clinical constant
============  ==================  =================  ==================================================
Y-90          49.67               49.77              Gulec, Mesoloras & Stabin, J Nucl Med 47 (2006)
                                                     1209 (MIRD equations for Y-90 microspheres); the
                                                     SIR-Spheres and TheraSphere instructions for use
                                                     state the same dose-activity relation (rounded).
Ho-166        15.87               15.53              Smits et al., Lancet Oncol 13 (2012) 1025 (HEPAR):
                                                     3.781 GBq/kg for 60 Gy, i.e. 60 / 3.781; the
                                                     QuiremSpheres instructions for use.
============  ==================  =================  ==================================================

The ICRP-107 column is computed (not typed) by :func:`electron_deposition_gy_per_gbq_kg`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from igikit.errors import InputError

#: Joules per MeV (CODATA 2018, exact).
J_PER_MEV = 1.602176634e-13

#: Nuclides igikit's theranostics workflows are documented and tested for; any nuclide known to
#: both packages also works.
THERAPY_NUCLIDES: tuple[str, ...] = ("Y-90", "Ho-166", "Lu-177", "I-131")

#: Clinical local-deposition constants (Gy per GBq per kg, full decay); sources in the module docstring.
CLINICAL_GY_PER_GBQ_KG: dict[str, float] = {"Y-90": 49.67, "Ho-166": 15.87}

_ELECTRONS = ("beta-", "beta+", "IE", "auger")
_BETAS = ("beta-", "beta+")
_PHOTONS = ("gamma", "X", "annihilation")


@dataclass(frozen=True)
class Nuclide:
    """Decay data of one radionuclide (ICRP-107), energies as means per decay.

    Attributes
    ----------
    name
        Canonical name, e.g. ``"Lu-177"``.
    half_life_s
        Physical half-life (s), from ``radioactivedecay``.
    electron_energy_mev
        Mean energy per decay carried by electrons: betas, conversion and Auger electrons.
    beta_energy_mev
        Mean energy per decay carried by beta particles alone.
    photon_energy_mev
        Mean energy per decay carried by gamma rays, X-rays and annihilation photons.
    alpha_energy_mev
        Mean energy per decay carried by alpha particles.
    beta_endpoint_mev
        Largest beta endpoint energy (0 when the nuclide emits no betas).
    beta_spectrum_mean_mev
        Mean energy of one beta particle over the ICRP-107 beta spectrum.
    """

    name: str
    half_life_s: float
    electron_energy_mev: float
    beta_energy_mev: float
    photon_energy_mev: float
    alpha_energy_mev: float
    beta_endpoint_mev: float
    beta_spectrum_mean_mev: float

    @property
    def half_life_h(self) -> float:
        """Physical half-life (h)."""
        return self.half_life_s / 3600.0

    @property
    def decay_constant_per_s(self) -> float:
        """Physical decay constant ``ln 2 / T_half`` (1/s)."""
        return math.log(2.0) / self.half_life_s

    @property
    def mean_life_s(self) -> float:
        """Mean life ``T_half / ln 2`` (s): decays per Bq of a source left to decay completely."""
        return self.half_life_s / math.log(2.0)


def canonical_name(name: str) -> str:
    """``"lu177"``, ``"177Lu"``, ``"Lu-177"``, ``"lu-177m"`` -> ``"Lu-177"`` / ``"Lu-177m"``.

    Raises
    ------
    InputError
        If the text is not a nuclide name.
    """
    text = name.strip().replace("_", "-").replace(" ", "")
    m = re.fullmatch(r"([A-Za-z]{1,2})-?(\d{1,3})([mnMN]?)", text)
    if m is not None:
        sym, mass, meta = m.groups()
    else:
        m2 = re.fullmatch(r"(\d{1,3})([mnMN]?)-?([A-Za-z]{1,2})", text)
        if m2 is None:
            raise InputError(f"{name!r} is not a nuclide name (write it like Lu-177, Y-90, Ho-166, I-131)")
        mass, meta, sym = m2.groups()
    return f"{sym.capitalize()}-{int(mass)}{meta.lower()}"


def _emissions(name: str) -> dict[str, list[list[float]]]:
    path = resources.files("icrp107_database") / "icrp107" / f"{name}.json"
    if not path.is_file():
        raise InputError(f"unknown nuclide {name!r}: not in the ICRP-107 database; known therapy nuclides: "
                         + ", ".join(THERAPY_NUCLIDES))
    text = path.read_text()
    data = json.loads(text)
    if isinstance(data, str):  # the package stores each file as a JSON string holding JSON
        data = json.loads(data)
    emissions: dict[str, list[list[float]]] = data["emissions"]
    return emissions


def _mean_energy(emissions: dict[str, list[list[float]]], kinds: tuple[str, ...]) -> float:
    return float(sum(e * y for kind in kinds for e, y in emissions.get(kind, [])))


@functools.lru_cache(maxsize=64)
def nuclide(name: str) -> Nuclide:
    """Decay data of ``name`` (ICRP-107), e.g. ``nuclide("Lu-177").half_life_h``.

    Raises
    ------
    InputError
        For a name that is not a nuclide or that the packages do not know.

    Examples
    --------
    >>> round(nuclide("Y-90").half_life_h, 1)
    64.1
    """
    canon = canonical_name(name)
    emissions = _emissions(canon)
    half_life_s = half_life_from_radioactivedecay(canon)
    if not math.isfinite(half_life_s) or half_life_s <= 0:
        raise InputError(f"nuclide {canon!r} is stable or has no finite half-life")
    energies, density = _spectrum_arrays(emissions)
    endpoint = float(energies[-1]) if energies.size else 0.0
    mean = float(np.trapezoid(density * energies, energies) / np.trapezoid(density, energies)) if energies.size else 0.0
    return Nuclide(
        name=canon,
        half_life_s=half_life_s,
        electron_energy_mev=_mean_energy(emissions, _ELECTRONS),
        beta_energy_mev=_mean_energy(emissions, _BETAS),
        photon_energy_mev=_mean_energy(emissions, _PHOTONS),
        alpha_energy_mev=_mean_energy(emissions, ("alpha",)),
        beta_endpoint_mev=endpoint,
        beta_spectrum_mean_mev=mean,
    )


_TIME_UNITS_S = {"μs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@functools.lru_cache(maxsize=1)
def _radioactivedecay_table() -> tuple[dict[str, tuple[float, str]], float] | None:
    # Importing radioactivedecay takes seconds (pandas, sympy, networkx); its decay data is one
    # NumPy archive inside the package, read here directly, without executing the package.
    spec = importlib.util.find_spec("radioactivedecay")
    if spec is None or not spec.submodule_search_locations:
        return None
    archive = Path(next(iter(spec.submodule_search_locations))) / "icrp107_ame2020_nubase2020" / "decay_data.npz"
    if not archive.is_file():
        return None
    with np.load(archive, allow_pickle=True) as data:
        table = {str(n): (float(h[0]), str(h[1])) for n, h in zip(data["nuclides"], data["hldata"], strict=True)}
        return table, float(data["year_conv"])


def half_life_from_radioactivedecay(name: str, *, fast: bool = True) -> float:
    """Half-life (s) of ``name`` from ``radioactivedecay``'s default (ICRP-107) dataset.

    With ``fast`` the package's data archive is read directly; otherwise (or when its layout is not
    the expected one) through ``radioactivedecay.Nuclide``. Both give the same number.
    """
    canon = canonical_name(name)
    table = _radioactivedecay_table() if fast else None
    if table is not None and canon in table[0]:
        value, unit = table[0][canon]
        if unit == "y":
            return value * table[1] * 86400.0
        if unit in _TIME_UNITS_S:
            return value * _TIME_UNITS_S[unit]
    import radioactivedecay as rd

    try:
        return float(rd.Nuclide(canon).half_life("s"))
    except Exception as exc:  # radioactivedecay raises ValueError for unknown names
        raise InputError(f"unknown nuclide {canon!r}: radioactivedecay has no half-life for it ({exc})") from exc


def _spectrum_arrays(emissions: dict[str, list[list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    table = np.asarray(emissions.get("b-spectra", []), dtype=np.float64).reshape(-1, 2)
    # The spectrum is tabulated up to the endpoint, where the density falls to 0.
    return table[:, 0], table[:, 1]


def beta_spectrum(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The ICRP-107 beta spectrum of ``name``: energies (MeV) and probability density (1/MeV)."""
    energies, density = _spectrum_arrays(_emissions(canonical_name(name)))
    return energies.copy(), density.copy()


def electron_deposition_gy_per_gbq_kg(name: str) -> float:
    """Absorbed dose (Gy) of 1 GBq decaying completely in 1 kg, all electron energy absorbed (ICRP-107).

    Examples
    --------
    >>> round(electron_deposition_gy_per_gbq_kg("Y-90"), 2)
    49.77
    """
    n = nuclide(name)
    return n.electron_energy_mev * J_PER_MEV * 1e9 * n.mean_life_s


def local_deposition_gy_per_gbq_kg(name: str, *, source: str = "clinical") -> float:
    """Local-deposition constant of ``name``: Gy from 1 GBq decaying completely in 1 kg.

    Parameters
    ----------
    source
        ``"clinical"``: the constant clinics prescribe with (Y-90 49.67, Ho-166 15.87; see the
        module docstring), falling back to ICRP-107 electrons for other nuclides;
        ``"icrp107"``: always ICRP-107 electrons alone.
    """
    if source not in ("clinical", "icrp107"):
        raise InputError(f"source must be 'clinical' or 'icrp107', got {source!r}")
    canon = canonical_name(name)
    if source == "clinical" and canon in CLINICAL_GY_PER_GBQ_KG:
        return CLINICAL_GY_PER_GBQ_KG[canon]
    return electron_deposition_gy_per_gbq_kg(canon)


def local_deposition_energy_mev(name: str, *, source: str = "clinical") -> float:
    """Energy (MeV) per decay that local deposition absorbs in the voxel of the decay.

    The clinical constant expressed as an energy per decay, so that one code path serves both.
    """
    n = nuclide(name)
    gy = local_deposition_gy_per_gbq_kg(name, source=source)
    return gy / (J_PER_MEV * 1e9 * n.mean_life_s)
