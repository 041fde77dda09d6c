"""Scout-based microsphere plans (``igikit plan y90 --scout``, ``igikit plan ho166``) against a known truth.

Phantom (:func:`igikit.sim.spect.microsphere_study`): liver 1.34 L with a 50 mL tumour, lungs; a
250 MBq scout with T/N 4.0 and lung shunt 6 %, a 5 GBq treatment with T/N 3.6, lung shunt 5 % and
a within-liver uptake pattern that only partly follows the scout's; 15 mm blur, Poisson noise,
a 4 mm patient shift at the post-treatment scan.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from igikit.core.profile import available_profiles, load_profile
from igikit.errors import InputError
from igikit.io.image import write_image
from igikit.sim.spect import MicrosphereStudy, microsphere_study
from igikit.supervise.audit import AuditLog
from igikit.workflows.theranostics.nuclides import local_deposition_gy_per_gbq_kg
from igikit.workflows.theranostics.planning import (
    body_surface_area_m2,
    bsa_method_y90,
    microsphere_activity,
    partition_model_y90,
    probability_below,
    propagate,
)
from igikit.workflows.theranostics.scout import analyse_scout, surface_area_mm2
from tests.conftest import assert_input_error, run_cli


@pytest.fixture(scope="module")
def study() -> MicrosphereStudy:
    return microsphere_study(seed=0)


@pytest.fixture(scope="module")
def files(study: MicrosphereStudy, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ho")
    out = {"scout": tmp / "scout.nii.gz", "post": tmp / "post.nii.gz", "voi": tmp / "voi.nii.gz", "dir": tmp}
    write_image(study.scout, out["scout"])
    write_image(study.treatment, out["post"])
    write_image(study.labels, out["voi"])
    return out


def _true_liver_kg(study: MicrosphereStudy) -> float:
    rho = load_profile("adult").tissue("liver").density_kg_m3 / 1e6
    return rho * (study.true_volume_ml["liver"] + study.true_volume_ml["tumour"])


def test_scout_analysis_recovers_tn_lsf_and_volumes(study: MicrosphereStudy) -> None:
    corrected = analyse_scout(study.scout, study.labels, resolution_mm=study.fwhm_mm)
    assert corrected.tn_ratio == pytest.approx(study.tn_scout, rel=0.05)
    assert corrected.lung_shunt_fraction == pytest.approx(study.lsf_scout, rel=0.05)
    assert corrected.volume_ml["tumour"] == pytest.approx(study.true_volume_ml["tumour"], rel=0.03)
    assert corrected.volume_ml["normal_liver"] == pytest.approx(study.true_volume_ml["liver"], rel=0.02)
    # the volume uncertainty (half-voxel boundary) covers the voxelisation error and is larger for small VOIs
    rel = {k: corrected.volume_se_ml[k] / corrected.volume_ml[k] for k in ("tumour", "normal_liver")}
    assert 0.05 < rel["tumour"] < 0.3 and rel["normal_liver"] < rel["tumour"]
    assert all(0 < corrected.counts_se[k] < 0.02 * corrected.counts[k] for k in corrected.counts)
    # without partial-volume correction the 15 mm blur spills tumour counts into the liver: T/N far too low
    plain = analyse_scout(study.scout, study.labels)
    assert plain.tn_ratio < 0.9 * study.tn_scout


def test_surface_area_of_a_voxelised_sphere() -> None:
    z, y, x = np.mgrid[:60, :60, :60]
    ball = (x - 30) ** 2 + (y - 30) ** 2 + (z - 30) ** 2 <= 20**2
    assert surface_area_mm2(ball, (1.0, 1.0, 1.0)) == pytest.approx(4 * math.pi * 400, rel=0.05)


def test_planning_formulas_by_hand() -> None:
    a, t, n, lung = microsphere_activity(prescribed_gy=60, perfused_kg=1.5, tumour_kg=0.1, liver_kg=1.4,
                                         tumour_fraction_of_liver=0.2, lung_shunt_fraction=0.1, lung_kg=1.0)
    assert a == pytest.approx(60 * 1.5 / (15.87 * 0.9))
    assert t == pytest.approx(60 * 1.5 * 0.2 / 0.1) and n == pytest.approx(60 * 1.5 * 0.8 / 1.4)
    assert lung == pytest.approx(15.87 * a * 0.1)
    # mean perfused dose from the activity each part receives equals the prescription
    assert (t * 0.1 + n * 1.4) / 1.5 == pytest.approx(60)
    assert body_surface_area_m2(weight_kg=64.0, height_m=1.69) == pytest.approx(math.sqrt(169 * 64 / 3600))
    b = bsa_method_y90(bsa_m2=1.7, tumour_ml=300, liver_ml=1200, lung_shunt_fraction=0.12)
    assert b.activity_gbq == pytest.approx((1.7 - 0.2 + 0.2) * 0.8) and b.lsf_factor == 0.8
    assert bsa_method_y90(bsa_m2=1.7, tumour_ml=0, liver_ml=1200, lung_shunt_fraction=0.25).activity_gbq == 0.0
    with pytest.raises(InputError, match="height"):
        body_surface_area_m2(weight_kg=20.0)


def test_propagation_matches_monte_carlo() -> None:
    def f(v: np.ndarray) -> np.ndarray:
        p = partition_model_y90(normal_liver_gy=40, tumour_kg=v[0], normal_liver_kg=v[1], tn_ratio=v[2],
                                lung_shunt_fraction=v[3])
        return np.array([p.activity_gbq, p.lung_gy])

    x, se = [0.2, 1.3, 4.0, 0.08], [0.02, 0.06, 0.4, 0.005]
    _, sd = propagate(f, x, se)
    rng = np.random.default_rng(0)
    draws = np.array([f(np.asarray(x) + rng.standard_normal(4) * se) for _ in range(4000)])
    assert sd == pytest.approx(draws.std(axis=0), rel=0.08)
    assert probability_below(10.0, 2.0, 10.0) == pytest.approx(0.5)
    assert probability_below(5.0, 0.0, 4.0) == 0.0


def test_plan_ho166_predicts_the_treatment(study: MicrosphereStudy, files: dict[str, Path]) -> None:
    tmp = files["dir"]
    r = run_cli("plan", "ho166", "--scout", files["scout"], "--voi", files["voi"], "--resolution-mm", "15",
                "--post", files["post"], "--administered-gbq", "5", "--json", tmp / "p.json", "--report",
                tmp / "p.html", "--audit", tmp / "a.db", "--out", tmp / "pred.nii.gz")
    assert r.returncode == 0, r.stderr
    j = json.loads((tmp / "p.json").read_text())
    k = local_deposition_gy_per_gbq_kg("Ho-166")
    truth_gbq = 60.0 * _true_liver_kg(study) / (k * (1 - study.lsf_scout))
    assert j["activity_gbq"] == pytest.approx(truth_gbq, rel=0.03)
    assert 0 < j["uncertainty"]["activity_se_gbq"] < 0.15 * j["activity_gbq"]
    assert j["tn_ratio"] == pytest.approx(study.tn_scout, rel=0.05) and j["limits_ok"] is True
    assert j["profile"] == "adult" and "profile adult" in j["explanation"]
    post = j["post_treatment"]
    # the treatment's truth: tumour share and lung shunt differ from the scout's; the comparison sees it
    for voi, organ in (("tumour", "tumour"), ("normal_liver", "liver"), ("lung", "lungs")):
        true_pct = 100 * (study.true_fraction("treatment", organ) / study.true_fraction("scout", organ) - 1)
        assert post["vois"][voi]["difference_pct"] == pytest.approx(true_pct, abs=3.0), voi
    assert 0.8 < post["correlation"] < 0.99
    shift_error = np.subtract(post["registration"]["translation_mm"], study.treatment_shift_mm)
    assert float(np.linalg.norm(shift_error)) < 1.5
    with AuditLog(tmp / "a.db", create=False) as audit:
        entries = list(audit.records())
    rec = entries[-1].record
    assert rec.proposal and rec.decision == "plan_activity" and rec.data["activity_se_gbq"] > 0
    assert rec.confidence == pytest.approx(1.0, abs=1e-6) and "profile adult" in rec.explanation
    assert (tmp / "p.html").read_text().count("data:image/png") >= 3 and (tmp / "pred.nii.gz").exists()


def test_plan_y90_from_scout_with_bsa(study: MicrosphereStudy, files: dict[str, Path]) -> None:
    tmp = files["dir"]
    r = run_cli("plan", "y90", "--scout", files["scout"], "--voi", files["voi"], "--resolution-mm", "15",
                "--json", tmp / "y.json")
    assert r.returncode == 0, r.stderr
    j = json.loads((tmp / "y.json").read_text())
    for key in ("activity_gbq", "tumour_gy", "normal_liver_gy", "lung_gy", "limits_ok", "explanation"):
        assert key in j
    rho = load_profile("adult").tissue("liver").density_kg_m3 / 1e6
    truth = partition_model_y90(normal_liver_gy=40, tumour_kg=rho * study.true_volume_ml["tumour"],
                                normal_liver_kg=rho * study.true_volume_ml["liver"], tn_ratio=study.tn_scout,
                                lung_shunt_fraction=study.lsf_scout)
    assert j["activity_gbq"] == pytest.approx(truth.activity_gbq, rel=0.03)
    assert j["lung_gy"] == pytest.approx(truth.lung_gy, rel=0.05)
    assert j["bsa_method"]["formula"] == "mosteller" and j["bsa_method"]["activity_gbq"] > 0
    assert j["decision"]["data"]["tn_se"] > 0
    # a cat's lungs are far lighter: the same liver breaks the lung limit and the confidence collapses
    r = run_cli("plan", "y90", "--scout", files["scout"], "--voi", files["voi"], "--profile", "veterinary_cat",
                "--json", tmp / "cat.json")
    assert r.returncode == 0, r.stderr
    cat = json.loads((tmp / "cat.json").read_text())
    assert cat["limits_ok"] is False and cat["confidence"] < 0.01 and cat["bsa_method"]["formula"] == "meeh"


def test_plan_bad_input(files: dict[str, Path], tmp_path: Path) -> None:
    assert_input_error(run_cli("plan", "y90", "--scout", files["scout"]), "--scout and --voi go together")
    assert_input_error(run_cli("plan", "y90", "--scout", files["scout"], "--voi", files["voi"], "--tn", "3"),
                       "--tn comes from the scout")
    assert_input_error(run_cli("plan", "y90", "--tn", "3"), "missing")
    assert_input_error(run_cli("plan", "ho166", "--scout", files["scout"], "--voi", files["voi"], "--tumour-label",
                               "9"), "tumour label", "voi.nii.gz")
    assert_input_error(run_cli("plan", "ho166", "--scout", files["scout"], "--voi", files["voi"], "--lung-label",
                               "5"), "label 5")
    out = tmp_path / "p.json"
    assert_input_error(run_cli("plan", "ho166", "--scout", files["scout"], "--voi", files["voi"], "--post",
                               files["voi"], "--json", out), "post-treatment image", "voi.nii.gz")
    assert not out.exists()


@pytest.mark.parametrize("name", available_profiles())
def test_every_profile_supplies_what_plans_read(name: str) -> None:
    p = load_profile(name)
    for key in ("dosimetry_limits.lung_gy_per_treatment", "dosimetry_limits.lung_shunt_fraction_max",
                "dosimetry_limits.normal_liver_gy", "dosimetry_limits.kidney_bed_gy",
                "therapy_defaults.partition_model_lung_kg", "therapy_defaults.ho166_perfused_liver_gy",
                "physiology.body_mass_kg"):
        assert p.number(key) > 0, key
    assert p.tissue("liver").density_kg_m3 > 900 and p.radiobiology("kidney").alpha_beta_gy > 0
    has_height = "height_m" in p.section("physiology")
    assert has_height or p.number("physiology.bsa_meeh_k") > 0
    if p.species == "cat":
        assert p.number("therapy_defaults.i131_hyperthyroid_activity_mbq") > 0
