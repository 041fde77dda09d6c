"""Image-guided surgery: point registration speed and accuracy, TRE prediction, pivot calibration (issue 8).

* ``points``: rigid registration of 1,000 noisy corresponding points (``igikit.register.points.
  rigid_register``, input checks and FRE included) against scikit-surgery's
  ``sksurgerycore.algorithms.procrustes.orthogonal_procrustes`` in the same run (median of 200 calls).
* ``tre``: Fitzpatrick (1998, eq. 46) predicted RMS TRE against a Monte Carlo simulation (10,000
  trials, FLE 0.25 mm RMS 3D) for a well- and a badly-spread layout 2 m from the origin.
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


def write_docs(text: str) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    doc = path.read_text(encoding="utf-8")
    if SECTION in doc:
        start = doc.index(SECTION)
        nxt = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + text.rstrip("\n") + "\n" + ("" if nxt < 0 else doc[nxt:])
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc if doc.endswith("\n") else doc + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write-docs", action="store_true", help="replace the section in docs/benchmarks.md")
    args = parser.parse_args()
    text = report()
    print(text)
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
