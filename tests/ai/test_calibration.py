"""Isotonic calibration and the expected calibration error."""

from __future__ import annotations

import numpy as np
import pytest

from igikit.ai.calibration import IsotonicCalibrator, expected_calibration_error
from igikit.errors import InputError


def test_isotonic_fit_is_monotone_and_calibrates(tmp_path) -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, 4000)
    success = rng.uniform(0, 1, raw.size) < raw**3  # overconfident raw scores
    fit, test = slice(0, 2000), slice(2000, None)
    cal = IsotonicCalibrator().fit(raw[fit], success[fit])
    assert np.all(np.diff(cal.y) >= 0)
    before = expected_calibration_error(raw[test], success[test])
    after = expected_calibration_error(cal.predict(raw[test]), success[test])
    assert before > 0.15 and after < 0.05, (before, after)
    again = IsotonicCalibrator.load(cal.save(tmp_path / "cal.json"))
    assert again(0.5) == pytest.approx(cal(0.5))


def test_ece_of_a_perfect_forecast_is_zero_and_inputs_are_checked() -> None:
    assert expected_calibration_error(np.array([0.0, 1.0, 1.0]), np.array([0, 1, 1])) == 0.0
    with pytest.raises(InputError):
        expected_calibration_error(np.array([0.5]), np.array([1, 0]))
    with pytest.raises(InputError):
        IsotonicCalibrator().predict(0.3)
