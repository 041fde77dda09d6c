"""``igikit demo surgery``: calibrate a real pointer, register a liver phantom, navigate a needle.

1. **Pivot calibration** (RANSAC) of the real tracked pointer recording
   ``../shared/data/tracking/pivot_poses.csv`` (1,151 poses, scikit-surgerycore test data, UCL,
   BSD-3): the tip offset the needle is navigated with.
2. **Phantom** (:mod:`igikit.sim.liver`): a liver with portal and hepatic veins and a lesion, its
   label map, the plan (entry on the right flank, target the lesion centre), skin fiducials.
3. **Fiducial registration**: the fiducials as a tracked pointer localises them (the true pose
   plus FLE), registered to the image ones (Arun / Umeyama); FRE and the predicted TRE.
4. **Navigation**: a simulated tracker (jitter 0.2 mm, 40 Hz) follows a needle inserted toward
   the lesion whose hand drifts toward the segmental portal branch the planned path passes at
   4 mm: the warnings fire, with the TRE at the tip; the marker is occluded for 0.4 s and the
   tracker freezes for 0.4 s, and both raise an alert within 200 ms.
5. The **report** (``report.html``) ends it; with the console (default) the 3D scene and the
   warnings are live in the browser.

Every input the navigation used is written to the output folder (``plan.yaml``,
``labels.nii.gz``, ``fiducials_image.csv``, ``fiducials_tracker.csv``, ``pivot.json``), so
``igikit navigate out/.../plan.yaml --fiducials-tracker ... --pivot ... --simulate`` runs again
on them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from igikit.errors import InputError

#: The real recording calibrated first, relative to the data folder.
PIVOT_RECORDING = Path("tracking") / "pivot_poses.csv"
#: The demo's fiducial localisation error (RMS 3D, mm): skin markers touched with a tracked pointer.
FLE_MM = 0.8
#: How far (mm) the simulated hand drifts toward the portal branch: the tip passes ~1.4 mm from it.
DRIFT_MM = 2.6
#: Tool-stream faults (s into the insertion): the marker occluded, then the tracker stuck.
OCCLUSION_S = (5.0, 5.4)
FREEZE_S = (12.5, 12.9)


def _prepare(out_dir: Path, names: tuple[str, ...]) -> list[Path]:
    from igikit.io.atomic import make_dirs, refuse_existing

    refuse_existing(out_dir, names)
    return make_dirs(out_dir)


def _write_points(path: Path, points: np.ndarray, names: list[str]) -> None:
    from igikit.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(
            "name,x,y,z\n"
            + "".join(f"{n},{p[0]:.4f},{p[1]:.4f},{p[2]:.4f}\n" for n, p in zip(names, points, strict=True))
        )


def run_demo(args: argparse.Namespace) -> int:
    """Run ``igikit demo surgery`` (``args``: ``out_dir``, ``no_console``, ``port``, ``fast``); exit code."""
    import yaml

    from igikit.core.paths import data_dir
    from igikit.io.atomic import atomic_path, remove_outputs
    from igikit.io.image import write_image
    from igikit.register.pivot import pivot_calibration
    from igikit.sim.liver import LABELS, liver_phantom
    from igikit.workflows.surgery.files import read_poses_csv
    from igikit.workflows.surgery.navigate import AUDIT_FILE, SESSION_FILE
    from igikit.workflows.surgery.navigate_command import (
        REPORT_FILE,
        SECRET_FILE,
        USERS_FILE,
        SupervisionOptions,
        build_navigator,
        default_tracker_from_image,
        navigate_headless,
        print_summary,
        serve_navigation,
        simulated_fiducials,
    )
    from igikit.workflows.surgery.navigation import NavigationPlan, PatientRegistration, Structure, ToolCalibration
    from igikit.workflows.surgery.tracker import SimulatedTracker

    console = not getattr(args, "no_console", False)
    port = int(getattr(args, "port", 8000))
    if console and not 0 <= port < 65536:
        raise InputError(f"--port must be in 0..65535, got {port}")
    fast = bool(getattr(args, "fast", False))
    out_dir = getattr(args, "out_dir", None) or Path("out") / f"demo-surgery-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    inputs = ("plan.yaml", "labels.nii.gz", "fiducials_image.csv", "fiducials_tracker.csv", "pivot.json")
    outputs = (SESSION_FILE, AUDIT_FILE, REPORT_FILE, *((USERS_FILE, SECRET_FILE) if console else ()))
    recording = data_dir() / PIVOT_RECORDING
    created = _prepare(out_dir, inputs + outputs)

    # 1. the real pointer
    poses = read_poses_csv(recording).poses
    pivot = pivot_calibration(poses, "ransac")
    tool = ToolCalibration(pivot.tip_offset_mm)
    print(
        f"pivot calibration (ransac) of the real recording {recording} ({len(poses)} poses): tip offset "
        f"({', '.join(f'{v:.2f}' for v in pivot.tip_offset_mm)}) mm, RMS {pivot.rms_mm:.2f} mm (3D), "
        f"{pivot.inlier_count} poses used",
        flush=True,
    )
    try:
        # 2. the phantom and the plan
        phantom = liver_phantom()
        structures = (
            Structure("portal vein", LABELS["portal vein"], warn_mm=5.0, critical_mm=2.0),
            Structure("hepatic vein", LABELS["hepatic vein"], warn_mm=5.0, critical_mm=2.0),
        )
        plan = NavigationPlan(phantom.target_mm, phantom.entry_mm, structures, target_name="lesion")
        names = [f"F{k + 1}" for k in range(len(phantom.fiducials_mm))]
        write_image(phantom.labels, out_dir / "labels.nii.gz")
        _write_points(out_dir / "fiducials_image.csv", phantom.fiducials_mm, names)
        with atomic_path(out_dir / "plan.yaml") as tmp:
            tmp.write_text(
                yaml.safe_dump(
                    {
                        "labels": "labels.nii.gz",
                        "target_name": "lesion",
                        "target_mm": [float(v) for v in plan.target_mm],
                        "entry_mm": [float(v) for v in phantom.entry_mm],
                        "structures": [
                            {"name": s.name, "label": s.label, "warn_mm": s.warn_mm, "critical_mm": s.critical_mm}
                            for s in structures
                        ],
                        "fiducials": "fiducials_image.csv",
                    },
                    sort_keys=False,
                )
            )
        with atomic_path(out_dir / "pivot.json") as tmp:
            tmp.write_text(
                json.dumps(
                    {
                        "method": pivot.method,
                        "tip_offset_mm": pivot.tip_offset_mm.tolist(),
                        "pivot_point_mm": pivot.pivot_point_mm.tolist(),
                        "rms_mm": pivot.rms_mm,
                        "inlier_count": pivot.inlier_count,
                    },
                    indent=2,
                )
                + "\n"
            )
        print(
            f"phantom: liver {phantom.labels.array.shape[::-1]} voxels of {phantom.labels.spacing_mm} mm; the planned "
            f"path passes the portal vein at {phantom.path_clearance_mm('portal vein'):.1f} mm",
            flush=True,
        )

        # 3. fiducial registration with FLE
        truth = default_tracker_from_image()
        tracked = simulated_fiducials(phantom.fiducials_mm, truth, FLE_MM, seed=3)
        _write_points(out_dir / "fiducials_tracker.csv", tracked, names)
        registration = PatientRegistration.from_fiducials(phantom.fiducials_mm, tracked, FLE_MM)
        tre_target = registration.tre_mm(plan.target_mm)
        print(
            f"fiducial registration: {len(names)} skin fiducials, FLE {FLE_MM} mm: FRE {registration.fre_mm:.2f} mm, "
            f"predicted TRE at the lesion {tre_target:.2f} mm",
            flush=True,
        )

        # 4. the insertion, drifting toward the portal branch the path passes
        navigator = build_navigator(plan, phantom.labels, registration, tool, smooth=False)
        path = _drifting_insertion(phantom, plan)
        source = SimulatedTracker(
            path,
            truth,
            tool,
            rate_hz=40.0,
            jitter_mm=0.2,
            jitter_deg=0.05,
            occlusions_s=(OCCLUSION_S,),
            freezes_s=(FREEZE_S,),
            pace=not fast,
            seed=7,
        )
        facts = {
            "pivot": f"ransac on the real recording {PIVOT_RECORDING} ({len(poses)} poses; scikit-surgerycore test "
            f"data, UCL, BSD-3): tip offset {np.round(pivot.tip_offset_mm, 2).tolist()} mm, RMS {pivot.rms_mm:.2f} mm, "
            f"{pivot.inlier_count} poses used",
            "registration_detail": f"{len(names)} skin fiducials localised with FLE {FLE_MM} mm (simulated pointer): "
            f"FRE {registration.fre_mm:.2f} mm; predicted TRE at the lesion {tre_target:.2f} mm",
        }
        title = "igikit demo surgery: needle to a liver lesion past the portal vein"
        run_kwargs: dict[str, Any] = {
            "labels": phantom.labels,
            "title": title,
            "lost_after_s": 0.15,
            "frozen_after_s": 0.15,
            "json_path": None,
            "tool_name": "needle",
            "metadata": {"demo": "surgery"},
            "facts": facts,
        }
        mode = "as fast as possible" if fast else "in real time"
        line = (
            f"navigating a simulated needle insertion ({path.duration_s:.0f} s at 40 Hz, {mode}) toward the lesion; "
            f"writing to {out_dir}/"
        )
        options = SupervisionOptions(
            level=int(getattr(args, "autonomy", 3)),
            veto_window_s=float(getattr(args, "veto_window_s", 3.0)),
            headless=not console,
        )
        if console:
            return serve_navigation(
                navigator,
                source,
                options,
                out_dir=out_dir,
                port=port,
                run_kwargs=run_kwargs,
                demo=True,
                start_line=line,
            )
        print(line, flush=True)
        facts = navigate_headless(navigator, source, options, out_dir=out_dir, run_kwargs=run_kwargs)
    except BaseException:
        remove_outputs([out_dir / name for name in inputs + outputs], created)
        raise
    print_summary(facts)
    return 0


def _drifting_insertion(phantom: Any, plan: Any) -> Any:
    """The planned insertion with the hand drifting :data:`DRIFT_MM` toward the nearest portal branch."""
    from igikit.sim.liver import capsules_distance_mm
    from igikit.workflows.surgery.tracker import needle_insertion

    entry, target = phantom.entry_mm, phantom.target_mm
    t = np.linspace(0.0, 1.0, 401)[:, None]
    line = entry + t * (target - entry)
    dist = capsules_distance_mm(phantom.vessels["portal vein"], line)
    k = int(np.argmin(dist))
    # the direction in which the distance falls fastest, across the path: toward the vessel
    eps = 0.05
    grad = np.array(
        [
            (capsules_distance_mm(phantom.vessels["portal vein"], (line[k] + eps * e)[None])[0] - dist[k]) / eps
            for e in np.eye(3)
        ]
    )
    d = plan.direction
    toward = -(grad - (grad @ d) * d)
    toward /= np.linalg.norm(toward)
    return needle_insertion(
        entry, target, speed_mm_s=8.0, deviation_mm=DRIFT_MM * toward, deviation_at=float(t[k, 0]), deviation_width=0.1
    )


__all__ = ["run_demo"]
