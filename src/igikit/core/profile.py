"""Patient profiles: the parameters that differ between adults, children, dogs and cats.

A profile is a YAML file (``DESIGN.md``, "Patient profiles") with the sections

``physiology``
    body mass, body temperature (and height where known);
``breathing``
    rate and peak-to-peak amplitudes of respiratory motion (SI, AP, LR) and irregularity;
``blood`` and ``tissue``
    thermal properties and perfusion for the Pennes bioheat equation;
``limits``
    temperature and CEM43 limits of organs at risk, radiotherapy gating tolerances;
``radiobiology``
    linear-quadratic parameters per tissue;
``organ_masses_kg`` and ``dosimetry_limits``
    default organ masses and organ-at-risk limits for radionuclide therapy.

Phantoms, predictors, safety limits and plans read these values through :func:`load_profile` rather
than from constants in code. Profiles shipped with igikit (:func:`available_profiles`) name their
literature sources beside every value; a user can pass the path of their own YAML file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from igikit.core.config import read_yaml
from igikit.errors import InputError

#: Sections every profile must have.
REQUIRED_SECTIONS: tuple[str, ...] = (
    "physiology",
    "breathing",
    "blood",
    "tissue",
    "limits",
    "radiobiology",
    "organ_masses_kg",
    "dosimetry_limits",
)

_BREATHING_KEYS = ("rate_per_min", "amplitude_si_mm", "amplitude_ap_mm", "amplitude_lr_mm", "irregularity")
_BREATHING_RANGES = ("rate_range_per_min", "amplitude_si_range_mm")
_TISSUE_KEYS = ("density_kg_m3", "specific_heat_j_kg_k", "conductivity_w_m_k", "perfusion_ml_min_kg")
_BLOOD_KEYS = ("density_kg_m3", "specific_heat_j_kg_k", "conductivity_w_m_k", "arterial_temperature_c")
_RADIOBIOLOGY_KEYS = ("alpha_beta_gy", "repair_half_time_h")
#: Plausible core temperatures of mammals (degC); outside this a profile is surely mistyped.
_BODY_TEMPERATURE_RANGE_C = (30.0, 43.0)


@dataclass(frozen=True)
class BreathingProfile:
    """Respiratory motion of a patient group; amplitudes are peak-to-peak (mm).

    Attributes
    ----------
    rate_per_min
        Typical breathing rate (cycles per minute).
    amplitude_si_mm, amplitude_ap_mm, amplitude_lr_mm
        Typical peak-to-peak excursion of abdominal organs along superior-inferior (cranio-caudal
        for animals), anterior-posterior and left-right.
    irregularity
        Cycle-to-cycle coefficient of variation of period and amplitude (0 = perfectly regular).
    rate_range_per_min, amplitude_si_range_mm
        The spread seen in the population, for phantoms that draw varied cases (``None`` if not given).
    """

    rate_per_min: float
    amplitude_si_mm: float
    amplitude_ap_mm: float
    amplitude_lr_mm: float
    irregularity: float
    rate_range_per_min: tuple[float, float] | None = None
    amplitude_si_range_mm: tuple[float, float] | None = None

    @property
    def period_s(self) -> float:
        """Typical breathing period (s)."""
        return 60.0 / self.rate_per_min


@dataclass(frozen=True)
class TissueProperties:
    """Thermal properties and perfusion of one tissue, with the blood values Pennes' equation needs.

    Pennes (1948): ``rho c dT/dt = div(k grad T) - w_b c_b (T - T_a) + Q``, where
    ``w_b = perfusion_kg_m3_s`` and ``w_b c_b = perfusion_w_m3_k``.

    Attributes
    ----------
    name
        Tissue name as in the profile (``"liver"``).
    density_kg_m3, specific_heat_j_kg_k, conductivity_w_m_k
        Tissue density, specific heat capacity and thermal conductivity.
    perfusion_ml_min_kg
        Blood flow in mL per minute per kg of tissue (the IT'IS database's "heat transfer rate").
    blood_density_kg_m3, blood_specific_heat_j_kg_k, arterial_temperature_c
        From the profile's ``blood`` section.
    """

    name: str
    density_kg_m3: float
    specific_heat_j_kg_k: float
    conductivity_w_m_k: float
    perfusion_ml_min_kg: float
    blood_density_kg_m3: float
    blood_specific_heat_j_kg_k: float
    arterial_temperature_c: float

    @property
    def diffusivity_m2_s(self) -> float:
        """Thermal diffusivity ``k / (rho c)`` (m^2/s)."""
        return self.conductivity_w_m_k / (self.density_kg_m3 * self.specific_heat_j_kg_k)

    @property
    def perfusion_per_s(self) -> float:
        """Volume of blood per volume of tissue per second (1/s)."""
        # mL -> m^3 (1e-6), per min -> per s (/60), per kg tissue -> per m^3 tissue (x density)
        return self.perfusion_ml_min_kg * 1e-6 / 60.0 * self.density_kg_m3

    @property
    def perfusion_kg_m3_s(self) -> float:
        """Mass of blood per volume of tissue per second (kg m^-3 s^-1): Pennes' ``w_b``."""
        return self.perfusion_per_s * self.blood_density_kg_m3

    @property
    def perfusion_w_m3_k(self) -> float:
        """Pennes perfusion heat-exchange coefficient ``w_b c_b`` (W m^-3 K^-1)."""
        return self.perfusion_kg_m3_s * self.blood_specific_heat_j_kg_k


