"""``igikit predict``, ``igikit gate`` and ``igikit demo``: the MR-linac motion-management commands.

``predict`` scores latency-compensating motion prediction on a breathing trace; ``gate`` replays
a cine case through tracking, prediction and gating and reports what the beam did; ``demo`` does
that on the real magdeburg liver cine. Heavy modules (OpenCV, SciPy, matplotlib) are imported
inside the run functions: the CLI builds every parser at start.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from igikit.errors import InputError
from igikit.io.atomic import atomic_path, make_dirs, refuse_existing, remove_outputs
from igikit.io.respiration import clean_trace, read_trace
from igikit.workflows.mrgrt.prediction import (
    METHODS,
    evaluate,
    make_predictor,
    resolve_method,
    run_predictor,
)

if TYPE_CHECKING:
    from igikit.io.trackrad import CineCase
    from igikit.supervise.session import SupervisedSession
    from igikit.workflows.mrgrt.operators import TrackTarget
    from igikit.workflows.mrgrt.workflow import GatingSettings, GatingWorkflow, SupervisionSettings

__all__ = ["DEMO_CASE", "DEMO_TARGET", "register", "run_demo", "run_gate", "run_predict"]

#: ``igikit demo WORKFLOW``: the module whose ``run_demo(args)`` runs each workflow's demo (the
#: common options ``--out-dir``, ``--no-console``, ``--port`` and ``--fast`` mean the same in each).
DEMO_WORKFLOWS: dict[str, str] = {
    "mrgrt": __name__,
    "surgery": "igikit.workflows.surgery.demo",
    "theranostics": "igikit.workflows.theranostics.demo",
}

#: The case ``igikit demo`` replays, relative to the data folder.
DEMO_CASE = Path("cine") / "magdeburg_liver"
#: The demo target: a liver vessel on frame 0, centre (row, col) in pixels and radius in mm.
DEMO_TARGET = (90.0, 78.0, 6.0)
#: Seconds of cine tracked before the beam to find end-exhale, the gating reference.
DEMO_SETUP_S = 12.0
#: The HTML report's name in the output folder.
REPORT_FILE = "report.html"
#: The demo's own users file and cookie secret, inside its output folder (the names
#: :func:`igikit.console.server.console_access` gives them).
DEMO_USERS_FILE = "users.db"
DEMO_SECRET_FILE = "console.secret"
#: Tracking methods of :mod:`igikit.workflows.mrgrt.tracking` (kept light: no OpenCV import here).
TRACKING_METHODS = ("ensemble", "registration", "template", "copy", "ai", "ensemble_ai")
#: Methods whose answer the console explains on request (an occlusion map of the patient-specific network).
EXPLAINED_METHODS = ("ai", "ensemble_ai")
#: Where the explanations' PNG evidence goes, inside the output folder.
EVIDENCE_DIR = "evidence"


def register(sub: Any) -> None:
    """Add the ``predict``, ``gate`` and ``demo`` commands to the ``igikit`` sub-parsers."""
    _register_predict(sub)
    _register_gate(sub)
    _register_demo(sub)


def _register_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="predict a breathing trace ahead by the system latency and score it",
        description=(
            "Read a breathing trace (Krilavicius 'Frame;Timestamp;x;y;z' with decimal commas, or plain "
            "'time_ms,position_mm'), clean glitches and timestamp resets, predict at every sample t the "
            "position at t + horizon from samples <= t only, and report RMSE / MAE / max error (mm) "
            "against the trace itself for the method and for the no-prediction baseline (last value)."
        ),
    )
    p.add_argument("trace", type=Path, metavar="TRACE.csv")
    p.add_argument("--horizon-ms", type=float, required=True, help="prediction horizon (system latency), ms")
    p.add_argument(
        "--method",
        default="best",
        choices=(*METHODS, "best"),
        help="prediction method (default: best = online)",
    )
    p.add_argument("--axis", default="auto", choices=("auto", "x", "y", "z"), help="axis of a 3-axis trace")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write the report as JSON")
    p.add_argument(
        "--out",
        type=Path,
        metavar="PRED.csv",
        help=(
            "write 'time_ms,predicted_mm': one row per (cleaned) sample time t with the position "
            "predicted for t + horizon; 'nan' where there is not yet enough history"
        ),
    )
    p.set_defaults(func=run_predict)


def _percentiles_us(cost_s: np.ndarray) -> dict[str, float]:
    p50, p95, p99 = np.percentile(cost_s * 1e6, [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1)}


def run_predict(args: argparse.Namespace) -> int:
    """Run ``igikit predict`` (see :func:`register`); returns the exit code."""
    horizon_ms = float(args.horizon_ms)
    if not (math.isfinite(horizon_ms) and horizon_ms > 0):
        raise InputError(f"--horizon-ms must be > 0, got {args.horizon_ms:g}")
    horizon_s = horizon_ms / 1000.0
    method = resolve_method(args.method)
    trace = clean_trace(read_trace(args.trace, axis=args.axis))
    t, x = trace.time_s, trace.position_mm
    if trace.duration_s <= horizon_s:
        raise InputError(
            f"trace too short for a {horizon_ms:g} ms horizon: {len(trace)} samples spanning "
            f"{trace.duration_s * 1000:.0f} ms (the truth at t + horizon must exist)",
            args.trace,
        )
    pred, cost = run_predictor(make_predictor(method, horizon_s), t, x, horizon_s)
    # The baseline is scored on exactly the samples the method is, so the two are comparable.
    scored = np.isfinite(pred)
    result = evaluate(t, x, pred, horizon_s, mask=scored)
    baseline = evaluate(t, x, x, horizon_s, mask=scored)
    if result.n == 0:
        raise InputError(
            f"trace too short for a {horizon_ms:g} ms horizon with method {method}: {len(trace)} samples, "
            "none with both enough history and a truth at t + horizon",
            args.trace,
        )
    reduction = 100.0 * (1.0 - result.rmse_mm / baseline.rmse_mm) if baseline.rmse_mm > 0 else 0.0
    cleaning = trace.cleaning.as_dict() if trace.cleaning is not None else {}

    changes = {k: v for k, v in cleaning.items() if k not in ("n_in", "n_out") and v}
    print(
        f"{args.trace}: axis {trace.axis}, {len(trace)} samples, {trace.duration_s:.1f} s; "
        f"cleaned: {', '.join(f'{k} {v}' for k, v in changes.items()) or 'nothing to clean'}"
    )
    print(f"horizon {horizon_ms:g} ms, {result.n} samples scored")
    print(f"{'method':<10} {'RMSE':>7} {'MAE':>7} {'max':>7}  (mm)")
    for name, m in ((method, result), ("last", baseline)):
        print(f"{name:<10} {m.rmse_mm:7.3f} {m.mae_mm:7.3f} {m.max_mm:7.3f}")
    print(f"RMSE reduction vs last value: {reduction:.1f} %")
    cost_us = _percentiles_us(cost)
    print(f"per-sample cost (update + predict): p50 {cost_us['p50']} us, p99 {cost_us['p99']} us")

    if args.out is not None:
        with atomic_path(args.out) as tmp, tmp.open("w", newline="") as fh:
            fh.write("time_ms,predicted_mm\n")
            for ti, pi in zip(t, pred, strict=True):
                fh.write(f"{ti * 1000:.3f},{pi:.4f}\n" if math.isfinite(pi) else f"{ti * 1000:.3f},nan\n")
    if args.json is not None:
        report = {
            "trace": str(args.trace),
            "method": method,
            "horizon_ms": horizon_ms,
            "axis": trace.axis,
            "n_samples": len(trace),
            "n_scored": result.n,
            "cleaning": cleaning,
            "metrics": {"method": result.as_dict(), "baseline": baseline.as_dict()},
            "rmse_reduction_pct": round(reduction, 2),
            "cost_us": cost_us,
        }
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    return 0


# ------------------------------------------------------------------------------ gate / demo
def _register_gate(sub: Any) -> None:
    g = sub.add_parser(
        "gate",
        help="replay a cine case through tracking, prediction and beam gating; report duty cycle and dose",
        description=(
            "Replay a TrackRAD case folder at its frame rate (or --fast) through tracking, latency-"
            "compensating prediction and beam gating with safety interlocks, supervised headless (no human "
            "watches: a supervised session at --autonomy, default 3, whose alerts are acknowledged automatically "
            "once their condition clears; `igikit console --case` runs it with people); every decision goes to a "
            "hash-chained audit log, every frame to a session file. Reports the duty cycle, the beam-on "
            "time with the true target outside the window, the beam-off latency, and target D98 / D2 for "
            "no motion management, gating and beam tracking, in the terminal and an HTML report. A case "
            "without truth labels is judged against the tracked positions (the report says so)."
        ),
    )
    g.add_argument("case_dir", type=Path, metavar="CASE_DIR", help="TrackRAD case folder")
    _add_gating_options(g)
    g.add_argument("--json", type=Path, metavar="OUT.json", help="also write the summary as JSON")
    g.add_argument(
        "--target", metavar="ROW,COL,RADIUS_MM",
        help="target disc on frame 0 (pixel centre, radius in mm), for a case without a first label",
    )
    g.set_defaults(func=run_gate)


def _register_demo(sub: Any) -> None:
    d = sub.add_parser(
        "demo",
        help="gate the real magdeburg liver cine live under supervision, in the web console; report",
        description=(
            "Start the supervisor's web console on http://127.0.0.1:8000 (or the next free port) with a demo "
            "user whose password is printed here, then replay ../shared/data/cine/magdeburg_liver (or "
            "$IGIKIT_DATA) at its native frame rate (about 83 s) through tracking, prediction and supervised "
            "gating of a liver-vessel target; write the audit log, the session file and the HTML report into "
            "out/demo-<timestamp>/ and keep serving until Ctrl-C. With --no-console the run is headless (no "
            "human: alerts are acknowledged automatically once their condition clears) and ends with the "
            "report path."
        ),
    )
    d.add_argument(
        "workflow", nargs="?", default="mrgrt", choices=tuple(DEMO_WORKFLOWS),
        help="which demo: mrgrt (default, the cine gating above), surgery (pivot calibration, registration and "
        "a navigated needle insertion on a phantom), theranostics (Lu-177 four-time-point dosimetry and a "
        "Ho-166 scout-to-treatment plan); each ends with its HTML report",
    )
    _add_gating_options(d, with_threshold=False)
    d.add_argument(
        "--reference", choices=("exhale", "first"), default="exhale",
        help="gating reference: end-exhale found in a 12 s setup phase before the beam (default), or frame 0",
    )
    d.add_argument("--no-console", action="store_true", help="headless: no console, end with the report path")
    d.add_argument(
        "--port", type=int, default=8000,
        help="console port (default 8000; a free port when it is taken, or with 0)",
    )
    d.set_defaults(func=run_demo)


def _add_gating_options(p: argparse.ArgumentParser, *, with_threshold: bool = True) -> None:
    if with_threshold:
        p.add_argument("--margin-mm", type=float, help="gating margin around the target (default: profile, 3)")
        p.add_argument(
            "--threshold-pct", type=float,
            help="beam on while at most this %% of the target is outside the boundary (default: profile, 5)",
        )
    p.add_argument(
        "--method", default="ensemble", choices=TRACKING_METHODS,
        help="tracking method (the console explains ai and ensemble_ai on request)",
    )
    if with_threshold:
        p.add_argument("--predictor", default="online", choices=METHODS, help="motion prediction method")
    p.add_argument("--latency-ms", type=float, default=300.0, help="system latency, acquisition to beam (default 300)")
    p.add_argument("--profile", default="adult", help="patient profile name or YAML file (default adult)")
    p.add_argument("--fast", action="store_true", help="as fast as possible instead of the native frame rate")
    p.add_argument("--max-frames", type=int, metavar="N", help="replay only the first N frames")
    p.add_argument("--out-dir", type=Path, metavar="DIR", help="output folder (default out/<command>-<timestamp>)")
    _add_supervision_options(p)
    _add_recentre_options(p)


def _add_recentre_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recentre", action="store_true",
        help="measure the end-exhale baseline and propose to re-centre the gating window (with the beam aperture) "
        "when it drifts; the autonomy level decides when a proposal takes effect (off by default)",
    )
    p.add_argument("--drift-threshold-mm", type=float, default=2.0,
                   help="propose when the baseline is more than this off the window's centre (default 2)")
    p.add_argument("--drift-persist-s", type=float, default=5.0, help="... for longer than this (s, default 5)")
    p.add_argument("--drift-cycles", type=int, default=3,
                   help="breathing cycles the baseline is the median of (default 3)")
    p.add_argument("--max-shift-mm", type=float,
                   help="hard limit on the total shift; beyond it the beam holds and a human decides "
                   "(default: margin + 5 mm)")


def _add_supervision_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--autonomy", type=int, choices=(0, 1, 2, 3), default=3,
        help="starting autonomy level: 0 manual, 1 assistive, 2 supervised (veto window), 3 conditional "
        "(default; hands over on low confidence or a near limit). Without a console nobody acts, so 0 and 1 "
        "never turn the beam on and 2 delays every beam-on by the veto window",
    )
    p.add_argument("--veto-window-s", type=float, default=3.0, help="level 2's veto window (s, default 3)")


def _settings(args: argparse.Namespace) -> GatingSettings:
    from igikit.workflows.mrgrt.workflow import GatingSettings

    return GatingSettings.from_profile(
        args.profile,
        margin_mm=getattr(args, "margin_mm", None),
        threshold_pct=getattr(args, "threshold_pct", None),
        latency_ms=args.latency_ms,
        tracking_method=getattr(args, "method", None),
        predictor=getattr(args, "predictor", None),
        recentre=getattr(args, "recentre", None),
        drift_threshold_mm=getattr(args, "drift_threshold_mm", None),
        drift_persist_s=getattr(args, "drift_persist_s", None),
        drift_cycles=getattr(args, "drift_cycles", None),
        max_shift_mm=getattr(args, "max_shift_mm", None),
    )


def _supervision(args: argparse.Namespace, *, headless: bool) -> SupervisionSettings:
    from igikit.workflows.mrgrt.workflow import SupervisionSettings

    return SupervisionSettings(level=args.autonomy, veto_window_s=args.veto_window_s, headless=headless)


def _parse_target(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InputError(f"--target must be ROW,COL,RADIUS_MM (three numbers), got {text!r}")
    return values[0], values[1], values[2]


def _default_out_dir(kind: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("out") / f"{kind}-{stamp}"


def _prepare_out_dir(out_dir: Path, json_path: Path | None, *, extra: tuple[str, ...] = ()) -> list[Path]:
    """Check that nothing would be overwritten, then create ``out_dir``; returns the folders made."""
    from igikit.workflows.mrgrt.workflow import AUDIT_FILE, SESSION_FILE

    refuse_existing(out_dir, (SESSION_FILE, AUDIT_FILE, REPORT_FILE, *extra))
    if json_path is not None:
        if not json_path.parent.is_dir():
            raise InputError("output folder does not exist", json_path.parent)
        if json_path.is_dir():
            raise InputError("is a folder, not a JSON file name", json_path)
    return make_dirs(out_dir)


def _execute(
    case: CineCase,
    label: Any,
    settings: GatingSettings,
    *,
    out_dir: Path,
    fast: bool,
    max_frames: int | None,
    json_path: Path | None,
    supervision: SupervisionSettings,
    session: SupervisedSession | None = None,
    stop: threading.Event | None = None,
    created: list[Path] | None = None,
    on_workflow: Callable[[GatingWorkflow], None] | None = None,
) -> Path:
    """Run, evaluate and report; on any failure remove every file and folder this run made.

    With ``session`` (served in the console) the audit log belongs to the caller and is kept.
    """
    from igikit.workflows.mrgrt.progress import GatingProgress
    from igikit.workflows.mrgrt.report import summary, write_json, write_report
    from igikit.workflows.mrgrt.workflow import evaluate, run_gating

    report_path = out_dir / REPORT_FILE
    if created is None:
        created = _prepare_out_dir(out_dir, json_path)
    n = case.n_frames if max_frames is None else min(max_frames, case.n_frames)
    made: list[Path] = []
    try:
        run = run_gating(
            case, settings, out_dir, first_label=label, fast=fast, max_frames=max_frames,
            sinks=[GatingProgress(n)], supervision=supervision, session=session, stop=stop, on_workflow=on_workflow,
        )
        made += [p for p in (run.session_path, run.audit_path if session is None else None) if p is not None]
        outcome = evaluate(run)
        facts = summary(run, outcome)
        facts["report"] = str(report_path)
        made.append(write_report(report_path, run, outcome, facts))
        if json_path is not None:
            made.append(write_json(json_path, facts))
    except BaseException:
        remove_outputs(made, created)
        raise
    _print_summary(facts, run.settings.latency_ms)
    return report_path


def _print_summary(facts: dict[str, Any], latency_ms: float) -> None:
    m = facts["metrics"]
    bo = m["beam_off_latency"]
    rate = facts["frame_rate_hz"]

    def f(v: float | None, digits: int = 1) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}"

    ref = "truth labels" if m["reference"] == "truth" else "tracked positions (the case has no truth labels)"
    mode = "at the native frame rate" if facts["realtime"] else "as fast as possible"
    print(
        f"{facts['case']}: {facts['frames_replayed']} frames ({f(rate, 2)} Hz) replayed {mode}; "
        f"reference: {ref}"
    )
    print(
        f"duty cycle {f(m['duty_cycle_pct'])} % | beam-on time with the target outside the window "
        f"{f(m['beam_on_outside_pct'])} %"
    )
    print(
        f"beam-off latency after the target leaves (incl. {latency_ms:g} ms system latency): median "
        f"{f(bo['median_ms'], 0)} ms, p95 {f(bo['p95_ms'], 0)} ms, max {f(bo['max_ms'], 0)} ms "
        f"({bo['exits']} exits: {bo['stopped']} stopped, {bo['already_held']} already held, "
        f"{bo['missed']} back before the beam stopped)"
    )
    print(f"{'target dose / prescription':<28} {'D98':>6} {'D2':>6}")
    for name, d in m["dose"].items():
        print(f"  {name:<26} {f(d['d98'], 3):>6} {f(d['d2'], 3):>6}")
    rmse = m["prediction_rmse_mm"]
    print(
        f"prediction RMSE at +{latency_ms:g} ms: {f(rmse['predicted'], 2)} mm "
        f"(no prediction {f(rmse['no prediction'], 2)} mm)"
        + (f"; tracking error vs truth {f(m['tracking_error_mm'], 2)} mm" if m["tracking_error_mm"] is not None else "")
    )
    dec = facts["decisions"]
    reasons = ", ".join(f"{k} {v}" for k, v in dec["by_reason"].items())
    print(f"decisions: {dec['total']} ({dec['beam_on']} on, {dec['hold']} hold, {dec['safety']} safety): {reasons}")
    rec = facts.get("recentring") or {}
    if rec:
        final = rec["final_shift_mm"]
        print(
            f"re-centring: {len(rec['proposals'])} proposals, {len(rec['shifts'])} shifts took effect; window shift "
            f"at the end SI {final[0]:+.1f} mm, AP {final[1]:+.1f} mm; {len(rec['limit_holds'])} holds beyond the "
            f"{rec['config']['max_shift_mm']:g} mm limit"
        )
    lat = facts["latency"]
    e2e = lat["end_to_end_ms"]
    print(
        f"latency end-to-end median {f(e2e['median'])} ms, p99 {f(e2e['p99'])} ms; "
        f"{lat['frames_dropped']} frames dropped; deadline {f(lat['deadline_ms'], 0)} ms missed "
        f"{lat['deadline_misses']} times; source lost {lat['source_lost_events']} times"
    )
    sup = facts["supervision"]
    alerts = ", ".join(f"{k} {v}" for k, v in sup["alerts"].items()) or "none"
    modes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sup["modes"].items())
    who = "headless (alerts acknowledged automatically once their condition cleared: " \
        f"{sup['acknowledged_automatically']})" if sup["headless"] else \
        f"in the console by {', '.join(sup['people']) or 'nobody'}"
    print(
        f"supervision: autonomy level {sup['level_start']} ({sup['level_label']}), {who}; alerts: {alerts}; "
        f"beam decisions {modes}"
    )
    audit = facts["audit_log"]
    print(f"audit log: {audit['path']} ({audit['rows']} rows, {'verified' if audit['verified'] else 'NOT VERIFIED'})")
    if facts["session_file"]:
        print(f"session: {facts['session_file']}")
    print(f"report: {facts['report']}")


def _check_max_frames(max_frames: int | None) -> None:
    if max_frames is not None and max_frames < 2:
        raise InputError(f"--max-frames must be at least 2, got {max_frames}")


def run_gate(args: argparse.Namespace) -> int:
    """Run ``igikit gate`` (see :func:`register`); returns the exit code."""
    settings = _settings(args)
    supervision = _supervision(args, headless=True)
    _check_max_frames(args.max_frames)
    case, label = load_gating_case(args.case_dir, args.target)
    out_dir = args.out_dir if args.out_dir is not None else _default_out_dir(f"gate-{case.case_id}")
    _execute(
        case, label, settings, out_dir=out_dir, fast=args.fast, max_frames=args.max_frames, json_path=args.json,
        supervision=supervision,
    )
    return 0


def load_gating_case(case_dir: Path, target: str | None) -> tuple[CineCase, Any]:
    """A TrackRAD case folder and its target: the first label, or the ``--target ROW,COL,RADIUS_MM`` disc."""
    parsed = _parse_target(target) if target else None
    from igikit.io.trackrad import read_case
    from igikit.workflows.mrgrt.workflow import disc_label, spacing_rc

    case = read_case(case_dir)
    label = None
    if parsed is not None:
        label = disc_label(case.frames.shape[:2], parsed[:2], parsed[2], spacing_rc(case))
    elif case.first_label is None:
        raise InputError(
            "no targets/<case>_first_label.mha: give the target with --target ROW,COL,RADIUS_MM", case_dir
        )
    return case, label


def run_demo(args: argparse.Namespace) -> int:
    """Run ``igikit demo`` (see :func:`register`); returns the exit code."""
    if args.workflow != "mrgrt":
        module = importlib.import_module(DEMO_WORKFLOWS[args.workflow])
        return int(module.run_demo(args))
    from igikit.stream.commands import find_data_dir

    settings = _settings(args)
    supervision = _supervision(args, headless=args.no_console)
    _check_max_frames(args.max_frames)
    if not args.no_console and not 0 <= args.port < 65536:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    case_dir = find_data_dir() / DEMO_CASE
    from igikit.io.trackrad import read_case
    from igikit.workflows.mrgrt.workflow import disc_label, spacing_rc

    case = read_case(case_dir)
    row, col, radius = DEMO_TARGET
    label = disc_label(case.frames.shape[:2], (row, col), radius, spacing_rc(case))
    if args.reference == "exhale":
        from dataclasses import replace

        from igikit.workflows.mrgrt.reference import exhale_reference

        setup_frames = round(DEMO_SETUP_S * (case.frame_rate_hz or 1.0))
        ref = exhale_reference(case.frames, label, spacing_rc(case), setup_frames=setup_frames)
        print(
            f"setup phase: {setup_frames} frames ({DEMO_SETUP_S:g} s) tracked before the beam; end-exhale at "
            f"frame {ref.frame} becomes the gating reference (SI range in setup "
            f"{np.nanmax(ref.si_mm) - np.nanmin(ref.si_mm):.1f} mm)",
            flush=True,
        )
        case = replace(case, frames=case.frames[:, :, ref.frame :], first_label=None, labels=None)
        label = ref.label
    out_dir = args.out_dir if args.out_dir is not None else _default_out_dir("demo")
    n = case.n_frames if args.max_frames is None else min(args.max_frames, case.n_frames)
    mode = "as fast as possible" if args.fast else f"at its native {case.frame_rate_hz:.2f} Hz"
    line = (
        f"replaying {case_dir} ({n} of {case.n_frames} frames) {mode}: {settings.tracking_method} tracking of a "
        f"{radius:g} mm liver-vessel target at row {row:g}, col {col:g}; {settings.predictor} prediction "
        f"+{settings.latency_ms:g} ms; gating margin {settings.margin_mm:g} mm, threshold "
        f"{settings.threshold_pct:g} %; writing to {out_dir}/"
    )
    if args.no_console:
        print(line, flush=True)
        _execute(
            case, label, settings, out_dir=out_dir, fast=args.fast, max_frames=args.max_frames, json_path=None,
            supervision=supervision,
        )
        return 0
    return serve_gating(
        case, label, settings, supervision, out_dir=out_dir, fast=args.fast, max_frames=args.max_frames,
        port=args.port, demo=True, start_line=line,
    )


class LiveTrack:
    """The served run's tracking operator once the workflow is built (``run_gating(on_workflow=...)``):
    its live tracker and the stream frame ids of the tracker's frames, for explanations on request."""

    def __init__(self) -> None:
        self.track: TrackTarget | None = None

    def attach(self, workflow: GatingWorkflow) -> None:
        """Follow ``workflow``'s tracking operator."""
        self.track = workflow.track

    def tracker(self) -> Any:
        """The live tracker (None before the first frame)."""
        return None if self.track is None else self.track.tracker

    def frame_id(self, tracker_index: int) -> int | None:
        """See :meth:`TrackTarget.frame_id`."""
        return None if self.track is None else self.track.frame_id(tracker_index)

    def tracker_index(self, frame_id: int) -> int | None:
        """See :meth:`TrackTarget.tracker_index`."""
        return None if self.track is None else self.track.tracker_index(frame_id)


