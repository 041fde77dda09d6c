"""Benchmark: per-frame latency of tracking, and of the whole tracking + prediction + gating decision.

On 270 x 270 frames (the ETH-Zurich-4D-MRI-based cases of a phantom set, ``igikit.sim.cine``;
built with :func:`igikit.sim.make_phantom_set` when the folder is missing), every method tracks
every frame in one process, one case after the other, methods interleaved case by case so that
machine load hits them alike; ``copy`` (the cheapest possible method: one NCC) is measured in the
same run and each method's median is divided by it. Then the full per-frame decision path, timed
as one block: the ensemble tracker's update, an online motion predictor per axis on the tracked
centroid (``make_predictor('online', horizon_s)``: update with the new position, predict at the
horizon), the predicted target (the tracked mask moved by the predicted displacement) and the
gating decision (``Gate.decide``).

Targets (issue 3): tracking median <= 30 ms and p99 <= 60 ms per frame; tracking + prediction +
gating p99 <= 80 ms, on a 2-core machine.

Usage::

    .venv/bin/python bench/mrgrt_latency.py [--set out/phantoms-seed0] [--seed 0] [--horizon-ms 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from igikit.io.trackrad import read_case
from igikit.workflows.mrgrt.gating import Gate
from igikit.workflows.mrgrt.prediction import make_predictor
from igikit.workflows.mrgrt.tracking import TRACKERS, make_tracker

ROOT = Path(__file__).resolve().parents[1]


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(a.max()), "n": int(a.size)}


def _moved(mask: np.ndarray, shift_rc: tuple[float, float]) -> np.ndarray:
    m = np.array([[1, 0, shift_rc[1]], [0, 1, shift_rc[0]]], dtype=np.float32)
    h, w = mask.shape
    return cv2.warpAffine(mask.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR) >= 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=ROOT / "out" / "phantoms-seed0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(TRACKERS), choices=list(TRACKERS))
    parser.add_argument("--horizon-ms", type=float, default=300.0, help="prediction horizon (system latency)")
    parser.add_argument("--max-cases", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not (args.set / "cases.json").is_file():
        from igikit.sim import make_phantom_set

        print(f"building phantom set {args.set} (seed {args.seed}) ...", file=sys.stderr)
        make_phantom_set(args.set, seed=args.seed)
    index = json.loads((args.set / "cases.json").read_text())
    folders = [args.set / e["folder"] for e in index["cases"]
               if tuple(e["derived"]["shape_numpy_HWT"][:2]) == (270, 270)][: args.max_cases]
    if not folders:
        sys.exit(f"no 270 x 270 cases in {args.set}")
    methods = list(dict.fromkeys(["copy", *args.methods]))
    lat: dict[str, list[float]] = {m: [] for m in methods}
    path_ms: list[float] = []
    track_part: list[float] = []
    horizon_s = args.horizon_ms / 1e3
    frames_total = 0
    for folder in folders:
        case = read_case(folder)
        spacing = (case.pixel_spacing_mm[1], case.pixel_spacing_mm[0])
        assert case.first_label is not None
        frames = [np.ascontiguousarray(case.frames[:, :, t]) for t in range(case.frames.shape[2])]
        frames_total += len(frames) - 1
        for m in methods:
            tracker = make_tracker(m)
            tracker.start(frames[0], case.first_label, spacing)
            for f in frames[1:]:
                tic = time.perf_counter()
                tracker.update(f)
                lat[m].append((time.perf_counter() - tic) * 1e3)
        # The full decision path with the ensemble.
        tracker = make_tracker("ensemble")
        tracker.start(frames[0], case.first_label, spacing)
        predictors = [make_predictor("online", horizon_s) for _ in range(2)]
        gate = Gate(case.first_label, spacing)
        dt = 1.0 / float(case.frame_rate_hz or 6.0)
        for t, f in enumerate(frames[1:], start=1):
            tic = time.perf_counter()
            r = tracker.update(f)
            tock = time.perf_counter()
            shift = []
            for axis, p in enumerate(predictors):
                p.update(t * dt, r.centroid_mm[axis])
                pred = p.predict(horizon_s)
                shift.append((pred - r.centroid_mm[axis]) / spacing[axis] if np.isfinite(pred) else 0.0)
            gate.decide(_moved(r.mask, (shift[0], shift[1])), confidence=r.confidence, frame_age_ms=0.0)
            path_ms.append((time.perf_counter() - tic) * 1e3)
            track_part.append((tock - tic) * 1e3)

    copy_p50 = _stats(lat["copy"])["p50"]
    print(f"{len(folders)} cases of 270 x 270 from {args.set.name}, {frames_total} frames per method; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average at the end {os.getloadavg()[0]:.1f}, OpenCV threads {cv2.getNumThreads()}\n")
    print("| measurement | median ms | p95 ms | p99 ms | max ms | median / copy |")
    print("|---|---|---|---|---|---|")
    out: dict[str, dict[str, float]] = {}
    for m in methods:
        s = _stats(lat[m])
        out[m] = s
        print(f"| tracking: {m} | {s['p50']:.2f} | {s['p95']:.2f} | {s['p99']:.2f} | {s['max']:.2f} | "
              f"{s['p50'] / copy_p50:.1f} |")
    s = _stats(path_ms)
    out["decision_path"] = s
    tp = _stats(track_part)
    print(f"| decision path: ensemble + online prediction (2 axes, {args.horizon_ms:.0f} ms) + gate | "
          f"{s['p50']:.2f} | {s['p95']:.2f} | {s['p99']:.2f} | {s['max']:.2f} | {s['p50'] / copy_p50:.1f} |")
    print(f"\n(tracking part of the decision path: median {tp['p50']:.2f} ms, p99 {tp['p99']:.2f} ms; "
          f"targets: tracking median <= 30 / p99 <= 60 ms, decision path p99 <= 80 ms)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
