"""``igikit thermometry`` (PRF temperature, thermal dose and lesion maps from complex MR frames) and
``igikit fus run`` (closed-loop sonication control on the simulator)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from igikit.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``igikit thermometry`` and ``igikit fus run`` to the ``igikit`` parser."""
    _register_fus(sub)
    p = sub.add_parser(
        "thermometry",
        help="PRF-shift temperature, CEM43 and lesion maps from complex MR frames",
        description=(
            "Read complex MR frames (HDF5: /frames, /frame_times_s, attributes te_s, b0_t, spacing_mm; or a "
            "DICOM folder of magnitude + phase), compute absolute temperature by PRF shift (baseline "
            "subtraction, multi-baseline for periodic motion, or referenceless), its per-voxel uncertainty "
            "from the magnitude SNR, the thermal dose (CEM43) and the lesion (CEM43 >= 240 min), and write "
            "OUT/temperature.h5."
        ),
    )
    p.add_argument("series", type=Path, metavar="SERIES.h5|DIR", help="HDF5 series or DICOM magnitude + phase folder")
    p.add_argument("--out", required=True, type=Path, help="output folder (temperature.h5 is written there)")
    p.add_argument(
        "--method",
        choices=("baseline", "multibaseline", "referenceless"),
        default="baseline",
        help="baseline subtraction (default), multi-baseline atlas for periodic motion, or referenceless",
    )
    p.add_argument(
        "--baseline-frames",
        type=int,
        default=None,
        metavar="N",
        help="unheated frames at the start: averaged baseline, or the multi-baseline library (default 1; "
        "multibaseline needs >= 2, covering a breathing cycle)",
    )
    p.add_argument(
        "--drift-order",
        type=int,
        default=None,
        choices=(0, 1, 2, 3),
        metavar="N",
        help="polynomial order (0-2) of the drift fitted in the reference region (default: 1 with "
        "--reference-mask, otherwise no drift correction); for referenceless the background order (default 2)",
    )
    p.add_argument(
        "--reference-mask",
        type=Path,
        default=None,
        metavar="M",
        help="unheated reference region, ([S,] H, W): .npy, HDF5 (/mask) or an image file (NIfTI, MHA)",
    )
    p.add_argument("--noise-sigma", type=float, default=None, help="noise per channel (default: from the series)")
    p.add_argument(
        "--max-uncertainty-c",
        type=float,
        default=2.0,
        help="voxels with a larger temperature standard deviation are not trusted (default 2 °C)",
    )
    p.add_argument("--lesion-threshold-min", type=float, default=240.0, help="CEM43 of a lesion (default 240 min)")
    p.add_argument("--te-s", type=float, default=None, help="echo time (s), overrides the file")
    p.add_argument("--b0-t", type=float, default=None, help="field strength (T), overrides the file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from igikit.workflows.fus.series import read_mask, read_series, write_result
    from igikit.workflows.fus.thermometry import prf_thermometry

    for name in ("te_s", "b0_t", "noise_sigma"):
        value = getattr(args, name)
        if value is not None and not (np.isfinite(value) and value > 0):
            raise InputError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    if args.out.exists() and not args.out.is_dir():
        raise InputError("--out must be a folder", args.out)
    series = read_series(args.series, te_s=args.te_s, b0_t=args.b0_t)
    mask = None
    if args.reference_mask is not None:
        mask = read_mask(args.reference_mask, tuple(series.frames.shape[1:]))
    drift_order = args.drift_order
    if drift_order is None and mask is not None and args.method != "referenceless":
        drift_order = 1
    start = time.perf_counter()
    try:
        result = prf_thermometry(
            series.frames,
            series.frame_times_s,
            te_s=series.te_s,
            b0_t=series.b0_t,
            alpha_ppm_per_c=series.alpha_ppm_per_c,
            body_temperature_c=series.body_temperature_c,
            method=args.method,
            baseline_frames=args.baseline_frames,
            drift_order=drift_order,
            reference_mask=mask,
            noise_sigma=args.noise_sigma,
            max_uncertainty_c=args.max_uncertainty_c,
            lesion_threshold_min=args.lesion_threshold_min,
        )
    except InputError as exc:
        raise InputError(exc.problem, args.series) from None
    elapsed = time.perf_counter() - start
    target = write_result(result, series, args.out)
    voxel_mm3 = float(np.prod(series.spacing_mm))
    trusted = result.trusted.astype(bool)
    hottest = float(result.temperature_c[trusted].max()) if trusted.any() else float("nan")
    n = series.frames.shape[0]
    print(
        f"{n} frames, method {args.method}: max trusted temperature {hottest:.1f} °C, "
        f"trusted {100 * trusted.mean():.0f} % of voxels, lesion {int(result.lesion.sum())} voxels "
        f"({result.lesion.sum() * voxel_mm3 / 1000:.2f} mL), {1000 * elapsed / n:.2f} ms per frame"
    )
    print(f"written {target}")
    return 0


# ------------------------------------------------------------------------------- igikit fus run
def _register_fus(sub: argparse._SubParsersAction) -> None:
    fus = sub.add_parser(
        "fus",
        help="MR-guided focused ultrasound: closed-loop sonication control",
        description="MR-guided focused ultrasound workflows.",
    )
    fus_sub = fus.add_subparsers(dest="fus_command", metavar="SUBCOMMAND", parser_class=type(fus))
    fus_sub.required = True
    p = fus_sub.add_parser(
        "run",
        help="run a sonication plan on the simulator under closed-loop control and the safety supervisor",
        description=(
            "Read a sonication plan (YAML: target, organs at risk with temperature limits, maximum power, goal), "
            "run the closed loop on the simulator (Pennes bioheat -> complex MR frames -> PRF thermometry -> "
            "controller -> power), with a test sonication first to identify the thermal model, and the safety "
            "supervisor stopping the power on an organ-at-risk breach, over-temperature, late frame or trust drop. "
            "Writes an HTML report, the metrics (JSON) and the audit log of every decision."
        ),
    )
    p.add_argument("plan", type=Path, metavar="PLAN.yaml", help="the sonication plan")
    p.add_argument("--controller", choices=("pid", "mpc"), default="mpc", help="power controller (default mpc)")
    p.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="write DIR/report.html, DIR/metrics.json, DIR/audit.db"
    )
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the metrics to this JSON file")
    c = p.add_argument_group(
        "supervised in the web console",
        "With --console the run is a supervised session served to the web console: temperature map, dose and "
        "planned contours, temperature and power curves, every decision; operators pause, acknowledge, take over. "
        "Without it the run is headless (no session; safety stops still act).",
    )
    c.add_argument("--console", action="store_true", help="serve the run in the web console (until Ctrl-C)")
    c.add_argument("--port", type=int, default=8000, help="console port (default 8000; a free one if taken; 0: any)")
    c.add_argument("--host", default="127.0.0.1", help="console address (default 127.0.0.1, this machine only)")
    c.add_argument(
        "--users", type=Path, default=None, metavar="DB", help="console users file (default ~/.igikit/users.db)"
    )
    c.add_argument(
        "--autonomy",
        type=int,
        default=3,
        choices=(0, 1, 2, 3),
        help="starting autonomy level: 0 manual, 1 assistive, 2 supervised (veto window), 3 conditional "
        "(default; hands over near a limit or when thermometry is not trusted)",
    )
    c.add_argument("--veto-window-s", type=float, default=3.0, help="level 2's veto window (s, default 3)")
    c.add_argument(
        "--near-limit-c",
        type=float,
        default=1.0,
        metavar="C",
        help="a limit is near (level 3 hands over) within this many °C of it (default 1)",
    )
    c.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="with --console: frames paced at this many times real time (default 1; 0: as fast as computed)",
    )
    p.set_defaults(func=_run_fus)