def serve_gating(
    case: CineCase,
    label: Any,
    settings: GatingSettings,
    supervision: SupervisionSettings,
    *,
    out_dir: Path,
    fast: bool,
    max_frames: int | None,
    port: int = 8000,
    host: str = "127.0.0.1",
    users_path: Path | None = None,
    demo: bool = False,
    start_line: str = "",
) -> int:
    """Run the supervised gating workflow on ``case`` with the web console serving its session.

    The console starts first (on ``port``, or a free one when it is taken or 0, and says so); the
    replay runs in a thread while the console serves in the foreground; the report is written when
    the replay ends, and the console keeps serving the session until Ctrl-C (which also ends a
    replay still running, after the frame in flight).

    Parameters
    ----------
    demo
        Make a demo user (physicist, random password, printed) in a users file inside ``out_dir``
        instead of using the install's users (``users_path``, default ``~/.igikit/users.db``).
    """
    from igikit.console.app import create_app
    from igikit.console.server import DEMO_USER, console_access, serve_while
    from igikit.supervise.audit import AuditLog
    from igikit.workflows.mrgrt.workflow import AUDIT_FILE, open_session

    _prepare_out_dir(out_dir, None, extra=(DEMO_USERS_FILE, DEMO_SECRET_FILE) if demo else ())
    access = console_access(host, port, demo_dir=out_dir if demo else None, users_path=users_path)
    store = access.store
    audit = AuditLog(out_dir / AUDIT_FILE)
    session = open_session(audit, supervision, settings=settings)
    stop = threading.Event()
    title = f"live gating: {case.case_id} (autonomy starts at {supervision.level})"
    live = LiveTrack()
    explainer = None
    if settings.tracking_method in EXPLAINED_METHODS:
        from igikit.ai.evidence import ExplanationService

        explainer = ExplanationService(live.tracker, session, out_dir / EVIDENCE_DIR, frame_ids=live)
    unavailable = (
        "" if explainer is not None else
        f"explanations need --method ai or ensemble_ai (this run tracks with {settings.tracking_method})"
    )
    app = create_app(session, store, secret=access.secret, title=title, on_shutdown=stop.set, explainer=explainer,
                     explain_unavailable=unavailable)
    role = f"{DEMO_USER[1]}: acknowledges, pauses, vetoes, changes the autonomy level; users file {store.path}"
    server = access.server(app, audit_path=out_dir / AUDIT_FILE, login_note=role)
    if start_line:
        print(start_line, flush=True)
    def replay() -> None:
        try:
            _execute(
                case, label, settings, out_dir=out_dir, fast=fast, max_frames=max_frames, json_path=None,
                supervision=supervision, session=session, stop=stop, created=[], on_workflow=live.attach,
            )
        except InputError as exc:
            if not stop.is_set():
                raise
            print(f"replay stopped early; no report: {exc}", flush=True)  # Ctrl-C before there was enough to report

    # explainers finish an explanation in flight first: it logs to the audit log closed next
    close = ([explainer.close] if explainer is not None else []) + [audit.close, store.close]
    return serve_while(server, replay, what="gating run", stop=stop, close=close)
