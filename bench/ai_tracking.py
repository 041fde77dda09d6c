"""Patient-specific AI tracking on the cine phantom sets and on the real unlabelled cine series.

For every phantom case: copy, template, registration, the default ensemble (template +
registration) and ``ensemble_ai`` (template + registration + ai, fused by
:class:`igikit.ai.fusion.AIEnsembleTracker`). The ``ai`` method's own results are recorded inside
that ensemble run (the member is exactly the standalone ``ai`` tracker, quality control included),
so its network is trained once per case. A paired comparison per case (``ensemble_ai`` minus each
single method: mean difference, its standard error across cases, cases won) says whether the
ensemble's margin exceeds the case-to-case noise. Metrics:
TrackRAD2025 DSC, HD95, centroid error over every frame but the first (the learning phase
included: there ``ai`` is the registration tracker) and over the frames after the learning phase
only; per-frame latency; training time; per-frame confidence records for calibration.

Calibration: the ``ai`` per-frame confidence against per-frame success (DSC >= 0.85), isotonic
regression fitted on the first set given and the expected calibration error reported on the
others (and raw on all).

Real data: forward-backward consistency (``igikit.workflows.mrgrt.tracking.forward_backward``) on
the magdeburg_liver and eth_thorax cine series, targets as in the cine workflow's benchmark.

Usage::

    .venv/bin/python bench/ai_tracking.py out/phantoms-seed1 out/phantoms-seed2 --json out/bench-ai.json
    .venv/bin/python bench/ai_tracking.py --real --json out/bench-ai-real.json
    .venv/bin/python bench/ai_tracking.py --explain-load out/phantoms-seed1/SIM_001 --json out/bench-ai-explain.json
    .venv/bin/python bench/ai_tracking.py --report out/bench-ai-s1.json out/bench-ai-s2.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SUCCESS_DSC = 0.85
METHODS = ("copy", "template", "registration", "ensemble", "ai", "ensemble_ai")


def _scores(pred_hwt: np.ndarray, truth_hwt: np.ndarray, spacing: tuple[float, float], start: int) -> dict[str, Any]:
    from igikit.workflows.mrgrt.metrics import evaluate_sequence

    ev = evaluate_sequence(pred_hwt, truth_hwt, spacing)
    keep = {k: ev[f"mean_{k}"] for k in ("dsc", "hd95", "centroid_mm")}
    after = [t for t in range(start, truth_hwt.shape[2]) if ev["dsc"][t] is not None]
    for k in ("dsc", "hd95", "centroid_mm"):
        keep[f"{k}_after"] = float(np.mean([ev[k][t] for t in after])) if after else None
    keep["dsc_per_frame"] = ev["dsc"]
    return keep


def run_case(folder: Path, learning_frames: int) -> dict[str, Any]:
    from igikit.ai.tracker import ai_ensemble
    from igikit.io.trackrad import read_case
    from igikit.workflows.mrgrt.tracking import track_sequence

    case = read_case(folder)
    spacing = (case.pixel_spacing_mm[1], case.pixel_spacing_mm[0])
    truth = case.labels
    assert truth is not None
    label0 = truth[:, :, 0]
    out: dict[str, Any] = {"case": case.case_id, "frames": int(truth.shape[2]), "methods": {}}
    for method in ("copy", "template", "registration", "ensemble"):
        seq = track_sequence(case.frames, label0, spacing, method)
        out["methods"][method] = {**_scores(seq.labels, truth, spacing, learning_frames),
                                  "latency_ms": seq.latency_ms[1:].tolist()}
    ens = ai_ensemble(learning_frames=learning_frames)
    ai = ens.ai
    ai_results, ai_ms = [], []

    def keep_ai(t: int, total: int) -> None:  # after each update: the AI member's own result and time
        ai_results.append(ens.last_members[2])
        ai_ms.append(ens.last_member_ms["ai"])

    seq = track_sequence(case.frames, label0, spacing, ens, progress=keep_ai)
    out["methods"]["ensemble_ai"] = {**_scores(seq.labels, truth, spacing, learning_frames),
                                     "latency_ms": seq.latency_ms[1:].tolist(),
                                     "confidence": seq.confidence[1:].tolist()}
    ai_labels = np.zeros_like(truth)
    ai_labels[:, :, 0] = label0
    for t, r in enumerate(ai_results, start=1):
        ai_labels[:, :, t] = r.mask
    scores = _scores(ai_labels, truth, spacing, learning_frames)
    out["methods"]["ai"] = {
        **scores,
        "latency_ms": ai_ms,
        "network_ms": [r.details.get("network_ms") for r in ai_results if "network_ms" in r.details],
        "confidence": [r.confidence for r in ai_results],
        "details": [dict(r.details) for r in ai_results],
        "train_time_s": ai.train_time_s,
        "train_steps": ai.model.steps if ai.model is not None else 0,
        "switch_frame": ai.switch_frame,
    }
    return out


def run_set(folder: Path, learning_frames: int, progress: bool = True) -> list[dict[str, Any]]:
    cases = json.loads((folder / "cases.json").read_text())["cases"]
    results = []
    for i, c in enumerate(cases):
        tic = time.perf_counter()
        r = run_case(folder / c["folder"], learning_frames)
        r["set"] = str(folder)
        results.append(r)
        if progress:
            m = r["methods"]
            print(f"[{i + 1}/{len(cases)}] {folder.name}/{r['case']}: " + "  ".join(
                f"{k} {m[k]['dsc']:.3f}" for k in METHODS) + f"  train {m['ai']['train_time_s']:.1f} s"
                f"  ({time.perf_counter() - tic:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)
    return results


# ---- reporting ------------------------------------------------------------------------------
def _fmt(v: float | None, nd: int = 3) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| method | DSC | HD95 (mm) | centroid (mm) | DSC after learning | centroid after learning (mm) "
             "| latency p50 / p95 (ms) |", "|---|---|---|---|---|---|---|"]
    for m in METHODS:
        rows = [r["methods"][m] for r in results]
        lat = np.concatenate([np.asarray(x["latency_ms"], float) for x in rows])
        if m == "ai":  # the network phase only; the learning phase is the registration tracker's
            lat = np.concatenate([np.asarray(x["latency_ms"], float)[x["switch_frame"]:] for x in rows
                                  if x["switch_frame"] > 0])
        def mean(k: str, rows: list[dict[str, Any]] = rows) -> float:
            return float(np.mean([x[k] for x in rows if x[k] is not None]))

        lines.append(f"| {m} | {mean('dsc'):.3f} | {mean('hd95'):.2f} | {mean('centroid_mm'):.2f} "
                     f"| {mean('dsc_after'):.3f} | {mean('centroid_mm_after'):.2f} "
                     f"| {np.percentile(lat, 50):.1f} / {np.percentile(lat, 95):.1f} |")
    ai = [r["methods"]["ai"] for r in results]
    net = np.concatenate([np.asarray(x["network_ms"], float) for x in ai])
    train = np.array([x["train_time_s"] for x in ai])
    lines.append("")
    lines.append(f"ai network inference (window crop + ONNX Runtime, 3 heads x 2 TTA passes, post-processing): "
                 f"median {np.median(net):.1f} ms, p95 {np.percentile(net, 95):.1f} ms over {net.size} frames; "
                 f"training time per case median {np.median(train):.1f} s, max {train.max():.1f} s "
                 f"(steps: median {int(np.median([x['train_steps'] for x in ai]))}).")
    lines.append("")
    lines.append(paired(results))
    return "\n".join(lines)


def paired(results: list[dict[str, Any]], method: str = "ensemble_ai") -> str:
    """``method`` minus every other method, case by case: mean, standard error across cases, wins."""
    lines = [f"Paired per case, {method} minus each method (mean difference ± its standard error across "
             f"{len(results)} cases; cases where {method} is better):", "",
             "| vs | ΔDSC | cases better (DSC) | Δcentroid (mm) | cases better (centroid) |", "|---|---|---|---|---|"]
    for m in METHODS:
        if m == method:
            continue
        dd = np.array([r["methods"][method]["dsc"] - r["methods"][m]["dsc"] for r in results])
        dc = np.array([r["methods"][method]["centroid_mm"] - r["methods"][m]["centroid_mm"] for r in results])
        se_d, se_c = (float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan") for x in (dd, dc))
        lines.append(f"| {m} | {dd.mean():+.4f} ± {se_d:.4f} | {int((dd > 0).sum())}/{dd.size} "
                     f"| {dc.mean():+.3f} ± {se_c:.3f} | {int((dc < 0).sum())}/{dc.size} |")
    return "\n".join(lines)


def _frame_records(results: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(raw confidence, success) of every scored AI frame after the learning phase."""
    conf, ok = [], []
    for r in results:
        ai = r["methods"]["ai"]
        for d, dsc in zip(ai["details"], ai["dsc_per_frame"][1:], strict=True):
            if dsc is None or d.get("learning", 0.0) >= 0.5:
                continue
            conf.append(d.get("raw_confidence", 0.0))
            ok.append(dsc >= SUCCESS_DSC)
    return np.asarray(conf, float), np.asarray(ok, float)


