"""Pivot calibration on the real tracked-pointer recording and on exact synthetic poses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from igikit.errors import InputError
from igikit.register.pivot import pivot_calibration
from igikit.workflows.surgery.files import read_poses_csv


@pytest.fixture(scope="module")
def recording(data_dir: Path) -> np.ndarray:
    return read_poses_csv(data_dir / "tracking" / "pivot_poses.csv").poses


def _synthetic(n: int = 60, seed: int = 0, spread_deg: float = 30.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tip = np.array([2.0, -160.0, 5.0])
    pivot = np.array([-300.0, 40.0, -1900.0])
    rot = Rotation.from_rotvec(np.deg2rad(spread_deg) * rng.uniform(-1, 1, (n, 3))).as_matrix()
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = rot
    poses[:, :3, 3] = pivot - rot @ tip
    return poses, tip, pivot


@pytest.mark.parametrize("method", ["lsq", "ransac", "sphere"])
def test_exact_recovery(method: str) -> None:
    poses, tip, pivot = _synthetic()
    res = pivot_calibration(poses, method)
    np.testing.assert_allclose(res.tip_offset_mm, tip, atol=1e-6)
    np.testing.assert_allclose(res.pivot_point_mm, pivot, atol=1e-6)
    assert res.rms_mm < 1e-6 and res.inliers.all()


def test_lsq_reproduces_scikit_surgery_on_the_real_recording(recording: np.ndarray) -> None:
    # installed by `make test` (without its heavy dependencies, see the Makefile): never skipped
    import sksurgerycalibration.algorithms.pivot as sks
    offset, pivot, per_axis_rms = sks.pivot_calibration(recording)
    res = pivot_calibration(recording, "lsq")
    np.testing.assert_allclose(res.tip_offset_mm, np.ravel(offset), atol=0.01)
    np.testing.assert_allclose(res.pivot_point_mm, np.ravel(pivot), atol=0.01)
    # scikit-surgery reports the per-axis RMS; ours is the 3D RMS = per axis * sqrt(3)
    assert res.rms_mm == pytest.approx(per_axis_rms * np.sqrt(3), rel=1e-9)


def test_lsq_is_the_algebraic_least_squares_solution(recording: np.ndarray) -> None:
    # the same equations solved directly ([R_i | -I] x = -t_i), independent of scikit-surgery
    n = len(recording)
    a = np.hstack([recording[:, :3, :3].reshape(3 * n, 3), -np.tile(np.eye(3), (n, 1))])
    x = np.linalg.lstsq(a, -recording[:, :3, 3].reshape(-1), rcond=None)[0]
    res = pivot_calibration(recording, "lsq")
    np.testing.assert_allclose(np.r_[res.tip_offset_mm, res.pivot_point_mm], x, atol=1e-6)
    assert res.rms_mm == pytest.approx(3.184, abs=0.01)
    assert res.rms_mm == pytest.approx(np.sqrt(np.mean(res.residuals_mm**2)))


@pytest.mark.parametrize("seed", [1, 4])
def test_ransac_ignores_slipped_poses(recording: np.ndarray, seed: int) -> None:
    clean = pivot_calibration(recording, "ransac")
    assert 0.85 * len(recording) < clean.inlier_count < len(recording)  # the real outliers are left out
    # 15% of the poses slipped: the tip moved 5-15 mm off the divot in a random direction
    rng = np.random.default_rng(seed)
    n = len(recording)
    slipped = rng.choice(n, int(0.15 * n), replace=False)
    d = rng.normal(size=(slipped.size, 3))
    d *= (rng.uniform(5, 15, slipped.size) / np.linalg.norm(d, axis=1))[:, None]
    poses = recording.copy()
    poses[slipped, :3, 3] += d
    lsq = pivot_calibration(poses, "lsq")
    robust = pivot_calibration(poses, "ransac")
    assert np.count_nonzero(robust.inliers[slipped]) < 0.1 * slipped.size
    assert np.linalg.norm(lsq.tip_offset_mm - clean.tip_offset_mm) > 0.5
    # The slipped poses have (almost) no say: the result is that of the recording without them.
    # Merely dropping 15% of this noisy recording moves any estimate (lsq too) by 0.06-0.29 mm, so
    # that, not the slips, bounds the agreement with the full clean recording.
    unslipped = pivot_calibration(np.delete(recording, slipped, axis=0), "ransac")
    assert np.linalg.norm(robust.tip_offset_mm - unslipped.tip_offset_mm) < 0.1
    assert np.linalg.norm(robust.tip_offset_mm - clean.tip_offset_mm) < 0.3


def test_sphere_fit_is_close_on_clean_synthetic_noise() -> None:
    poses, tip, pivot = _synthetic(n=300, seed=3)
    poses[:, :3, 3] += np.random.default_rng(4).normal(scale=0.2, size=(300, 3))
    for method in ("lsq", "sphere"):
        res = pivot_calibration(poses, method)
        assert np.linalg.norm(res.tip_offset_mm - tip) < 1.0, method
        assert np.linalg.norm(res.pivot_point_mm - pivot) < 1.0, method


@pytest.mark.parametrize("method", ["lsq", "ransac", "sphere"])
def test_too_little_rotation_is_an_error_not_an_identity(method: str) -> None:
    poses, _, _ = _synthetic(spread_deg=0.0)  # the tool never rotated
    with pytest.raises(InputError, match="too little rotation"):
        pivot_calibration(poses, method)
    rv = np.zeros((60, 3))
    rv[:, 2] = np.linspace(-0.5, 0.5, 60)  # rotation about one axis only: the tip is undetermined
    single_axis = np.tile(np.eye(4), (60, 1, 1))
    single_axis[:, :3, :3] = Rotation.from_rotvec(rv).as_matrix()
    single_axis[:, :3, 3] = [10.0, 20.0, -1500.0] - single_axis[:, :3, :3] @ [0.0, 150.0, 3.0]
    with pytest.raises(InputError, match="too little rotation"):
        pivot_calibration(single_axis, method)


def test_bad_poses() -> None:
    poses, _, _ = _synthetic()
    bent = poses.copy()
    bent[7, 0, 0] *= 1.05
    with pytest.raises(InputError, match="pose 8: the rotation is not orthonormal"):
        pivot_calibration(bent)
    mirrored = poses.copy()
    mirrored[3, :3, 2] *= -1
    with pytest.raises(InputError, match="pose 4: the rotation is a reflection"):
        pivot_calibration(mirrored)
    nan = poses.copy()
    nan[2, 1, 3] = np.nan
    with pytest.raises(InputError, match="pose 3 is not finite"):
        pivot_calibration(nan)
    with pytest.raises(InputError, match="3 or more poses"):
        pivot_calibration(poses[:2])
    with pytest.raises(InputError, match="unknown pivot method"):
        pivot_calibration(poses, "magic")
