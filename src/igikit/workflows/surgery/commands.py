"""``igikit register points|surface`` and ``igikit calibrate pivot|hand-eye``: registration and tool calibration."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from igikit.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``igikit register`` (``points``, ``surface``) and ``igikit calibrate`` (``pivot``, ``hand-eye``)."""
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
    sf = reg_sub.add_parser(
        "surface",
        help="rigid fit of two surfaces (point clouds or meshes): FPFH + RANSAC start, robust point-to-plane ICP",
        description=(
            "Register the MOVING surface to the FIXED one: global start from FPFH features matched by RANSAC "
            "(and principal axes, and --init), then point-to-plane ICP with Tukey weights, robust to outliers "
            "and partial overlap. Files: CSV (x,y,z rows, mm), PLY, STL or legacy VTK. Reports matrix (4x4 "
            "row-major, MOVING to FIXED), rms_mm (point-to-plane, inliers), inlier_fraction and warnings "
            "(an ambiguous fit, e.g. a near-symmetric surface)."
        ),
    )
    sf.add_argument(
        "fixed", type=Path, metavar="FIXED", help="the reference surface (e.g. from the pre-operative image)"
    )
    sf.add_argument(
        "moving", type=Path, metavar="MOVING", help="the surface to move onto it (e.g. an intra-operative scan)"
    )
    sf.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="fiducials.json",
        help="a start: JSON with a 4x4 'matrix' (MOVING to FIXED, as `register points --json` writes) "
        "or corresponding 'fixed' and 'moving' point lists",
    )
    sf.add_argument("--voxel-mm", type=float, default=None, help="resolution of the global search (default: size/60)")
    sf.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the result as JSON")
    sf.set_defaults(func=_run_surface)

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
    he = cal_sub.add_parser(
        "hand-eye",
        help="hand-eye calibration AX = XB of a tracked camera or ultrasound probe",
        description=(
            "Find X, the camera-to-hand (marker) transform, from simultaneous poses: ROBOT.csv holds hand "
            "(marker, gripper) to base (tracker, robot) poses, CAMERA.csv calibration-object to camera poses, "
            "row by row at the same instants (headers m00..m33 or x,y,z,qw,qx,qy,qz, mm). Closed form by Tsai & "
            "Lenz (1989) or Park & Martin (1994), refined by nonlinear least squares on AX - XB; residuals per "
            "pose pair in degrees and mm."
        ),
    )
    he.add_argument("robot", type=Path, metavar="ROBOT.csv", help="hand-to-base poses")
    he.add_argument("camera", type=Path, metavar="CAMERA.csv", help="object-to-camera poses")
    he.add_argument("--method", choices=("tsai", "park"), default="tsai", help="closed-form solver (default tsai)")
    he.add_argument("--no-refine", action="store_true", help="report the closed form without least-squares refinement")
    he.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the result as JSON")
    he.set_defaults(func=_run_hand_eye)


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


def _run_hand_eye(args: argparse.Namespace) -> int:
    from igikit.register.handeye import hand_eye_calibration
    from igikit.workflows.surgery.files import read_poses_csv

    robot = read_poses_csv(args.robot).poses
    camera = read_poses_csv(args.camera).poses
    if len(robot) != len(camera):
        raise InputError(
            f"{args.robot} has {len(robot)} poses but {args.camera} has {len(camera)}; "
            "the rows must correspond one to one"
        )
    res = hand_eye_calibration(robot, camera, args.method, refine=not args.no_refine)
    payload = {
        "method": res.method,
        "refined": res.refined,
        "poses": len(robot),
        "pairs": len(res.pairs),
        "matrix": res.matrix.tolist(),
        "initial_matrix": res.initial.matrix.tolist(),
        "rotation_rms_deg": res.rotation_rms_deg,
        "translation_rms_mm": res.translation_rms_mm,
        "rotation_residuals_deg": res.rotation_residuals_deg.tolist(),
        "translation_residuals_mm": res.translation_residuals_mm.tolist(),
    }
    how = f"{res.method}{' + least squares' if res.refined else ''}"
    print(f"hand-eye calibration ({how}) from {len(robot)} poses ({len(res.pairs)} motions), camera to hand:")
    for row in res.matrix:
        print("  " + "  ".join(f"{x:12.6f}" for x in row))
    print(
        f"residuals |AX - XB|: rotation RMS {res.rotation_rms_deg:.4f} deg "
        f"(max {res.rotation_residuals_deg.max():.4f}), translation RMS {res.translation_rms_mm:.3f} mm "
        f"(max {res.translation_residuals_mm.max():.3f})"
    )
    if args.json is not None:
        _write_json(args.json, payload)
    return 0


def _read_init(path: Path) -> Any:
    import numpy as np

    from igikit.register.points import rigid_register

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}", path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object with 'matrix', or 'fixed' and 'moving' points", path)
    try:
        if "matrix" in data:
            m = np.asarray(data["matrix"], dtype=np.float64)
            if m.shape != (4, 4) or not np.all(np.isfinite(m)):
                raise InputError(f"'matrix' must be 4x4 finite numbers, got shape {m.shape}")
            return m
        if "fixed" in data and "moving" in data:
            return rigid_register(data["fixed"], data["moving"]).matrix
    except InputError as exc:
        raise InputError(exc.problem, path) from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"'matrix' must be 4x4 numbers: {exc}", path) from None
    raise InputError("expected a JSON object with 'matrix', or 'fixed' and 'moving' points", path)


def _run_surface(args: argparse.Namespace) -> int:
    from igikit.register.surface import read_surface, register_surface

    fixed = read_surface(args.fixed)
    moving = read_surface(args.moving)
    init = _read_init(args.init) if args.init is not None else None
    if args.voxel_mm is not None and not (args.voxel_mm > 0 and args.voxel_mm < float("inf")):
        raise InputError(f"--voxel-mm must be a positive distance, got {args.voxel_mm}")
    try:
        res = register_surface(fixed, moving, init=init, voxel_mm=args.voxel_mm)
    except InputError as exc:
        which = (
            args.moving if exc.problem.startswith("moving") else args.fixed if exc.problem.startswith("fixed") else None
        )
        raise InputError(exc.problem, which) from None
    payload = {
        "matrix": res.matrix.tolist(),
        "rms_mm": res.rms_mm,
        "inlier_fraction": res.inlier_fraction,
        "inlier_distance_mm": res.inlier_distance_mm,
        "fixed_points": len(fixed.points_mm),
        "moving_points": len(moving.points_mm),
        "voxel_mm": res.voxel_mm,
        "starts": res.starts,
        "warnings": res.warnings,
    }
    print(f"registered surface {args.moving} ({len(moving.points_mm)} points) to {args.fixed}, MOVING to FIXED:")
    for row in res.matrix:
        print("  " + "  ".join(f"{x:12.6f}" for x in row))
    print(
        f"RMS {res.rms_mm:.3f} mm (point to plane, inliers); inlier fraction {res.inlier_fraction:.3f} "
        f"(within {res.inlier_distance_mm:.2f} mm)"
    )
    for w in res.warnings:
        print(f"warning: {w}")
    if args.json is not None:
        _write_json(args.json, payload)
    return 0
