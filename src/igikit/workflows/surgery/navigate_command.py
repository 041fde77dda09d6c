"""``igikit navigate``: live tool-to-target navigation with proximity warnings, under supervision.

Inputs: a navigation plan (YAML or JSON: the label map, target, planned entry, the structures to
avoid with their warning distances, the fiducials in image coordinates), the fiducials as the
tracker localised them (``--fiducials-tracker``, with ``--fle-mm``), the tool's pivot calibration
(``--pivot`` JSON from ``igikit calibrate pivot``, or ``--tip-offset-mm``), and one pose source:
``--igtl HOST:PORT`` (PLUS or a tracker serving OpenIGTLink), ``--igtl-listen PORT`` (the tracker
connects to igikit), ``--replay FILE`` (a recording) or ``--simulate`` (a simulated tracker with
stated jitter; without ``--fiducials-tracker`` it also localises the fiducials, with FLE).

Outputs in ``--out-dir``: the session file (every pose, every update), the audit log (every
decision and alert), ``report.html``; ``--json`` writes the metrics summary. ``--console`` serves
the supervisor's web console (with its 3D scene) while navigating.

Plan file::

    labels: liver_labels.nii.gz        # relative to the plan file
    target_mm: [-55.0, -5.0, 10.0]     # image (patient) coordinates, LPS, mm
    target_name: lesion
    entry_mm: [-150.0, -30.0, 25.0]    # optional: the planned trajectory runs entry -> target
    structures:
      - {name: portal vein, label: 2, warn_mm: 5, critical_mm: 2}
      - {name: hepatic vein, label: 3}
    fiducials_mm: [[x, y, z], ...]     # or: fiducials: fiducials_image.csv
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from igikit.errors import InputError

if TYPE_CHECKING:
    from igikit.core.image import Image
    from igikit.stream.source import Source
    from igikit.supervise.session import SupervisedSession
    from igikit.workflows.surgery.navigation import NavigationPlan, Navigator, PatientRegistration, ToolCalibration

#: Files in the output folder.
REPORT_FILE = "report.html"
USERS_FILE = "users.db"
SECRET_FILE = "console.secret"


def default_tracker_from_image() -> np.ndarray:
    """The simulated tracker's true image-to-tracker pose: the patient about 2 m in front of an
    optical tracker (as in the real pivot recording), turned 30 degrees and flipped."""
    c, s = math.cos(math.radians(30.0)), math.sin(math.radians(30.0))
    return np.array([[c, 0.0, s, -120.0], [0.0, -1.0, 0.0, 40.0], [s, 0.0, -c, -2100.0], [0.0, 0.0, 0.0, 1.0]])


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``igikit navigate``."""
    p = sub.add_parser(
        "navigate",
        help="navigate a tracked tool to a target: distances, trajectory angle, TRE at the tip, proximity warnings",
        description=(__doc__ or "").split("\n\n")[1].replace("\n", " ").replace("``", ""),
        epilog="Plan file: labels, target_mm, target_name, entry_mm, structures (name, label, warn_mm, "
        "critical_mm), fiducials_mm or fiducials (CSV). Coordinates are image coordinates (LPS, mm).",
    )
    p.add_argument("plan", type=Path, metavar="PLAN.yaml", help="the navigation plan (YAML or JSON)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--igtl", metavar="HOST:PORT", help="receive TRANSFORMs from this OpenIGTLink server (PLUS)")
    src.add_argument("--igtl-listen", type=int, metavar="PORT", help="listen for a tracker on this port (0: any)")
    src.add_argument("--replay", type=Path, metavar="POSES", help="replay a recording (.csv with t_s, or .h5)")
    src.add_argument("--simulate", action="store_true", help="a simulated tracker inserting along the plan")
    p.add_argument(
        "--fiducials-tracker",
        type=Path,
        metavar="TRK.csv",
        help="the plan's fiducials as localised by the tracker, same order (x,y,z mm)",
    )
    p.add_argument("--fle-mm", type=float, default=0.35, help="RMS 3D fiducial localisation error (default 0.35 mm)")
    p.add_argument("--pivot", type=Path, metavar="PIVOT.json", help="tool calibration: igikit calibrate pivot --json")
    p.add_argument("--tip-offset-mm", metavar="X,Y,Z", help="tool calibration: the tip in tool coordinates")
    p.add_argument("--tool-axis", metavar="X,Y,Z", help="tip-to-handle direction in tool coordinates (default: -tip)")
    p.add_argument("--device", help="only poses of this OpenIGTLink device / recording device")
    p.add_argument(
        "--rate-hz",
        type=float,
        default=None,
        help="simulated tracker rate (default 40), or a recording's rate when it has no times",
    )
    p.add_argument("--fast", action="store_true", help="replay / simulate as fast as possible")
    p.add_argument("--seconds", type=float, help="stop after this long (a live stream)")
    p.add_argument("--jitter-mm", type=float, default=0.2, help="simulated tracker: RMS 3D jitter (default 0.2 mm)")
    p.add_argument("--jitter-deg", type=float, default=0.05, help="simulated tracker: RMS rotation jitter (deg)")
    p.add_argument("--speed-mm-s", type=float, default=8.0, help="simulated insertion speed (default 8 mm/s)")
    p.add_argument("--seed", type=int, default=0, help="simulation seed")
    p.add_argument("--lost-ms", type=float, default=150.0, help="alert when no pose arrives this long (150)")
    p.add_argument("--frozen-ms", type=float, default=150.0, help="alert when the pose is unchanged this long (150)")
    p.add_argument("--smooth", action="store_true", help="average the last 3 poses (1 frame of lag at most)")
    p.add_argument("--autonomy", type=int, choices=(0, 1, 2, 3), default=3, help="starting autonomy level (3)")
    p.add_argument("--veto-window-s", type=float, default=3.0, help="level 2's veto window (s)")
    p.add_argument("--out-dir", type=Path, metavar="DIR", help="output folder (default out/navigate-<time>)")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write the metrics summary as JSON")
    p.add_argument("--console", action="store_true", help="serve the web console (3D scene) while navigating")
    p.add_argument("--port", type=int, default=8000, help="console port (default 8000; a free one if taken or 0)")
    p.set_defaults(func=run_navigate)


