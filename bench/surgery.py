"""Image-guided surgery: registration, ICP, TRE prediction, pivot calibration, navigation (issue 8).

* ``points``: rigid registration of 1,000 noisy corresponding points (``igikit.register.points.
  rigid_register``, input checks and FRE included) against scikit-surgery's
  ``sksurgerycore.algorithms.procrustes.orthogonal_procrustes`` in the same run (500 calls).
* ``tre``: Fitzpatrick (1998, eq. 46) predicted RMS TRE against a Monte Carlo simulation (10,000
  trials, FLE 0.25 mm RMS 3D) for a well- and a badly-spread layout 2 m from the origin.
* ``icp``: the fine stage of ``register surface`` on 10,000 scan points of the liver phantom's
  surface (marching cubes of ``igikit.sim.liver``; 1 mm noise, 30 % outliers, 60 % overlap, a
  start 2 deg / 2 mm off as the coarse stage hands over): ``igikit.register.surface.fine_icp``
  (Open3D point-to-plane ICP with Tukey weights, robust scale re-estimated; also with Open3D held to
  one thread) against ``fine_icp`` as it was before its speed-up, Open3D's ``registration_icp``
  with its default settings (point-to-point; and point-to-plane, default criteria, no robust
  kernel) and igikit's former NumPy / SciPy ICP, in the same run. ``--icp-only`` prints this table
  alone.
* ``navigation``: one navigation update (pose in; tip, target, trajectory angle, distances to the
  structures, TRE at the tip, proximity levels and the supervision's decisions out) on the liver
  phantom, 5,000 poses along an insertion; the TRE part against scikit-surgery's
  ``compute_tre_from_fle`` (not equivalent off-axis, see issue 8, but the nearest it has).
* ``pivot``: the real recording ``../shared/data/tracking/pivot_poses.csv`` (1,151 poses): lsq,
  ransac and sphere, scikit-surgery's algebraic solution in the same run; ransac with 15% of the
  poses slipped 5-15 mm.

Timings are wall-clock percentiles over many calls; ``CPU`` is the process CPU time per call
(all threads), which a loaded machine inflates less than wall time.

Usage::

    .venv/bin/python bench/surgery.py [--write-docs]
    .venv/bin/python bench/surgery.py --icp-only     # the ICP table alone
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _docs import replace_section  # bench/_docs.py: the script folder is on sys.path
from scipy.spatial.transform import Rotation

from igikit.register.pivot import pivot_calibration
from igikit.register.points import predict_tre, rigid_register, simulate_tre
from igikit.workflows.surgery.files import read_poses_csv

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SECTION = "## Surgery"


@dataclass(frozen=True)
class Timing:
    """Wall-clock percentiles (ms) and the mean process CPU time per call (ms)."""

    median: float
    p95: float
    p99: float
    cpu: float

    def cells(self, digits: int = 3) -> str:
        return f"{self.median:.{digits}f} | {self.p95:.{digits}f} | {self.p99:.{digits}f} | {self.cpu:.{digits}f}"


def _time(fn: Callable[[], object], repeat: int = 200) -> Timing:
    fn()
    times = []
    c0 = time.process_time()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - c0) / repeat
    p50, p95, p99 = np.percentile(np.asarray(times) * 1e3, [50, 95, 99])
    return Timing(float(p50), float(p95), float(p99), 1e3 * cpu)


def _median_ms(fn: Callable[[], object], repeat: int = 200) -> float:
    return _time(fn, repeat).median


def points_rows() -> list[str]:
    rng = np.random.default_rng(0)
    moving = rng.normal(scale=80.0, size=(1000, 3)) + np.array([-400.0, 30.0, -2000.0])
    rot = Rotation.random(random_state=1).as_matrix()
    fixed = moving @ rot.T + [10.0, 20.0, 30.0] + rng.normal(scale=0.25, size=moving.shape)
    ours = _time(lambda: rigid_register(fixed, moving), 500)
    reg = rigid_register(fixed, moving)
    rows = [
        f"| igikit `rigid_register` (checks + FRE) | {ours.cells()} | 1.00 "
        f"| {np.abs(reg.matrix[:3, :3] - rot).max():.2e} |"
    ]
    try:
        from sksurgerycore.algorithms.procrustes import orthogonal_procrustes
    except ImportError:
        rows.append("| scikit-surgery `orthogonal_procrustes` | not installed | | | | | |")
    else:
        theirs = _time(lambda: orthogonal_procrustes(fixed, moving), 500)
        r, _, _ = orthogonal_procrustes(fixed, moving)
        rows.append(
            f"| scikit-surgery `orthogonal_procrustes` | {theirs.cells()} | {theirs.median / ours.median:.2f} "
            f"| {np.abs(r - rot).max():.2e} |"
        )
    return rows


def tre_rows() -> list[str]:
    well = np.array([[70, 0, 10], [-65, 5, 0], [0, 80, -10], [5, -75, 5], [10, 5, 60], [-5, 0, -70], [40, 40, 40.0]])
    badly = np.array([[0, 0, 0], [30, 0, 0], [0, 12, 0], [25, 10, 3.0]])
    rot = Rotation.random(random_state=7).as_matrix()
    far = np.array([-420.0, 35.0, -2010.0])
    rows = []
    for name, lay, target in (
        ("well spread, 7 fiducials", well, [30.0, -20.0, 15.0]),
        ("well spread, 7 fiducials", well, [150.0, 90.0, -60.0]),
        ("badly spread, 4 fiducials", badly, [10.0, 5.0, 2.0]),
        ("badly spread, 4 fiducials", badly, [60.0, 80.0, 100.0]),
    ):
        fid = lay @ rot.T + far
        tgt = np.asarray(target) @ rot.T + far
        p = predict_tre(fid, tgt, 0.25)[0]
        m = simulate_tre(fid, tgt, 0.25, trials=10_000, seed=11)[0]
        rows.append(f"| {name} | {target} | {p:.4f} | {m:.4f} | {100 * (p / m - 1):+.1f} % |")
    return rows


def pivot_rows() -> list[str]:
    poses = read_poses_csv(DATA / "tracking" / "pivot_poses.csv").poses
    rows = []
    ref = None
    try:
        from sksurgerycalibration.algorithms.pivot import pivot_calibration as sks_pivot
    except ImportError:
        sks_pivot = None
    if sks_pivot is not None:
        ms = _median_ms(lambda: sks_pivot(poses), 20)
        off, piv, rms = sks_pivot(poses)
        ref = np.ravel(off)
        rows.append(
            f"| scikit-surgery aos | {ms:.1f} | {_fmt(ref)} | {_fmt(np.ravel(piv))} | {rms * np.sqrt(3):.3f} | 1151 | |"
        )
    clean = {}
    for method in ("lsq", "ransac", "sphere"):
        ms = _median_ms(lambda m=method: pivot_calibration(poses, m), 5)
        r = pivot_calibration(poses, method)
        clean[method] = r.tip_offset_mm
        diff = "" if ref is None else f"{np.abs(r.tip_offset_mm - ref).max():.1e}"
        rows.append(
            f"| igikit {method} | {ms:.1f} | {_fmt(r.tip_offset_mm)} | {_fmt(r.pivot_point_mm)} | {r.rms_mm:.3f} "
            f"| {r.inlier_count} | {diff} |"
        )
    rng = np.random.default_rng(1)
    n = len(poses)
    slipped = rng.choice(n, int(0.15 * n), replace=False)
    d = rng.normal(size=(slipped.size, 3))
    d *= (rng.uniform(5, 15, slipped.size) / np.linalg.norm(d, axis=1))[:, None]
    bad = poses.copy()
    bad[slipped, :3, 3] += d
    for method in ("lsq", "ransac"):
        r = pivot_calibration(bad, method)
        off = np.linalg.norm(r.tip_offset_mm - clean["ransac"])
        rows.append(
            f"| igikit {method}, 15% slipped | | {_fmt(r.tip_offset_mm)} | {_fmt(r.pivot_point_mm)} | {r.rms_mm:.3f} "
            f"| {r.inlier_count} | tip {off:.2f} mm from clean ransac |"
        )
    return rows


def _numpy_icp(
    moving_mm: np.ndarray,
    fixed_mm: np.ndarray,
    fixed_normals: np.ndarray,
    init: np.ndarray,
    *,
    max_distance_mm: float,
    tukey_mm: float,
    tree: Any,
    iterations: int = 30,
    tol: float = 1e-6,
) -> np.ndarray:
    """igikit's former point-to-plane ICP with Tukey weights (NumPy / SciPy), kept here as the baseline."""
    t = np.array(init, dtype=np.float64)
    for _ in range(iterations):
        p = moving_mm @ t[:3, :3].T + t[:3, 3]
        d, idx = tree.query(p, k=1, distance_upper_bound=max_distance_mm)
        ok = np.isfinite(d)
        if np.count_nonzero(ok) < 6:
            break
        p, q, n = p[ok], fixed_mm[idx[ok]], fixed_normals[idx[ok]]
        r = np.einsum("ij,ij->i", p - q, n)
        w = np.clip(1.0 - (r / tukey_mm) ** 2, 0.0, None) ** 2
        c = p.mean(axis=0)
        j = np.hstack([np.cross(p - c, n), n])
        jw = j * w[:, None]
        x = np.linalg.solve(jw.T @ j, -jw.T @ r)
        rot = Rotation.from_rotvec(x[:3]).as_matrix()
        step = np.eye(4)
        step[:3, :3] = rot
        step[:3, 3] = c - rot @ c + x[3:]
        t = step @ t
        if np.linalg.norm(x[:3]) < tol and np.linalg.norm(x[3:]) < tol * max_distance_mm:
            break
    return t


