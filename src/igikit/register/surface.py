"""Surface registration: a rigid transform between two point clouds or meshes of the same surface.

The pre-operative surface (segmented from an image) is matched to one captured during the
procedure (tracked pointer sweep, laser or stereo scan), which typically sees only part of the
organ and picks up stray points. The pipeline follows Open3D's global + local recipe:

1. **Global initialisation**: FPFH features (Rusu, Blodow & Beetz, ICRA 2009) matched by RANSAC
   (Fischler & Bolles 1981), run from several seeds, together with principal-axis alignments and
   a user-given start (fiducials). No start is trusted: each is refined and scored.
2. **Local refinement**: point-to-plane ICP (Chen & Medioni 1992) with Tukey's biweight, first on
   the voxel-downsampled clouds, then on all points with the trimming distance and the Tukey scale
   taken from the robust spread of the residuals (1.4826 MAD): outliers and the parts of MOVING
   that FIXED does not cover (partial overlap) get no weight.
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


def icp_point_to_plane(
    moving_mm: np.ndarray,
    fixed_mm: np.ndarray,
    fixed_normals: np.ndarray,
    init: np.ndarray,
    *,
    max_distance_mm: float,
    tukey_mm: float,
    iterations: int = 30,
    tree: Any = None,
    tol: float = 1e-6,
) -> np.ndarray:
    """Point-to-plane ICP with Tukey weights (Chen & Medioni 1992; robust weights as in IRLS).

    Each iteration pairs every MOVING point with its nearest FIXED point (pairs farther than
    ``max_distance_mm`` are trimmed), weights the signed point-to-plane residual ``r`` by Tukey's
    biweight ``(1 - (r/c)^2)^2`` with ``c = tukey_mm``, and solves the linearised 6-parameter
    least-squares step. Returns the 4x4 MOVING-to-FIXED matrix.
    """
    from scipy.spatial import cKDTree
    from scipy.spatial.transform import Rotation

    tree = cKDTree(fixed_mm) if tree is None else tree
    t = np.array(init, dtype=np.float64)
    for _ in range(iterations):
        p = _apply(t, moving_mm)
        d, idx = tree.query(p, k=1, distance_upper_bound=max_distance_mm)
        ok = np.isfinite(d)
        if np.count_nonzero(ok) < 6:
            break
        p, q, n = p[ok], fixed_mm[idx[ok]], fixed_normals[idx[ok]]
        r = np.einsum("ij,ij->i", p - q, n)
        w = np.clip(1.0 - (r / tukey_mm) ** 2, 0.0, None) ** 2
        # rotate about the paired points' centroid: far from the origin (tracker coordinates, metres
        # away) the 6x6 system stays well conditioned
        c = p.mean(axis=0)
        j = np.hstack([np.cross(p - c, n), n])  # d r / d (omega, v) for p -> c + (I + [omega]x)(p - c) + v
        jw = j * w[:, None]
        h = jw.T @ j
        if np.linalg.cond(h) > 1e12:
            break
        x = np.linalg.solve(h, -jw.T @ r)
        rot = Rotation.from_rotvec(x[:3]).as_matrix()
        step = np.eye(4)
        step[:3, :3] = rot
        step[:3, 3] = c - rot @ c + x[3:]
        t = step @ t
        if np.linalg.norm(x[:3]) < tol and np.linalg.norm(x[3:]) < tol * max_distance_mm:
            break
    return t


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
    tree = cKDTree(f_pts)
    m_down_pts = np.asarray(m_down.points)
    starts = [] if init_m is None else [init_m]
    starts += _ransac_starts(o3d, m_down, f_down, voxel, ransac_seeds, seed)
    starts += _pca_starts(m_down_pts, np.asarray(f_down.points))

    # every start refined on a subsample of MOVING: coarse (trimmed at 3 voxels), then finer
    rng = np.random.default_rng(seed)
    sub = m_down_pts[rng.permutation(len(m_down_pts))[:SUBSAMPLE]]
    f_down_pts, f_down_nrm = np.asarray(f_down.points), np.asarray(f_down.normals)
    tree_down = cKDTree(f_down_pts)
    fitted = []
    for s0 in starts:
        t = icp_point_to_plane(
            sub, f_down_pts, f_down_nrm, s0, max_distance_mm=3.0 * voxel, tukey_mm=3.0 * voxel, tree=tree_down, tol=1e-5
        )
        t = icp_point_to_plane(sub, f_pts, f_nrm, t, max_distance_mm=voxel, tukey_mm=voxel, tree=tree, iterations=15)
        point, plane = _distances(tree, f_pts, f_nrm, _apply(t, sub))
        fitted.append((float(np.mean(np.where(point <= voxel, plane, voxel) ** 2)), t))
    fitted.sort(key=lambda r: r[0])
    best = fitted[0][1]

    # the best start on all points; trimming distance and Tukey scale from the residual spread
    m_pts = ms.points_mm
    sigma = voxel
    for _ in range(3):
        point, plane = _distances(tree, f_pts, f_nrm, _apply(best, m_pts))
        sigma = max(_robust_sigma(plane, point, TUKEY_SIGMAS * sigma), 1e-3 * voxel)
        c = TUKEY_SIGMAS * sigma
        best = icp_point_to_plane(m_pts, f_pts, f_nrm, best, max_distance_mm=c, tukey_mm=c, tree=tree)
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
    for _, t in fitted[1:]:
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
