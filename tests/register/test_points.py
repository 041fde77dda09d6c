"""Point registration (Arun / Umeyama) and TRE prediction (Fitzpatrick 1998) checked with real numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from igikit.errors import InputError
from igikit.register.points import predict_tre, rigid_register, simulate_tre, standout

# A well-spread layout (fiducials around the target region) and a badly spread one (four fiducials
# bunched on one side, nearly planar), both placed far from the origin, as on a tracker 2 m away.
WELL = np.array([[70, 0, 10], [-65, 5, 0], [0, 80, -10], [5, -75, 5], [10, 5, 60], [-5, 0, -70], [40, 40, 40.0]])
BADLY = np.array([[0, 0, 0], [30, 0, 0], [0, 12, 0], [25, 10, 3.0]])
FAR = np.array([-420.0, 35.0, -2010.0])


def _pose(seed: int) -> tuple[np.ndarray, np.ndarray]:
    return Rotation.random(random_state=seed).as_matrix(), np.array([120.0, -300.0, 800.0])


def test_exact_recovery_noise_free() -> None:
    rng = np.random.default_rng(0)
    moving = rng.normal(scale=60.0, size=(8, 3)) + FAR
    rot, t = _pose(1)
    fixed = moving @ rot.T + t
    reg = rigid_register(fixed, moving)
    np.testing.assert_allclose(reg.matrix[:3, :3], rot, atol=1e-12)
    np.testing.assert_allclose(reg.matrix[:3, 3], t, atol=1e-9)
    assert reg.scale == 1.0
    assert reg.fre_mm < 1e-9 and reg.residuals_mm.shape == (8,)
    assert reg.transform.is_rigid()


def test_similarity_recovers_scale() -> None:
    moving = WELL + FAR
    rot, t = _pose(2)
    fixed = 1.7 * moving @ rot.T + t
    reg = rigid_register(fixed, moving, scale=True)
    assert reg.scale == pytest.approx(1.7, abs=1e-12)
    np.testing.assert_allclose(reg.matrix[:3, :3], 1.7 * rot, atol=1e-12)
    np.testing.assert_allclose(reg.transform.apply(moving), fixed, atol=1e-9)
    rigid = rigid_register(fixed, moving)  # without --scale the size mismatch shows in the FRE
    assert rigid.scale == 1.0 and rigid.fre_mm > 10


def test_never_returns_a_reflection() -> None:
    # Mirror-imaged, noisy, nearly planar fiducials: plain SVD (Arun without Umeyama's fix) returns
    # det = -1 here; the fit must stay a proper rotation.
    rng = np.random.default_rng(3)
    moving = np.c_[rng.uniform(-50, 50, (6, 2)), rng.normal(scale=0.01, size=6)]
    fixed = moving * [1, 1, -1] + rng.normal(scale=0.5, size=moving.shape)
    h = (fixed - fixed.mean(0)).T @ (moving - moving.mean(0))
    u, _, vt = np.linalg.svd(h)
    assert np.linalg.det(u @ vt) < 0  # the naive answer is a reflection
    reg = rigid_register(fixed, moving)
    assert np.linalg.det(reg.matrix[:3, :3]) == pytest.approx(1.0)
    assert reg.transform.is_rigid()


def test_noisy_fit_is_least_squares() -> None:
    rng = np.random.default_rng(4)
    moving = WELL + FAR
    rot, t = _pose(5)
    fixed = moving @ rot.T + t + rng.normal(scale=0.3, size=moving.shape)
    reg = rigid_register(fixed, moving)
    assert reg.fre_mm == pytest.approx(np.sqrt(np.mean(reg.residuals_mm**2)))
    # any small perturbation of the optimum increases the sum of squares
    for k in range(6):
        d = np.zeros(6)
        d[k] = 1e-4
        r2 = Rotation.from_rotvec(d[:3]).as_matrix() @ reg.matrix[:3, :3]
        moved = moving @ r2.T + reg.matrix[:3, 3] + d[3:]
        assert np.sum((moved - fixed) ** 2) > np.sum(reg.residuals_mm**2)


def test_worst_fiducial_stands_out() -> None:
    moving = WELL + FAR
    fixed = moving.copy()
    fixed[2] += [0, 0, 8.0]  # one fiducial mislocalised
    reg = rigid_register(fixed, moving)
    assert reg.worst_fiducial == 2
    assert standout([0.5, 0.6, 0.55, 0.45]) is None


@pytest.mark.parametrize(
    ("layout", "target"),
    [
        (WELL, [30.0, -20.0, 15.0]),
        (WELL, [150.0, 90.0, -60.0]),
        (BADLY, [10.0, 5.0, 2.0]),
        (BADLY, [60.0, 80.0, 100.0]),
    ],
)
def test_tre_prediction_matches_monte_carlo(layout: np.ndarray, target: list[float]) -> None:
    # far from the origin and arbitrarily oriented: a prediction that assumes centred, axis-aligned
    # fiducials (scikit-surgery's compute_tre_from_fle) is wrong here
    rot, _ = _pose(7)
    fid = layout @ rot.T + FAR
    tgt = np.asarray(target) @ rot.T + FAR
    fle = 0.25
    predicted = predict_tre(fid, tgt, fle)[0]
    simulated = simulate_tre(fid, tgt, fle, trials=10_000, seed=11)[0]
    assert predicted == pytest.approx(simulated, rel=0.05)


def test_monte_carlo_itself_against_a_direct_loop() -> None:
    # simulate_tre is batched; one loop over trials with rigid_register must agree
    rng = np.random.default_rng(12)
    fid = BADLY + FAR
    tgt = np.array([[40.0, 30.0, 20.0]]) + FAR
    sq = 0.0
    for _ in range(2000):
        noisy = fid + rng.normal(scale=0.25 / np.sqrt(3), size=fid.shape)
        reg = rigid_register(fid, noisy)
        sq += float(np.sum((reg.transform.apply(tgt) - tgt) ** 2))
    loop = np.sqrt(sq / 2000)
    assert simulate_tre(fid, tgt, 0.25, trials=10_000)[0] == pytest.approx(loop, rel=0.05)


def test_tre_invariant_under_rigid_motion() -> None:
    fid = BADLY + np.array([5.0, 6.0, 7.0])
    tgt = np.array([[60.0, 80.0, 100.0], [1.0, 2.0, 3.0]])
    base = predict_tre(fid, tgt, 0.3)
    for seed in range(5):
        rot = Rotation.random(random_state=seed).as_matrix()
        t = np.array([1000.0, -2000.0, 500.0]) * (seed + 1)
        np.testing.assert_allclose(predict_tre(fid @ rot.T + t, tgt @ rot.T + t, 0.3), base, rtol=1e-9)


def test_tre_grows_away_from_the_centroid_and_scales_with_fle() -> None:
    fid = WELL + FAR
    c = fid.mean(0)
    near, far_ = predict_tre(fid, [c, c + np.array([0, 0, 300.0])], 0.5)
    assert near == pytest.approx(0.5 / np.sqrt(len(fid)))  # at the centroid: FLE / sqrt(N)
    assert far_ > 3 * near
    np.testing.assert_allclose(predict_tre(fid, c + 50, 1.0), 2 * predict_tre(fid, c + 50, 0.5))


@pytest.mark.parametrize(
    ("fixed", "moving", "message"),
    [
        (np.zeros((2, 3)), np.zeros((2, 3)), "3 or more"),
        ([[0, 0, 0], [1, 1, 1], [2, 2, 2.0]], [[0, 0, 0], [1, 1, 1], [2, 2, 2.0]], "collinear"),
        ([[0, 0, 0], [1, 1, 1], [2, 2, 2.0]], [[0, 0, 0], [1, 0, 0], [0, 1, 0.0]], "collinear"),
        (np.eye(3), np.eye(4)[:, :3], "row by row"),
        ([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]], np.eye(3), "not finite"),
        (np.eye(3), np.eye(2), "x, y, z"),
    ],
)
def test_degenerate_input_is_an_input_error(fixed, moving, message: str) -> None:
    with pytest.raises(InputError, match=message):
        rigid_register(fixed, moving)


def test_predict_tre_rejects_bad_input() -> None:
    with pytest.raises(InputError, match="collinear"):
        predict_tre([[0, 0, 0], [1, 0, 0], [2, 0, 0.0]], [0, 0, 0], 0.2)
    with pytest.raises(InputError, match="FLE"):
        predict_tre(WELL, [0, 0, 0], -1.0)
    with pytest.raises(InputError, match="not finite"):
        predict_tre(WELL, [0, np.inf, 0], 0.2)