# ---------------------------------------------------------------------------- inputs
def _three(text: str, what: str) -> np.ndarray:
    try:
        v = np.array([float(x) for x in text.split(",")])
    except ValueError:
        v = np.array([])
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise InputError(f"{what} must be three numbers X,Y,Z, got {text!r}")
    return v


def read_plan(path: Path) -> tuple[NavigationPlan, Image, np.ndarray]:
    """The plan, its label map and the fiducials (image coordinates) from a plan file."""
    from igikit.core.config import read_yaml
    from igikit.io.image import read_image
    from igikit.workflows.surgery.files import read_points_csv
    from igikit.workflows.surgery.navigation import NavigationPlan, structures_from_mapping

    data = read_yaml(path, "plan")
    if not isinstance(data, Mapping):
        raise InputError("a navigation plan must be a mapping (labels, target_mm, structures, fiducials_mm)", path)
    known = {"labels", "target_mm", "target_name", "entry_mm", "structures", "fiducials_mm", "fiducials"}
    extra = sorted(set(data) - known)
    if extra:
        raise InputError(f"unknown key {extra[0]!r}; a plan has {', '.join(sorted(known))}", path)
    for key in ("labels", "target_mm", "structures"):
        if key not in data:
            raise InputError(f"the plan lacks {key!r}", path)
    if ("fiducials_mm" in data) == ("fiducials" in data):
        raise InputError(
            "give the fiducials (image coordinates) as fiducials_mm or as a fiducials CSV, one of them", path
        )
    base = path.parent
    labels_path = base / str(data["labels"])
    if not labels_path.is_file():
        raise InputError(f"label map {labels_path} not found", path)
    labels = read_image(labels_path)
    if labels.is_series or labels.dim != 3:
        raise InputError(f"the label map must be one 3D volume, got shape {labels.array.shape}", labels_path)
    if not isinstance(data["structures"], list) or not data["structures"]:
        raise InputError("structures must be a non-empty list of {name, label, warn_mm, critical_mm}", path)
    try:
        structures = structures_from_mapping(data["structures"], where="structures")
        plan = NavigationPlan(
            target_mm=np.asarray(data["target_mm"], dtype=np.float64),
            entry_mm=None if data.get("entry_mm") is None else np.asarray(data["entry_mm"], dtype=np.float64),
            structures=structures,
            target_name=str(data.get("target_name", "target")),
        )
        if "fiducials_mm" in data:
            fiducials = np.asarray(data["fiducials_mm"], dtype=np.float64)
        else:
            fiducials = read_points_csv(base / str(data["fiducials"])).points_mm
    except InputError as exc:
        raise InputError(exc.problem, exc.path or path) from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"malformed plan: {exc}", path) from None
    if fiducials.ndim != 2 or fiducials.shape[1] != 3 or len(fiducials) < 3:
        raise InputError(f"3 or more fiducials (x, y, z) are needed, got shape {fiducials.shape}", path)
    return plan, labels, fiducials


