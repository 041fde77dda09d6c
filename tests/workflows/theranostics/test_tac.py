"""Time-activity curve fits, AICc model choice, TIA and its uncertainty."""

from __future__ import annotations

import math

import numpy as np
import pytest

from igikit.errors import InputError
from igikit.workflows.theranostics.tac import aicc, fit_time_activity, trapezoid_tia

LU_HALF_LIFE_H = 6.647 * 24


def test_mono_exponential_recovered() -> None:
    t = np.array([4.0, 24.0, 48.0, 96.0, 168.0])
    k = math.log(2) / 40.0
    fit = fit_time_activity(t, 80.0 * np.exp(-k * t), LU_HALF_LIFE_H)
    assert fit.model == "mono"
    assert fit.params["k_per_h"] == pytest.approx(k, rel=1e-4)
    assert fit.tia == pytest.approx(80.0 / k, rel=1e-4)


def test_bi_exponential_with_uptake_recovered_and_chosen() -> None:
    t = np.array([1.0, 4.0, 24.0, 48.0, 96.0, 168.0])
    a0, ke, ku = 100.0, math.log(2) / 60.0, math.log(2) / 3.0
    fit = fit_time_activity(t, a0 * (np.exp(-ke * t) - np.exp(-ku * t)), LU_HALF_LIFE_H)
    assert fit.model == "bi"
    assert fit.params["k_per_h"] == pytest.approx(ke, rel=1e-3)
    assert fit.params["k_uptake_per_h"] == pytest.approx(ku, rel=1e-3)
    assert fit.tia == pytest.approx(a0 * (1 / ke - 1 / ku), rel=1e-3)
    assert fit.candidates["bi"] < fit.candidates["mono"]


def test_aicc_prefers_mono_for_mono_data_with_noise_and_reports_uncertainty() -> None:
    rng = np.random.default_rng(3)
    t = np.array([2.0, 6.0, 24.0, 48.0, 96.0, 168.0])
    k = math.log(2) / 50.0
    truth = 50.0 / k
    a = 50.0 * np.exp(-k * t) * (1 + 0.03 * rng.standard_normal(t.size))
    fit = fit_time_activity(t, a, LU_HALF_LIFE_H)
    assert fit.model == "mono"
    assert 0 < fit.tia_se < 0.1 * fit.tia
    assert abs(fit.tia - truth) < 3 * fit.tia_se + 0.02 * truth


def test_clearance_never_faster_than_physical_decay_allows_negative() -> None:
    t = np.array([4.0, 24.0, 96.0, 168.0])
    lam = math.log(2) / LU_HALF_LIFE_H
    fit = fit_time_activity(t, 10 * np.exp(-lam * t), LU_HALF_LIFE_H)
    assert fit.params["k_per_h"] >= lam * (1 - 1e-9)
    assert fit.tia == pytest.approx(10 / lam, rel=1e-3)


def test_trapezoid_fallback_and_formula() -> None:
    t = np.array([4.0, 24.0])
    a = np.array([10.0, 8.0])
    fit = fit_time_activity(t, a, LU_HALF_LIFE_H)
    assert fit.model == "trapezoid"
    lam = math.log(2) / LU_HALF_LIFE_H
    assert fit.tia == pytest.approx(10 * 4 + 0.5 * (10 + 8) * 20 + 8 / lam)
    assert trapezoid_tia(t, np.stack([a, 2 * a], axis=1), LU_HALF_LIFE_H)[1] == pytest.approx(2 * fit.tia)


def test_single_point_is_physical_decay() -> None:
    fit = fit_time_activity([24.0], [5.0], LU_HALF_LIFE_H)
    lam = math.log(2) / LU_HALF_LIFE_H
    assert fit.model == "physical" and fit.tia == pytest.approx(5 * math.exp(lam * 24) / lam)


def test_aicc_and_bad_input() -> None:
    assert aicc(1.0, 3, 2) == math.inf
    assert aicc(1.0, 5, 2) == pytest.approx(5 * math.log(0.2) + 4 + 12 / 2)
    with pytest.raises(InputError):
        fit_time_activity([1.0, 1.0], [1.0, 2.0], 10.0)
    with pytest.raises(InputError):
        fit_time_activity([1.0, 2.0], [1.0, -2.0], 10.0)


def test_four_points_use_the_hybrid_rule_not_a_mono_exponential_across_the_uptake() -> None:
    # the phantom's tumour: uptake half-time 3 h, effective clearance ke; scans at 4, 24, 96, 168 h
    t = np.array([4.0, 24.0, 96.0, 168.0])
    ke = math.log(2) / LU_HALF_LIFE_H + math.log(2) / 200.0
    ku = ke + math.log(2) / 3.0
    a = 148.0 * (np.exp(-ke * t) - np.exp(-ku * t))
    truth = 148.0 * (1 / ke - 1 / ku)
    fit = fit_time_activity(t, a, LU_HALF_LIFE_H)
    assert fit.model == "hybrid" and math.isnan(fit.candidates["bi"])  # bi not judged
    assert fit.params["k_per_h"] == pytest.approx(ke, rel=0.01)
    assert abs(fit.tia / truth - 1) < 0.03
    mono = fit_time_activity(t, a, LU_HALF_LIFE_H, models=("mono",))
    assert mono.tia / truth - 1 > 0.10  # what AICc alone gave: one exponential bent to the rising 4 h point
    # the tail's uncertainty reaches the TIA
    noisy = a * (1 + 0.03 * np.random.default_rng(1).standard_normal(4))
    f = fit_time_activity(t, noisy, LU_HALF_LIFE_H)
    assert f.model == "hybrid" and 0 < f.tia_se < 0.1 * f.tia
    # three points: the tail through two points, no standard error
    three = fit_time_activity(t[1:], a[1:], LU_HALF_LIFE_H)
    assert three.model == "hybrid" and math.isnan(three.tia_se)
