"""Image-guided surgery: point registration speed and accuracy, TRE prediction, pivot calibration (issue 8).

* ``points``: rigid registration of 1,000 noisy corresponding points (``igikit.register.points.
  rigid_register``, input checks and FRE included) against scikit-surgery's
  ``sksurgerycore.algorithms.procrustes.orthogonal_procrustes`` in the same run (median of 200 calls).
* ``tre``: Fitzpatrick (1998, eq. 46) predicted RMS TRE against a Monte Carlo simulation (10,000
  trials, FLE 0.25 mm RMS 3D) for a well- and a badly-spread layout 2 m from the origin.
* ``icp``: point-to-plane ICP of 10,000 points (a bumpy closed surface, 0.5 mm noise, 3 deg / 3 mm
  off) onto 20,000: ``igikit.register.surface.icp_point_to_plane`` (Tukey weights, 30 iterations,
  k-d tree build included) against Open3D's ``registration_icp`` point-to-plane and point-to-point
  with its default criteria (30 iterations) in the same run (median of 20 calls).
* ``pivot``: the real recording ``../shared/data/tracking/pivot_poses.csv`` (1,151 poses): lsq,
  ransac and sphere, scikit-surgery's algebraic solution in the same run; ransac with 15% of the
  poses slipped 5-15 mm.

Usage::

    .venv/bin/python bench/surgery.py [--write-docs]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _docs import replace_section  # bench/_docs.py: the script folder is on sys.path
from scipy.spatial.transform import Rotation

from igikit.register.pivot import pivot_calibration
from igikit.register.points import predict_tre, rigid_register, simulate_tre
from igikit.workflows.surgery.files import read_poses_csv

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SECTION = "## Surgery"


def _median_ms(fn: Callable[[], object], repeat: int = 200) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def points_rows() -> list[str]:
    rng = np.random.default_rng(0)
    moving = rng.normal(scale=80.0, size=(1000, 3)) + np.array([-400.0, 30.0, -2000.0])
    rot = Rotation.random(random_state=1).as_matrix()
    fixed = moving @ rot.T + [10.0, 20.0, 30.0] + rng.normal(scale=0.25, size=moving.shape)
    ours = _median_ms(lambda: rigid_register(fixed, moving))
    reg = rigid_register(fixed, moving)
    rows = [f"| igikit `rigid_register` (checks + FRE) | {ours:.3f} | {np.abs(reg.matrix[:3, :3] - rot).max():.2e} |"]
    try:
        from sksurgerycore.algorithms.procrustes import orthogonal_procrustes
    except ImportError:
        rows.append("| scikit-surgery `orthogonal_procrustes` | not installed | |")
    else:
        theirs = _median_ms(lambda: orthogonal_procrustes(fixed, moving))
        r, _, _ = orthogonal_procrustes(fixed, moving)
        rows.append(f"| scikit-surgery `orthogonal_procrustes` | {theirs:.3f} | {np.abs(r - rot).max():.2e} |")
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


def _bumpy(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    r = 40.0 * (1.0 + 0.15 * np.sin(3 * v[:, 0]) * np.cos(2 * v[:, 1]) + 0.1 * v[:, 2] ** 2)
    return v * r[:, None] * [1.0, 0.8, 1.2], v


def icp_rows() -> list[str]:
    import open3d as o3d

    from igikit.register.surface import icp_point_to_plane

    rng = np.random.default_rng(0)
    fixed, _ = _bumpy(20_000, rng)
    fpc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(fixed))
    fpc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=5.0, max_nn=30))
    normals = np.asarray(fpc.normals)
    truth = np.eye(4)
    truth[:3, :3] = Rotation.from_rotvec(np.deg2rad(3.0) * np.array([0.6, -0.48, 0.64])).as_matrix()
    truth[:3, 3] = [2.0, -1.5, 1.5]
    surface, _ = _bumpy(10_000, rng)
    moving = (surface + rng.normal(scale=0.5, size=surface.shape) - truth[:3, 3]) @ truth[:3, :3]
    mpc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(moving))

    def err(t: np.ndarray) -> str:
        return f"{np.rad2deg(Rotation.from_matrix(t[:3, :3] @ truth[:3, :3].T).magnitude()):.3f}"

    def ours() -> np.ndarray:
        return icp_point_to_plane(moving, fixed, normals, np.eye(4), max_distance_mm=5.0, tukey_mm=5.0, tol=0.0)

    reg = o3d.pipelines.registration
    crit = reg.ICPConvergenceCriteria(max_iteration=30)

    def plane() -> np.ndarray:
        return np.asarray(
            reg.registration_icp(
                mpc, fpc, 5.0, np.eye(4), reg.TransformationEstimationPointToPlane(), crit
            ).transformation
        )

    def point() -> np.ndarray:
        return np.asarray(
            reg.registration_icp(
                mpc, fpc, 5.0, np.eye(4), reg.TransformationEstimationPointToPoint(), crit
            ).transformation
        )

    return [
        f"| {name} | {_median_ms(fn, repeat=20):.1f} | {err(fn())} |"
        for name, fn in (
            ("igikit `icp_point_to_plane` (Tukey, 30 iterations, tree build included)", ours),
            ("Open3D `registration_icp` point-to-plane (defaults, 30 iterations)", plane),
            ("Open3D `registration_icp` point-to-point (defaults, 30 iterations)", point),
        )
    ]


def _fmt(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.2f}" for x in v) + ")"


def report() -> str:
    lines = [
        SECTION,
        "",
        "Point registration, TRE prediction and pivot calibration (`igikit.register.points`, `igikit.register.pivot`).",
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, CPU only.",
        "Issue 8 targets: 1,000-point registration < 1 ms; predicted TRE within 5 % of Monte Carlo far from",
        "the origin; lsq = scikit-surgery's algebraic pivot solution to 0.01 mm; ransac robust to 15 % slipped poses.",
        "",
        "Command: `.venv/bin/python bench/surgery.py --write-docs`",
        "",
        "| 1,000 points, rigid | median ms | max rotation error |",
        "|---|---|---|",
        *points_rows(),
        "",
        "| layout (2 m from the origin, rotated) | target (fiducial frame, mm) | predicted TRE (mm) "
        "| Monte Carlo TRE (mm) | difference |",
        "|---|---|---|---|---|",
        *tre_rows(),
        "",
        "| ICP, 10,000 points onto 20,000 (issue 8 target < 100 ms) | median ms | rotation error (deg) |",
        "|---|---|---|",
        *icp_rows(),
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
    args = parser.parse_args()
    text = report()
    print(text)
    if args.write_docs:
        replace_section(text)


if __name__ == "__main__":
    main()
