import math
from pathlib import Path

import pytest
import yaml

from igikit.core.profile import (
    REQUIRED_SECTIONS,
    BreathingProfile,
    Profile,
    available_profiles,
    load_profile,
)
from igikit.errors import InputError

SHIPPED = ("adult", "pediatric", "veterinary_cat", "veterinary_dog")
TISSUES = ("muscle", "fat", "liver", "brain", "kidney")


def test_the_four_profiles_ship_with_the_package() -> None:
    assert available_profiles() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_with_every_section_and_tissue(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile, Profile) and profile.name == name
    assert set(REQUIRED_SECTIONS) <= set(profile.sections)
    assert profile.source.name == f"{name}.yaml"
    for tissue in TISSUES:
        props = profile.tissue(tissue)
        assert 900 <= props.density_kg_m3 <= 1100  # soft tissue, fat included
        assert 0.1 <= props.conductivity_w_m_k <= 0.6
        # thermal diffusivity of soft tissue is ~1-2e-7 m^2/s (Duck 1990)
        assert 0.9e-7 <= props.diffusivity_m2_s <= 2e-7
    for organ in ("liver", "kidneys", "spleen", "lungs"):
        assert 0 < profile.organ_mass_kg(organ) < 0.05 * profile.body_mass_kg
    assert profile.number("dosimetry_limits.lung_gy_per_treatment") == 30.0
    assert profile.number("limits.cem43_min.lesion_threshold") == 240.0
    kidney = profile.radiobiology("kidney")
    assert kidney.alpha_beta_gy == 2.5 and kidney.repair_half_time_h == 2.8
    for limit in profile.section("limits")["temperature_c"].values():
        assert limit > profile.body_temperature_c


def test_profiles_differ_where_patients_do() -> None:
    adult, child, dog, cat = (load_profile(n) for n in ("adult", "pediatric", "veterinary_dog", "veterinary_cat"))
    assert child.breathing.rate_per_min > adult.breathing.rate_per_min
    assert child.breathing.amplitude_si_mm < adult.breathing.amplitude_si_mm
    assert 10 <= dog.breathing.rate_per_min <= 30
    assert cat.breathing.amplitude_si_mm < dog.breathing.amplitude_si_mm
    assert dog.body_temperature_c > adult.body_temperature_c
    assert child.organ_mass_kg("liver") < adult.organ_mass_kg("liver")
    assert child.tissue("brain").perfusion_ml_min_kg > adult.tissue("brain").perfusion_ml_min_kg
    assert (adult.species, dog.species, cat.species) == ("human", "dog", "cat")
    assert cat.section("therapy_defaults")["i131_hyperthyroid_activity_mbq"] == 148.0


def test_adult_values_match_their_sources() -> None:
    adult = load_profile("adult")
    b = adult.breathing
    assert b == BreathingProfile(15.0, 12.0, 5.0, 2.0, 0.2, (12.0, 20.0), (5.0, 25.0))
    assert b.period_s == 4.0
    assert adult.organ_mass_kg("liver") == 1.8  # ICRP 89 reference male
    liver = adult.tissue("liver")
    assert (liver.density_kg_m3, liver.specific_heat_j_kg_k) == (1079.0, 3540.0)  # IT'IS v4.1
    # Pennes coefficients derived from the IT'IS heat transfer rate, by hand:
    # 860 mL/min/kg = 860e-6 / 60 m^3/s per kg; x 1079 kg/m^3 tissue; x 1050 kg/m^3 blood
    assert math.isclose(liver.perfusion_per_s, 860e-6 / 60 * 1079, rel_tol=1e-12)
    assert math.isclose(liver.perfusion_kg_m3_s, 16.239, rel_tol=1e-4)
    assert math.isclose(liver.perfusion_w_m3_k, 16.239 * 3617, rel_tol=1e-4)
    assert liver.arterial_temperature_c == 37.0


def test_profiles_are_read_only() -> None:
    profile = load_profile("adult")
    with pytest.raises(TypeError):
        profile.section("limits")["gating"]["margin_mm"] = 0.0
    assert isinstance(profile.breathing.rate_range_per_min, tuple)


def test_unknown_names_in_a_profile_are_input_errors() -> None:
    profile = load_profile("adult")
    with pytest.raises(InputError, match="no tissue 'bone'; tissues: muscle, fat, liver, brain, kidney"):
        profile.tissue("bone")
    with pytest.raises(InputError, match="no section 'dosimetry'"):
        profile.section("dosimetry")
    with pytest.raises(InputError, match="no organ mass for 'appendix'"):
        profile.organ_mass_kg("appendix")
    with pytest.raises(InputError, match="no radiobiology for 'skin'"):
        profile.radiobiology("skin")
    with pytest.raises(InputError, match=r"no 'limits.gating.margin_cm' \(no 'margin_cm' in limits.gating\)"):
        profile.number("limits.gating.margin_cm")
    with pytest.raises(InputError, match="not a number"):
        profile.number("limits.gating")
    with pytest.raises(InputError, match="unknown profile 'elephant'; shipped profiles: adult"):
        load_profile("elephant")


