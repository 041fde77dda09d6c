"""Hand-eye calibration (AX = XB) on exact and noisy synthetic poses, and its degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from igikit.errors import InputError
from igikit.register.handeye import hand_eye_calibration


def _x() -> np.ndarray:
    x = np.eye(4)
    x[:3, :3] = Rotation.from_euler("zyx", [35, -20, 110], degrees=True).as_matrix()
    x[:3, 3] = [32.0, -18.0, 75.0]
    return x


def _poses(n: int = 15, seed: int = 0, axes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hand-to-base poses of a marker 1 m from the tracker and the object-to-camera poses they imply."""
    rng = np.random.default_rng(seed)
    x = _x()
    rotvecs = rng.uniform(-0.6, 0.6, (n, 3)) if axes is None else rng.uniform(-0.6, 0.6, (n, 1)) * axes
    hand = np.tile(np.eye(4), (n, 1, 1))
    hand[:, :3, :3] = Rotation.from_rotvec(rotvecs).as_matrix()
    hand[:, :3, 3] = rng.uniform(-100, 100, (n, 3)) + np.array([0.0, 0.0, 1000.0])
    world = np.eye(4)  # calibration object to base: fixed
    world[:3, :3] = Rotation.from_euler("xyz", [5, 170, -30], degrees=True).as_matrix()
    world[:3, 3] = [80.0, 40.0, 1350.0]
    camera = np.linalg.inv(hand @ x) @ world
    return hand, camera, x


def _perturb(poses: np.ndarray, rng: np.random.Generator, deg: float, mm: float) -> np.ndarray:
    out = poses.copy()
    noise = Rotation.from_rotvec(np.deg2rad(deg) * rng.normal(size=(len(poses), 3))).as_matrix()
    out[:, :3, :3] = noise @ poses[:, :3, :3]
    out[:, :3, 3] += rng.normal(scale=mm, size=(len(poses), 3))
    return out


@pytest.mark.parametrize("method", ["tsai", "park"])
@pytest.mark.parametrize("refine", [False, True])
def test_exact_recovery(method: str, refine: bool) -> None:
    hand, camera, x = _poses()
    res = hand_eye_calibration(hand, camera, method, refine=refine)
    np.testing.assert_allclose(res.matrix, x, atol=1e-9)
    assert res.rotation_rms_deg < 1e-9 and res.translation_rms_mm < 1e-9
    assert len(res.pairs) == 15 * 14 // 2 and len(res.rotation_residuals_deg) == len(res.pairs)
    assert res.transform.source == "camera" and res.transform.target == "hand"


@pytest.mark.parametrize("method", ["tsai", "park"])
def test_noisy_recovery_and_refinement(method: str) -> None:
    hand, camera, x = _poses(n=25, seed=1)
    rng = np.random.default_rng(2)
    hand_n = _perturb(hand, rng, 0.05, 0.2)  # a good optical tracker
    camera_n = _perturb(camera, rng, 0.05, 0.2)
    res = hand_eye_calibration(hand_n, camera_n, method)
    angle = np.rad2deg(Rotation.from_matrix(res.matrix[:3, :3] @ x[:3, :3].T).magnitude())
    assert angle < 0.2
    assert np.linalg.norm(res.matrix[:3, 3] - x[:3, 3]) < 1.5
    # the refinement minimises the AX - XB residual it starts from: never worse in translation
    closed = hand_eye_calibration(hand_n, camera_n, method, refine=False)
    assert res.translation_rms_mm <= closed.translation_rms_mm + 1e-9
    assert 0.01 < res.rotation_rms_deg < 1.0 and 0.05 < res.translation_rms_mm < 5.0


def test_methods_agree_after_refinement() -> None:
    hand, camera, _ = _poses(n=20, seed=3)
    rng = np.random.default_rng(4)
    hand_n, camera_n = _perturb(hand, rng, 0.1, 0.3), _perturb(camera, rng, 0.1, 0.3)
    a = hand_eye_calibration(hand_n, camera_n, "tsai")
    b = hand_eye_calibration(hand_n, camera_n, "park")
    np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-6)


def test_rotation_about_one_axis_is_degenerate() -> None:
    hand, camera, _ = _poses(axes=np.array([[0.0, 0.0, 1.0]]))
    with pytest.raises(InputError, match="one axis"):
        hand_eye_calibration(hand, camera)


def test_no_rotation_is_degenerate() -> None:
    hand, camera, _ = _poses(axes=np.zeros((1, 3)))
    with pytest.raises(InputError, match="barely rotates"):
        hand_eye_calibration(hand, camera)


def test_bad_inputs() -> None:
    hand, camera, _ = _poses()
    with pytest.raises(InputError, match="3 or more poses"):
        hand_eye_calibration(hand[:2], camera[:2])
    with pytest.raises(InputError, match="one to one"):
        hand_eye_calibration(hand, camera[:-1])
    with pytest.raises(InputError, match="unknown hand-eye method"):
        hand_eye_calibration(hand, camera, "daniilidis")
    bad = hand.copy()
    bad[3, 0, 0] = np.nan
    with pytest.raises(InputError, match="hand poses: pose 4 is not finite"):
        hand_eye_calibration(bad, camera)
    skew = camera.copy()
    skew[2, :3, :3] *= 1.1
    with pytest.raises(InputError, match="camera poses: pose 3"):
        hand_eye_calibration(hand, skew)