@dataclass(frozen=True)
class Radiobiology:
    """Linear-quadratic parameters of one tissue (Dale 1985)."""

    alpha_beta_gy: float
    repair_half_time_h: float


@dataclass(frozen=True)
class Profile:
    """A validated patient profile; read-only.

    Attributes
    ----------
    name, species, age_group, description
        Identity of the profile, e.g. ``"veterinary_dog"``, ``"dog"``, ``"adult"`` and a sentence.
    body_mass_kg, body_temperature_c
        From ``physiology``.
    breathing
        The typed ``breathing`` section.
    source
        The YAML file it was read from, so that a plan can say which profile it used.
    """

    name: str
    species: str
    age_group: str
    description: str
    body_mass_kg: float
    body_temperature_c: float
    breathing: BreathingProfile
    source: Path
    _data: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def sections(self) -> tuple[str, ...]:
        """Names of all sections (the required ones and any extra, e.g. ``therapy_defaults``)."""
        return tuple(k for k, v in self._data.items() if isinstance(v, Mapping))

    def section(self, name: str) -> Mapping[str, Any]:
        """A section as a read-only mapping (nested mappings read-only too, lists as tuples)."""
        value = self._data.get(name)
        if not isinstance(value, Mapping):
            raise InputError(
                f"profile {self.name!r} has no section {name!r}; sections: {', '.join(self.sections)}", self.source
            )
        return value

    @property
    def tissues(self) -> tuple[str, ...]:
        """Names of the tissues the profile describes."""
        return tuple(self.section("tissue"))

    def tissue(self, name: str) -> TissueProperties:
        """Thermal properties of tissue ``name`` (``"muscle"``, ``"fat"``, ``"liver"``...)."""
        entry = self.section("tissue").get(name)
        if entry is None:
            raise InputError(
                f"profile {self.name!r} has no tissue {name!r}; tissues: {', '.join(self.tissues)}", self.source
            )
        blood = self.section("blood")
        return TissueProperties(
            name=name,
            **{key: float(entry[key]) for key in _TISSUE_KEYS},
            blood_density_kg_m3=float(blood["density_kg_m3"]),
            blood_specific_heat_j_kg_k=float(blood["specific_heat_j_kg_k"]),
            arterial_temperature_c=float(blood["arterial_temperature_c"]),
        )

    def radiobiology(self, name: str) -> Radiobiology:
        """Linear-quadratic parameters of tissue ``name`` (``"kidney"``, ``"tumour"``...)."""
        entry = self.section("radiobiology").get(name)
        if entry is None:
            known = ", ".join(self.section("radiobiology"))
            raise InputError(f"profile {self.name!r} has no radiobiology for {name!r}; known: {known}", self.source)
        return Radiobiology(float(entry["alpha_beta_gy"]), float(entry["repair_half_time_h"]))

    def organ_mass_kg(self, name: str) -> float:
        """Default mass of organ ``name`` (kg)."""
        masses = self.section("organ_masses_kg")
        if name not in masses:
            raise InputError(
                f"profile {self.name!r} has no organ mass for {name!r}; organs: {', '.join(masses)}", self.source
            )
        return float(masses[name])

    def number(self, key: str) -> float:
        """A number by dotted key, e.g. ``"limits.gating.margin_mm"`` or ``"dosimetry_limits.kidney_bed_gy"``."""
        node: Any = self._data
        for depth, part in enumerate(key.split(".")):
            if not isinstance(node, Mapping) or part not in node:
                where = ".".join(key.split(".")[:depth]) or "the top level"
                raise InputError(f"profile {self.name!r} has no {key!r} (no {part!r} in {where})", self.source)
            node = node[part]
        if isinstance(node, bool) or not isinstance(node, int | float):
            raise InputError(f"profile {self.name!r}: {key} is not a number ({node!r})", self.source)
        return float(node)


