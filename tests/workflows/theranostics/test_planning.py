"""Y-90 partition model and LQ BED."""

from __future__ import annotations

import pytest

from igikit.errors import InputError
from igikit.workflows.theranostics.planning import bed_lq, partition_model_y90


def test_bed_hand_computed() -> None:
    # Two cycles of 5 Gy: 5 + 25 * 2.8 / (2.5 * (2.8 + 50)) = 5.530303 each.
    bed = bed_lq([5.0, 5.0], alpha_beta_gy=2.5, repair_half_time_h=2.8, effective_half_time_h=50.0)
    assert bed == pytest.approx(2 * (5 + 70 / 132), rel=1e-12)
    assert bed == pytest.approx(11.0606, abs=1e-4)


def test_bed_limits() -> None:
    assert bed_lq(0.0, alpha_beta_gy=2.5, repair_half_time_h=2.8, effective_half_time_h=50) == 0
    # A very slow dose rate approaches the physical dose.
    assert bed_lq(10.0, alpha_beta_gy=2.5, repair_half_time_h=2.8, effective_half_time_h=1e9) == pytest.approx(10.0)
    with pytest.raises(InputError):
        bed_lq([-1.0], alpha_beta_gy=2.5, repair_half_time_h=2.8, effective_half_time_h=50)


def test_partition_model_worked_example() -> None:
    # Issue 9's worked example: D_N 40 Gy, M_T 0.2 kg, M_N 1.3 kg, T/N 4, LSF 5 %, lung 1 kg:
    # A_liver = 40 (1.3 + 4 * 0.2) / 49.67 = 1.6912 GBq; A = 1.6912 / 0.95 = 1.7802 GBq;
    # lung = 49.67 * 1.7802 * 0.05 / 1.0 = 4.42 Gy; tumour = 160 Gy.
    p = partition_model_y90(
        normal_liver_gy=40, tumour_kg=0.2, normal_liver_kg=1.3, tn_ratio=4, lung_shunt_fraction=0.05
    )
    assert p.activity_gbq == pytest.approx(1.7802, abs=1e-4)
    assert p.tumour_gy == pytest.approx(160)
    assert p.lung_gy == pytest.approx(4.42, abs=0.01)
    assert p.limits_ok
    assert "1.78 GBq" in p.explanation()


def test_partition_model_consistency_and_lung_limit() -> None:
    p = partition_model_y90(
        normal_liver_gy=50, tumour_kg=0.5, normal_liver_kg=1.2, tn_ratio=3, lung_shunt_fraction=0.25
    )
    # Dose re-computed from the activity each compartment receives.
    a_liver = p.activity_gbq * 0.75
    conc_n = a_liver / (1.2 + 3 * 0.5)
    assert 49.67 * conc_n == pytest.approx(50)
    assert p.lung_gy == pytest.approx(49.67 * p.activity_gbq * 0.25 / 1.0)
    assert p.lung_gy > 30 and not p.limits_ok
    with pytest.raises(InputError):
        partition_model_y90(normal_liver_gy=40, tumour_kg=0.2, normal_liver_kg=1.3, tn_ratio=4, lung_shunt_fraction=1.0)
