"""Benchmark: gating and dose under motion on phantom cases with known truth, tuned elsewhere.

Every case of the phantom sets (``igikit.sim.cine``; by default seeds 1 and 2, which no tracker or
gating parameter was tuned on) goes through the full ``igikit gate`` workflow as fast as it runs
(tracking -> online prediction at the system latency -> supervised gating at autonomy level 3,
headless), and is scored against the true labels, as ``igikit gate`` scores it:

* duty cycle (beam-on time / delivery window);
* beam-on time with the true target outside the gating window (more than the threshold share of
  its area outside the boundary) and how far it reached beyond the boundary while the beam was on;
* beam-off latency after the true target leaves the window (incl. the system latency);
* target D98 / D2 relative to the prescription for no motion management, gating, and beam
  tracking (the beam follows the prediction).

The baseline of the same run is no motion management (the beam always on): its D98 is what
gating and tracking must improve. Results go to docs/benchmarks.md, section "Gating and dose
under motion".

Usage::

    .venv/bin/python bench/mrgrt_gating.py [--sets out/phantoms-seed1 out/phantoms-seed2] [--latency-ms 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import replace_section

from igikit.io.trackrad import CineCase, read_case
from igikit.workflows.mrgrt.reference import exhale_reference
from igikit.workflows.mrgrt.workflow import (
    GatingSettings,
    SupervisionSettings,
    evaluate,
    run_gating,
    spacing_rc,
)

ROOT = Path(__file__).resolve().parents[1]
SECTION = "Gating and dose under motion"
#: What the table means, and the one-off experiments behind it (re-run them when the gate changes).
INTERPRETATION = """How to read it. Gating lifts the target D98 well above no motion management, and beam
tracking (the beam follows the prediction) lifts it further; online prediction shortens the beam-off
latency after the target leaves (the system latency alone is 300 ms) and cuts beam-on time with the
target outside. That share stays far from zero on these free-breathing phantoms (5-25 mm amplitude,
irregular breathing, baseline drift, 4-8 frames/s): a decision stands for one frame interval
(125-250 ms) and the target crosses a 3 mm margin in about that time. With 1 ms instead of 300 ms
latency (`--latency-ms 1`, 2 cases) the share was still 7-11 %, so about half of it is the frame
interval and the rest the 1.2-1.8 mm prediction error at 300 ms. A margin that widens with the
predictor's own running error was tried: `--configs first:online:0 first:online:1 exhale:online:0
exhale:online:1 --max-cases 8` (16 cases) gave duty cycle 55.0 -> 48.0 % and beam-on with the target
outside 14.84 -> 14.89 % (first frame), 37.2 -> 32.8 % and 32.3 -> 30.2 % (end-exhale): duty lost for
no real gain, so `uncertainty_factor` is 0 by default. The end-exhale reference has a failure mode of
its own on these short (15-30 s) cases: baseline drift carries the exhale position away from the
reference found in the 8 s setup phase, and the beam then holds for most of the run (gating D98 below
no motion management in the cases listed). igikit does not yet re-centre the window on a drifting
baseline; the supervisor sees the low duty cycle and the reasons in the decision log."""


def _ensure(path: Path, seed: int) -> None:
    if not path.exists():
        from igikit.sim import make_phantom_set

        print(f"building phantom set {path} (seed {seed})", flush=True)
        make_phantom_set(path, seed=seed)


def exhale_case(case: CineCase, setup_s: float) -> tuple[CineCase, np.ndarray]:
    """The case from its end-exhale frame on, as ``igikit demo`` gates: the first ``setup_s`` seconds
    are tracked before the beam, the end-exhale frame found in them becomes frame 0 and its tracked
    target the gating reference (the truth labels are cut alike, for scoring)."""
    spacing = spacing_rc(case)
    setup = max(3, round(setup_s * (case.frame_rate_hz or 4.0)))
    ref = exhale_reference(case.frames, case.first_label, spacing, setup_frames=setup)
    labels = None if case.labels is None else case.labels[:, :, ref.frame :]
    return replace(case, frames=case.frames[:, :, ref.frame :], first_label=None, labels=labels), ref.label


def run_case(
    case_dir: Path, settings: GatingSettings, *, reference: str = "first", setup_s: float = 8.0
) -> dict[str, float]:
    """Gate one case headless; the metrics that matter, as plain numbers."""
    case = read_case(case_dir)
    label = None
    if reference == "exhale":
        case, label = exhale_case(case, setup_s)
    with tempfile.TemporaryDirectory() as tmp:
        run = run_gating(
            case, settings, Path(tmp), first_label=label, fast=True, record=False, supervision=SupervisionSettings()
        )
        outcome = evaluate(run)
    bo = outcome.beam_off.summary()
    dose = outcome.dose
    return {
        "duty_pct": outcome.duty_cycle_pct,
        "outside_pct": outcome.beam_on_outside_pct,
        "excursion_p95_mm": float(outcome.beam_on_excursion_mm.get("p95", np.nan)),
        "beam_off_median_ms": float("nan") if bo["median_ms"] is None else float(bo["median_ms"]),
        "exits": float(bo["exits"]),
        "missed": float(bo["missed"]),
        "tracking_error_mm": outcome.tracking_error_mm,
        "pred_rmse_mm": float(outcome.prediction_rmse_mm.get("predicted", np.nan)),
        "nopred_rmse_mm": float(outcome.prediction_rmse_mm.get("no prediction", np.nan)),
        **{f"d98_{k.replace(' ', '_')}": float(v.d98) for k, v in dose.items()},
        **{f"d2_{k.replace(' ', '_')}": float(v.d2) for k, v in dose.items()},
        "deadline_misses": float(run.latency.deadline_misses),
        "frames": float(run.n_frames),
    }


def _fmt(v: float, digits: int = 2) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sets", nargs="+", type=Path, default=[ROOT / "out" / "phantoms-seed1", ROOT / "out" / "phantoms-seed2"]
    )
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["exhale:online", "exhale:last", "first:online"],
        help="REFERENCE:PREDICTOR[:FACTOR] runs per case: the gating reference (exhale: end-exhale found in an 8 s "
        "setup phase, as igikit demo does; first: the first frame, TrackRAD's convention) and the prediction method "
        "(last = no prediction, the baseline); FACTOR: the boundary shrinks by FACTOR x the predictor's running "
        "RMS error (default 0: gate on the prediction alone)",
    )
    parser.add_argument("--max-cases", type=int, default=None)
    parser.add_argument("--no-docs", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()

    settings = GatingSettings.from_profile("adult", latency_ms=args.latency_ms)
    rows: list[tuple[str, str, dict[str, float]]] = []
    started = time.perf_counter()
    for set_path in args.sets:
        seed = int(set_path.name.rsplit("seed", 1)[-1]) if "seed" in set_path.name else 0
        _ensure(set_path, seed)
        cases = sorted(p for p in set_path.iterdir() if p.is_dir() and (p / "images").exists())
        for case_dir in cases[: args.max_cases]:
            for config in args.configs:  # interleaved case by case: machine load hits them alike
                reference, predictor, *factor = config.split(":")
                run_settings = replace(settings, predictor=predictor)
                if factor:
                    run_settings = replace(run_settings, uncertainty_factor=float(factor[0]))
                t0 = time.perf_counter()
                m = run_case(case_dir, run_settings, reference=reference)
                rows.append((f"{set_path.name} · {config}", case_dir.name, m))
                print(
                    f"{set_path.name}/{case_dir.name} {config}: duty {m['duty_pct']:.1f} %, outside "
                    f"{m['outside_pct']:.2f} %, D98 none {m['d98_no_motion_management']:.3f} gating "
                    f"{m['d98_gating']:.3f} tracking {m['d98_tracking']:.3f} ({time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )

    lines = table(rows, args, settings, time.perf_counter() - started)
    text = "\n".join(lines)
    print()
    print(text)
    if not args.no_docs:
        replace_section(f"## {SECTION}\n\n{text}\n\n{INTERPRETATION}")


def table(
    rows: list[tuple[str, str, dict[str, float]]], args: argparse.Namespace, settings: GatingSettings, total_s: float
) -> list[str]:
    def col(key: str, subset: list[dict[str, float]]) -> np.ndarray:
        return np.array([r[key] for r in subset], dtype=float)

    n_cases = len({(s.split(" · ")[0], c) for s, c, _ in rows})
    lines = [
        f"Every case of {', '.join(p.name for p in args.sets)} (built by `igikit sim cine`; nothing was tuned on "
        f"these seeds) through the full `igikit gate` workflow, as fast as it runs: {settings.tracking_method} "
        f"tracking, prediction at +{settings.latency_ms:g} ms, gating margin "
        f"{settings.margin_mm:g} mm / threshold {settings.threshold_pct:g} %, autonomy level 3 headless. "
        "Runs per case, as REFERENCE:PREDICTOR: the gating window around the target at end-exhale (found by "
        "tracking an 8 s setup phase before the beam, as `igikit demo` does; the delivery starts there) or at "
        "the first frame (TrackRAD's convention, wherever in the breath it falls); `online` prediction or `last` "
        "(no prediction, the baseline in the same run). Scored against the true labels. Dose: TrackRAD-style "
        "2D target dose (reference target + 3 mm, sigma 4 mm), relative to the prescription; "
        "the baseline in the same run is no motion management.",
        "",
        f"Command: `.venv/bin/python bench/mrgrt_gating.py --latency-ms {settings.latency_ms:g}` "
        f"({n_cases} cases x {len(args.configs)} runs, {total_s:.0f} s wall on a 2-core machine).",
        "",
        "| set / predictor | cases | duty cycle % | beam-on with target outside % (mean / max) "
        "| excursion p95 mm (max) "
        "| beam-off latency median ms | D98 none | D98 gating | D98 tracking | D2 gating | pred. RMSE mm (none) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = sorted({s for s, _, _ in rows}) + [f"all · {c}" for c in args.configs]
    for g in groups:
        sub = [m for s, _, m in rows if s == g or (g.startswith("all · ") and s.endswith(g[3:]))]
        out = col("outside_pct", sub)  # NaN where the beam never came on
        lines.append(
            f"| {g} | {len(sub)} | {np.mean(col('duty_pct', sub)):.1f} | "
            f"{np.nanmean(out):.2f} / {np.nanmax(out):.2f} | "
            f"{_fmt(float(np.nanmax(col('excursion_p95_mm', sub))))} | "
            f"{_fmt(float(np.nanmedian(col('beam_off_median_ms', sub))), 0)} | "
            f"{np.mean(col('d98_no_motion_management', sub)):.3f} | {np.mean(col('d98_gating', sub)):.3f} | "
            f"{np.mean(col('d98_tracking', sub)):.3f} | {np.mean(col('d2_gating', sub)):.3f} | "
            f"{np.nanmean(col('pred_rmse_mm', sub)):.2f} ({np.nanmean(col('nopred_rmse_mm', sub)):.2f}) |"
        )
    first = f" · {args.configs[0]}"
    allm = [m for s, _, m in rows if s.endswith(first)]
    worse = [
        f"{s.split(' · ')[0]}/{c}"
        for s, c, m in rows
        if s.endswith(first) and m["d98_gating"] < m["d98_no_motion_management"] - 1e-3
    ]
    lines += [
        "",
        f"With {args.configs[0]}, per case, gating's D98 is at least that of no motion management in "
        f"{sum(m['d98_gating'] >= m['d98_no_motion_management'] - 1e-3 for m in allm)} of {len(allm)} cases"
        + (f" (lower in {', '.join(worse)})" if worse else "")
        + f"; worst gating D98 {min(m['d98_gating'] for m in allm):.3f}, worst without motion management "
        f"{min(m['d98_no_motion_management'] for m in allm):.3f}. Deadline misses over all runs: "
        f"{int(sum(m['deadline_misses'] for _, _, m in rows))} in {int(sum(m['frames'] for _, _, m in rows))} frames.",
    ]
    return lines


if __name__ == "__main__":
    main()