def calibration_report(fit: list[dict[str, Any]], test: list[dict[str, Any]]) -> str:
    from igikit.ai.calibration import IsotonicCalibrator, expected_calibration_error

    c_fit, y_fit = _frame_records(fit)
    c_test, y_test = _frame_records(test)
    cal = IsotonicCalibrator().fit(c_fit, y_fit)
    calibrated = cal.predict(c_test)
    return (f"Per-frame success = DSC >= {SUCCESS_DSC} (AI frames after the learning phase). Fitted on "
            f"{c_fit.size} frames ({y_fit.mean():.1%} successes), reported on {c_test.size} frames "
            f"({y_test.mean():.1%} successes). ECE (10 equal-width bins): raw confidence "
            f"{expected_calibration_error(c_test, y_test):.3f}, after isotonic calibration "
            f"{expected_calibration_error(calibrated, y_test):.3f}; Brier score raw "
            f"{np.mean((c_test - y_test) ** 2):.3f}, calibrated {np.mean((calibrated - y_test) ** 2):.3f}.")


def run_real(learning_frames: int) -> list[dict[str, Any]]:
    from igikit.io.trackrad import read_case
    from igikit.workflows.mrgrt.tracking import forward_backward

    data = Path(os.environ.get("IGIKIT_DATA", ROOT.parent / "shared" / "data")) / "cine"
    targets = {"magdeburg_liver": ((90, 78), 6.0), "eth_thorax": ((97, 142), 7.0)}
    out = []
    for name, (center, radius_mm) in targets.items():
        case = read_case(data / name)
        spacing = (case.pixel_spacing_mm[1], case.pixel_spacing_mm[0])
        h, w, _ = case.frames.shape
        rr, cc = np.indices((h, w))
        label0 = (np.hypot((rr - center[0]) * spacing[0], (cc - center[1]) * spacing[1]) <= radius_mm).astype(np.uint8)
        for method in ("registration", "ensemble", "ai", "ensemble_ai"):
            tic = time.perf_counter()
            fb = forward_backward(case.frames, label0, spacing, method)
            lat = fb.forward.latency_ms[1:]
            row = {"case": name, "method": method, "end_dsc": fb.end_dsc, "mean_dsc": fb.mean_dsc,
                   "latency_p50_ms": float(np.median(lat)), "latency_p95_ms": float(np.percentile(lat, 95)),
                   "wall_s": time.perf_counter() - tic}
            print(row, flush=True)
            out.append(row)
    return out


