"""Pennes solver against analytic solutions: Gaussian diffusion and steady states with perfusion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from igikit.core.profile import load_profile
from igikit.errors import InputError
from igikit.sim.heating import PennesSolver, TissueMaps, gaussian_diffusion_solution, gaussian_heat_source


def _no_perfusion(tissue_name: str, shape: tuple[int, ...]) -> TissueMaps:
    maps = TissueMaps.uniform(load_profile("adult").tissue(tissue_name), shape)
    return TissueMaps(maps.density_kg_m3, maps.specific_heat_j_kg_k, maps.conductivity_w_m_k, np.zeros(shape), 37.0)


@pytest.mark.parametrize(
    ("shape", "scheme", "step_s"),
    [((64, 64), "explicit", 30.0), ((64, 64), "crank-nicolson", 1.0), ((44, 44, 44), "explicit", 60.0)],
)
def test_gaussian_diffusion_matches_analytic(shape: tuple[int, ...], scheme: str, step_s: float) -> None:
    spacing = (1.0,) * len(shape)
    center = tuple((n - 1) / 2 for n in shape)
    muscle = load_profile("adult").tissue("muscle")
    solver = PennesSolver(_no_perfusion("muscle", shape), spacing, scheme=scheme)
    start = 37.0 + gaussian_diffusion_solution(shape, spacing, center, 4.0, 20.0, muscle.diffusivity_m2_s, 0.0)
    times = np.arange(0.0, 120.0 + step_s / 2, step_s)
    result = solver.simulate(start, times, None)
    truth = gaussian_diffusion_solution(shape, spacing, center, 4.0, 20.0, muscle.diffusivity_m2_s, 120.0)
    relative = np.abs(result[-1] - 37.0 - truth).max() / truth.max()
    assert relative < 0.01


def test_uniform_heating_with_perfusion_reaches_q_over_wc() -> None:
    liver = load_profile("adult").tissue("liver")
    shape = (6, 6)
    solver = PennesSolver(TissueMaps.uniform(liver, shape), (1.0, 1.0), boundary="neumann")
    q = 5e4  # W/m^3
    expected = q / liver.perfusion_w_m3_k
    assert np.allclose(solver.steady_state(np.full(shape, q)) - 37.0, expected, rtol=1e-10)
    # the transient: T - Ta = Q / (w c_b) (1 - exp(-t w c_b / (rho c))), exact up to the Euler step
    tau = liver.density_kg_m3 * liver.specific_heat_j_kg_k / liver.perfusion_w_m3_k
    times = np.array([0.0, tau, 8 * tau])
    temps = solver.simulate(37.0, times, np.full(shape, q))
    assert temps[1].mean() - 37 == pytest.approx(expected * (1 - math.exp(-1)), rel=0.01)
    assert temps[2].mean() - 37 == pytest.approx(expected, rel=1e-3)


def test_gaussian_source_steady_state_with_perfusion_3d() -> None:
    # a Gaussian source (width s) in perfused tissue, steady state (modified Helmholtz, L = sqrt(k / w c_b)):
    # T - Ta = eta P e^(s^2 / 2L^2) / (8 pi k r)
    #          * [e^(-r/L) erfc((s^2/L - r) / (s sqrt2)) - e^(r/L) erfc((s^2/L + r) / (s sqrt2))]
    from scipy.special import erfc

    liver = load_profile("adult").tissue("liver")
    shape, spacing, center = (41, 41, 41), (0.5, 0.5, 0.5), (10.0, 10.0, 10.0)
    solver = PennesSolver(TissueMaps.uniform(liver, shape), spacing)
    sigma = 1.0e-3
    q = gaussian_heat_source(shape, spacing, center, (1.0, 1.0, 1.0), power_w=0.2, absorption=0.5)
    temp = solver.steady_state(q)
    k, length = liver.conductivity_w_m_k, math.sqrt(liver.conductivity_w_m_k / liver.perfusion_w_m3_k)
    for r_mm in (2.0, 3.0, 4.0):
        r = r_mm * 1e-3
        a, b = (sigma**2 / length - r) / (sigma * math.sqrt(2)), (sigma**2 / length + r) / (sigma * math.sqrt(2))
        analytic = (
            0.1
            * math.exp(sigma**2 / (2 * length**2))
            / (8 * math.pi * k * r)
            * (math.exp(-r / length) * erfc(a) - math.exp(r / length) * erfc(b))
        )
        assert temp[20, 20, 20 + int(r_mm / 0.5)] - 37.0 == pytest.approx(analytic, rel=0.03)


def test_source_power_and_stability_limit() -> None:
    q = gaussian_heat_source((31, 31, 31), (0.5,) * 3, (7.5,) * 3, (1.0, 1.0, 2.0), power_w=4.0, absorption=0.5)
    assert q.sum() * (0.5e-3) ** 3 == pytest.approx(2.0, rel=1e-3)
    muscle = load_profile("adult").tissue("muscle")
    solver = PennesSolver(TissueMaps.uniform(muscle, (16, 16)), (1.0, 1.0))
    # 2D, 1 mm, interior voxel: rho c / (4 k / h^2 + w c_b); boundary voxels are stiffer (Dirichlet ghost)
    interior = muscle.density_kg_m3 * muscle.specific_heat_j_kg_k / (4 * 0.49 / 1e-6 + muscle.perfusion_w_m3_k)
    assert solver.stable_time_step_s <= interior * (1 + 1e-12)
    start = np.full((16, 16), 37.0)
    start[8, 8] = 80.0
    stepped = solver.step(start, None, 50.0)  # many sub-steps; stays monotone and bounded
    assert stepped.max() <= 80.0 and stepped.min() >= 37.0 - 1e-9


def test_tissue_maps_from_profiles_and_errors() -> None:
    labels = np.array([[0, 1], [2, 1]])
    adult = TissueMaps.from_profile("adult", labels, {0: "muscle", 1: "fat", 2: "liver"})
    child = TissueMaps.from_profile("pediatric", labels, {0: "muscle", 1: "fat", 2: "liver"})
    dog = TissueMaps.from_profile("veterinary_dog", labels, {0: "muscle", 1: "fat", 2: "liver"})
    assert adult.shape == child.shape == dog.shape == (2, 2)
    assert adult.conductivity_w_m_k[0, 1] == pytest.approx(0.21)
    with pytest.raises(InputError, match="labels"):
        TissueMaps.from_profile("adult", labels, {0: "muscle"})
    with pytest.raises(InputError, match="no tissue"):
        TissueMaps.from_profile("adult", labels, {0: "muscle", 1: "fat", 2: "bone"})
    with pytest.raises(InputError, match="spacing"):
        PennesSolver(adult, (1.0,))
    with pytest.raises(InputError, match="no steady state"):
        PennesSolver(_no_perfusion("muscle", (4, 4)), (1.0, 1.0), boundary="neumann").steady_state(None)
    with pytest.raises(InputError, match="sigma"):
        gaussian_heat_source((8, 8), (1.0, 1.0), (4.0, 4.0), (1.0, 1.0))