# ----------------------------------------------------------------------------------- loading
def _profiles_dir() -> Path:
    return Path(str(resources.files("igikit") / "profiles"))


def available_profiles() -> tuple[str, ...]:
    """Names of the profiles shipped with igikit (``adult``, ``pediatric``, ``veterinary_dog``...)."""
    return tuple(sorted(p.stem for p in _profiles_dir().glob("*.yaml")))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load and validate a patient profile.

    Parameters
    ----------
    name_or_path
        The name of a shipped profile (see :func:`available_profiles`) or the path of a YAML file.

    Returns
    -------
    Profile
        The validated, read-only profile.

    Raises
    ------
    InputError
        For an unknown name, a missing or unparsable file, or a missing section or key, a value of
        the wrong type or out of range; the message names the file and the key.

    Examples
    --------
    >>> p = load_profile("pediatric")
    >>> p.breathing.rate_per_min > load_profile("adult").breathing.rate_per_min
    True
    >>> round(load_profile("adult").tissue("liver").perfusion_kg_m3_s, 1)
    16.2
    """
    path = _resolve(name_or_path)
    data = read_yaml(path, "profile")
    return _validate(data, path)


def _resolve(name_or_path: str | Path) -> Path:
    if isinstance(name_or_path, str) and name_or_path in available_profiles():
        return _profiles_dir() / f"{name_or_path}.yaml"
    path = Path(name_or_path)
    if (
        isinstance(name_or_path, str)
        and not path.exists()
        and path.suffix not in (".yaml", ".yml")
        and (len(path.parts) == 1)
    ):
        raise InputError(f"unknown profile {name_or_path!r}; shipped profiles: {', '.join(available_profiles())}")
    return path


class _Checker:
    """Validation with messages that name the file and the dotted key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> InputError:
        return InputError(f"{key}: {problem}", self.path)

    def mapping(self, parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        full = f"{where}.{key}" if where else key
        if key not in parent:
            raise self.fail(full, "missing section" if not where else "missing entry")
        value = parent[key]
        if not isinstance(value, Mapping) or not value:
            raise self.fail(full, f"must be a non-empty mapping, got {_describe(value)}")
        return value

    def number(
        self, parent: Mapping[str, Any], key: str, where: str, *, low: float | None = None, strict: bool = True
    ) -> float:
        full = f"{where}.{key}" if where else key
        if key not in parent:
            raise self.fail(full, "missing key")
        value = parent[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(full, f"must be a finite number, got {_describe(value)}")
        if low is not None and (value <= low if strict else value < low):
            raise self.fail(full, f"is {value}; it must be {'>' if strict else '>='} {low}")
        return float(value)

    def text(self, parent: Mapping[str, Any], key: str) -> str:
        value = parent.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be non-empty text, got {_describe(value)}")
        return value.strip()

    def only(self, section: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        unknown = [k for k in section if k not in allowed]
        if unknown:
            raise self.fail(f"{where}.{unknown[0]}", f"unknown key (expected {', '.join(allowed)})")

    def numbers_tree(self, node: Any, where: str, *, positive: bool = False) -> None:
        """Every leaf of ``node`` is a finite number (lists of numbers allowed)."""
        if isinstance(node, Mapping):
            if not node:
                raise self.fail(where, "must not be empty")
            for key, value in node.items():
                self.numbers_tree(value, f"{where}.{key}", positive=positive)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                self.numbers_tree(value, f"{where}[{i}]", positive=positive)
        elif isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
            raise self.fail(where, f"must be a finite number, got {_describe(node)}")
        elif positive and node <= 0:
            raise self.fail(where, f"is {node}; it must be > 0")

    def range_pair(
        self, section: Mapping[str, Any], key: str, where: str, typical: float
    ) -> tuple[float, float] | None:
        if key not in section:
            return None
        value = section[key]
        full = f"{where}.{key}"
        if not isinstance(value, list) or len(value) != 2:
            raise self.fail(full, f"must be a [low, high] pair, got {_describe(value)}")
        low = self.number({"0": value[0]}, "0", full, low=0.0, strict=False)
        high = self.number({"1": value[1]}, "1", full, low=0.0, strict=False)
        if not low <= typical <= high:
            raise self.fail(full, f"[{low}, {high}] does not contain the typical value {typical}")
        return low, high


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{value!r} ({type(value).__name__})"


def _validate(data: Any, path: Path) -> Profile:
    check = _Checker(path)
    if not isinstance(data, Mapping):
        raise InputError(f"a profile must be a YAML mapping of sections, got {_describe(data)}", path)
    for section in REQUIRED_SECTIONS:
        check.mapping(data, section, "")

    physiology = data["physiology"]
    body_mass_kg = check.number(physiology, "body_mass_kg", "physiology", low=0.0)
    body_temperature_c = check.number(physiology, "body_temperature_c", "physiology")
    low_t, high_t = _BODY_TEMPERATURE_RANGE_C
    if not low_t <= body_temperature_c <= high_t:
        raise check.fail("physiology.body_temperature_c", f"is {body_temperature_c}; expected {low_t}-{high_t} degC")
    check.numbers_tree(physiology, "physiology", positive=True)

    raw_breathing = data["breathing"]
    check.only(raw_breathing, _BREATHING_KEYS + _BREATHING_RANGES, "breathing")
    rate = check.number(raw_breathing, "rate_per_min", "breathing", low=0.0)
    amplitudes = {
        key: check.number(raw_breathing, key, "breathing", low=0.0, strict=False)
        for key in ("amplitude_si_mm", "amplitude_ap_mm", "amplitude_lr_mm")
    }
    irregularity = check.number(raw_breathing, "irregularity", "breathing", low=0.0, strict=False)
    if irregularity > 1.0:
        raise check.fail("breathing.irregularity", f"is {irregularity}; it is a coefficient of variation in [0, 1]")
    breathing = BreathingProfile(
        rate_per_min=rate,
        irregularity=irregularity,
        rate_range_per_min=check.range_pair(raw_breathing, "rate_range_per_min", "breathing", rate),
        amplitude_si_range_mm=check.range_pair(
            raw_breathing, "amplitude_si_range_mm", "breathing", amplitudes["amplitude_si_mm"]
        ),
        **amplitudes,
    )

    blood = data["blood"]
    check.only(blood, _BLOOD_KEYS, "blood")
    for key in _BLOOD_KEYS:
        check.number(blood, key, "blood", low=0.0)

    for tissue in data["tissue"]:
        where = f"tissue.{tissue}"
        entry = check.mapping(data["tissue"], tissue, "tissue")
        check.only(entry, _TISSUE_KEYS, where)
        for key in _TISSUE_KEYS:
            check.number(entry, key, where, low=0.0, strict=key != "perfusion_ml_min_kg")

    check.numbers_tree(data["limits"], "limits")
    temperatures = data["limits"].get("temperature_c", {})
    if isinstance(temperatures, Mapping):
        for organ, limit in temperatures.items():
            if isinstance(limit, int | float) and limit <= body_temperature_c:
                raise check.fail(
                    f"limits.temperature_c.{organ}",
                    f"is {limit} degC, not above the body temperature {body_temperature_c} degC",
                )

    for tissue in data["radiobiology"]:
        entry = check.mapping(data["radiobiology"], tissue, "radiobiology")
        check.only(entry, _RADIOBIOLOGY_KEYS, f"radiobiology.{tissue}")
        for key in _RADIOBIOLOGY_KEYS:
            check.number(entry, key, f"radiobiology.{tissue}", low=0.0)

    check.numbers_tree(data["organ_masses_kg"], "organ_masses_kg", positive=True)
    check.numbers_tree(data["dosimetry_limits"], "dosimetry_limits", positive=True)

    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise check.fail("name", f"must be non-empty text, got {_describe(name)}")
    return Profile(
        name=name.strip(),
        species=check.text(data, "species"),
        age_group=check.text(data, "age_group"),
        description=check.text(data, "description"),
        body_mass_kg=body_mass_kg,
        body_temperature_c=body_temperature_c,
        breathing=breathing,
        source=path,
        _data=_freeze(data),
    )


def _freeze(node: Any) -> Any:
    """Read-only copy: mappings become ``MappingProxyType``, lists tuples."""
    if isinstance(node, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in node.items()})
    if isinstance(node, list):
        return tuple(_freeze(v) for v in node)
    return node