def run_latency(folder: Path, learning_frames: int, repeats: int = 300) -> list[dict[str, Any]]:
    """Network time per frame (window crop, ONNX Runtime, TTA, post-processing) on one case's frames,
    for 1 and 2 ONNX Runtime threads, after training on its learning phase."""
    from igikit.ai.runtime import OnnxModel
    from igikit.ai.tracker import AITracker
    from igikit.io.trackrad import read_case
    from igikit.workflows.mrgrt.tracking import track_sequence

    case = read_case(folder)
    spacing = (case.pixel_spacing_mm[1], case.pixel_spacing_mm[0])
    assert case.labels is not None
    tracker = AITracker(learning_frames)
    track_sequence(case.frames[:, :, : learning_frames + 1], case.labels[:, :, 0], spacing, tracker)
    assert tracker.model is not None
    rows = []
    for threads in (1, 2):
        tracker.runtime = OnnxModel(tracker.model.onnx, tracker.model.card, threads=threads)
        times = []
        for i in range(repeats):
            frame = case.frames[:, :, learning_frames + i % (case.frames.shape[2] - learning_frames)]
            tic = time.perf_counter()
            tracker._segment(np.asarray(frame, np.float32))
            times.append((time.perf_counter() - tic) * 1e3)
        row = {"case": case.case_id, "frame": list(case.frames.shape[:2]), "threads": threads,
               "median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)),
               "load": round(os.getloadavg()[0], 1)}
        print(row, flush=True)
        rows.append(row)
    return rows


