"""``igikit track``: TrackRAD2025-style tumour tracking of a cine-MRI file (public contract)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from igikit.errors import InputError
from igikit.io.atomic import atomic_path

# Kept in step with igikit.workflows.mrgrt.tracking.TRACKERS (a test checks it); importing the
# trackers here would load OpenCV and SciPy for every igikit command, not only for `track`.
METHODS = ("copy", "ensemble", "registration", "template", "ai", "ensemble_ai")


def latency_summary(latency_ms: np.ndarray) -> dict[str, float]:
    """Median, p95, p99, max and mean of per-frame latencies (ms)."""
    lat = np.asarray(latency_ms, dtype=np.float64)
    if lat.size == 0:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(lat.max()),
            "mean": float(lat.mean())}


def _scanned_region(frames_path: Path) -> str | None:
    # A frames file inside a TrackRAD case folder: CASE/images/CASE_frames.mha
    region_file = frames_path.parent.parent / "scanned-region.json"
    if region_file.is_file():
        try:
            return str(json.loads(region_file.read_text()))
        except json.JSONDecodeError:
            return None
    return None


def _write_labels(path: Path, labels_hwt: np.ndarray, frames_path: Path) -> None:
    import SimpleITK as sitk

    ref = sitk.ReadImage(str(frames_path))
    out = sitk.GetImageFromArray(np.ascontiguousarray(labels_hwt.astype(np.uint8)))
    out.CopyInformation(ref)
    with atomic_path(path) as tmp:
        sitk.WriteImage(out, str(tmp), useCompression=True)


def _run(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from igikit.io.trackrad import read_frames, read_label, read_labels
    from igikit.workflows.mrgrt.metrics import evaluate_sequence
    from igikit.workflows.mrgrt.tracking import track_sequence

    frames_path = Path(args.frames)
    frames, (dx, dy) = read_frames(frames_path)
    h, w, t_total = frames.shape
    label0 = read_label(args.first_label, (h, w))
    truth = read_labels(args.truth, (h, w, t_total)) if args.truth else None
    out = Path(args.out)
    if not out.parent.is_dir():
        raise InputError("output folder does not exist", out.parent)
    spacing_rc = (dy, dx)
    with Progress(transient=True, disable=args.quiet) as bar:
        task = bar.add_task(f"tracking ({args.method})", total=t_total - 1)
        result = track_sequence(frames, label0, spacing_rc, args.method,
                                progress=lambda t, n: bar.update(task, completed=t))
    lat = latency_summary(result.latency_ms[1:])
    metrics: dict[str, Any] = {
        "frames": int(t_total),
        "method": args.method,
        "pixel_spacing_mm": [dx, dy],
        "latency_ms": lat,
        "latency_per_frame_ms": [round(float(v), 4) for v in result.latency_ms],
        "confidence": [round(float(c), 4) for c in result.confidence],
    }
    if truth is not None:
        region = args.region or _scanned_region(frames_path)
        metrics.update(evaluate_sequence(result.labels, truth, spacing_rc, scanned_region=region))
    _write_labels(out, result.labels, frames_path)
    if args.metrics:
        with atomic_path(args.metrics) as tmp:
            tmp.write_text(json.dumps(metrics, indent=1))
    print(f"tracked {t_total} frames of {h} x {w} with '{args.method}' -> {out}")
    print(f"latency per frame (ms): median {lat['p50']:.2f}  p95 {lat['p95']:.2f}  "
          f"p99 {lat['p99']:.2f}  max {lat['max']:.2f}")
    print(f"confidence: mean {np.mean(result.confidence[1:]):.3f}  min {np.min(result.confidence[1:]):.3f}")
    if truth is not None:
        print(f"vs truth (frame 0 excluded): DSC {metrics['mean_dsc']:.3f}  HD95 {metrics['mean_hd95']:.2f} mm  "
              f"MASD {metrics['mean_msd']:.2f} mm  centroid {metrics['mean_centroid_mm']:.2f} mm  "
              f"dose D98 decrease {metrics['dose_d98_decrease_pct']:.2f} %")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``igikit track``."""
    p = sub.add_parser(
        "track",
        help="track a tumour through a cine-MRI series (TrackRAD2025 format)",
        description="Propagate the first-frame target label through every frame, causally. Frames: a "
        "3D .mha whose NumPy array is (H, W, T), time last; the label (H, W) or (H, W, 1), 1 inside.",
    )
    p.add_argument("frames", help="FRAMES.mha, NumPy (H, W, T)")
    p.add_argument("--first-label", required=True, help="LABEL.mha of frame 0, uint8, 1 inside")
    p.add_argument("--out", required=True, help="LABELS.mha to write, uint8 (H, W, T)")
    p.add_argument("--metrics", help="write metrics JSON (latency, confidence, and accuracy with --truth)")
    p.add_argument("--truth", help="true LABELS.mha (H, W, T): report DSC, HD95, MASD, centroid, dose metric")
    p.add_argument("--method", default="ensemble", choices=METHODS, help="tracking method")
    p.add_argument("--region", help="scanned region for the dose metric's blur (lung/thorax: 6 mm)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
