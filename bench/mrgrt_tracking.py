"""Benchmark: cine-MRI tumour tracking on phantoms built from real anatomy, and on real cine.

Every method runs causally on every case of a phantom set (``igikit.sim.cine``: a target placed
into real frames of the OvGU Magdeburg liver cine and the ETH Zurich 4D-MRI, moved by real
breathing traces of Krilavicius et al. 2013, CC BY 4.0; the set is built with
:func:`igikit.sim.make_phantom_set` when its folder is missing) and is scored with the TrackRAD2025
metrics (:func:`igikit.workflows.mrgrt.metrics.evaluate_sequence`, frame 0 excluded). Reported per
method: mean DSC, HD95, MASD, centroid error (mm) and TrackRAD dose metric (relative D98 decrease,
%) over cases, the worst single-frame DSC over the set, per-frame latency p50 / p99 over all
frames, and how informative the confidence is: the Spearman correlation between per-frame
confidence and centroid error (negative = confidence falls as the error grows), the share of
frames with a centroid error > 3 mm that have confidence < 0.5, and the mean confidence on the
corrupted frames (ghosting, noise bursts) against the clean ones. Then mean DSC / centroid per bin
of the case parameters (``cases.json``): contrast, radius, amplitude, profile.

On the real unlabelled sequences (whole sequences; targets checked on frame 0: a 6 mm-radius disc
on the liver vessel at row 90, col 78 of ``magdeburg_liver``; a 7 mm-radius disc on the round
aortic structure at row 97, col 142 of ``eth_thorax``, whose frames jump by up to 15 px) it reports
per-frame speed and forward-backward consistency (:func:`~igikit.workflows.mrgrt.tracking.forward_backward`:
track to the end and back; ``end_dsc`` = Dice of the returned mask with the first label,
``mean_dsc`` = mean Dice of the forward and backward masks per frame).

Usage::

    .venv/bin/python bench/mrgrt_tracking.py --set out/phantoms-seed0 --seed 0 [--methods copy ensemble]
        [--jobs 2] [--no-real] [--json OUT.json]

``--jobs`` > 1 runs cases in parallel processes: faster, but the latencies then include the
processes competing for the cores; measure latency with ``--jobs 1`` (or bench/mrgrt_latency.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
METHODS = ("copy", "template", "registration", "ensemble")
#: Real unlabelled cine cases: (folder, target centre (row, col) px, radius mm).
REAL_TARGETS = {"magdeburg_liver": ((90, 78), 6.0), "eth_thorax": ((97, 142), 7.0)}
CITATION = (
    "Data: phantoms from `igikit.sim.cine` on real frames of the OvGU Magdeburg liver cine and the ETH Zurich "
    "4D-MRI (both via pohl-michel/2D-MR-image-prediction, BSD-3), moved by real breathing traces "
    "(Krilavicius et al. 2013/2015, CC BY 4.0); real cine: the same two sequences, unlabelled."
)


def _disc(shape: tuple[int, int], centre_rc: tuple[int, int], radius_mm: float,
          spacing_rc: tuple[float, float]) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    d2 = ((rows - centre_rc[0]) * spacing_rc[0]) ** 2 + ((cols - centre_rc[1]) * spacing_rc[1]) ** 2
    return (d2 <= radius_mm**2).astype(np.uint8)


def run_case(folder: str, method: str) -> dict[str, Any]:
    """Track one phantom case with one method; metrics, per-frame confidence, errors and latency."""
    from igikit.io.trackrad import read_case
    from igikit.workflows.mrgrt.metrics import evaluate_sequence
    from igikit.workflows.mrgrt.tracking import track_sequence

    case = read_case(folder)
    spacing = (case.pixel_spacing_mm[1], case.pixel_spacing_mm[0])  # (row, col) mm
    assert case.first_label is not None and case.labels is not None
    res = track_sequence(case.frames, case.first_label, spacing, method)
    m = evaluate_sequence(res.labels, case.labels, spacing, scanned_region=case.scanned_region)
    dsc = [v for v in m["dsc"] if v is not None]
    return {
        "case_id": case.case_id,
        "method": method,
        "dsc": m["mean_dsc"],
        "hd95": m["mean_hd95"],
        "msd": m["mean_msd"],
        "centroid_mm": m["mean_centroid_mm"],
        "dose_d98_decrease_pct": m["dose_d98_decrease_pct"],
        "worst_dsc": float(min(dsc)) if dsc else float("nan"),
        "latency_ms": res.latency_ms[1:].tolist(),
        "confidence": res.confidence[1:].tolist(),
        "frame_centroid_mm": [float("nan") if v is None else float(v) for v in m["centroid_mm"][1:]],
    }


def run_real(name: str, method: str) -> dict[str, Any]:
    """Forward-backward consistency and speed of one method on one real unlabelled cine."""
    from igikit.io.trackrad import read_case
    from igikit.workflows.mrgrt.tracking import forward_backward

    case = read_case(DATA / "cine" / name)
    spacing = (case.pixel_spacing_mm[1], case.pixel_spacing_mm[0])
    centre, radius = REAL_TARGETS[name]
    label0 = _disc(case.frames.shape[:2], centre, radius, spacing)
    fb = forward_backward(case.frames, label0, spacing, method)
    lat = np.concatenate([fb.forward.latency_ms[1:], fb.backward.latency_ms[1:]])
    return {
        "sequence": name,
        "method": method,
        "frames": int(case.frames.shape[2]),
        "shape": list(case.frames.shape[:2]),
        "end_dsc": fb.end_dsc,
        "mean_dsc": fb.mean_dsc,
        "latency_p50": float(np.percentile(lat, 50)),
        "latency_p99": float(np.percentile(lat, 99)),
        "mean_confidence": float(np.mean(fb.forward.confidence[1:])),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def summarise(rows: list[dict[str, Any]], corrupted: dict[str, list[int]]) -> dict[str, Any]:
    """Set-level numbers of one method from its per-case rows."""
    conf = np.concatenate([r["confidence"] for r in rows])
    err = np.concatenate([r["frame_centroid_mm"] for r in rows])
    lat = np.concatenate([r["latency_ms"] for r in rows])
    bad = np.isfinite(err) & (err > 3.0)
    flags = np.concatenate([
        np.isin(np.arange(1, len(r["confidence"]) + 1), corrupted.get(r["case_id"], [])) for r in rows
    ])
    return {
        "cases": len(rows),
        **{k: float(np.mean([r[k] for r in rows])) for k in
           ("dsc", "hd95", "msd", "centroid_mm", "dose_d98_decrease_pct")},
        "worst_dsc": float(min(r["worst_dsc"] for r in rows)),
        "latency_p50": float(np.percentile(lat, 50)),
        "latency_p99": float(np.percentile(lat, 99)),
        "spearman_conf_err": _spearman(conf, err),
        "frames_err_gt3": int(bad.sum()),
        "frac_err_gt3_low_conf": float(np.mean(conf[bad] < 0.5)) if bad.any() else float("nan"),
        "conf_corrupted": float(conf[flags].mean()) if flags.any() else float("nan"),
        "conf_clean": float(conf[~flags].mean()),
    }


def bins(entry: dict[str, Any]) -> dict[str, str]:
    """The case's bin for each breakdown."""
    s = entry["spec"]
    return {
        "contrast": "low (|c| < 0.25)" if abs(s["target_contrast"]) < 0.25 else "high (|c| >= 0.25)",
        "radius": "5-10 mm" if s["target_radius_mm"] < 10 else "10-15 mm",
        "amplitude": "< 12 mm" if s["amplitude_si_mm"] < 12 else ">= 12 mm",
        "through-slice": "< 0.4 R" if s["out_of_plane_mm"] < 0.4 * s["target_radius_mm"] else ">= 0.4 R",
        "profile": str(s["profile"]),
        "background": str(s["background"]),
    }