def read_tool(pivot: Path | None, tip_offset: str | None, axis: str | None, *, required: bool) -> ToolCalibration:
    """The tool calibration from ``--pivot`` JSON or ``--tip-offset-mm`` (and ``--tool-axis``)."""
    from igikit.workflows.surgery.navigation import ToolCalibration

    if pivot is not None and tip_offset is not None:
        raise InputError("give the tool calibration once: --pivot or --tip-offset-mm")
    if pivot is not None:
        try:
            data = json.loads(pivot.read_text(encoding="utf-8"))
            tip = np.asarray(data["tip_offset_mm"], dtype=np.float64)
        except FileNotFoundError:
            raise InputError("no such file", pivot) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"not valid JSON: {exc}", pivot) from None
        except (KeyError, TypeError, ValueError):
            raise InputError(
                "expected 'tip_offset_mm' (3 numbers), as igikit calibrate pivot --json writes", pivot
            ) from None
        if tip.shape != (3,) or not np.all(np.isfinite(tip)):
            raise InputError("'tip_offset_mm' must be 3 finite numbers", pivot)
    elif tip_offset is not None:
        tip = _three(tip_offset, "--tip-offset-mm")
    elif required:
        raise InputError("the tool calibration is missing: give --pivot PIVOT.json or --tip-offset-mm X,Y,Z")
    else:
        tip = np.array([0.0, 0.0, -150.0])  # a simulated needle 150 mm long, marker at the handle
    return ToolCalibration(tip, None if axis is None else _three(axis, "--tool-axis"))


def simulated_fiducials(
    fiducials_image_mm: np.ndarray, tracker_from_image: np.ndarray, fle_mm: float, seed: int
) -> np.ndarray:
    """The fiducials as a tracked pointer localises them: the true pose plus isotropic FLE (RMS 3D)."""
    rng = np.random.default_rng(seed)
    true = fiducials_image_mm @ tracker_from_image[:3, :3].T + tracker_from_image[:3, 3]
    out: np.ndarray = true + rng.normal(scale=fle_mm / math.sqrt(3.0), size=true.shape)
    return out


# ------------------------------------------------------------------------------- a run
@dataclass(frozen=True)
class SupervisionOptions:
    """Autonomy level, veto window, and whether anybody watches."""

    level: int = 3
    veto_window_s: float = 3.0
    headless: bool = True


