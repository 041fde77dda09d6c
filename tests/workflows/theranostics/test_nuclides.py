"""Nuclide data from radioactivedecay and icrp107-database; local-deposition constants."""

from __future__ import annotations

import pytest

from igikit.errors import InputError
from igikit.workflows.theranostics.nuclides import (
    canonical_name,
    electron_deposition_gy_per_gbq_kg,
    half_life_from_radioactivedecay,
    local_deposition_gy_per_gbq_kg,
    nuclide,
)


@pytest.mark.parametrize(
    ("name", "half_life_h"), [("Y-90", 64.1), ("Ho-166", 26.8), ("Lu-177", 6.647 * 24), ("I-131", 8.0207 * 24)]
)
def test_half_lives_are_icrp107(name: str, half_life_h: float) -> None:
    assert nuclide(name).half_life_h == pytest.approx(half_life_h, rel=1e-6)


def test_fast_half_life_path_equals_the_package_api() -> None:
    for name in ("Y-90", "Lu-177", "Tc-99m", "Co-60"):
        assert half_life_from_radioactivedecay(name) == pytest.approx(
            half_life_from_radioactivedecay(name, fast=False), rel=1e-12
        )


def test_mean_energies_per_decay() -> None:
    y90, lu = nuclide("Y-90"), nuclide("Lu-177")
    assert y90.electron_energy_mev == pytest.approx(0.9331, abs=2e-4)
    assert y90.beta_endpoint_mev == pytest.approx(2.2801)
    assert lu.beta_energy_mev == pytest.approx(0.1333, abs=2e-4)
    assert lu.electron_energy_mev == pytest.approx(0.1479, abs=2e-4)  # betas + conversion + Auger
    assert lu.photon_energy_mev == pytest.approx(0.0351, abs=5e-4)
    assert nuclide("I-131").photon_energy_mev > 0.35


def test_clinical_constants_and_icrp107_electrons() -> None:
    assert local_deposition_gy_per_gbq_kg("Y-90") == pytest.approx(49.67)
    assert local_deposition_gy_per_gbq_kg("Ho-166") == pytest.approx(15.87)
    # Computed from the package data: the 49.77 and 15.53.
    assert electron_deposition_gy_per_gbq_kg("Y-90") == pytest.approx(49.77, abs=0.01)
    assert electron_deposition_gy_per_gbq_kg("Ho-166") == pytest.approx(15.53, abs=0.01)
    assert local_deposition_gy_per_gbq_kg("Y-90", source="icrp107") == pytest.approx(49.77, abs=0.01)
    # The clinical constants agree with ICRP-107 electrons within 2.2%.
    for n in ("Y-90", "Ho-166"):
        assert local_deposition_gy_per_gbq_kg(n) / electron_deposition_gy_per_gbq_kg(n) == pytest.approx(1, abs=0.022)


def test_names() -> None:
    assert canonical_name("lu177") == "Lu-177"
    assert canonical_name("177Lu") == "Lu-177"
    assert canonical_name("tc-99M") == "Tc-99m"
    with pytest.raises(InputError, match="unknown nuclide"):
        nuclide("Xx-999")
    with pytest.raises(InputError, match="not a nuclide name"):
        nuclide("banana")
