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

Baseline-drift re-centring (``--recentre`` of ``igikit gate``) is measured by adding ``recentre``
to a configuration (``exhale:online:recentre``; ``recentre=T/P/C`` sets the threshold in mm, the
persistence in s and the breathing cycles of the baseline): the table then goes to the section
"Baseline-drift re-centring", each re-centring configuration compared case by case with the same
configuration without it (the baseline of the same run). ``--long-drift-cases N`` replaces the sets
by N long (120 s) adult phantoms with a 3-6 mm/min baseline drift (every third one without: a
control), built on first use into ``out/phantoms-drift-long`` (the short sets' cases last 10-20 s:
one to five breaths), and writes the section "Baseline-drift re-centring: long drifting phantoms"
with a row per case.

Usage::

    .venv/bin/python bench/mrgrt_gating.py [--sets out/phantoms-seed1 out/phantoms-seed2] [--latency-ms 300]
    .venv/bin/python bench/mrgrt_gating.py --configs exhale:online exhale:online:recentre \
        first:online first:online:recentre
    .venv/bin/python bench/mrgrt_gating.py --long-drift-cases 4 --configs first:online first:online:recentre
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

from igikit.errors import InputError
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
no motion management in the cases listed). Re-centring the window on a drifting baseline
(`--recentre`) is measured in the section "Baseline-drift re-centring"."""
RECENTRE_SECTION = "Baseline-drift re-centring"
LONG_SECTION = "Baseline-drift re-centring: long drifting phantoms"
#: The long phantoms: this many seconds each, a baseline drift drawn from this range (mm/min), either way;
#: every third case has none (a control: a proposal there is a false alarm of the real breathing).
LONG_DURATION_S = 120.0
LONG_DRIFT_MM_PER_MIN = (3.0, 6.0)
LONG_INTERPRETATION = f"""How to read it. The short sets' cases last 10-20 s, one to five breaths: too short for
a baseline measured over three breaths to drift and persist, so these {LONG_DURATION_S:g} s adult phantoms (the
volunteers' own breathing, with the real traces' own baseline wander, plus a linear drift of 3-6 mm/min either
way; every third case none) show what re-centring does when the baseline really drifts. A hold beyond the hard
limit lasts as long as the drift stays beyond it: in a headless run nobody re-plans, so the beam stays held.
Every re-centring takes effect at once at autonomy level 3, unless the cycles disagree (a confidence below the
handover threshold): the session then hands over (an alert holds the beam until acknowledged) and nothing
moves. Compare the rows with and without re-centring of the same configuration.
On the run recorded here, re-centring raised the duty cycle (+6.2 points with the end-exhale reference, +3.0
with the first frame) but did not make the delivery safer or the dose better on average: beam-on time with
the target outside -0.7 / +1.7 points, D98 -0.013 / +0.003, better in some cases (LONG_004), worse in others
(LONG_001, and LONG_002 with the first frame). The controls without added drift were re-centred too: the real
traces' own baseline wanders by several mm over two minutes, a real drift the plan did not account for. The
baseline (median of three breaths) lags the true one by about one and a half breaths, so the window follows
an irregular baseline late. Re-centring therefore stays off by default: it is a tool for a supervisor who
sees a sustained drift, best at autonomy level 1 or 2 where a person approves or vetoes each shift."""
RECENTRE_INTERPRETATION = """How to read it. Each re-centring row is compared with the same configuration without
re-centring in the same run, case by case (ΔD98 and the duty-cycle change are means over the cases; "changed"
counts the cases where anything differed). Re-centring moves the gating window and the gated beam's aperture
together (a baseline shift); the beam-on time with the target outside is judged against the window in force
at each moment. A proposal needs the end-exhale baseline (median of 3 breathing cycles) to stay more than 2 mm
from the window's centre for 5 s; the cases of these sets last 10-20 s, one to five breaths, so it rarely
gets the chance: the re-centring there is off by default.
On the run recorded here: at the defaults no case produced a proposal (0 of 48 changed, with the end-exhale
or the first-frame reference); even at 1 mm / 2 s / 2 cycles only 3 of 48 cases were re-centred, changing
duty by +0.04 points, beam-on with the target outside by -0.15 points and D98 by +0.0003. The end-exhale
reference's failures listed under "Gating and dose under motion" are not helped: on these short cases the
baseline cannot be measured before the run ends. The long phantoms below show re-centring at work."""


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


def _ensure_long_drift(path: Path, n_cases: int) -> None:
    """Build ``n_cases`` long adult phantoms with a baseline drift into ``path`` (once; seed 7)."""
    if path.exists() and len([p for p in path.iterdir() if (p / "images").exists()]) >= n_cases:
        return
    from igikit.io.trackrad import write_case
    from igikit.sim import make_case
    from igikit.sim.cine import default_data_dir
    from igikit.sim.phantom_set import spec_for_profile

    data = default_data_dir()
    traces = sorted(p.name for p in (data / "respiration").glob("*.csv"))
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        if (path / f"LONG_{i:03d}" / "images").exists():
            continue
        rng = np.random.default_rng([7, i])
        drift = float(rng.uniform(*LONG_DRIFT_MM_PER_MIN)) * float(rng.choice([-1.0, 1.0]))
        drift = 0.0 if i % 3 == 2 else drift  # every third case a control without drift
        base = {
            "case_id": f"LONG_{i:03d}", "background": str(rng.choice(["magdeburg_liver", "eth_thorax"])),
            "duration_s": LONG_DURATION_S, "frame_rate_hz": round(float(rng.uniform(4.0, 6.0)), 2),
            "drift_mm_per_min": round(drift, 2), "target_radius_mm": round(float(rng.uniform(6.0, 12.0)), 2),
            "target_contrast": round(float(rng.uniform(0.3, 0.7)), 3), "seed": int(rng.integers(2**31 - 1)),
        }
        for trace in rng.permutation(traces):  # the volunteer's own rate; a trace long enough for the case
            spec = spec_for_profile("adult", rng=rng, keep_trace_rate=True, trace_file=str(trace), **base)
            try:
                case = make_case(spec, data)
            except InputError:
                continue
            break
        print(f"building {path.name}/{spec.case_id}: drift {spec.drift_mm_per_min:+.2f} mm/min", flush=True)
        write_case(path, case)


def parse_config(config: str, settings: GatingSettings) -> tuple[str, GatingSettings]:
    """``REFERENCE:PREDICTOR[:FACTOR][:recentre[=T[/P[/C]]]]`` -> (reference, settings of the run)."""
    reference, predictor, *options = config.split(":")
    run_settings = replace(settings, predictor=predictor)
    for option in options:
        if option.startswith("recentre"):
            values = option.partition("=")[2]
            parts = [float(v) for v in values.split("/")] if values else []
            run_settings = replace(
                run_settings, recentre=True,
                **dict(zip(("drift_threshold_mm", "drift_persist_s"), parts[:2], strict=False)),
                **({"drift_cycles": int(parts[2])} if len(parts) > 2 else {}),
            )
        else:
            run_settings = replace(run_settings, uncertainty_factor=float(option))
    return reference, run_settings


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
    rec = run.recentring
    shifts = [np.hypot(x["shift_si_mm"], x["shift_ap_mm"]) for x in rec.get("shifts", [])]
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
        "proposals": float(len(rec.get("proposals", []))),
        "shifts": float(len(shifts)),
        "max_shift_mm": float(max(shifts, default=0.0)),
        "limit_holds": float(len(rec.get("limit_holds", []))),
        "drift_mm_per_min": float(case.meta.get("phantom_spec", {}).get("drift_mm_per_min", np.nan)),
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
    parser.add_argument(
        "--long-drift-cases", type=int, default=0, metavar="N",
        help=f"instead of --sets, N {LONG_DURATION_S:g} s adult phantoms with a baseline drift (built once into "
        "out/phantoms-drift-long)",
    )
    parser.add_argument("--no-docs", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()

    settings = GatingSettings.from_profile("adult", latency_ms=args.latency_ms)
    if args.long_drift_cases > 0:
        args.sets = [ROOT / "out" / "phantoms-drift-long"]
        _ensure_long_drift(args.sets[0], args.long_drift_cases)
        args.max_cases = min(args.max_cases or args.long_drift_cases, args.long_drift_cases)
    rows: list[tuple[str, str, dict[str, float]]] = []
    started = time.perf_counter()
    for set_path in args.sets:
        seed = int(set_path.name.rsplit("seed", 1)[-1]) if "seed" in set_path.name else 0
        if args.long_drift_cases == 0:
            _ensure(set_path, seed)
        cases = sorted(p for p in set_path.iterdir() if p.is_dir() and (p / "images").exists())
        for case_dir in cases[: args.max_cases]:
            for config in args.configs:  # interleaved case by case: machine load hits them alike
                reference, run_settings = parse_config(config, settings)
                t0 = time.perf_counter()
                m = run_case(case_dir, run_settings, reference=reference)
                rows.append((f"{set_path.name} · {config}", case_dir.name, m))
                print(
                    f"{set_path.name}/{case_dir.name} {config}: duty {m['duty_pct']:.1f} %, outside "
                    f"{m['outside_pct']:.2f} %, D98 none {m['d98_no_motion_management']:.3f} gating "
                    f"{m['d98_gating']:.3f} tracking {m['d98_tracking']:.3f}"
                    + (f", re-centring {m['proposals']:.0f} proposals, {m['shifts']:.0f} shifts (max "
                       f"{m['max_shift_mm']:.1f} mm), {m['limit_holds']:.0f} limit holds"
                       if run_settings.recentre else "")
                    + f" ({time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )

    elapsed = time.perf_counter() - started
    recentring = any(parse_config(c, settings)[1].recentre for c in args.configs)
    if recentring:
        lines = recentre_table(rows, args, settings, elapsed)
        title, note = (LONG_SECTION, LONG_INTERPRETATION) if args.long_drift_cases else (
            RECENTRE_SECTION, RECENTRE_INTERPRETATION)
        section = f"## {title}\n\n" + "\n".join(lines) + f"\n\n{note}"
    else:
        lines = table(rows, args, settings, elapsed)
        section = f"## {SECTION}\n\n" + "\n".join(lines) + f"\n\n{INTERPRETATION}"
    print()
    print("\n".join(lines))
    if not args.no_docs:
        replace_section(section)


def _command(args: argparse.Namespace, settings: GatingSettings) -> str:
    parts = [".venv/bin/python bench/mrgrt_gating.py", f"--latency-ms {settings.latency_ms:g}"]
    if args.long_drift_cases:
        parts.append(f"--long-drift-cases {args.long_drift_cases}")
    elif [p.name for p in args.sets] != ["phantoms-seed1", "phantoms-seed2"]:
        parts.append("--sets " + " ".join(f"out/{p.name}" for p in args.sets))
    if args.max_cases is not None and not args.long_drift_cases:
        parts.append(f"--max-cases {args.max_cases}")
    return " ".join([*parts, "--configs", *args.configs])


def recentre_table(
    rows: list[tuple[str, str, dict[str, float]]], args: argparse.Namespace, settings: GatingSettings, total_s: float
) -> list[str]:
    """The re-centring table: every configuration over all cases, each re-centring one against its twin without."""
    by_config: dict[str, dict[tuple[str, str], dict[str, float]]] = {}
    for label, case, m in rows:
        set_name, config = label.split(" · ")
        by_config.setdefault(config, {})[(set_name, case)] = m
    n_cases = len({(s.split(" · ")[0], c) for s, c, _ in rows})
    sets = ", ".join(p.name for p in args.sets)
    cfg = settings.recentre_config()
    lines = [
        f"Every case of {sets} through the full `igikit gate` workflow, as fast as it runs ({settings.tracking_method} "
        f"tracking, prediction at +{settings.latency_ms:g} ms, margin {settings.margin_mm:g} mm / threshold "
        f"{settings.threshold_pct:g} %, autonomy level 3 headless: a proposal applies at once), scored against the "
        "true labels. Configurations as REFERENCE:PREDICTOR[:recentre[=THRESHOLD_MM/PERSIST_S/CYCLES]]; re-centring "
        f"defaults: threshold {cfg.threshold_mm:g} mm for {cfg.persist_s:g} s, baseline = median of {cfg.cycles} "
        f"end-exhale cycles, hard limit margin + 5 = {cfg.max_shift_mm:g} mm.",
        "",
        f"Command: `{_command(args, settings)}` ({n_cases} cases x {len(args.configs)} runs, {total_s:.0f} s wall on a "
        "2-core machine).",
        "",
        "| configuration | cases | duty cycle % | beam-on with target outside % (mean / max) "
        "| D98 gating (mean / worst) | D2 gating | proposals | cases re-centred | largest shift mm | limit holds "
        "| vs. without re-centring: Δ duty % / Δ outside % / Δ D98 (cases changed) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config, cases in by_config.items():
        ms = list(cases.values())

        def col(key: str, sub: list[dict[str, float]]) -> np.ndarray:
            return np.array([m[key] for m in sub], dtype=float)

        out = col("outside_pct", ms)
        twin = ":".join(t for t in config.split(":") if not t.startswith("recentre"))
        compare = "baseline"
        if twin != config and twin in by_config:
            pairs = [(m, by_config[twin][k]) for k, m in cases.items() if k in by_config[twin]]
            d_duty = np.mean([a["duty_pct"] - b["duty_pct"] for a, b in pairs])
            d_out = np.nanmean([a["outside_pct"] - b["outside_pct"] for a, b in pairs]) if pairs else np.nan
            d_d98 = np.mean([a["d98_gating"] - b["d98_gating"] for a, b in pairs])
            changed = sum(
                any(not np.isclose(a[k], b[k], equal_nan=True) for k in ("duty_pct", "outside_pct", "d98_gating"))
                for a, b in pairs
            )
            outside = "n/a" if not np.isfinite(d_out) else f"{d_out:+.2f}"
            compare = f"{d_duty:+.2f} / {outside} / {d_d98:+.4f} ({changed} of {len(pairs)})"
        elif twin != config:
            compare = f"n/a (no {twin} run)"
        recentred = "–" if twin == config else str(int(np.sum(col("shifts", ms) > 0)))
        largest = "–" if twin == config else f"{np.max(col('max_shift_mm', ms)):.1f}"
        lines.append(
            f"| {config} | {len(ms)} | {np.mean(col('duty_pct', ms)):.1f} | {np.nanmean(out):.2f} / "
            f"{np.nanmax(out):.2f} | {np.mean(col('d98_gating', ms)):.3f} / {np.min(col('d98_gating', ms)):.3f} | "
            f"{np.mean(col('d2_gating', ms)):.3f} | {'–' if twin == config else int(col('proposals', ms).sum())} | "
            f"{recentred} | {largest} | "
            f"{'–' if twin == config else int(col('limit_holds', ms).sum())} | {compare} |"
        )
    if args.long_drift_cases:
        lines += [
            "",
            "Per case, each re-centring configuration against its twin without (off → on):",
            "",
            "| case | configuration | drift mm/min | duty cycle % | beam-on with target outside % | D98 gating "
            "| proposals / shifts (largest mm) / limit holds |",
            "|---|---|---|---|---|---|---|",
        ]
        for config, cases in by_config.items():
            twin = ":".join(t for t in config.split(":") if not t.startswith("recentre"))
            if twin == config or twin not in by_config:
                continue
            for key, on in cases.items():
                off = by_config[twin].get(key)
                if off is None:
                    continue
                lines.append(
                    f"| {key[1]} | {config} | {on['drift_mm_per_min']:+.2f} "
                    f"| {off['duty_pct']:.1f} → {on['duty_pct']:.1f} "
                    f"| {_fmt(off['outside_pct'])} → {_fmt(on['outside_pct'])} "
                    f"| {off['d98_gating']:.3f} → {on['d98_gating']:.3f} | {on['proposals']:.0f} / {on['shifts']:.0f} "
                    f"({on['max_shift_mm']:.1f}) / {on['limit_holds']:.0f} |"
                )
    return lines


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