def open_navigation_session(audit_path: Path, options: SupervisionOptions) -> SupervisedSession:
    """A supervised session for navigation, logging to a new audit log at ``audit_path``."""
    import uuid

    from igikit.supervise.audit import AuditLog
    from igikit.supervise.autonomy import AutonomyPolicy
    from igikit.supervise.session import SupervisedSession
    from igikit.workflows.surgery.supervision import WORKFLOW

    return SupervisedSession(
        AuditLog(audit_path),
        workflow=WORKFLOW,
        session_id=uuid.uuid4().hex[:12],
        level=options.level,
        policy=AutonomyPolicy(veto_window_s=options.veto_window_s),
    )


def navigation_scene(navigator: Navigator, labels: Image, title: str) -> Any:
    """The console's 3D scene: the structures (and the target's label, when it has one), target, plan."""
    from igikit.console.scene import Scene, meshes_from_labels
    from igikit.workflows.surgery.navigation import label_at

    structures = {s.label: s.name for s in navigator.plan.structures}
    value = label_at(labels, navigator.plan.target_mm)
    if value and value not in structures:
        structures[value] = navigator.plan.target_name
    meshes = meshes_from_labels(labels, structures, max_triangles=2500)
    return Scene(meshes=meshes, target_mm=navigator.plan.target_mm, entry_mm=navigator.plan.entry_mm, title=title)


