"""``igikit predict``: latency-compensating respiratory motion prediction on a breathing trace."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from igikit.errors import InputError
from igikit.io.atomic import atomic_path
from igikit.io.respiration import clean_trace, read_trace
from igikit.workflows.mrgrt.prediction import (
    METHODS,
    evaluate,
    make_predictor,
    resolve_method,
    run_predictor,
)

__all__ = ["register", "run_predict"]


def register(sub: Any) -> None:
    """Add the ``predict`` command to the ``igikit`` sub-parsers."""
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