# ------------------------------------------------------------------------- user profiles
def _adult_data() -> dict:
    return yaml.safe_load(load_profile("adult").source.read_text())


def _write(tmp_path: Path, data: object, name: str = "patient.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_a_user_yaml_path_works(tmp_path: Path) -> None:
    data = _adult_data()
    del data["name"]  # the file name stands in
    data["breathing"]["rate_per_min"] = 9.0
    data["breathing"]["rate_range_per_min"] = [6, 12]
    data["tissue"]["tumour"] = dict(data["tissue"]["liver"], perfusion_ml_min_kg=0)  # a necrotic core
    path = _write(tmp_path, data, "slow_breather.yaml")
    for ref in (path, str(path)):
        profile = load_profile(ref)
        assert profile.name == "slow_breather"
        assert profile.breathing.rate_per_min == 9.0
        assert profile.tissue("tumour").perfusion_kg_m3_s == 0.0
        assert profile.source == path


def _mutate(data: dict, dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("breathing", _DELETE, "breathing: missing section"),
        ("tissue", {}, "tissue: must be a non-empty mapping"),
        ("breathing.rate_per_min", -12, "breathing.rate_per_min: is -12; it must be > 0"),
        ("breathing.rate_per_min", 0, "breathing.rate_per_min: is 0; it must be > 0"),
        ("breathing.amplitude_si_mm", _DELETE, "breathing.amplitude_si_mm: missing key"),
        ("breathing.amplitude_ap_mm", "5 mm", "breathing.amplitude_ap_mm: must be a finite number, got '5 mm'"),
        ("breathing.amplitude_lr_mm", float("nan"), "breathing.amplitude_lr_mm: must be a finite number"),
        ("breathing.irregularity", 1.5, "breathing.irregularity: is 1.5"),
        ("breathing.rate_per_minute", 12, "breathing.rate_per_minute: unknown key"),
        ("breathing.rate_range_per_min", [16, 20], "does not contain the typical value 15.0"),
        ("breathing.amplitude_si_range_mm", [5], "must be a [low, high] pair"),
        ("tissue.liver.conductivity_w_m_k", _DELETE, "tissue.liver.conductivity_w_m_k: missing key"),
        ("tissue.fat.density_kg_m3", -911, "tissue.fat.density_kg_m3: is -911"),
        ("tissue.muscle.perfusion_ml_min_kg", -1, "tissue.muscle.perfusion_ml_min_kg: is -1; it must be >= 0"),
        ("tissue.bone", "hard", "tissue.bone: must be a non-empty mapping"),
        ("blood.density_kg_m3", True, "blood.density_kg_m3: must be a finite number, got True"),
        ("physiology.body_temperature_c", 98.6, "physiology.body_temperature_c: is 98.6"),
        ("limits.temperature_c.skin", 36.0, "limits.temperature_c.skin: is 36.0 degC, not above the body"),
        ("limits.gating.margin_mm", "3mm", "limits.gating.margin_mm: must be a finite number"),
        ("radiobiology.kidney.alpha_beta_gy", 0, "radiobiology.kidney.alpha_beta_gy: is 0"),
        ("organ_masses_kg.liver", -1.8, "organ_masses_kg.liver: is -1.8; it must be > 0"),
        ("dosimetry_limits.kidney_bed_gy", None, "dosimetry_limits.kidney_bed_gy: must be a finite number"),
        ("species", "", "species: must be non-empty text"),
    ],
)
def test_bad_profiles_name_the_file_and_the_key(tmp_path: Path, key: str, value: object, fragment: str) -> None:
    data = _adult_data()
    _mutate(data, key, value)
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert fragment in message, message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("breathing: [unclosed\n", "invalid YAML at line 2"),
        ("- just\n- a list\n", "must be a YAML mapping of sections"),
        ("", "must be a YAML mapping of sections, got nothing"),
        ("breathing:\n  rate_per_min: 12\n  rate_per_min: :\n", "invalid YAML"),
    ],
)
def test_malformed_yaml_names_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_profile(path)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value), str(info.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="profile file not found"):
        load_profile(tmp_path / "nobody.yaml")
    with pytest.raises(InputError, match="cannot read profile"):
        load_profile(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="cannot read profile"):
        load_profile(binary)
