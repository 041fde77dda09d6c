"""The fine stage's short cuts change nothing that matters: far MOVING points left out of the
nearest-neighbour searches give the same fit as all points, the distance bound never overestimates,
and the stage stops only where one more iteration would move MOVING by less than FINE_STEP_MM."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from igikit.register.surface import (
    FINE_STEP_MM,
    TUKEY_SIGMAS,
    DistanceBound,
    IcpTarget,
    Surface,
    _apply,
    _cloud,
    _next_step_mm,
    _open3d,
    fine_icp,
)
from tests.register.test_surface import errors, organ_surface, scan, true_transform


@pytest.fixture(scope="module")
def organ() -> Surface:
    return organ_surface()


class CountingTarget(IcpTarget):
    """An IcpTarget that records how many MOVING points each Open3D call was given."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.searched: list[int] = []

    def _icp(self, moving_mm: np.ndarray, *args: Any) -> tuple[np.ndarray, np.ndarray]:
        self.searched.append(len(moving_mm))
        return super()._icp(moving_mm, *args)


def _target(organ: Surface) -> CountingTarget:
    cloud = _cloud(_open3d(), organ, 4.0)
    return CountingTarget(organ.points_mm, np.asarray(cloud.normals))


def _start(truth: np.ndarray, angle_deg: float, shift_mm: list[float]) -> np.ndarray:
    start = truth.copy()
    start[:3, :3] = Rotation.from_rotvec(np.radians(angle_deg) * np.array([0.6, 0.0, 0.8])).as_matrix() @ truth[:3, :3]
    start[:3, 3] += shift_mm
    return start


def test_distance_bound_never_exceeds_the_true_distance(organ: Surface) -> None:
    bound = DistanceBound(organ.points_mm)
    rng = np.random.default_rng(3)
    lo, hi = organ.points_mm.min(axis=0), organ.points_mm.max(axis=0)
    queries = np.vstack(
        [
            rng.uniform(lo - 60.0, hi + 60.0, (20_000, 3)),  # inside, around and beyond the grid
            organ.points_mm[rng.choice(len(organ.points_mm), 2000)] + rng.normal(scale=3.0, size=(2000, 3)),
        ]
    )
    true_mm, _ = cKDTree(organ.points_mm).query(queries)
    lower = bound.lower_mm(queries)
    assert np.all(lower <= true_mm + 1e-9)
    assert np.all(lower >= 0.0)
    # and it is useful: most points 20 mm or more from the surface are known to be 10 mm away
    assert np.mean(lower[true_mm > 20.0] > 10.0) > 0.8


def test_leaving_far_points_out_gives_the_all_points_fit(organ: Surface) -> None:
    truth = true_transform(30.0)
    moving = scan(organ.points_mm, truth, points=7000)
    target = _target(organ)
    start = _start(truth, 2.0, [1.2, -1.0, 1.0])
    c = TUKEY_SIGMAS * 1.2
    full, full_pairs = target.refine(moving, start, max_distance_mm=c, tukey_mm=c, iterations=5)
    target.searched.clear()
    skip, skip_pairs = target.refine(moving, start, max_distance_mm=c, tukey_mm=c, iterations=5, far_trims=2.0)
    assert target.searched and target.searched[0] < 0.95 * len(moving)  # stray points were left out
    np.testing.assert_allclose(skip, full, atol=1e-9)
    # the pairs name MOVING's own rows, the same as on all points
    np.testing.assert_array_equal(np.sort(skip_pairs[:, 0]), np.sort(full_pairs[:, 0]))
    gap = np.linalg.norm(_apply(skip, moving[skip_pairs[:, 0]]) - organ.points_mm[skip_pairs[:, 1]], axis=1)
    assert gap.max() <= c + 1e-9


def test_far_points_that_come_near_send_it_back_to_all_points(organ: Surface) -> None:
    """A start 12 mm off: the fit moves the left-out points by more than their margin, so the
    refinement runs again on all of them and returns the all-points fit."""
    truth = true_transform(10.0)
    moving = scan(organ.points_mm, truth, points=3000)
    target = _target(organ)
    start = _start(truth, 4.0, [8.0, -7.0, 6.0])
    c = 10.0
    full, _ = target.refine(moving, start, max_distance_mm=c, tukey_mm=c, iterations=30)
    target.searched.clear()
    skip, _ = target.refine(moving, start, max_distance_mm=c, tukey_mm=c, iterations=30, far_trims=1.0)
    assert len(target.searched) == 2 and target.searched[1] == len(moving)
    np.testing.assert_allclose(skip, full, atol=1e-9)


def test_next_step_measures_the_distance_to_the_fit() -> None:
    """Pairs on half an ellipsoid (no symmetry to slide along), MOVING displaced 0.3 mm: the step
    undoes it."""
    rng = np.random.default_rng(1)
    v = rng.normal(size=(3000, 3))
    v[:, 2] = np.abs(v[:, 2])
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    axes = np.array([40.0, 25.0, 15.0])
    n = u / axes
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    q = u * axes + [500.0, -300.0, -2000.0]  # far from the origin, as tracker coordinates are
    p = q + np.array([0.3, 0.0, 0.0])
    assert _next_step_mm(p, q, n, 5.0) == pytest.approx(0.3, rel=1e-6)
    assert _next_step_mm(q, q, n, 5.0) == pytest.approx(0.0, abs=1e-9)


def test_fine_stage_stops_within_its_step_of_convergence(organ: Surface) -> None:
    truth = true_transform(30.0)
    moving = scan(organ.points_mm, truth, points=7000)
    target = _target(organ)
    for start in (_start(truth, 2.0, [1.2, -1.0, 1.0]), _start(truth, 3.0, [-2.0, 1.5, 0.5])):
        for sigma0 in (1.0, 2.0, 3.0):
            target.searched.clear()
            fitted, sigma = fine_icp(target, moving, start, sigma_mm=sigma0)
            angle, disp = errors(fitted, truth, organ.points_mm)
            assert angle < 0.5 and disp < 0.5, (angle, disp)
            assert 0.7 < sigma < 1.3
            # every round after the first one saw all MOVING points but the provably far ones
            assert target.searched[0] <= 2500 and len(target.searched) >= 2
            # iterating on to convergence at the final scale moves the surface by less than the step
            c = TUKEY_SIGMAS * sigma
            converged, _ = target.refine(moving, fitted, max_distance_mm=c, tukey_mm=c, iterations=100, tol=1e-12)
            moved = organ.points_mm @ (converged[:3, :3] - fitted[:3, :3]).T + (converged[:3, 3] - fitted[:3, 3])
            assert np.sqrt(np.mean(np.sum(moved**2, axis=1))) < FINE_STEP_MM