def _run_fus(args: argparse.Namespace) -> int:
    from igikit.workflows.fus.loop import run_sonication
    from igikit.workflows.fus.plan import load_plan

    plan = load_plan(args.plan)
    if args.console and args.out is None:
        import datetime as dt

        args.out = Path("out") / f"fus-{dt.datetime.now():%Y%m%d-%H%M%S}"
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise InputError("--out must be a folder", args.out)
    json_parent = args.json.parent if args.json is not None else Path(".")
    if (
        args.json is not None
        and not json_parent.is_dir()
        and json_parent.resolve() != (args.out or Path(".")).resolve()
    ):
        raise InputError("folder of --json does not exist", json_parent)
    if args.console:
        return _serve_fus(args, plan)
    audit = None
    if args.out is not None:
        from igikit.supervise.audit import AuditLog

        args.out.mkdir(parents=True, exist_ok=True)
        audit = AuditLog(args.out / "audit.db")
    try:
        run = run_sonication(plan, controller=args.controller, audit=audit, session_id=f"fus-{plan.name}")
    finally:
        if audit is not None:
            audit.close()
    _finish_fus(args, plan, run)
    return 0


def _finish_fus(args: argparse.Namespace, plan: Any, run: Any, extra: tuple[str, ...] = ()) -> None:
    """Write the report, metrics and JSON of a finished run, and print its summary."""
    import json

    from igikit.io.atomic import atomic_path
    from igikit.workflows.fus.loop import sonication_metrics

    metrics = sonication_metrics(run)
    text = json.dumps(metrics, indent=2, ensure_ascii=False)
    written = []
    if args.out is not None:
        from igikit.workflows.fus.report import write_report

        written.append(write_report(run, metrics, args.out / "report.html"))
        with atomic_path(args.out / "metrics.json") as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
        written += [args.out / "metrics.json", args.out / "audit.db"]
    if args.json is not None:
        with atomic_path(args.json) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
        written.append(args.json)

    def fmt(key: str, unit: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:g} {unit}"

    print(f"{plan.name}: {args.controller.upper()}, {metrics['frames']} frames ({metrics['duration_s']:g} s)")
    if run.model is not None:
        print(
            f"identified model: gain {run.model.gain_c_per_w:.2f} °C/W, time constant {run.model.time_constant_s:.1f} s"
        )
    print(
        f"set point {plan.goal.setpoint_c:g} °C: overshoot {fmt('overshoot_c', '°C')}, steady-state error "
        f"{fmt('steady_state_error_c', '°C')}, time to target {fmt('time_to_target_s', 's')}"
    )
    if plan.goal.type == "ablation":
        print(f"lesion DSC vs target {fmt('lesion_dsc', '')}, lesion {fmt('lesion_area_mm2', 'mm²')}")
    else:
        share = 100 * metrics["hyperthermia_fraction"]
        print(f"target in the window: {share:.1f} % over {fmt('hyperthermia_hold_s', 's')}")
    if metrics["organs_at_risk"]:
        state = "respected" if metrics["oar_limits_respected"] else "EXCEEDED"
        print(f"organs at risk: max {fmt('max_oar_temperature_c', '°C')}, limits {state}")
    print(f"outcome: {run.stop_reason}")
    for line in extra:
        print(line)
    for path in written:
        print(f"written {path}")


