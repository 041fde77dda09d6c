"""Hand-eye calibration: the fixed transform X between a tracked body and a camera, from AX = XB.

A tracked camera or ultrasound probe carries a marker (the *hand*) whose pose the tracker (or
robot) reports, ``H_i`` (hand to base); the camera sees a calibration object whose pose it reports,
``C_i`` (object to camera). The object and the base do not move, so ``H_i X C_i`` is the same for
every pose, and each pair of poses ``(i, j)`` gives one equation ``A X = X B`` with the hand motion
``A = H_j⁻¹ H_i`` and the camera motion ``B = C_j C_i⁻¹``. ``X`` maps camera points into the hand
(marker) frame — OpenCV's ``cam2gripper``.

- ``tsai``: Tsai & Lenz, IEEE Trans. Robotics and Automation 5 (1989) 345: the rotation from the
  modified Rodrigues vectors of the motions (linear least squares), then the translation.
- ``park``: Park & Martin, IEEE Trans. Robotics and Automation 10 (1994) 717: the rotation as the
  orthogonal Procrustes fit of the motions' rotation vectors (``α_i = R_X β_i``), then the translation.

Both are followed (``refine=True``) by a nonlinear least-squares refinement of all six parameters
(rotation vector and translation of X) on the residual ``A X − X B``, rotation rows weighted by a
length so that millimetres and radians count alike.

OpenCV's ``cv2.calibrateHandEye`` would do the closed-form step, but the OpenCV 5 build igikit
depends on (opencv-python-headless 5.0) ships without it, and opencv-contrib would replace the cv2
module and NumPy; the two methods are short enough to carry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.spatial.transform import Rotation

from igikit.core.transform import Transform
from igikit.errors import InputError
from igikit.register.pivot import as_poses

Method = Literal["tsai", "park"]
METHODS: tuple[str, ...] = ("tsai", "park")

#: Smallest rotation (degrees) of a motion that counts as rotating at all.
MIN_ROTATION_DEG = 0.5
#: Smallest spread of the motions' rotation axes (second singular value over the first of the
#: stacked rotation vectors) for X to be determined; about one degree of axis tilt.
MIN_AXIS_SPREAD = 0.02
#: Most pose pairs used (all pairs up to this; a deterministic sample beyond).
MAX_PAIRS = 5000


@dataclass(frozen=True, eq=False)
class HandEyeResult:
    """The result of :func:`hand_eye_calibration`.

    ``transform`` is X, camera to hand (marker); ``initial`` the closed-form estimate before
    refinement. Per motion (pose pair), ``rotation_residuals_deg`` is the angle of ``(AX)⁻¹ XB`` and
    ``translation_residuals_mm`` the distance between the translations of ``AX`` and ``XB``.
    """

    transform: Transform
    initial: Transform
    method: str
    refined: bool
    pairs: np.ndarray
    rotation_residuals_deg: np.ndarray
    translation_residuals_mm: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        """The 4x4 camera-to-hand matrix X."""
        return self.transform.matrix

    @property
    def rotation_rms_deg(self) -> float:
        """RMS rotation residual over the motions (degrees)."""
        return float(np.sqrt(np.mean(self.rotation_residuals_deg**2)))

    @property
    def translation_rms_mm(self) -> float:
        """RMS translation residual over the motions (mm)."""
        return float(np.sqrt(np.mean(self.translation_residuals_mm**2)))


def _skew(v: np.ndarray) -> np.ndarray:
    out = np.zeros((*v.shape[:-1], 3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def _inverse(t: np.ndarray) -> np.ndarray:
    out = np.tile(np.eye(4), (*t.shape[:-2], 1, 1))
    rt = np.swapaxes(t[..., :3, :3], -1, -2)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rt, t[..., :3, 3])
    return out


def _pairs(n: int) -> np.ndarray:
    i, j = np.triu_indices(n, k=1)
    pairs = np.stack([i, j], axis=1)
    if len(pairs) > MAX_PAIRS:
        # consecutive pairs always, the rest a fixed sample: the result must not depend on chance
        rng = np.random.default_rng(0)
        consecutive = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)
        rest = pairs[pairs[:, 1] - pairs[:, 0] > 1]
        pick = rng.choice(len(rest), size=MAX_PAIRS - len(consecutive), replace=False)
        pairs = np.concatenate([consecutive, rest[np.sort(pick)]])
    return pairs


def motions(hand_poses: np.ndarray, camera_poses: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hand motions ``A = H_j⁻¹ H_i`` and camera motions ``B = C_j C_i⁻¹`` ``(P, 4, 4)`` for ``pairs``."""
    i, j = pairs[:, 0], pairs[:, 1]
    a = _inverse(hand_poses[j]) @ hand_poses[i]
    b = camera_poses[j] @ _inverse(camera_poses[i])
    return a, b