def execute_navigation(
    navigator: Navigator,
    source: Source,
    *,
    out_dir: Path,
    session: SupervisedSession,
    headless: bool,
    labels: Image,
    title: str,
    lost_after_s: float,
    frozen_after_s: float,
    json_path: Path | None = None,
    stop: threading.Event | None = None,
    tool_name: str = "tool",
    metadata: dict[str, Any] | None = None,
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Navigate ``source`` under ``session``; write the session file, the report and the JSON summary.

    Returns the summary (with ``report`` and ``audit_log`` added). ``facts`` (calibration,
    registration details) are added to the summary under their keys.
    """
    from igikit.io.atomic import atomic_path
    from igikit.workflows.surgery.navigate import SESSION_FILE, run_navigation, summary
    from igikit.workflows.surgery.report import write_report
    from igikit.workflows.surgery.supervision import NavigationSupervision

    supervision = NavigationSupervision(session, navigator.plan, headless=headless, tool_name=tool_name)
    if hasattr(session, "publish_scene"):
        supervision.publish_scene(navigation_scene(navigator, labels, title))
    run = run_navigation(
        source,
        navigator,
        supervision,
        session_path=out_dir / SESSION_FILE,
        lost_after_s=lost_after_s,
        frozen_after_s=frozen_after_s,
        metadata=metadata,
        stop=stop,
    )
    if not run.records:
        raise InputError("no pose arrived: nothing to navigate (check the source, the device name)")
    facts_out = summary(run, navigator)
    facts_out.update(facts or {})
    check = session.audit.verify()
    facts_out["audit_log"] = {"path": str(session.audit.path), "rows": check.n_rows, "verified": check.ok}
    report = out_dir / REPORT_FILE
    facts_out["report"] = str(report)
    write_report(report, run, navigator, facts_out, labels=labels, title=title)
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(facts_out, indent=2) + "\n", encoding="utf-8")
    return facts_out


def print_summary(facts: dict[str, Any]) -> None:
    """The run in a few lines."""
    f = facts.get("final", {})
    upd = facts["update_ms"]
    print(
        f"{facts['poses']} poses over {facts['duration_s']:.1f} s"
        + (f" ({facts['rate_hz']:.1f} Hz)" if facts.get("rate_hz") else "")
        + f"; update median {upd['median']:.3f} ms, p99 {upd['p99']:.3f} ms"
    )
    reg = facts["registration"]
    print(
        f"registration: {reg['fiducials']} fiducials, FLE {reg['fle_mm']:g} mm, FRE "
        + ("n/a" if reg["fre_mm"] is None else f"{reg['fre_mm']:.2f} mm")
        + f", predicted TRE at the target {reg['tre_at_target_mm']:.2f} mm"
    )
    if f:
        angle = "n/a" if f.get("angle_deg") is None else f"{f['angle_deg']:.1f} deg"
        print(
            f"final tip: {f['target_distance_mm']:.1f} mm from the target, angle to the plan {angle}, "
            f"TRE at tip {f['tre_mm']:.2f} mm"
        )
    for name, s in facts.get("structures", {}).items():
        print(
            f"{name}: closest {s['min_distance_mm']:.1f} mm at {s['min_at_s']:.1f} s "
            f"(TRE there {s['tre_at_min_mm']:.2f} "
            f"mm); {s['updates_warning']} updates in warning, {s['updates_critical']} critical"
        )
    for w in facts.get("warnings", {}).get("log", []):
        print(f"  {w['time_s']:7.2f} s  {w['level']:<8} {w['explanation']} [{w['mode']}]")
    for a in facts.get("stream_alerts", []):
        print(f"tool stream {a['kind']}: alert after {a['detected_after_ms']:.0f} ms (limit {a['limit_ms']:.0f} ms)")
    if "simulation" in facts:
        sim = facts["simulation"]
        print(
            f"simulation: tip error vs truth RMS {sim['tip_error_rms_mm']:.2f} mm (max {sim['tip_error_max_mm']:.2f}); "
            f"predicted TRE RMS {sim['predicted_tre_rms_mm']:.2f} mm"
        )
    if facts.get("session_file"):
        print(f"session: {facts['session_file']}")
    print(f"audit log: {facts['audit_log']['path']}")
    print(f"report: {facts['report']}")


# ----------------------------------------------------------------------------- the command
def _prepare_out_dir(out_dir: Path, extra: tuple[str, ...] = ()) -> list[Path]:
    from igikit.io.atomic import make_dirs, refuse_existing
    from igikit.workflows.surgery.navigate import AUDIT_FILE, SESSION_FILE

    refuse_existing(out_dir, (SESSION_FILE, AUDIT_FILE, REPORT_FILE, *extra))
    return make_dirs(out_dir)


def _check_args(args: argparse.Namespace) -> None:
    for what, v, lo in (
        ("--fle-mm", args.fle_mm, 0.0),
        ("--jitter-mm", args.jitter_mm, 0.0),
        ("--jitter-deg", args.jitter_deg, 0.0),
    ):
        if not (math.isfinite(v) and v >= lo):
            raise InputError(f"{what} must be a number >= {lo:g}, got {v}")
    for what, v in (("--lost-ms", args.lost_ms), ("--frozen-ms", args.frozen_ms), ("--speed-mm-s", args.speed_mm_s)):
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"{what} must be > 0, got {v}")
    if args.rate_hz is not None and not (math.isfinite(args.rate_hz) and 0 < args.rate_hz <= 1000):
        raise InputError(f"--rate-hz must be in (0, 1000], got {args.rate_hz}")
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        raise InputError(f"--seconds must be > 0, got {args.seconds}")
    if args.console and not 0 <= args.port < 65536:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    if args.json is not None and not args.json.parent.is_dir():
        raise InputError("output folder does not exist", args.json.parent)
    if not (math.isfinite(args.veto_window_s) and args.veto_window_s > 0):
        raise InputError(f"--veto-window-s must be > 0, got {args.veto_window_s}")


def build_navigator(
    plan: NavigationPlan, labels: Image, registration: PatientRegistration, tool: ToolCalibration, *, smooth: bool
) -> Navigator:
    """Distance maps (computed here) and the :class:`Navigator`."""
    from igikit.workflows.surgery.navigation import DistanceMaps, Navigator
    from igikit.workflows.surgery.smoothing import PoseSmoother

    maps = DistanceMaps(labels, plan.structures)
    return Navigator(plan, maps, registration, tool, smoother=PoseSmoother() if smooth else None)


def _source(
    args: argparse.Namespace, plan: NavigationPlan, tool: ToolCalibration, truth: np.ndarray
) -> tuple[Source, Any]:
    """The pose source named on the command line, and what to close after the run."""
    from igikit.workflows.surgery.tracker import (
        PoseReplaySource,
        SimulatedTracker,
        needle_insertion,
        read_pose_recording,
    )

    if args.replay is not None:
        rec = read_pose_recording(args.replay, device=args.device, rate_hz=args.rate_hz)
        return PoseReplaySource(rec, pace=not args.fast), None
    if args.simulate:
        if plan.entry_mm is None:
            raise InputError("--simulate inserts along the planned trajectory: the plan needs entry_mm", args.plan)
        path = needle_insertion(plan.entry_mm, plan.target_mm, speed_mm_s=args.speed_mm_s)
        src = SimulatedTracker(
            path,
            truth,
            tool,
            rate_hz=args.rate_hz or 40.0,
            jitter_mm=args.jitter_mm,
            jitter_deg=args.jitter_deg,
            pace=not args.fast,
            seed=args.seed,
        )
        return src, None
    from igikit.io.igtl import IGTLClient, IGTLServer, parse_address
    from igikit.io.igtl_source import IGTLSource

    endpoint: IGTLServer | IGTLClient
    if args.igtl is not None:
        endpoint = IGTLClient(*parse_address(args.igtl)).start()
        print(f"receiving poses from OpenIGTLink server {args.igtl}", flush=True)
    else:
        endpoint = IGTLServer("127.0.0.1", args.igtl_listen).start()
        print(f"OpenIGTLink server listening on 127.0.0.1:{endpoint.port}: connect the tracker", flush=True)
    source = IGTLSource(
        endpoint,
        kinds=("TRANSFORM",),
        device_filter=args.device,
        realtime=False,
        end_on_disconnect=args.igtl is not None,
    )
    return source, endpoint


def run_navigate(args: argparse.Namespace) -> int:
    """Run ``igikit navigate`` (see :func:`register`); returns the exit code."""
    from igikit.io.atomic import remove_outputs
    from igikit.workflows.surgery.files import read_points_csv
    from igikit.workflows.surgery.navigate import AUDIT_FILE, SESSION_FILE
    from igikit.workflows.surgery.navigation import PatientRegistration

    _check_args(args)
    plan, labels, fid_image = read_plan(args.plan)
    tool = read_tool(args.pivot, args.tip_offset_mm, args.tool_axis, required=not args.simulate)
    truth = default_tracker_from_image()
    facts: dict[str, Any] = {}
    if args.fiducials_tracker is not None:
        fid_tracker = read_points_csv(args.fiducials_tracker).points_mm
        if len(fid_tracker) != len(fid_image):
            raise InputError(
                f"{len(fid_tracker)} fiducials, but the plan has {len(fid_image)}; they must correspond in order",
                args.fiducials_tracker,
            )
    elif args.simulate:
        fid_tracker = simulated_fiducials(fid_image, truth, args.fle_mm, args.seed)
        facts["simulated_fiducials"] = "localised by the simulated tracker with the stated FLE"
    else:
        raise InputError("--fiducials-tracker is needed (the fiducials as the tracker localised them)")
    try:
        registration = PatientRegistration.from_fiducials(fid_image, fid_tracker, args.fle_mm)
    except InputError as exc:
        raise InputError(exc.problem, args.fiducials_tracker or args.plan) from None
    if args.simulate and args.fiducials_tracker is not None:
        truth = registration.tracker_from_image  # nothing better is known: the simulation takes it as true
    navigator = build_navigator(plan, labels, registration, tool, smooth=args.smooth)
    out_dir = args.out_dir or Path("out") / f"navigate-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    extra = (USERS_FILE, SECRET_FILE) if args.console else ()
    source, endpoint = _source(args, plan, tool, truth)
    try:
        created = _prepare_out_dir(out_dir, extra)
    except BaseException:
        if endpoint is not None:
            endpoint.stop()
        raise
    if args.seconds is not None:
        from igikit.workflows.surgery.navigate import Until

        source = Until(source, seconds=args.seconds)
    options = SupervisionOptions(level=args.autonomy, veto_window_s=args.veto_window_s, headless=not args.console)
    title = f"navigation: tool to {plan.target_name}"
    facts["source"] = source.metadata()
    run_kwargs: dict[str, Any] = {
        "labels": labels,
        "title": title,
        "lost_after_s": args.lost_ms / 1e3,
        "frozen_after_s": args.frozen_ms / 1e3,
        "json_path": args.json,
        "tool_name": "tool",
        "metadata": {"plan": str(args.plan)},
        "facts": facts,
    }
    try:
        if args.console:
            return serve_navigation(navigator, source, options, out_dir=out_dir, port=args.port, run_kwargs=run_kwargs)
        facts = navigate_headless(navigator, source, options, out_dir=out_dir, run_kwargs=run_kwargs)
    except BaseException:
        if not args.console:
            remove_outputs([out_dir / name for name in (SESSION_FILE, AUDIT_FILE, REPORT_FILE)], created)
        raise
    finally:
        if endpoint is not None:
            endpoint.stop()
    print_summary(facts)
    return 0


def navigate_headless(
    navigator: Navigator, source: Source, options: SupervisionOptions, *, out_dir: Path, run_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Navigate with nobody watching (``--no-console``): the session's audit log in ``out_dir``, closed at the end.

    ``run_kwargs`` go to :func:`execute_navigation`, whose summary is returned (for :func:`print_summary`).
    """
    from igikit.workflows.surgery.navigate import AUDIT_FILE

    session = open_navigation_session(out_dir / AUDIT_FILE, options)
    try:
        return execute_navigation(navigator, source, out_dir=out_dir, session=session, headless=True, **run_kwargs)
    finally:
        session.audit.close()


def serve_navigation(
    navigator: Navigator,
    source: Source,
    options: SupervisionOptions,
    *,
    out_dir: Path,
    port: int,
    run_kwargs: dict[str, Any],
    host: str = "127.0.0.1",
    demo: bool = False,
    start_line: str = "",
    on_done: Any = None,
) -> int:
    """Navigate with the web console serving the session (and its 3D scene) until Ctrl-C.

    The console starts first (on ``port``, or a free port when it is taken or 0); navigation runs
    in a thread; the report is written when the poses end; the console keeps serving until
    Ctrl-C. ``demo``: a demo user (physicist, random password, printed) in a users file inside
    ``out_dir``; else the install's users (``~/.igikit/users.db``).
    """
    from igikit.console.app import create_app
    from igikit.console.server import DEMO_USER, console_access, serve_while
    from igikit.workflows.surgery.navigate import AUDIT_FILE

    access = console_access(host, port, demo_dir=out_dir if demo else None)
    store = access.store
    session = open_navigation_session(out_dir / AUDIT_FILE, options)
    stop = threading.Event()
    app = create_app(
        session, store, secret=access.secret, title=run_kwargs.get("title", "navigation"), on_shutdown=stop.set
    )
    server = access.server(app, audit_path=out_dir / AUDIT_FILE, login_note=DEMO_USER[1])
    if start_line:
        print(start_line, flush=True)
    def navigate() -> None:
        facts = execute_navigation(
            navigator, source, out_dir=out_dir, session=session, headless=False, stop=stop, **run_kwargs
        )
        print_summary(facts)
        if on_done is not None:
            on_done(facts)

    return serve_while(server, navigate, what="navigation", stop=stop, close=[session.audit.close, store.close])


__all__ = [
    "SupervisionOptions",
    "build_navigator",
    "default_tracker_from_image",
    "execute_navigation",
    "navigate_headless",
    "navigation_scene",
    "open_navigation_session",
    "print_summary",
    "read_plan",
    "read_tool",
    "register",
    "run_navigate",
    "serve_navigation",
    "simulated_fiducials",
]
