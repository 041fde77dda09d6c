"""``igikit register points`` and ``igikit calibrate pivot``: fiducial registration and tool calibration."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from igikit.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``igikit register`` (``points``) and ``igikit calibrate`` (``pivot``) to the parser."""
    reg = sub.add_parser("register", help="register points (fiducials) between two frames")
    reg_sub = reg.add_subparsers(dest="what", metavar="WHAT", parser_class=type(reg))
    reg_sub.required = True
    p = reg_sub.add_parser(
        "points",
        help="least-squares rigid fit of corresponding points, FRE and predicted TRE",
        description=(
            "Fit the rigid (--scale: similarity) transform mapping MOVING points onto FIXED ones (Arun 1987 / "
            "Umeyama 1991, never a reflection); report the fiducial registration error (FRE, RMS), the "
            "residual of each fiducial, and for each target the RMS target registration error predicted "
            "from the fiducial localisation error (Fitzpatrick, West & Maurer 1998, eq. 46). CSV files: "
            "rows of x,y,z in mm (optionally a name column), corresponding by row, one optional header line."
        ),
    )
    p.add_argument("fixed", type=Path, metavar="FIXED.csv", help="fiducials in the fixed frame (e.g. patient)")
    p.add_argument("moving", type=Path, metavar="MOVING.csv", help="the same fiducials in the moving frame (image)")
    p.add_argument("--targets", type=Path, default=None, metavar="T.csv", help="targets in MOVING coordinates")
    p.add_argument("--fle-mm", type=float, default=0.25, help="RMS 3D fiducial localisation error (default 0.25 mm)")
    p.add_argument("--scale", action="store_true", help="also fit an isotropic scale (similarity transform)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the result as JSON")
    p.set_defaults(func=_run_points)

    cal = sub.add_parser("calibrate", help="calibrate a tracked tool")
    cal_sub = cal.add_subparsers(dest="what", metavar="WHAT", parser_class=type(cal))
    cal_sub.required = True
    q = cal_sub.add_parser(
        "pivot",
        help="tip offset and pivot point of a tracked pointer pivoted about its tip",
        description=(
            "Pivot calibration from tool-to-tracker poses recorded while the tool pivots about its tip. "
            "POSES.csv: one pose per row, the header naming m00..m33 (4x4 row-major, mm) or "
            "x,y,z,qw,qx,qy,qz, with optional t_s and device columns. Methods: lsq (algebraic least "
            "squares, Yaniv 2015), ransac (leaves out slipped poses), sphere (sphere fit to the tool "
            "origins). rms_mm is the 3D RMS distance of the computed tips from the pivot point."
        ),
    )
    q.add_argument("poses", type=Path, metavar="POSES.csv", help="tool-to-tracker poses")
    q.add_argument("--method", choices=("lsq", "ransac", "sphere"), default="lsq", help="solver (default lsq)")
    q.add_argument("--device", default=None, help="use only rows of this device (a device column must exist)")
    q.add_argument("--threshold-mm", type=float, default=None, help="ransac inlier distance (default: robust)")
    q.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the result as JSON")
    q.set_defaults(func=_run_pivot)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    from igikit.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _fmt(v: Any) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in v) + "]"