def _check_motion(alpha: np.ndarray) -> None:
    angles = np.linalg.norm(alpha, axis=1)
    if angles.max() < np.deg2rad(MIN_ROTATION_DEG):
        raise InputError(
            f"the hand barely rotates between poses (largest motion {np.rad2deg(angles.max()):.2g} degrees); "
            "hand-eye calibration needs rotations of 10 degrees or more about two different axes"
        )
    s = np.linalg.svd(alpha, compute_uv=False)
    if s[1] < MIN_AXIS_SPREAD * s[0]:
        raise InputError(
            "all hand motions rotate about one axis (degenerate: the rotation about it and the translation along "
            "it cannot be found); rotate the hand about two or more different axes"
        )


def _translation(a: np.ndarray, b: np.ndarray, rx: np.ndarray) -> np.ndarray:
    # (R_A - I) t_X = R_X t_B - t_A, stacked over the motions
    lhs = (a[:, :3, :3] - np.eye(3)).reshape(-1, 3)
    rhs = (np.einsum("ij,pj->pi", rx, b[:, :3, 3]) - a[:, :3, 3]).reshape(-1)
    t: np.ndarray = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    return t


def tsai_lenz(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """X ``(4, 4)`` from motions ``A, B`` ``(P, 4, 4)`` by Tsai & Lenz (1989)."""
    ra = Rotation.from_matrix(a[:, :3, :3]).as_rotvec()
    rb = Rotation.from_matrix(b[:, :3, :3]).as_rotvec()

    def modified_rodrigues(r: np.ndarray) -> np.ndarray:
        angle = np.linalg.norm(r, axis=1, keepdims=True)
        axis = np.divide(r, angle, out=np.zeros_like(r), where=angle > 0)
        out: np.ndarray = 2.0 * np.sin(angle / 2.0) * axis
        return out

    pa, pb = modified_rodrigues(ra), modified_rodrigues(rb)
    # skew(P_A + P_B) P' = P_B - P_A  (Tsai & Lenz, eq. 12)
    lhs = _skew(pa + pb).reshape(-1, 3)
    rhs = (pb - pa).reshape(-1)
    p_prime = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    p = 2.0 * p_prime / np.sqrt(1.0 + p_prime @ p_prime)
    pp = p @ p
    rx = (1.0 - pp / 2.0) * np.eye(3) + 0.5 * (np.outer(p, p) + np.sqrt(4.0 - pp) * _skew(p))
    # the closed form is orthonormal only up to round-off; project it back onto the rotations
    u, _, vt = np.linalg.svd(rx)
    rx = u @ vt
    x = np.eye(4)
    x[:3, :3] = rx
    x[:3, 3] = _translation(a, b, rx)
    return x


def park_martin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """X ``(4, 4)`` from motions ``A, B`` ``(P, 4, 4)`` by Park & Martin (1994)."""
    alpha = Rotation.from_matrix(a[:, :3, :3]).as_rotvec()
    beta = Rotation.from_matrix(b[:, :3, :3]).as_rotvec()
    # R_X = (MᵀM)^(-1/2) Mᵀ with M = Σ β αᵀ: the polar factor of Mᵀ, computed by SVD (with the
    # determinant kept at +1, which the closed form also gives whenever it is defined)
    u, _, vt = np.linalg.svd(alpha.T @ beta)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rx = u @ d @ vt
    x = np.eye(4)
    x[:3, :3] = rx
    x[:3, 3] = _translation(a, b, rx)
    return x


def residuals(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per motion: the rotation angle of ``(AX)⁻¹ XB`` (degrees) and ``|t(AX) − t(XB)|`` (mm)."""
    ax = a @ x
    xb = x @ b
    rel = np.swapaxes(ax[:, :3, :3], 1, 2) @ xb[:, :3, :3]
    # the rotation vector's length, not arccos of the trace: exact near zero, where arccos loses half the digits
    rot_deg: np.ndarray = np.rad2deg(Rotation.from_matrix(rel).magnitude())
    trans_mm: np.ndarray = np.linalg.norm(ax[:, :3, 3] - xb[:, :3, 3], axis=1)
    return rot_deg, trans_mm


def _refine(a: np.ndarray, b: np.ndarray, x0: np.ndarray) -> np.ndarray:
    from scipy.optimize import least_squares

    # a rotation error of 1 rad moves points at this distance by about this many mm; the camera's
    # typical distance to the object makes rotation and translation residuals commensurate
    length = max(1.0, float(np.sqrt(np.mean(np.sum(b[:, :3, 3] ** 2, axis=1)))))
    ra, ta = a[:, :3, :3], a[:, :3, 3]
    rb, tb = b[:, :3, :3], b[:, :3, 3]

    def fun(params: np.ndarray) -> np.ndarray:
        rx = Rotation.from_rotvec(params[:3]).as_matrix()
        tx = params[3:]
        r_res = (ra @ rx - rx @ rb).reshape(len(a), 9) * length
        t_res = np.einsum("pij,j->pi", ra, tx) + ta - np.einsum("ij,pj->pi", rx, tb) - tx
        out: np.ndarray = np.concatenate([r_res, t_res], axis=1).reshape(-1)
        return out

    p0 = np.concatenate([Rotation.from_matrix(x0[:3, :3]).as_rotvec(), x0[:3, 3]])
    sol = least_squares(fun, p0, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    x = np.eye(4)
    x[:3, :3] = Rotation.from_rotvec(sol.x[:3]).as_matrix()
    x[:3, 3] = sol.x[3:]
    return x


def hand_eye_calibration(
    hand_poses: npt.ArrayLike,
    camera_poses: npt.ArrayLike,
    method: Method | str = "tsai",
    *,
    refine: bool = True,
) -> HandEyeResult:
    """Solve ``A X = X B`` for X, the camera-to-hand transform.

    Parameters
    ----------
    hand_poses
        ``(N, 4, 4)`` hand (marker, gripper) to base (tracker, robot) poses, mm, N >= 3.
    camera_poses
        ``(N, 4, 4)`` calibration object to camera poses, mm, taken at the same instants.
    method
        ``"tsai"`` (Tsai & Lenz 1989) or ``"park"`` (Park & Martin 1994) for the closed form.
    refine
        Refine the closed form by nonlinear least squares on ``A X − X B`` (default True).

    Returns
    -------
    HandEyeResult
        X, the closed-form estimate, and per-motion rotation (deg) and translation (mm) residuals.

    Raises
    ------
    InputError
        Fewer than 3 poses, unequal counts, non-rigid poses, an unknown method, or motions that
        do not determine X (no rotation, or all rotations about one axis).

    References
    ----------
    R. Y. Tsai, R. K. Lenz, "A new technique for fully autonomous and efficient 3D robotics
    hand/eye calibration", IEEE Trans. Robotics and Automation 5 (1989) 345-358.
    F. C. Park, B. J. Martin, "Robot sensor calibration: solving AX = XB on the Euclidean group",
    IEEE Trans. Robotics and Automation 10 (1994) 717-721.

    Examples
    --------
    >>> from scipy.spatial.transform import Rotation
    >>> x = np.eye(4); x[:3, :3] = Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    >>> x[:3, 3] = [5.0, -3.0, 40.0]
    >>> hand = np.tile(np.eye(4), (4, 1, 1))
    >>> hand[:, :3, :3] = Rotation.from_rotvec([[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]).as_matrix()
    >>> hand[:, :3, 3] = [[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]]
    >>> world = np.eye(4); world[:3, 3] = [0, 0, 300]  # object to base
    >>> camera = np.linalg.inv(hand @ x) @ world
    >>> res = hand_eye_calibration(hand, camera)
    >>> bool(np.allclose(res.matrix, x, atol=1e-9)), res.translation_rms_mm < 1e-9
    (True, True)
    """
    try:
        hand = as_poses(hand_poses)
    except InputError as exc:
        raise InputError(f"hand poses: {exc.problem}") from None
    try:
        camera = as_poses(camera_poses)
    except InputError as exc:
        raise InputError(f"camera poses: {exc.problem}") from None
    if hand.shape[0] != camera.shape[0]:
        raise InputError(
            f"hand and camera poses must correspond one to one: {hand.shape[0]} hand, {camera.shape[0]} camera"
        )
    if hand.shape[0] < 3:
        raise InputError(
            f"hand-eye calibration needs 3 or more poses (2 motions about different axes), got {hand.shape[0]}"
        )
    if method not in METHODS:
        raise InputError(f"unknown hand-eye method {method!r}; use one of {', '.join(METHODS)}")
    pairs = _pairs(hand.shape[0])
    a, b = motions(hand, camera, pairs)
    _check_motion(Rotation.from_matrix(a[:, :3, :3]).as_rotvec())
    x0 = tsai_lenz(a, b) if method == "tsai" else park_martin(a, b)
    x = _refine(a, b, x0) if refine else x0
    rot_deg, trans_mm = residuals(a, b, x)
    return HandEyeResult(
        transform=Transform(x, source="camera", target="hand"),
        initial=Transform(x0, source="camera", target="hand"),
        method=str(method),
        refined=refine,
        pairs=pairs,
        rotation_residuals_deg=rot_deg,
        translation_residuals_mm=trans_mm,
    )