def _serve_fus(args: argparse.Namespace, plan: Any) -> int:
    """``igikit fus run --console``: the run in a thread as a supervised session, the console in the foreground.

    The console starts first; the run is paced at ``--speed`` times real time; its report is written
    when it ends, and the console keeps serving the session (its log, its audit trail) until Ctrl-C,
    which also stops a sonication still running (power 0, then cooling computed without pacing).
    """
    import threading

    from igikit.console.app import create_app
    from igikit.console.server import console_access, serve_while
    from igikit.supervise.audit import AuditLog
    from igikit.supervise.autonomy import AutonomyPolicy
    from igikit.supervise.session import SupervisedSession
    from igikit.workflows.fus.loop import run_sonication
    from igikit.workflows.fus.supervision import SAFE_VALUE, SonicationSupervision

    if not (args.veto_window_s > 0):
        raise InputError(f"--veto-window-s must be positive, got {args.veto_window_s}")
    if not (args.speed >= 0):
        raise InputError(f"--speed must be 0 or more, got {args.speed}")
    if not (args.near_limit_c >= 0):
        raise InputError(f"--near-limit-c must be 0 or more, got {args.near_limit_c}")
    if (args.out / "audit.db").exists():
        raise InputError("already exists; choose another --out", args.out / "audit.db")
    access = console_access(args.host, args.port, users_path=args.users)
    store = access.store
    args.out.mkdir(parents=True, exist_ok=True)
    audit = AuditLog(args.out / "audit.db")
    session = SupervisedSession(
        audit,
        workflow="fus",
        session_id=f"fus-{plan.name}",
        level=args.autonomy,
        policy=AutonomyPolicy(veto_window_s=args.veto_window_s),
        safe_values={"sonication": SAFE_VALUE},
    )
    stop = threading.Event()
    title = f"MR-guided FUS: {plan.name} ({args.controller.upper()}, autonomy starts at {args.autonomy})"
    app = create_app(session, store, secret=access.secret, title=title, on_shutdown=stop.set)
    server = access.server(app, audit_path=args.out / "audit.db")
    pace = "as fast as computed" if args.speed == 0 else f"at {args.speed:g} x real time"
    print(f"{plan.name}: {args.controller.upper()} sonication {pace}, {plan.frame_interval_s:g} s frames", flush=True)
    supervision = SonicationSupervision(
        session, plan, controller=args.controller, near_limit_margin_c=args.near_limit_c, speed=args.speed, stop=stop
    )
    def sonicate() -> None:
        run = run_sonication(plan, controller=args.controller, session_id=session.session_id, supervision=supervision)
        handovers = f"supervision: autonomy level {int(session.level)}, {supervision.handovers} handovers"
        _finish_fus(args, plan, run, extra=(handovers,))

    return serve_while(server, sonicate, what="sonication run", stop=stop, close=[audit.close, store.close])