def _fmt(v: float, nd: int = 3) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=ROOT / "out" / "phantoms-seed0", help="phantom set folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the set when it has to be built")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (latency then less clean)")
    parser.add_argument("--no-real", action="store_true", help="skip the real unlabelled cine sequences")
    parser.add_argument("--json", type=Path, help="write every number to this JSON file")
    args = parser.parse_args()

    if not (args.set / "cases.json").is_file():
        from igikit.sim import make_phantom_set

        print(f"building phantom set {args.set} (seed {args.seed}) ...", file=sys.stderr)
        make_phantom_set(args.set, seed=args.seed)
    index = json.loads((args.set / "cases.json").read_text())
    entries = {e["case_id"]: e for e in index["cases"]}
    corrupted = {cid: list(e["derived"].get("corrupted_frames", [])) for cid, e in entries.items()}
    jobs = [(str(args.set / e["folder"]), m) for m in args.methods for e in index["cases"]]
    tic = time.perf_counter()
    with ProcessPoolExecutor(max(1, args.jobs)) as ex:
        rows = list(ex.map(run_case, *zip(*jobs, strict=True)))
    wall = time.perf_counter() - tic
    summary = {m: summarise([r for r in rows if r["method"] == m], corrupted) for m in args.methods}

    print(f"\n{CITATION}\n")
    print(f"Set {args.set.name}: {len(entries)} cases (seed {index.get('seed')}), {args.jobs} process(es), "
          f"{wall:.0f} s, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| method | DSC | HD95 mm | MASD mm | centroid mm | dose D98 decrease % | worst-frame DSC | "
          "latency p50 / p99 ms | Spearman(conf, err) | err > 3 mm with conf < 0.5 | conf corrupted / clean |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m, s in summary.items():
        print(f"| {m} | {_fmt(s['dsc'])} | {_fmt(s['hd95'], 2)} | {_fmt(s['msd'], 2)} | {_fmt(s['centroid_mm'], 2)} | "
              f"{_fmt(s['dose_d98_decrease_pct'], 2)} | {_fmt(s['worst_dsc'], 2)} | "
              f"{_fmt(s['latency_p50'], 1)} / {_fmt(s['latency_p99'], 1)} | {_fmt(s['spearman_conf_err'], 2)} | "
              f"{_fmt(s['frac_err_gt3_low_conf'], 2)} ({s['frames_err_gt3']} frames) | "
              f"{_fmt(s['conf_corrupted'], 2)} / {_fmt(s['conf_clean'], 2)} |")

    case_bins = {cid: bins(e) for cid, e in entries.items()}
    breakdown: dict[str, dict[str, dict[str, list[float]]]] = {}
    print("\nMean DSC / centroid mm per case-parameter bin (cases in the bin):\n")
    print("| parameter | bin | cases | " + " | ".join(args.methods) + " |")
    print("|---|---|---|" + "---|" * len(args.methods))
    for key in ("contrast", "radius", "amplitude", "through-slice", "profile", "background"):
        for value in sorted({b[key] for b in case_bins.values()}):
            ids = [cid for cid, b in case_bins.items() if b[key] == value]
            cells = []
            for m in args.methods:
                sel = [r for r in rows if r["method"] == m and r["case_id"] in ids]
                d, c = float(np.mean([r["dsc"] for r in sel])), float(np.mean([r["centroid_mm"] for r in sel]))
                breakdown.setdefault(key, {}).setdefault(value, {})[m] = [d, c]
                cells.append(f"{d:.3f} / {c:.2f}")
            print(f"| {key} | {value} | {len(ids)} | " + " | ".join(cells) + " |")

    real: list[dict[str, Any]] = []
    if not args.no_real:
        real_jobs = [(name, m) for name in REAL_TARGETS for m in args.methods]
        with ProcessPoolExecutor(max(1, args.jobs)) as ex:
            real = list(ex.map(run_real, *zip(*real_jobs, strict=True)))
        print("\nReal unlabelled cine, whole sequences, forward then backward:\n")
        print("| sequence | frames | method | end DSC | mean fwd/bwd DSC | mean confidence | latency p50 / p99 ms |")
        print("|---|---|---|---|---|---|---|")
        for r in real:
            print(f"| {r['sequence']} ({r['shape'][0]} x {r['shape'][1]}) | {r['frames']} | {r['method']} | "
                  f"{r['end_dsc']:.3f} | {r['mean_dsc']:.3f} | {r['mean_confidence']:.2f} | "
                  f"{r['latency_p50']:.1f} / {r['latency_p99']:.1f} |")

    if args.json:
        per_frame = ("latency_ms", "confidence", "frame_centroid_mm")
        slim = [{k: v for k, v in r.items() if k not in per_frame} for r in rows]
        args.json.write_text(json.dumps({"set": str(args.set), "summary": summary, "cases": slim,
                                         "breakdown": breakdown, "real": real}, indent=1))


if __name__ == "__main__":
    main()
