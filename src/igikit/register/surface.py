"""Surface registration: a rigid transform between two point clouds or meshes of the same surface.

The pre-operative surface (segmented from an image) is matched to one captured during the
procedure (tracked pointer sweep, laser or stereo scan), which typically sees only part of the
organ and picks up stray points. The pipeline follows Open3D's global + local recipe:

1. **Global initialisation**: FPFH features (Rusu, Blodow & Beetz, ICRA 2009) matched by RANSAC
   (Fischler & Bolles 1981), run from several seeds, together with principal-axis alignments and
   a user-given start (fiducials). No start is trusted: each is refined and scored.
2. **Local refinement**: point-to-plane ICP (Chen & Medioni 1992) with Tukey's biweight, Open3D's
   ``registration_icp``: first on the voxel-downsampled clouds, then (the fine stage,
   :func:`fine_icp`) on all points with the trimming distance and the Tukey scale taken from the
   robust spread of the residuals (1.4826 MAD): outliers and the parts of MOVING that FIXED does
   not cover (partial overlap) get no weight.
3. **Report**: RMS point-to-plane distance over the inliers, the inlier fraction, and a warning
   when starts that differ by more than the fit's resolution reach nearly the same cost — a
   near-symmetric surface (a sphere, a cylinder) whose pose the data cannot pin down.

Open3D's import needs Debian's ``libusb-1.0-0`` (``apt-get install -y libusb-1.0-0``).
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from igikit.core.transform import Transform
from igikit.errors import InputError
from igikit.register.points import as_points

if TYPE_CHECKING:
    import open3d as o3d

log = logging.getLogger(__name__)

#: File extensions :func:`read_surface` understands.
EXTENSIONS: tuple[str, ...] = (".csv", ".ply", ".stl", ".vtk")
#: Fewest points a surface may have.
MIN_POINTS = 3
#: Starts whose inlier fraction comes within this fraction of the best one's count as equally good.
AMBIGUITY_COST = 0.05
#: ... and differ from the best when they move MOVING's inliers by more than this many voxels (RMS).
AMBIGUITY_VOXELS = 2.0
#: MOVING points used to refine and compare the starts.
SUBSAMPLE = 2000
#: RANSAC hypotheses per seed.
RANSAC_ITERATIONS = 20_000
#: Tukey / trimming distance in units of the robust residual scale (sigma).
TUKEY_SIGMAS = 4.685
#: Inliers lie within this many robust sigmas of FIXED.
INLIER_SIGMAS = 3.0
#: The fine stage's subsample round stops when fitness and RMS change by less than this (relative)
#: or after :data:`FINE_ITERATIONS`: with Tukey weights the RMS wanders by ~1e-4 once the pose has
#: settled (3-4 iterations from a start within a voxel), and the rounds on all points polish the rest.
FINE_TOL = 1e-4
#: Most iterations of the fine stage's subsample round.
FINE_ITERATIONS = 10
#: Iterations of each fine round on all MOVING points (each costs a nearest-neighbour search of all).
FINE_LAST_ITERATIONS = 2
#: The fine stage ends once the next iteration would move MOVING by less than this (RMS, mm) and the
#: robust scale has settled within 5 %: a tenth of the accuracy asked for (0.5 mm).
FINE_STEP_MM = 0.05
#: MOVING points the fine stage's first round (at the coarse stage's scale) runs on.
FINE_SUBSAMPLE = 2500
#: The fine stage's refinements leave out MOVING points provably farther than this many trimming
#: distances from FIXED at their start (they cannot pair; see :class:`IcpTarget`).
FAR_TRIMS = 2.0
#: Cells along the longest side of FIXED's bounding box in :class:`DistanceBound`'s grid ...
BOUND_CELLS = 48
#: ... which reaches this many cells beyond the box on each side.
BOUND_PAD = 6
#: The fine stage registers to FIXED averaged on voxels of this fraction of the global voxel size.
FINE_VOXEL_FRACTION = 0.5


@dataclass(frozen=True, eq=False)
class Surface:
    """Surface points ``(N, 3)`` mm, with triangles ``(M, 3)`` (vertex indices) when it is a mesh."""

    points_mm: np.ndarray
    triangles: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class SurfaceRegistration:
    """The result of :func:`register_surface`.

    ``transform`` maps MOVING into FIXED. ``residuals_mm`` holds each MOVING point's distance to
    FIXED after the fit (point to tangent plane), ``inliers`` those within the inlier distance,
    ``rms_mm`` their RMS over the inliers. ``warnings`` are sentences for the user (an ambiguous fit).
    """

    transform: Transform
    rms_mm: float
    inlier_fraction: float
    inlier_distance_mm: float
    residuals_mm: np.ndarray
    inliers: np.ndarray
    voxel_mm: float
    starts: int
    warnings: list[str] = field(default_factory=list)

    @property
    def matrix(self) -> np.ndarray:
        """The 4x4 homogeneous MOVING-to-FIXED matrix."""
        return self.transform.matrix


def _open3d() -> Any:
    try:
        import open3d
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise InputError(
            f"surface registration needs Open3D ({exc}); `pip install open3d`, and on Debian "
            "`apt-get install -y libusb-1.0-0`"
        ) from None
    open3d.utility.set_verbosity_level(open3d.utility.VerbosityLevel.Error)
    return open3d


def read_surface(path: str | Path) -> Surface:
    """Read a point cloud or mesh: CSV (x, y, z rows), PLY, STL or legacy VTK (mm).

    Raises InputError for an unknown extension, an unreadable file, fewer than 3 points or a
    non-finite coordinate.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise InputError(f"unknown surface file extension {path.suffix!r}; use one of {', '.join(EXTENSIONS)}", path)
    if not path.is_file():
        raise InputError("no such file", path)
    triangles: np.ndarray | None = None
    if ext == ".csv":
        from igikit.workflows.surgery.files import read_points_csv

        points = read_points_csv(path).points_mm
    else:
        import meshio

        # meshio prints its complaints and may even sys.exit() on a malformed file: keep both from the user
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                mesh = meshio.read(path)
        except (Exception, SystemExit) as exc:  # ReadError, ValueError, struct.error, SystemExit ...
            said = (str(exc) if not isinstance(exc, SystemExit) else "") or sink.getvalue()
            reason = said.strip().splitlines()[0] if said.strip() else type(exc).__name__
            raise InputError(f"cannot read it as {ext[1:].upper()}: {reason}", path) from None
        points = np.asarray(mesh.points, dtype=np.float64)
        if points.ndim == 2 and points.shape[1] == 2:
            points = np.hstack([points, np.zeros((len(points), 1))])
        tris = [c.data for c in mesh.cells if c.type == "triangle"]
        if tris:
            triangles = np.concatenate(tris).astype(np.int64)
    try:
        points = as_points(points, "surface points", minimum=MIN_POINTS)
    except InputError as exc:
        raise InputError(exc.problem, path) from None
    return Surface(points, triangles)


