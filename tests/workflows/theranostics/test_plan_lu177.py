"""``igikit plan lu177``: next-cycle activity under a cumulative kidney BED limit, against hand computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from igikit.errors import InputError
from igikit.workflows.theranostics.planning import bed_lq, plan_lu177_next_cycle
from tests.conftest import assert_input_error, run_cli

AB, TREP = 2.5, 2.8  # adult profile, kidney (Bodei et al. 2008)


def _by_hand(d1: float, a1: float, teff: float, limit: float, cycles: int = 1) -> float:
    g = TREP / (AB * (TREP + teff))
    done = cycles * (d1 + g * d1 * d1)
    dose = (-1.0 + math.sqrt(1.0 + 4.0 * g * (limit - done))) / (2.0 * g)  # D + g D^2 = limit - done
    return dose / (d1 / a1)


@pytest.mark.parametrize(("limit", "cycles"), [(28.0, 1), (40.0, 1), (28.0, 2)])
def test_activity_matches_hand_computation(limit: float, cycles: int) -> None:
    p = plan_lu177_next_cycle(kidney_gy=4.0, administered_gbq=7.4, effective_half_time_h=40.0, bed_limit_gy=limit,
                              alpha_beta_gy=AB, repair_half_time_h=TREP, cycles_done=cycles)
    assert p.activity_gbq == pytest.approx(_by_hand(4.0, 7.4, 40.0, limit, cycles), rel=1e-12)
    total = cycles * bed_lq(4.0, alpha_beta_gy=AB, repair_half_time_h=TREP, effective_half_time_h=40.0) + bed_lq(
        p.kidney_gy_next, alpha_beta_gy=AB, repair_half_time_h=TREP, effective_half_time_h=40.0)
    assert total == pytest.approx(limit, rel=1e-12) and p.limits_ok


def test_hand_values_and_uncertainty() -> None:
    p = plan_lu177_next_cycle(kidney_gy=4.0, administered_gbq=7.4, effective_half_time_h=40.0, bed_limit_gy=28.0,
                              alpha_beta_gy=AB, repair_half_time_h=TREP, kidney_gy_rel_se=0.1)
    # g = 2.8 / (2.5 * 42.8) = 0.026168; BED1 = 4 + 16 g = 4.4187; D = 16.4769 Gy; A = D / (4 / 7.4)
    assert p.bed_done_gy == pytest.approx(4.41869, abs=1e-5)
    assert p.kidney_gy_next == pytest.approx(16.4769, abs=1e-4)
    assert p.activity_gbq == pytest.approx(30.482, abs=1e-3)
    assert p.activity_low_gbq == pytest.approx(30.482 / 1.1, abs=1e-3)
    assert p.activity_high_gbq == pytest.approx(30.482 / 0.9, abs=1e-3)
    assert "30.48 GBq" in p.explanation() and "limit 28" in p.explanation()


def test_limit_already_reached_and_bad_input() -> None:
    p = plan_lu177_next_cycle(kidney_gy=15.0, administered_gbq=7.4, effective_half_time_h=40.0, bed_limit_gy=28.0,
                              alpha_beta_gy=AB, repair_half_time_h=TREP, cycles_done=2)
    assert p.activity_gbq == 0.0 and not p.limits_ok and p.explanation().startswith("0 GBq")
    with pytest.raises(InputError, match="administered"):
        plan_lu177_next_cycle(kidney_gy=4.0, administered_gbq=0.0, effective_half_time_h=40.0, bed_limit_gy=28.0,
                              alpha_beta_gy=AB, repair_half_time_h=TREP)


def _dosimetry(tmp_path: Path) -> Path:
    vois = {
        "2": {"mean_gy": 4.0, "tia_mbq_h": 1000.0, "tia_se_mbq_h": 50.0,
              "fit": {"model": "mono", "params": {"a0": 17.0, "k_per_h": math.log(2) / 40.0}}},
        "3": {"mean_gy": 3.0, "tia_mbq_h": 800.0, "tia_se_mbq_h": None,
              "fit": {"model": "bi", "params": {"a0": 17.0, "k_per_h": math.log(2) / 50.0, "k_uptake_per_h": 0.7}}},
        "4": {"mean_gy": 3.0, "tia_mbq_h": 800.0, "fit": {"model": "trapezoid", "params": {}}},
    }
    path = tmp_path / "cycle1.json"
    path.write_text(json.dumps({"nuclide": "Lu-177", "vois": vois}))
    return path


def test_cli_plan_lu177(tmp_path: Path) -> None:
    dos = _dosimetry(tmp_path)
    r = run_cli("plan", "lu177", "--dosimetry", dos, "--administered-gbq", "7.4", "--kidney-voi", "2,3",
                "--kidney-bed-limit-gy", "28", "--json", tmp_path / "p.json")
    assert r.returncode == 0, r.stderr
    j = json.loads((tmp_path / "p.json").read_text())
    assert j["kidney_voi"] == "2"  # the more irradiated kidney binds
    assert j["activity_gbq"] == pytest.approx(_by_hand(4.0, 7.4, 40.0, 28.0), rel=1e-9)
    assert j["kidneys"]["3"]["activity_gbq"] == pytest.approx(_by_hand(3.0, 7.4, 50.0, 28.0), rel=1e-9)
    assert j["activity_low_gbq"] == pytest.approx(j["activity_gbq"] / 1.05, rel=1e-9)
    assert j["decision"]["proposal"] is True and j["profile"] == "adult"
    assert "30.48 GBq" in j["explanation"] and "profile adult" in j["explanation"]
    # default limit from the profile (28 Gy, adult), and 40 Gy without risk factors
    r = run_cli("plan", "lu177", "--dosimetry", dos, "--administered-gbq", "7.4", "--kidney-voi", "2",
                "--kidney-bed-limit-gy", "40", "--cycles-done", "1", "--json", tmp_path / "p40.json")
    assert r.returncode == 0, r.stderr
    j40 = json.loads((tmp_path / "p40.json").read_text())
    assert j40["activity_gbq"] == pytest.approx(_by_hand(4.0, 7.4, 40.0, 40.0), rel=1e-9)


def test_cli_plan_lu177_bad_input(tmp_path: Path) -> None:
    dos = _dosimetry(tmp_path)
    base = ("plan", "lu177", "--dosimetry", dos, "--administered-gbq", "7.4")
    assert_input_error(run_cli(*base, "--kidney-voi", "9"), "no VOI '9'", "cycle1.json")
    assert_input_error(run_cli(*base, "--kidney-voi", "4"), "--effective-h")
    assert_input_error(run_cli("plan", "lu177", "--dosimetry", tmp_path / "none.json", "--administered-gbq", "7",
                               "--kidney-voi", "2"), "no such file")