def _run_points(args: argparse.Namespace) -> int:
    import numpy as np

    from igikit.register.points import predict_tre, rigid_register
    from igikit.workflows.surgery.files import read_points_csv

    if not (np.isfinite(args.fle_mm) and args.fle_mm >= 0):
        raise InputError(f"--fle-mm must be a number >= 0, got {args.fle_mm}")
    fixed = read_points_csv(args.fixed)
    moving = read_points_csv(args.moving)
    nf, nm = len(fixed.points_mm), len(moving.points_mm)
    if nf != nm:
        raise InputError(
            f"{args.fixed} has {nf} points but {args.moving} has {nm}; the rows must correspond one to one"
        )
    for table, path in ((fixed, args.fixed), (moving, args.moving)):
        if len(table.points_mm) < 3:
            raise InputError(f"{len(table.points_mm)} points; a registration needs 3 or more", path)
    try:
        reg = rigid_register(fixed.points_mm, moving.points_mm, scale=args.scale)
    except InputError as exc:
        which = args.moving if exc.problem.startswith("moving") else args.fixed
        raise InputError(exc.problem, which) from None
    names = moving.names if any(not n.startswith("point ") for n in moving.names) else fixed.names
    worst = reg.worst_fiducial
    targets: list[dict[str, Any]] = []
    if args.targets is not None:
        t = read_points_csv(args.targets)
        mapped = reg.transform.apply(t.points_mm)
        # predicted in the fixed frame, where the FLE is measured (rigid: identical to the moving frame)
        tre = predict_tre(fixed.points_mm, mapped, args.fle_mm)
        targets = [
            {"name": n, "point_mm": p.tolist(), "point_fixed_mm": q.tolist(), "tre_mm": float(r)}
            for n, p, q, r in zip(t.names, t.points_mm, mapped, tre, strict=True)
        ]
    payload: dict[str, Any] = {
        "matrix": reg.matrix.tolist(),
        "scale": reg.scale,
        "fre_mm": reg.fre_mm,
        "residuals_mm": reg.residuals_mm.tolist(),
        "fiducials": names,
        "worst_fiducial": None
        if worst is None
        else {"index": worst, "name": names[worst], "residual_mm": float(reg.residuals_mm[worst])},
        "fle_mm": args.fle_mm,
        "targets": targets,
    }
    print(f"registered {nm} points ({'similarity' if args.scale else 'rigid'}), MOVING to FIXED:")
    for row in reg.matrix:
        print("  " + "  ".join(f"{x:12.6f}" for x in row))
    if args.scale:
        print(f"scale {reg.scale:.6f}")
    print(f"FRE {reg.fre_mm:.3f} mm (RMS); residuals " + ", ".join(f"{r:.3f}" for r in reg.residuals_mm) + " mm")
    if worst is not None:
        print(
            f"worst fiducial: {names[worst]} ({reg.residuals_mm[worst]:.3f} mm, more than twice the others' RMS): "
            "check its localisation"
        )
    for tg in targets:
        print(f"target {tg['name']} {_fmt(tg['point_mm'])}: predicted TRE {tg['tre_mm']:.3f} mm (FLE {args.fle_mm} mm)")
    if args.json is not None:
        _write_json(args.json, payload)
    return 0


def _run_pivot(args: argparse.Namespace) -> int:
    import numpy as np

    from igikit.register.pivot import pivot_calibration
    from igikit.workflows.surgery.files import read_poses_csv

    table = read_poses_csv(args.poses, device=args.device)
    try:
        res = pivot_calibration(table.poses, args.method, threshold_mm=args.threshold_mm)
    except InputError as exc:
        raise InputError(exc.problem, args.poses) from None
    payload = {
        "method": res.method,
        "poses": int(table.poses.shape[0]),
        "tip_offset_mm": res.tip_offset_mm.tolist(),
        "pivot_point_mm": res.pivot_point_mm.tolist(),
        "rms_mm": res.rms_mm,
        "rms_per_axis_mm": res.rms_mm / float(np.sqrt(3.0)),
        "inlier_count": res.inlier_count,
        "inliers": res.inliers.tolist(),
        "residuals_mm": res.residuals_mm.tolist(),
    }
    print(f"pivot calibration ({res.method}) from {table.poses.shape[0]} poses, {res.inlier_count} used")
    print(f"tip offset  {_fmt(res.tip_offset_mm)} mm (tool)")
    print(f"pivot point {_fmt(res.pivot_point_mm)} mm (tracker)")
    print(
        f"RMS {res.rms_mm:.3f} mm (3D; per axis {res.rms_mm / np.sqrt(3.0):.3f} mm), "
        f"max residual {res.residuals_mm[res.inliers].max():.3f} mm"
    )
    if args.json is not None:
        _write_json(args.json, payload)
    return 0