def _as_surface(s: Surface | npt.ArrayLike, name: str) -> Surface:
    if isinstance(s, Surface):
        return Surface(as_points(s.points_mm, f"{name} points", minimum=MIN_POINTS), s.triangles)
    return Surface(as_points(s, f"{name} points", minimum=MIN_POINTS))


def _cloud(o3d: Any, s: Surface, normal_radius: float) -> o3d.geometry.PointCloud:
    # normals from the points' neighbourhoods also for meshes: a mesh from marching cubes on a label
    # map is terraced, and its vertex normals tilt with every step
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(s.points_mm))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=normal_radius, max_nn=30))
    return pc


def _auto_voxel(points: np.ndarray) -> float:
    extent = points.max(axis=0) - points.min(axis=0)
    return max(float(np.linalg.norm(extent)) / 60.0, 1e-6)


def _pca_starts(moving: np.ndarray, fixed: np.ndarray) -> list[np.ndarray]:
    """The four proper rotations that align MOVING's principal axes (and centroid) with FIXED's."""

    def axes(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = p.mean(axis=0)
        _, _, vt = np.linalg.svd(p - c, full_matrices=False)
        return c, vt.T

    cm, vm = axes(moving)
    cf, vf = axes(fixed)
    starts = []
    for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        flip = np.diag([sx, sy, 1.0])
        r = vf @ flip @ vm.T
        if np.linalg.det(r) < 0:
            r = vf @ (flip @ np.diag([1.0, 1.0, -1.0])) @ vm.T
        t = np.eye(4)
        t[:3, :3] = r
        t[:3, 3] = cf - r @ cm
        starts.append(t)
    return starts


def _ransac_starts(o3d: Any, m: Any, f: Any, voxel: float, seeds: int, seed: int) -> list[np.ndarray]:
    reg = o3d.pipelines.registration
    param = o3d.geometry.KDTreeSearchParamHybrid(radius=5.0 * voxel, max_nn=100)
    fm = reg.compute_fpfh_feature(m, param)
    ff = reg.compute_fpfh_feature(f, param)
    out = []
    for k in range(seeds):
        o3d.utility.random.seed(seed + k)
        res = reg.registration_ransac_based_on_feature_matching(
            m,
            f,
            fm,
            ff,
            True,
            1.5 * voxel,
            reg.TransformationEstimationPointToPoint(False),
            3,
            [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg.CorrespondenceCheckerBasedOnDistance(1.5 * voxel)],
            reg.RANSACConvergenceCriteria(RANSAC_ITERATIONS, 0.999),
        )
        out.append(np.asarray(res.transformation))
    return out


class DistanceBound:
    """A lower bound on the distance from any point to the nearest FIXED point, by table look-up.

    FIXED's bounding box is cut into cubic cells (:data:`BOUND_CELLS` along its longest side); the
    Euclidean distance transform of the occupied cells gives, for a point in cell ``k``, the distance
    ``e_k`` between cell centres to the nearest occupied cell, and ``(e_k - sqrt(3)) * h`` (cells of
    side ``h``; both points may sit anywhere in their cells) can only underestimate the true
    distance. Outside the grid the distance to FIXED's bounding box is used. Building it takes a few
    milliseconds; a look-up is a few NumPy operations per point.

    Parameters
    ----------
    fixed_mm
        ``(N, 3)`` FIXED points (mm).
    """

    def __init__(self, fixed_mm: np.ndarray) -> None:
        from scipy.ndimage import distance_transform_edt

        pts = np.asarray(fixed_mm, dtype=np.float64)
        self.lo_mm = pts.min(axis=0)
        self.hi_mm = pts.max(axis=0)
        self.cell_mm = max(float((self.hi_mm - self.lo_mm).max()) / BOUND_CELLS, 1e-9)
        # the grid reaches BOUND_PAD cells beyond the box: stray points around the surface lie there
        self._origin_mm = self.lo_mm - BOUND_PAD * self.cell_mm
        shape = np.floor((self.hi_mm - self.lo_mm) / self.cell_mm).astype(np.int64) + 1 + 2 * BOUND_PAD
        occupied = np.zeros(tuple(shape), dtype=bool)
        idx = np.minimum(((pts - self._origin_mm) / self.cell_mm).astype(np.int64), shape - 1)
        occupied[idx[:, 0], idx[:, 1], idx[:, 2]] = True
        edt = np.asarray(distance_transform_edt(~occupied), dtype=np.float64)
        self._cells_mm = (np.clip(edt - np.sqrt(3.0), 0.0, None) * self.cell_mm).ravel()
        self._shape = shape
        self._strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)

    def lower_mm(self, points_mm: np.ndarray) -> np.ndarray:
        """A lower bound (mm) on each point's distance to the nearest FIXED point."""
        p = np.asarray(points_mm, dtype=np.float64)
        gap = np.maximum(np.maximum(self.lo_mm - p, p - self.hi_mm), 0.0)
        out: np.ndarray = np.sqrt(np.einsum("ij,ij->i", gap, gap))
        idx = np.floor((p - self._origin_mm) / self.cell_mm).astype(np.int64)
        inside = np.flatnonzero(np.all((idx >= 0) & (idx < self._shape), axis=1))
        out[inside] = self._cells_mm[idx[inside] @ self._strides]
        return out