def _liver_scan() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The liver phantom's surface (fixed), a 10,000-point partial noisy scan with outliers (moving),
    the true moving-to-fixed transform and a start 2 deg / 2 mm off it."""
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    from igikit.sim.liver import liver_phantom

    ph = liver_phantom((1.5, 1.5, 1.5))
    img = ph.labels
    verts, _, _, _ = marching_cubes(gaussian_filter((img.array > 0).astype(float), 1.0), 0.5)
    surface = img.index_to_physical(verts[:, ::-1])
    rng = np.random.default_rng(0)
    facing = np.array([-0.6, -0.7, 0.4]) / np.linalg.norm([-0.6, -0.7, 0.4])
    proj = surface @ facing
    seen = surface[proj > np.quantile(proj, 0.4)]
    seen = seen[rng.choice(len(seen), 7000, replace=False)] + rng.normal(scale=1.0, size=(7000, 3))
    lo, hi = surface.min(axis=0) - 10, surface.max(axis=0) + 10
    cloud = np.vstack([seen, rng.uniform(lo, hi, (3000, 3))])
    truth = np.eye(4)
    truth[:3, :3] = Rotation.from_rotvec(np.radians(30.0) * np.array([0.6, -0.48, 0.64])).as_matrix()
    truth[:3, 3] = [-400.0, 30.0, -2000.0]  # tracker coordinates, 2 m away
    moving = (cloud - truth[:3, 3]) @ truth[:3, :3]
    # the start: 2 deg about the scan's centre and 1.9 mm aside (about what the coarse stage leaves)
    centre = seen.mean(axis=0)
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_rotvec(np.radians(2.0) * np.array([0.0, 0.6, 0.8])).as_matrix()
    turn[:3, 3] = centre - turn[:3, :3] @ centre + [1.2, -1.0, 1.0]
    return surface, moving, truth, turn @ truth


def _previous_fine_icp(target: Any, moving: np.ndarray, start: np.ndarray, sigma_mm: float) -> np.ndarray:
    """``fine_icp`` before the speed-up (kept here as a baseline): the robust scale settled over up to
    3 rounds on 2,500 random MOVING points (relative tolerance 1e-5, up to 30 iterations each), then
    a last round on all points, every point in every nearest-neighbour search."""
    from igikit.register.surface import TUKEY_SIGMAS

    fixed = np.asarray(target.cloud.points) + target.centre_mm
    normals = np.asarray(target.cloud.normals)
    best, sigma = np.asarray(start, dtype=np.float64), float(sigma_mm)

    def scale(pts: np.ndarray, pairs: np.ndarray) -> float:
        p = pts[pairs[:, 0]] @ best[:3, :3].T + best[:3, 3]
        return float(1.4826 * np.median(np.abs(np.einsum("ij,ij->i", p - fixed[pairs[:, 1]], normals[pairs[:, 1]]))))

    sub = moving[np.random.default_rng(0).choice(len(moving), 2500, replace=False)]
    for _ in range(3):
        c = TUKEY_SIGMAS * sigma
        best, pairs = target.refine(sub, best, max_distance_mm=c, tukey_mm=c, tol=1e-5)
        new = scale(sub, pairs)
        done = abs(new - sigma) < 0.05 * sigma
        sigma = new
        if done:
            break
    c = TUKEY_SIGMAS * sigma
    best, _ = target.refine(moving, best, max_distance_mm=c, tukey_mm=c, tol=1e-5)
    return best


def icp_rows() -> tuple[list[str], list[str]]:
    """The ICP table's rows, and notes on what each timed call leaves out or counts."""
    import open3d as o3d
    from scipy.spatial import cKDTree

    from igikit.register import surface
    from igikit.register.surface import TUKEY_SIGMAS, DistanceBound, _auto_voxel, fine_icp, fine_target

    fixed, moving, truth, start = _liver_scan()
    voxel = _auto_voxel(fixed)  # as register_surface chooses it
    fpc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(fixed))
    fpc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2.0 * voxel, max_nn=30))
    normals = np.asarray(fpc.normals)
    mpc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(moving))
    target = fine_target(fpc, voxel)
    fdown = fpc.voxel_down_sample(0.5 * voxel)  # the same FIXED for Open3D's own settings
    tree = cKDTree(fixed)  # built once, as register_surface does for the coarse stage
    reg = o3d.pipelines.registration
    sigma0 = 1.5  # what the coarse stage's residuals give for 1 mm noise (MAD)

    def err(t: np.ndarray) -> str:
        angle = np.rad2deg(Rotation.from_matrix(t[:3, :3] @ truth[:3, :3].T).magnitude())
        surf = (fixed - truth[:3, 3]) @ truth[:3, :3]
        disp = np.sqrt(np.mean(np.sum((surf @ t[:3, :3].T + t[:3, 3] - fixed) ** 2, axis=1)))
        return f"{angle:.3f} | {disp:.3f}"

    def ours() -> np.ndarray:
        return fine_icp(target, moving, start, sigma_mm=sigma0)[0]

    def previous() -> np.ndarray:
        return _previous_fine_icp(target, moving, start, sigma0)

    def old() -> np.ndarray:  # the former fine stage: 3 rounds, scale from all residuals each time
        t, sigma = start, sigma0
        for _ in range(3):
            c = TUKEY_SIGMAS * sigma
            t = _numpy_icp(moving, fixed, normals, t, max_distance_mm=c, tukey_mm=c, tree=tree)
            d, idx = tree.query(moving @ t[:3, :3].T + t[:3, 3], k=1)
            plane = np.abs(np.einsum("ij,ij->i", moving @ t[:3, :3].T + t[:3, 3] - fixed[idx], normals[idx]))
            sigma = 1.4826 * float(np.median(plane[d <= c]))
        return t

    c0 = TUKEY_SIGMAS * sigma0

    def o3d_point() -> np.ndarray:
        return np.asarray(reg.registration_icp(mpc, fdown, c0, start).transformation)

    def o3d_plane() -> np.ndarray:
        return np.asarray(
            reg.registration_icp(mpc, fdown, c0, start, reg.TransformationEstimationPointToPlane()).transformation
        )

    # what one fine_icp call does: the points handed to each Open3D call, and the rounds
    searched: list[int] = []
    original = surface.IcpTarget._icp
    surface.IcpTarget._icp = _counting(original, searched)  # type: ignore[method-assign]
    try:
        ours()
    finally:
        surface.IcpTarget._icp = original  # type: ignore[method-assign]
    rounds = ", ".join(f"{n:,}" for n in searched)

    threads = o3d.utility.get_max_threads()

    def ours_one_thread() -> np.ndarray:
        o3d.utility.set_max_threads(1)
        try:
            return ours()
        finally:
            o3d.utility.set_max_threads(threads)

    rows = []
    base = None
    for name, fn, n in (
        (
            "igikit `fine_icp`: Open3D point-to-plane + Tukey; 1 round on 2,500 random points at the coarse "
            "stage's scale, then rounds of 2 iterations on all 10,000 until the next step < 0.05 mm; points "
            "provably > 2 trimming distances from FIXED left out of the searches; FIXED averaged on half-voxels",
            ours,
            50,
        ),
        (f"the same, Open3D limited to 1 thread (default here: {threads})", ours_one_thread, 50),
        (
            "igikit `fine_icp` before this change: scale settled over up to 3 rounds on 2,500 points "
            "(tolerance 1e-5), last round on all, every point searched",
            previous,
            30,
        ),
        ("Open3D `registration_icp` defaults (point-to-point, 30 iterations)", o3d_point, 20),
        ("Open3D `registration_icp` point-to-plane, default criteria, no robust kernel", o3d_plane, 20),
        ("igikit's former NumPy/SciPy fine stage (3 rounds, Tukey, all FIXED points)", old, 5),
    ):
        t = _time(fn, n)
        base = base or t.median
        rows.append(f"| {name} | {t.cells(1)} | {t.median / base:.2f} | {err(fn())} |")
    bound = _time(lambda: DistanceBound(np.asarray(target.cloud.points)), 10)
    built = _time(lambda: fine_target(fpc, voxel), 10)
    notes = [
        f"Points handed to Open3D by one `fine_icp` call, per round: {rounds} (of 2,500, then 10,000; the "
        "rest lie provably beyond twice the trimming distance from FIXED at the round's start, and the "
        "round checks they stayed beyond it). Not in the timed call (done once per registration, as in "
        f"`register_surface`): FIXED averaged on half-voxels with normals (`fine_target`, {built.median:.1f} ms "
        f"median) and the distance-bound grid (`DistanceBound`, built on the first `fine_icp` call, "
        f"{bound.median:.1f} ms median). Each timed call rebuilds Open3D's KD-tree of FIXED (every "
        "`registration_icp` call does).",
    ]
    return rows, notes


