"""The fine stage of surface registration on Open3D's point-to-plane ICP with Tukey weights, and
the precomputed fiducial layout the navigation loop predicts the TRE with."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from igikit.register.points import FiducialLayout, predict_tre, simulate_tre
from igikit.register.surface import TUKEY_SIGMAS, IcpTarget, Surface, _cloud, _open3d, fine_icp
from tests.register.test_surface import errors, organ_surface, scan, true_transform


@pytest.fixture(scope="module")
def organ() -> Surface:
    return organ_surface()


def _target(organ: Surface) -> IcpTarget:
    cloud = _cloud(_open3d(), organ, 4.0)
    return IcpTarget(organ.points_mm, np.asarray(cloud.normals))


def test_fine_stage_recovers_the_pose_from_a_coarse_start(organ: Surface) -> None:
    """10,000 scan points, 1 mm noise, 30 % outliers, 60 % overlap; a start 2 deg / 2 mm off (what
    the coarse stage hands over) -> within 0.5 mm / 0.5 deg, the robust scale near the noise."""
    truth = true_transform(30.0)
    moving = scan(organ.points_mm, truth, points=7000)
    assert len(moving) == 10_000
    start = truth.copy()
    start[:3, :3] = Rotation.from_rotvec(np.radians(2.0) * np.array([0.6, 0.0, 0.8])).as_matrix() @ truth[:3, :3]
    start[:3, 3] += [1.2, -1.0, 1.0]
    target = _target(organ)
    fitted, sigma = fine_icp(target, moving, start, sigma_mm=2.0)
    angle, disp = errors(fitted, truth, organ.points_mm)
    assert angle < 0.5 and disp < 0.5, (angle, disp)
    assert 0.7 < sigma < 1.3  # the 1 mm noise along the normal, estimated by the MAD of the kept pairs


def test_refine_returns_pairs_within_the_trimming_distance(organ: Surface) -> None:
    truth = true_transform(10.0)
    moving = scan(organ.points_mm, truth, points=3000, outliers=0.2)
    target = _target(organ)
    c = TUKEY_SIGMAS * 1.0
    fitted, pairs = target.refine(moving, truth, max_distance_mm=c, tukey_mm=c)
    assert pairs.ndim == 2 and pairs.shape[1] == 2 and len(pairs) > 0.6 * len(moving)
    gap = np.linalg.norm(moving[pairs[:, 0]] @ fitted[:3, :3].T + fitted[:3, 3] - organ.points_mm[pairs[:, 1]], axis=1)
    assert gap.max() <= c + 1e-9


def test_fiducial_layout_is_predict_tre_and_matches_monte_carlo() -> None:
    rng = np.random.default_rng(4)
    fid = rng.uniform(-60, 60, (6, 3)) + np.array([300.0, -200.0, -1900.0])
    targets = fid.mean(0) + rng.uniform(-120, 120, (5, 3))
    lay = FiducialLayout.of(fid)
    np.testing.assert_allclose(lay.tre_mm(targets, 0.4), predict_tre(fid, targets, 0.4), rtol=1e-12)
    mc = simulate_tre(fid, targets, 0.4, trials=10_000, seed=1)
    np.testing.assert_allclose(lay.tre_mm(targets, 0.4), mc, rtol=0.05)
    assert lay.n == 6 and lay.axes.shape == (3, 3) and np.all(lay.f2_mm2 > 0)