def run_explain_load(folder: Path, learning_frames: int, rounds: int = 6) -> list[dict[str, Any]]:
    """Tracking latency (``AITracker.update``) with and without explanations being computed beside it.

    After training on the case's learning phase, the rest of the case is tracked ``rounds`` times
    in each condition, alternating, each frame given at the case's frame rate (as from the
    scanner): none, then an :class:`~igikit.ai.evidence.ExplanationService` asked for a new
    occlusion map as soon as the last one is logged (a supervisor clicking "Explain" without
    pause, the worst case).
    """
    import tempfile
    import threading

    from igikit.ai.evidence import ExplanationService
    from igikit.ai.tracker import AITracker
    from igikit.io.trackrad import read_case
    from igikit.supervise import AuditLog, SupervisedSession
    from igikit.workflows.mrgrt.tracking import track_sequence

    case = read_case(folder)
    spacing = (case.pixel_spacing_mm[1], case.pixel_spacing_mm[0])
    assert case.labels is not None
    tracker = AITracker(learning_frames)
    track_sequence(case.frames[:, :, : learning_frames + 1], case.labels[:, :, 0], spacing, tracker)
    rest = [np.asarray(case.frames[:, :, t], np.float32) for t in range(learning_frames + 1, case.frames.shape[2])]
    times: dict[str, list[float]] = {"none": [], "explaining": []}
    explain_ms: list[float] = []
    period_s = 1.0 / float(case.frame_rate_hz or 8.0)
    with tempfile.TemporaryDirectory() as tmp:
        audit = AuditLog(Path(tmp) / "audit.db")
        session = SupervisedSession(audit, workflow="mrgrt", session_id="bench")
        service = ExplanationService(tracker, session, Path(tmp) / "evidence")
        for _ in range(rounds):
            for condition in ("none", "explaining"):
                stop = threading.Event()

                def ask(stop: threading.Event = stop) -> None:
                    while not stop.is_set():
                        tic = time.perf_counter()
                        service.request().result()
                        explain_ms.append((time.perf_counter() - tic) * 1e3)

                asker = threading.Thread(target=ask, daemon=True) if condition == "explaining" else None
                start = time.perf_counter()
                for i, frame in enumerate(rest):
                    if asker is not None and i == 1:  # the tracker has a network view by now
                        asker.start()
                    wait = start + i * period_s - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    tic = time.perf_counter()
                    tracker.update(frame)
                    times[condition].append((time.perf_counter() - tic) * 1e3)
                stop.set()
                if asker is not None:
                    asker.join()
        service.close()
        audit.close()
    base = np.asarray(times["none"])
    rows = []
    for condition, values in times.items():
        v = np.asarray(values)
        row = {"case": case.case_id, "condition": condition, "frames": int(v.size),
               "median_ms": float(np.median(v)), "p95_ms": float(np.percentile(v, 95)),
               "p99_ms": float(np.percentile(v, 99)), "median_ratio": float(np.median(v) / np.median(base)),
               "explanations": len(explain_ms) if condition == "explaining" else 0,
               "explanation_median_ms": float(np.median(explain_ms)) if explain_ms and condition != "none" else None,
               "load": round(os.getloadavg()[0], 1)}
        print(row, flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="*", type=Path, help="phantom set folders (with cases.json)")
    ap.add_argument("--learning-frames", type=int, default=30)
    ap.add_argument("--real", action="store_true", help="forward-backward on the real cine series")
    ap.add_argument("--latency", type=Path, help="network latency on this case folder (1 and 2 threads)")
    ap.add_argument("--explain-load", type=Path, metavar="CASE",
                    help="tracking latency on this case folder with and without explanations computed beside it")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    ap.add_argument("--report", nargs="+", type=Path, help="print tables from earlier --json files "
                    "(calibration fitted on the first, reported on the rest)")
    args = ap.parse_args(argv)
    if args.report:
        loaded = [json.loads(p.read_text()) for p in args.report]
        every = [r for d in loaded for r in d["phantoms"]]
        print(f"{len(every)} cases, load average at the end of the runs: "
              + ", ".join(str(d.get("load_average")) for d in loaded))
        print(table(every))
        print()
        print(calibration_report(loaded[0]["phantoms"], [r for d in loaded[1:] for r in d["phantoms"]]))
        for d in loaded:
            for row in d.get("real", []):
                print(row)
        return 0
    result: dict[str, Any] = {"learning_frames": args.learning_frames, "phantoms": [], "real": []}
    for folder in args.sets:
        result["phantoms"].extend(run_set(folder, args.learning_frames))
    if result["phantoms"]:
        print(table(result["phantoms"]))
    if args.real:
        result["real"] = run_real(args.learning_frames)
    if args.latency:
        result["latency"] = run_latency(args.latency, args.learning_frames)
    if args.explain_load:
        result["explain_load"] = run_explain_load(args.explain_load, args.learning_frames)
    result["load_average"] = [round(v, 1) for v in os.getloadavg()]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