class IcpTarget:
    """FIXED points with normals, held once as an Open3D cloud for repeated point-to-plane ICP.

    Open3D linearises the rotation about the origin of FIXED's frame; far from the data (tracker
    coordinates, metres away) a small rotation then couples strongly with the translation and the
    6x6 system loses precision. Each refinement therefore moves the origin to MOVING's centroid as
    the start places it (the cloud is translated in place and back). Results are returned in the
    original frames.

    Open3D's nearest-neighbour search costs several times more for a query far from every FIXED
    point (an outlier in empty space) than for one near the surface, and such a point can never
    pair. A refinement given ``far_trims`` leaves out the MOVING points whose :class:`DistanceBound`
    at the start exceeds ``far_trims`` trimming distances, and checks afterwards that none of them
    came within the trimming distance at the result (else it runs again on all points). Only the
    start and the result are checked, not the iterations between: with a margin of a trimming
    distance or more that gives the result on all points (to rounding, as the tests check) for
    refinements that move MOVING little, as the fine stage's do.

    Parameters
    ----------
    fixed_mm, fixed_normals
        ``(N, 3)`` FIXED points (mm) and their unit normals.
    """

    def __init__(self, fixed_mm: np.ndarray, fixed_normals: np.ndarray) -> None:
        o3d = _open3d()
        self._o3d = o3d
        self._reg = o3d.pipelines.registration
        self.centre_mm = np.asarray(fixed_mm, dtype=np.float64).mean(axis=0)
        self.cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(fixed_mm) - self.centre_mm))
        self.cloud.normals = o3d.utility.Vector3dVector(np.asarray(fixed_normals, dtype=np.float64))
        self._fixed_mm = np.asarray(fixed_mm, dtype=np.float64)
        self._bound: DistanceBound | None = None

    @property
    def bound(self) -> DistanceBound:
        """FIXED's :class:`DistanceBound`, built on first use."""
        if self._bound is None:
            self._bound = DistanceBound(self._fixed_mm)
        return self._bound

    def refine(
        self,
        moving_mm: np.ndarray,
        init: np.ndarray,
        *,
        max_distance_mm: float,
        tukey_mm: float,
        iterations: int = 30,
        tol: float = 1e-6,
        far_trims: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Point-to-plane ICP of ``moving_mm`` from ``init`` (see :func:`icp_point_to_plane`).

        With ``far_trims``, MOVING points provably farther than ``far_trims * max_distance_mm`` from
        FIXED at ``init`` are left out of the search (see the class notes); the result is checked to
        be the one on all points. Returns the 4x4 MOVING-to-FIXED matrix and the ``(K, 2)``
        correspondences (MOVING index, FIXED index) within ``max_distance_mm`` at that transform.
        """
        init = np.asarray(init, dtype=np.float64)
        moving_mm = np.asarray(moving_mm, dtype=np.float64)
        # linearise about MOVING's centroid as placed by the start: a partial scan far from FIXED's
        # centroid would otherwise couple rotation with translation and slide for many iterations
        pivot = init[:3, :3] @ moving_mm.mean(axis=0) + init[:3, 3]
        if far_trims is None:
            return self._icp(moving_mm, init, pivot, max_distance_mm, tukey_mm, iterations, tol)
        lower = self.bound.lower_mm(_apply(init, moving_mm))
        far = lower > float(far_trims) * float(max_distance_mm)
        if far.any() and np.count_nonzero(~far) >= MIN_POINTS:
            near = np.flatnonzero(~far)
            matrix, pairs = self._icp(moving_mm[near], init, pivot, max_distance_mm, tukey_mm, iterations, tol)
            # the left-out points cannot pair at the result unless it moved them by their margin
            step = moving_mm[far] @ (matrix[:3, :3] - init[:3, :3]).T + (matrix[:3, 3] - init[:3, 3])
            if np.all(np.linalg.norm(step, axis=1) < lower[far] - float(max_distance_mm)):
                pairs[:, 0] = near[pairs[:, 0]]
                return matrix, pairs
        return self._icp(moving_mm, init, pivot, max_distance_mm, tukey_mm, iterations, tol)

    def _icp(
        self,
        moving_mm: np.ndarray,
        init: np.ndarray,
        pivot: np.ndarray,
        max_distance_mm: float,
        tukey_mm: float,
        iterations: int,
        tol: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        reg = self._reg
        delta = pivot - self.centre_mm
        self.cloud.translate(-delta)
        try:
            shift = np.eye(4)
            shift[:3, 3] = -pivot
            moving = self._o3d.geometry.PointCloud(self._o3d.utility.Vector3dVector(moving_mm))
            result = reg.registration_icp(
                moving,
                self.cloud,
                float(max_distance_mm),
                shift @ init,
                reg.TransformationEstimationPointToPlane(reg.TukeyLoss(k=float(tukey_mm))),
                reg.ICPConvergenceCriteria(relative_fitness=tol, relative_rmse=tol, max_iteration=int(iterations)),
            )
        finally:
            self.cloud.translate(delta)
        unshift = np.eye(4)
        unshift[:3, 3] = pivot
        pairs = np.asarray(result.correspondence_set, dtype=np.int64).reshape(-1, 2)
        return unshift @ np.asarray(result.transformation), pairs


def icp_point_to_plane(
    moving_mm: np.ndarray,
    fixed_mm: np.ndarray,
    fixed_normals: np.ndarray,
    init: np.ndarray,
    *,
    max_distance_mm: float,
    tukey_mm: float,
    iterations: int = 30,
    tol: float = 1e-6,
) -> np.ndarray:
    """Point-to-plane ICP with Tukey weights (Chen & Medioni 1992; robust weights as in IRLS).

    Each iteration pairs every MOVING point with its nearest FIXED point (pairs farther than
    ``max_distance_mm`` are trimmed), weights the signed point-to-plane residual ``r`` by Tukey's
    biweight ``(1 - (r/c)^2)^2`` with ``c = tukey_mm``, and solves the linearised 6-parameter
    least-squares step: Open3D's ``registration_icp`` with ``TransformationEstimationPointToPlane``
    and ``TukeyLoss`` (Zhou, Park & Koltun 2018), about FIXED's centroid (see :class:`IcpTarget`).
    It stops after ``iterations`` or when fitness and RMS change by less than ``tol`` (relative).
    Returns the 4x4 MOVING-to-FIXED matrix.

    igikit had its own NumPy / SciPy implementation of this loop; it was retired for Open3D's C++
    one, which does the same with one library call per refinement (``bench/surgery.py`` compares
    them). Nothing of the own code is needed any more: rotating about the data (its better
    conditioning far from the origin) is kept by :class:`IcpTarget`.
    """
    target = IcpTarget(np.asarray(fixed_mm, dtype=np.float64), np.asarray(fixed_normals, dtype=np.float64))
    matrix, _ = target.refine(
        np.asarray(moving_mm, dtype=np.float64),
        init,
        max_distance_mm=max_distance_mm,
        tukey_mm=tukey_mm,
        iterations=iterations,
        tol=tol,
    )
    return matrix


def fine_target(fixed: Any, voxel_mm: float) -> IcpTarget:
    """The fine stage's FIXED: the cloud (with normals) voxel-averaged at ``FINE_VOXEL_FRACTION * voxel_mm``.

    Point-to-plane ICP measures to the tangent plane, so FIXED points much denser than that add
    search cost and no accuracy (a marching-cubes mesh has a vertex per square millimetre); the
    residuals reported afterwards are still measured against every FIXED point.
    """
    down = fixed.voxel_down_sample(FINE_VOXEL_FRACTION * voxel_mm)
    normals = np.asarray(down.normals)
    normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return IcpTarget(np.asarray(down.points), normals)


def fine_icp(
    target: IcpTarget,
    moving_mm: np.ndarray,
    init: np.ndarray,
    *,
    sigma_mm: float,
    floor_mm: float = 1e-6,
    rounds: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """The fine stage: robust point-to-plane ICP of all MOVING points, its scale re-estimated.

    Each round trims pairs farther than ``c = TUKEY_SIGMAS * sigma`` and weights residuals with
    Tukey's biweight of scale ``c``; ``sigma`` is then re-estimated as 1.4826 times the median
    point-to-plane residual of the pairs the round kept (the MAD of a zero-mean residual), so
    outliers and the parts of MOVING that FIXED does not cover lose their weight as the fit
    tightens.

    The first round runs on :data:`FINE_SUBSAMPLE` random MOVING points (all when there are no
    more) at the scale ``sigma_mm`` the coarse stage measured (until :data:`FINE_TOL`, at most
    :data:`FINE_ITERATIONS` iterations); it does the pose's travel cheaply. Each further round runs
    on all MOVING points for :data:`FINE_LAST_ITERATIONS` iterations at the re-estimated scale,
    until the scale changes by less than 5 % and the next iteration, a Gauss-Newton step from the
    round's last pairs (:func:`_next_step_mm`), would move the paired points by less than
    :data:`FINE_STEP_MM` (RMS), or ``rounds`` rounds in all. From a start the coarse stage hands
    over that is one round on all points.

    The nearest-neighbour searches are most of the cost, and those of MOVING points far from every
    FIXED point (stray points) the largest part of it: each round leaves out the points that
    provably lie beyond :data:`FAR_TRIMS` trimming distances (:meth:`IcpTarget.refine`), which
    changes nothing in the result.

    Returns the 4x4 MOVING-to-FIXED matrix and the final robust residual scale ``sigma`` (mm).
    """
    best = np.asarray(init, dtype=np.float64)
    sigma = float(sigma_mm)
    fixed = np.asarray(target.cloud.points) + target.centre_mm
    normals = np.asarray(target.cloud.normals)

    def scale(moving: np.ndarray, pairs: np.ndarray) -> float:
        p = _apply(best, moving[pairs[:, 0]])
        r = np.einsum("ij,ij->i", p - fixed[pairs[:, 1]], normals[pairs[:, 1]])
        return max(float(1.4826 * np.median(np.abs(r))), floor_mm)

    n = len(moving_mm)
    sub = moving_mm
    if n > FINE_SUBSAMPLE:
        sub = moving_mm[np.random.default_rng(seed).choice(n, FINE_SUBSAMPLE, replace=False)]
    for k in range(max(int(rounds), 1)):
        c = TUKEY_SIGMAS * sigma
        pts = sub if k == 0 else moving_mm
        iterations = FINE_ITERATIONS if k == 0 else FINE_LAST_ITERATIONS
        best, pairs = target.refine(
            pts, best, max_distance_mm=c, tukey_mm=c, iterations=iterations, tol=FINE_TOL, far_trims=FAR_TRIMS
        )
        if len(pairs) < MIN_POINTS:
            return best, sigma
        new = scale(pts, pairs)
        settled = abs(new - sigma) < 0.05 * sigma
        sigma = new
        if k == 0 or not settled:
            continue
        step = _next_step_mm(_apply(best, pts[pairs[:, 0]]), fixed[pairs[:, 1]], normals[pairs[:, 1]], c)
        if step < FINE_STEP_MM:
            break
    return best, sigma


def _next_step_mm(p: np.ndarray, q: np.ndarray, n: np.ndarray, tukey_mm: float) -> float:
    """How far the next ICP iteration would move the paired MOVING points ``p`` (RMS, mm).

    The Tukey-weighted point-to-plane Gauss-Newton step from the pairs (``p`` moved, FIXED points
    ``q`` with normals ``n``) as they stand, linearised about ``p``'s centroid: the iteration the
    last round would do next, without its nearest-neighbour search.
    """
    r = np.einsum("ij,ij->i", p - q, n)
    w = np.clip(1.0 - (r / tukey_mm) ** 2, 0.0, None) ** 2
    arm = p - p.mean(axis=0)
    j = np.hstack([np.cross(arm, n), n])
    jw = j * w[:, None]
    try:
        x = np.linalg.solve(jw.T @ j, -jw.T @ r)
    except np.linalg.LinAlgError:
        return float("inf")
    d = np.cross(x[:3], arm) + x[3:]
    return float(np.sqrt(np.mean(np.einsum("ij,ij->i", d, d))))


def _distances(
    tree: Any, fixed_pts: np.ndarray, fixed_normals: np.ndarray, pts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Point-to-point and point-to-plane distances of ``pts`` from FIXED."""
    d, idx = tree.query(pts, k=1)
    plane = np.abs(np.einsum("ij,ij->i", pts - fixed_pts[idx], fixed_normals[idx]))
    return d, plane


def _robust_sigma(plane: np.ndarray, point: np.ndarray, cutoff: float) -> float:
    near = plane[point <= cutoff]
    if near.size < MIN_POINTS:
        return cutoff
    return float(1.4826 * np.median(near))


def _apply(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    out: np.ndarray = p @ t[:3, :3].T + t[:3, 3]
    return out


def register_surface(
    fixed: Surface | npt.ArrayLike,
    moving: Surface | npt.ArrayLike,
    *,
    init: npt.ArrayLike | None = None,
    voxel_mm: float | None = None,
    ransac_seeds: int = 2,
    seed: int = 0,
) -> SurfaceRegistration:
    """Rigid transform mapping the MOVING surface onto the FIXED one (global start, then robust ICP).

    Parameters
    ----------
    fixed, moving
        :class:`Surface` (points, optionally triangles) or ``(N, 3)`` points in mm, N >= 3. FIXED
        should cover the part of the surface MOVING sees; MOVING may hold outliers.
    init
        Optional 4x4 MOVING-to-FIXED start (e.g. from fiducials); tried alongside the global starts.
    voxel_mm
        Resolution of the global search and coarse ICP (default: FIXED's bounding-box diagonal / 60).
    ransac_seeds, seed
        Number of FPFH + RANSAC runs and the first random seed (deterministic by default).

    Returns
    -------
    SurfaceRegistration
        The transform, RMS point-to-plane distance over the inliers (mm), inlier fraction, and
        warnings (an ambiguous, e.g. near-symmetric, fit).

    References
    ----------
    Y. Chen, G. Medioni, "Object modelling by registration of multiple range images", Image and
    Vision Computing 10 (1992) 145. R. B. Rusu, N. Blodow, M. Beetz, "Fast point feature histograms
    (FPFH) for 3D registration", ICRA 2009. Q.-Y. Zhou, J. Park, V. Koltun, "Open3D: a modern
    library for 3D data processing", arXiv:1801.09847 (2018).
    """
    fs = _as_surface(fixed, "fixed")
    ms = _as_surface(moving, "moving")
    for name, s in (("fixed", fs), ("moving", ms)):
        spread = np.linalg.svd(s.points_mm - s.points_mm.mean(axis=0), compute_uv=False)
        if spread[1] <= 1e-6 * spread[0]:
            raise InputError(f"{name} points are collinear (or coincide); a surface needs points spread in 2D")
    voxel = _auto_voxel(fs.points_mm) if voxel_mm is None else float(voxel_mm)
    if not (np.isfinite(voxel) and voxel > 0):
        raise InputError(f"the voxel size must be a positive distance in mm, got {voxel_mm}")
    o3d = _open3d()
    init_m: np.ndarray | None = None
    if init is not None:
        init_m = Transform(np.asarray(init, dtype=np.float64)).matrix
        if init_m.shape != (4, 4):
            raise InputError(f"the initial transform must be 4x4, got {init_m.shape}")

    from scipy.spatial import cKDTree

    f_full = _cloud(o3d, fs, 2.0 * voxel)
    m_full = _cloud(o3d, ms, 2.0 * voxel)
    f_down = f_full.voxel_down_sample(voxel)
    m_down = m_full.voxel_down_sample(voxel)
    if len(m_down.points) < MIN_POINTS or len(f_down.points) < MIN_POINTS:
        raise InputError(f"fewer than {MIN_POINTS} points remain at a {voxel:.3g} mm voxel size; pass a smaller voxel")
    for pc in (f_down, m_down):
        # FPFH wants normals at the scale of its own neighbourhoods
        pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2.0 * voxel, max_nn=30))

    f_pts, f_nrm = fs.points_mm, np.asarray(f_full.normals)
    tree = cKDTree(f_pts)  # unbounded nearest-point distances for scores and residuals
    target = fine_target(f_full, voxel)
    m_down_pts = np.asarray(m_down.points)
    starts = [] if init_m is None else [init_m]
    starts += _ransac_starts(o3d, m_down, f_down, voxel, ransac_seeds, seed)
    starts += _pca_starts(m_down_pts, np.asarray(f_down.points))

    # every start refined on a subsample of MOVING: coarse (trimmed at 3 voxels), then finer
    rng = np.random.default_rng(seed)
    sub = m_down_pts[rng.permutation(len(m_down_pts))[:SUBSAMPLE]]
    target_down = IcpTarget(np.asarray(f_down.points), np.asarray(f_down.normals))
    fitted = []
    for s0 in starts:
        t, _ = target_down.refine(sub, s0, max_distance_mm=3.0 * voxel, tukey_mm=3.0 * voxel, tol=1e-5)
        t, _ = target.refine(sub, t, max_distance_mm=voxel, tukey_mm=voxel, iterations=15)
        point, plane = _distances(tree, f_pts, f_nrm, _apply(t, sub))
        fitted.append((float(np.mean(np.where(point <= voxel, plane, voxel) ** 2)), t, point, plane))
    fitted.sort(key=lambda r: r[0])
    _, best, point, plane = fitted[0]

    # fine stage: the best start on all points, trimming distance and Tukey scale from the spread
    m_pts = ms.points_mm
    sigma = max(_robust_sigma(plane, point, TUKEY_SIGMAS * voxel), 1e-3 * voxel)
    best, sigma = fine_icp(target, m_pts, best, sigma_mm=sigma, floor_mm=1e-3 * voxel)
    point, plane = _distances(tree, f_pts, f_nrm, _apply(best, m_pts))
    sigma = max(_robust_sigma(plane, point, TUKEY_SIGMAS * sigma), 1e-3 * voxel)
    threshold = INLIER_SIGMAS * sigma
    inliers = (point <= threshold) & (plane <= threshold)
    if not inliers.any():
        raise InputError("no MOVING point lies near FIXED after registration; do the surfaces show the same anatomy?")
    rms = float(np.sqrt(np.mean(plane[inliers] ** 2)))
    residuals = np.where(point <= threshold, plane, point)

    # ambiguity: another start that explains (nearly) as many points, at a pose that differs
    def explained(t: np.ndarray) -> float:
        pt, pl = _distances(tree, f_pts, f_nrm, _apply(t, sub))
        return float(np.mean((pt <= threshold) & (pl <= threshold)))

    best_sub = explained(best)
    moved_best = _apply(best, sub)
    rivals = []
    for _, t, _, _ in fitted[1:]:
        shift = float(np.sqrt(np.mean(np.sum((_apply(t, sub) - moved_best) ** 2, axis=1))))
        if shift > AMBIGUITY_VOXELS * voxel and explained(t) >= (1.0 - AMBIGUITY_COST) * best_sub:
            rivals.append(shift)
    warnings: list[str] = []
    if rivals:
        warnings.append(
            f"ambiguous fit: {len(rivals)} other start(s) explain within {AMBIGUITY_COST:.0%} as many points at a "
            f"different pose (moving MOVING by up to {max(rivals):.1f} mm RMS); the surface may be near-symmetric "
            "or the overlap too small: give an initial transform from fiducials (--init) and check the result"
        )
    for w in warnings:
        log.warning(w)
    return SurfaceRegistration(
        transform=Transform(best, source="moving", target="fixed"),
        rms_mm=rms,
        inlier_fraction=float(np.mean(inliers)),
        inlier_distance_mm=threshold,
        residuals_mm=residuals,
        inliers=inliers,
        voxel_mm=voxel,
        starts=len(starts),
        warnings=warnings,
    )