def _counting(fn: Callable[..., Any], seen: list[int]) -> Callable[..., Any]:
    def wrapped(self: Any, moving_mm: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        seen.append(len(moving_mm))
        return fn(self, moving_mm, *args, **kwargs)

    return wrapped


def navigation_rows() -> list[str]:
    import tempfile

    from igikit.sim.liver import LABELS, liver_phantom
    from igikit.supervise.audit import AuditLog
    from igikit.supervise.session import SupervisedSession
    from igikit.workflows.surgery.navigation import (
        DistanceMaps,
        NavigationPlan,
        Navigator,
        PatientRegistration,
        Structure,
        ToolCalibration,
    )
    from igikit.workflows.surgery.supervision import NavigationSupervision
    from igikit.workflows.surgery.tracker import SimulatedTracker, needle_insertion

    ph = liver_phantom()
    structures = (Structure("portal vein", LABELS["portal vein"]), Structure("hepatic vein", LABELS["hepatic vein"]))
    plan = NavigationPlan(ph.target_mm, ph.entry_mm, structures, "lesion")
    truth = np.eye(4)
    truth[:3, 3] = [-120.0, 40.0, -2100.0]
    rng = np.random.default_rng(0)
    tracked = ph.fiducials_mm + truth[:3, 3] + rng.normal(scale=0.3, size=ph.fiducials_mm.shape)
    registration = PatientRegistration.from_fiducials(ph.fiducials_mm, tracked, 0.5)
    tool = ToolCalibration(np.array([-15.2, 393.5, -7.4]))
    nav = Navigator(plan, DistanceMaps(ph.labels, structures), registration, tool)
    path = needle_insertion(ph.entry_mm, ph.target_mm, speed_mm_s=1.0, deviation_mm=[0.0, 2.6, 0.0])
    sim = SimulatedTracker(path, truth, tool, rate_hz=40.0)
    poses = [sim.true_pose(float(t))[0] for t in np.linspace(0, path.duration_s, 5000)]
    with tempfile.TemporaryDirectory() as tmp:
        session = SupervisedSession(AuditLog(Path(tmp) / "a.db"), workflow="surgery", level=3)
        sup = NavigationSupervision(session, plan, headless=True)
        k = iter(range(10**9))

        def update() -> None:
            i = next(k)
            sup.on_update(nav.update(poses[i % len(poses)], i / 40.0, i))

        full = _time(update, len(poses) - 1)
        session.audit.close()
    geometry = _time(lambda: nav.update(poses[2500]), 5000)
    tip = nav.update(poses[2500]).tip_mm
    tre = _time(lambda: registration.tre_mm(tip), 5000)
    rows = [
        f"| igikit navigation update + supervision (decisions, alerts, console hand-over) | {full.cells()} | |",
        f"| igikit `Navigator.update` alone (tip, target, angle, 2 distance maps, TRE, levels) "
        f"| {geometry.cells()} | |",
        f"| igikit TRE at the tip (`FiducialLayout`, eq. 46) | {tre.cells(4)} | 1.00 |",
    ]
    try:
        from sksurgerycore.algorithms.errors import compute_tre_from_fle
    except ImportError:
        rows.append("| scikit-surgery `compute_tre_from_fle` | not installed | | | | |")
    else:
        fle2 = 0.5**2
        theirs = _time(lambda: compute_tre_from_fle(ph.fiducials_mm, fle2, tip.reshape(1, 3)), 5000)
        rows.append(f"| scikit-surgery `compute_tre_from_fle` | {theirs.cells(4)} | {theirs.median / tre.median:.2f} |")
    return rows


def _fmt(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.2f}" for x in v) + ")"


