"""CEM43: exact closed form against the definition, for constant, ramped and crossing temperatures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from igikit.errors import InputError
from igikit.workflows.fus import DoseAccumulator, cem43, cem43_increment, lesion_mask


def _quad_cem43(t0: float, t1: float, duration_s: float) -> float:
    """The Sapareto-Dewey integral by adaptive quadrature, split at 43 °C."""

    def rate(s: float) -> float:
        temp = t0 + (t1 - t0) * s / duration_s
        return (0.5 if temp >= 43 else 0.25) ** (43 - temp)

    points = None
    if t0 != t1 and min(t0, t1) < 43 < max(t0, t1):
        points = [duration_s * (43 - t0) / (t1 - t0)]
    return quad(rate, 0, duration_s, points=points, epsabs=0, epsrel=1e-12, limit=200)[0] / 60.0


@pytest.mark.parametrize("temp", [37.0, 42.0, 43.0, 45.5, 57.0])
def test_constant_temperature(temp: float) -> None:
    times = np.arange(21) * 3.0  # 60 s
    expected = (0.5 if temp >= 43 else 0.25) ** (43 - temp)
    assert float(cem43(np.full(21, temp), times)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("t0", "t1"), [(44.0, 60.0), (60.0, 44.0), (37.0, 42.5), (43.0, 43.0 + 1e-10)])
def test_linear_ramp_is_exact(t0: float, t1: float) -> None:
    assert float(cem43_increment(t0, t1, 90.0)) == pytest.approx(_quad_cem43(t0, t1, 90.0), rel=1e-10)


@pytest.mark.parametrize(("t0", "t1"), [(40.0, 50.0), (50.0, 40.0), (42.99, 43.01), (30.0, 80.0)])
def test_crossing_43_is_split(t0: float, t1: float) -> None:
    assert float(cem43_increment(t0, t1, 60.0)) == pytest.approx(_quad_cem43(t0, t1, 60.0), rel=1e-10)


def test_ramp_closed_form_and_sampling_independence() -> None:
    # 43 -> 53 °C over 10 min: integral of 2^(T-43) dt = 10 min * (2^10 - 1) / (10 ln 2)
    analytic = 10.0 * (2**10 - 1) / (10 * math.log(2))
    for n in (2, 5, 101):
        times = np.linspace(0, 600, n)
        assert float(cem43(43 + times / 60.0, times)) == pytest.approx(analytic, rel=1e-12)


def test_cumulative_and_maps() -> None:
    temps = np.stack([np.full((2, 3), 37.0), np.full((2, 3), 50.0), np.full((2, 3), 50.0)])
    times = np.array([0.0, 60.0, 120.0])
    series = cem43(temps, times, cumulative=True)
    assert series.shape == (3, 2, 3)
    assert series[0].max() == 0
    assert np.allclose(series[-1], cem43(temps, times))
    assert np.allclose(series[2] - series[1], 2.0**7)
    acc = DoseAccumulator((2, 3))
    for t, temp in zip(times, temps, strict=True):
        dose = acc.update(temp, t)
    assert np.allclose(dose, series[-1])
    assert lesion_mask(np.array([239.9, 240.0])).tolist() == [0, 1]


def test_bad_times() -> None:
    with pytest.raises(InputError, match="non-decreasing"):
        cem43(np.full(3, 40.0), [0.0, 2.0, 1.0])
    with pytest.raises(InputError, match="3 times"):
        cem43(np.full(4, 40.0), [0.0, 1.0, 2.0])
    acc = DoseAccumulator((1,))
    acc.update(np.array([40.0]), 5.0)
    with pytest.raises(InputError, match="before the previous"):
        acc.update(np.array([40.0]), 4.0)


@pytest.mark.parametrize(("dtype", "tolerance"), [(np.float64, 1e-11), (np.float32, 1e-4)])
def test_accumulator_matches_the_offline_integral(dtype: type, tolerance: float) -> None:
    # heating, noise around body temperature, and noise voxels jumping across 43 °C every frame
    rng = np.random.default_rng(3)
    temps = 37 + rng.normal(0, 1.0, (80, 24, 24))
    temps[:, 8:12, 8:12] += np.linspace(0, 30, 80)[:, None, None]
    temps[:, :4] = rng.uniform(-20, 100, (80, 4, 24))
    temps[:, 20, 0] = 43.0  # on the breakpoint
    temps[::2, 20, 1], temps[1::2, 20, 1] = 42.999, 43.001  # crossing it by a hair
    temps[:, 20, 2] = 37.0 + 1e-6 * np.arange(80)  # u below the series threshold
    times = np.cumsum(rng.uniform(0.5, 3.0, 80))
    acc = DoseAccumulator((24, 24), dtype=dtype)
    for t, temp in zip(times, temps.astype(dtype), strict=True):
        dose = acc.update(temp, t)
    expected = cem43(temps.astype(dtype).astype(np.float64), times)
    assert np.max(np.abs(dose - expected) / expected) < tolerance


def test_accumulator_clips_absurd_temperatures_and_checks_its_dtype() -> None:
    acc = DoseAccumulator((2,), dtype=np.float32)
    acc.update(np.array([500.0, -400.0]), 0.0)
    dose = acc.update(np.array([600.0, -300.0]), 1.0)
    assert np.all(np.isfinite(dose)) and dose[0] > 1e30 and dose[1] == 0.0
    with pytest.raises(InputError, match="float32 or float64"):
        DoseAccumulator((2,), dtype=np.int32)