def icp_table() -> list[str]:
    rows, notes = icp_rows()
    return [
        "| ICP, 10,000 liver-scan points onto the phantom surface (30 % outliers, 60 % overlap) | median ms | p95 ms "
        "| p99 ms | CPU ms | ratio | rotation error (deg) | surface error (mm) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *notes,
    ]


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def report() -> str:
    load = _load()
    rows = {"points": points_rows(), "icp": icp_table(), "navigation": navigation_rows()}
    end = _load()
    lines = [
        SECTION,
        "",
        "Point registration, TRE prediction, surface ICP, navigation and pivot calibration (`igikit.register`,",
        "`igikit.workflows.surgery`).",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, CPU only, shared with other jobs: load average {load:.1f} when the run "
        f"started, {end:.1f} after the timed rows (wall times are inflated under load, CPU times less so).",
        "Issue 8 targets: 1,000-point registration < 1 ms; ICP of 10,000 points < 100 ms; a navigation update",
        "p99 < 5 ms; predicted TRE within 5 % of Monte Carlo far from the origin; lsq = scikit-surgery's algebraic",
        "pivot solution to 0.01 mm; ransac robust to 15 % slipped poses.",
        "",
        "Command: `.venv/bin/python bench/surgery.py --write-docs`",
        "",
        "| 1,000 points, rigid | median ms | p95 ms | p99 ms | CPU ms | ratio | max rotation error |",
        "|---|---|---|---|---|---|---|",
        *rows["points"],
        "",
        *rows["icp"],
        "",
        "| navigation, liver phantom, 5,000 poses | median ms | p95 ms | p99 ms | CPU ms | ratio |",
        "|---|---|---|---|---|---|",
        *rows["navigation"],
        "",
        "| layout (2 m from the origin, rotated) | target (fiducial frame, mm) | predicted TRE (mm) "
        "| Monte Carlo TRE (mm) | difference |",
        "|---|---|---|---|---|",
        *tre_rows(),
        "",
        "Pivot calibration on the real recording; `rms_mm` is 3D (scikit-surgery's per-axis value x sqrt(3)).",
        "",
        "| method | ms | tip offset (mm) | pivot point (mm) | RMS 3D (mm) | poses used | vs scikit-surgery |",
        "|---|---|---|---|---|---|---|",
        *pivot_rows(),
        "",
        "Dropping 15 % of this noisy recording at random (without slips) already moves any estimate",
        "(lsq too) by 0.06-0.29 mm: that, not the slips, bounds the agreement with the clean result.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write-docs", action="store_true", help="replace the section in docs/benchmarks.md")
    parser.add_argument("--icp-only", action="store_true", help="print only the ICP table (never written to docs)")
    args = parser.parse_args()
    if args.icp_only:
        if args.write_docs:
            parser.error("--write-docs needs the whole bench; drop --icp-only")
        load = _load()
        table = icp_table()
        print(f"load average {load:.1f} at the start, {_load():.1f} at the end, {os.cpu_count()} cores\n")
        print("\n".join(table))
        return
    text = report()
    print(text)
    if args.write_docs:
        replace_section(text)


if __name__ == "__main__":
    main()
