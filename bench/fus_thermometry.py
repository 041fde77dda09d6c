"""MR thermometry accuracy and speed (issue 5), on simulated heating over a real complex MR background.

Scenarios (all at 1.5 T, TE 20 ms, alpha -0.01 ppm/°C, 1 mm pixels, frames of the real complex GRE
image ``../shared/data/thermometry/gre_baseline_complex.mat`` at its native 128 x 128; heating from
the Pennes solver, adult muscle, a 0.5 W Gaussian focus placed in the brightest tissue):

* ``static``: 60 frames every 3 s, 15 s cool-down baseline then 105 s of heating; B0 drift
  0.01 rad/s plus a spatial gradient; baseline subtraction with order-1 drift correction from an
  unheated reference region (tissue more than 12 mm from the focus). Noise chosen so that theory gives
  sigma_T = 0.9 °C over the heated region (sqrt(2) for baseline + frame noise). Five noise seeds.
* ``motion``: 240 frames every 0.5 s, rigid breathing motion 6 mm (y) + 1 mm (x), period 4.3 s
  (not a multiple of the frame interval), the first 26 frames (3 cycles, unheated) as the library;
  same noise level. Multi-baseline against single-baseline.
* ``referenceless``: the static frames, background polynomial of order 2 fitted in a ring
  7-14 mm around the focus.
* ``CEM43``: exact piecewise-linear integral against the analytic value (constant and linear ramp)
  and against adaptive quadrature of a smooth heating curve; a rectangle rule for comparison.
* ``speed``: one frame of 3 slices x 128 x 128 through ``RealtimeThermometry.update`` (PRF,
  temporal unwrapping, uncertainty and trust, drift fit, CEM43 update); baseline in the same run:
  the bare complex-ratio phase ``np.angle(z * conj(b))`` of the same frame. Two of the steps alone
  beside it: the phase by ``fast_angle`` (polynomial arctangent) and the CEM43 update with float32
  and float64 rates.

Usage::

    .venv/bin/python bench/fus_thermometry.py [--write-docs] [--compare-with SRC]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
from _docs import replace_section  # bench/_docs.py: the script folder is on sys.path
from scipy import ndimage
from scipy.integrate import quad

from igikit.sim.heating import PennesSolver, TissueMaps, gaussian_heat_source
from igikit.sim.thermometry import load_complex_background, synthesize_frames
from igikit.workflows.fus import DoseAccumulator, RealtimeThermometry, cem43, prf_thermometry, temperature_uncertainty
from igikit.workflows.fus.thermometry import fast_angle

TE, B0 = 0.020, 1.5
TARGET_SIGMA_C = 0.9
SECTION = "## MR thermometry (FUS)"
ROOT = Path(__file__).resolve().parents[1]


def scene() -> dict:
    bg = load_complex_background()
    mag = np.abs(bg)
    smooth = ndimage.uniform_filter(mag, 9)
    smooth[:50] = 0  # below the coupling cone: the animal
    cy, cx = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    tissue = ndimage.uniform_filter(mag, 5) > 0.2 * np.percentile(mag, 99)
    tissue[:45] = False
    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(yy - cy, xx - cx)
    solver = PennesSolver(TissueMaps.from_profile("adult", np.zeros((128, 128), int), {0: "muscle"}), (1.0, 1.0))
    q = gaussian_heat_source((128, 128), (1.0, 1.0), (float(cx), float(cy)), (1.5, 1.5, 4.0), power_w=0.5)
    return {"bg": bg, "mag": mag, "focus": (cy, cx), "tissue": tissue, "r": r, "solver": solver, "q": q}


def sigma_for_target(mag: np.ndarray, region: np.ndarray, n_baseline: int = 1) -> float:
    unit = temperature_uncertainty(mag, 1.0, te_s=TE, b0_t=B0, baseline_magnitude=mag, n_baseline=n_baseline)
    return float(TARGET_SIGMA_C / np.sqrt(np.mean(unit[region] ** 2)))


def static(s: dict, seeds: int = 5) -> list[dict]:
    times = np.arange(60) * 3.0
    temps = s["solver"].simulate(37.0, times, lambda t: s["q"] if 15 <= t < 120 else None)
    heated = (temps.max(axis=0) - 37.0) > 5.0
    sigma = sigma_for_target(s["mag"], heated)
    reference = s["tissue"] & (s["r"] > 12)
    ring = s["tissue"] & (s["r"] > 7) & (s["r"] < 14)
    rows = []
    for label, kwargs in (
        ("static, drift-corrected (order 1, reference region)", {"drift_order": 1, "reference_mask": reference}),
        ("static, no drift correction", {}),
        ("static, referenceless (order 2, ring 7-14 mm)", {"method": "referenceless", "reference_mask": ring}),
    ):
        errors, theory_est = [], []
        for seed in range(seeds):
            syn = synthesize_frames(
                temps,
                times,
                s["bg"],
                te_s=TE,
                b0_t=B0,
                noise_sigma=sigma,
                drift_rad_per_s=0.01,
                drift_gradient_rad_per_s=(0.004, -0.003),
                seed=seed,
            )
            res = prf_thermometry(syn.frames, times, te_s=TE, b0_t=B0, **kwargs)
            errors.append((res.temperature_c - syn.temperature_c)[1:, heated])
            theory_est.append(res.uncertainty_c[1:, heated])
        err = np.concatenate([e.ravel() for e in errors])
        est = np.concatenate([e.ravel() for e in theory_est])
        rows.append(
            {
                "scenario": label,
                "voxels": int(heated.sum()),
                "bias": float(err.mean()),
                "sigma": float(err.std()),
                "theory": TARGET_SIGMA_C,
                "theory_est": float(np.sqrt(np.mean(est**2))),
                "rmse": float(np.sqrt(np.mean(err**2))),
                "peak": float(temps.max()),
            }
        )
    return rows


def motion(s: dict) -> list[dict]:
    dt, n_atlas = 0.5, 26
    times = np.arange(240) * dt
    temps = s["solver"].simulate(37.0, times, lambda t: s["q"] if 20 <= t < 80 else None)
    heated0 = (temps.max(axis=0) - 37.0) > 5.0
    sigma = sigma_for_target(s["mag"], heated0)
    syn = synthesize_frames(
        temps,
        times,
        s["bg"],
        te_s=TE,
        b0_t=B0,
        noise_sigma=sigma,
        motion_amplitude_mm=(1.0, 6.0),
        motion_period_s=4.3,
        seed=7,
    )
    hot = (syn.temperature_c - 37.0) > 5.0
    rows = []
    for label, kwargs in (
        ("periodic motion, multi-baseline (26-frame library)", {"method": "multibaseline", "baseline_frames": n_atlas}),
        ("periodic motion, single baseline", {}),
    ):
        res = prf_thermometry(syn.frames, times, te_s=TE, b0_t=B0, **kwargs)
        err = (res.temperature_c - syn.temperature_c)[hot]
        rows.append(
            {
                "scenario": label,
                "voxels": int(hot.sum()),
                "bias": float(err.mean()),
                "sigma": float(err.std()),
                "theory": TARGET_SIGMA_C,
                "theory_est": float(np.sqrt(np.mean(res.uncertainty_c[hot] ** 2))),
                "rmse": float(np.sqrt(np.mean(err**2))),
                "peak": float(temps.max()),
            }
        )
    return rows


def dose_checks(s: dict) -> list[dict]:
    rows = []
    times = np.arange(0, 300.0 + 1e-9, 3.0)
    const = np.full(times.size, 50.0)
    analytic = 5.0 * 2.0**7
    rows.append(
        (
            "constant 50 °C, 5 min, 3 s frames",
            analytic,
            float(cem43(const, times)),
            float(np.sum(0.5 ** (43 - const[:-1]) * np.diff(times) / 60)),
        )
    )
    ramp = 40.0 + 20.0 * times / 300.0
    # split at 43 °C (t = 45 s): 0.25^(43-T) below, 0.5^(43-T) above, T linear at 4 °C/min
    below = (1 - 0.25**3) / (4 * math.log(4))
    above = (2**17 - 1) / (4 * math.log(2))
    rows.append(
        (
            "linear ramp 40 -> 60 °C, 5 min, 3 s frames",
            below + above,
            float(cem43(ramp, times)),
            float(np.sum(np.where(ramp[:-1] >= 43, 0.5, 0.25) ** (43 - ramp[:-1]) * np.diff(times) / 60)),
        )
    )
    # a real focus curve: Pennes heating at 1 s resolution, CEM43 by quadrature of its linear interpolant
    fine_t = np.arange(0, 181.0)
    focus = s["solver"].simulate(37.0, fine_t, lambda t: s["q"] if 15 <= t < 120 else None)[
        :, s["focus"][0], s["focus"][1]
    ]

    def rate(t: float) -> float:
        temp = float(np.interp(t, fine_t, focus))
        return (0.5 if temp >= 43 else 0.25) ** (43 - temp)

    crossings = list(fine_t[:-1][np.diff(np.sign(focus - 43)) != 0] + 0.5)
    reference = quad(rate, 0, 180, points=list(fine_t[1:-1]) + crossings, limit=2000, epsrel=1e-10)[0] / 60
    rows.append(
        (
            "Pennes focus curve, 1 s frames",
            reference,
            float(cem43(focus, fine_t)),
            float(np.sum(np.where(focus[:-1] >= 43, 0.5, 0.25) ** (43 - focus[:-1]) * np.diff(fine_t) / 60)),
        )
    )
    coarse_t = fine_t[::3]
    rows.append(
        (
            "same curve sampled every 3 s (vs the 1 s truth)",
            reference,
            float(cem43(focus[::3], coarse_t)),
            float(np.sum(np.where(focus[:-3:3] >= 43, 0.5, 0.25) ** (43 - focus[:-3:3]) * 3.0 / 60)),
        )
    )
    return [
        {"case": c, "analytic": a, "exact": e, "rel": abs(e - a) / a, "rect_rel": abs(r - a) / a} for c, a, e, r in rows
    ]


def load_earlier(src: Path) -> type:
    """``RealtimeThermometry`` of another igikit source tree (e.g. ``git archive REV src``), beside this one.

    Its ``thermometry.py`` is loaded under another name, with its own ``thermal_dose.py`` in place of
    this tree's while it imports, so the two implementations run in one process on the same frames.
    """
    import importlib.util
    import sys

    def load(name: str, path: Path):  # type: ignore[no-untyped-def]
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module

    folder = src / "igikit" / "workflows" / "fus"
    key = "igikit.workflows.fus.thermal_dose"
    saved = sys.modules[key]
    sys.modules[key] = load("igikit_earlier_thermal_dose", folder / "thermal_dose.py")
    try:
        return load("igikit_earlier_thermometry", folder / "thermometry.py").RealtimeThermometry  # type: ignore[no-any-return]
    finally:
        sys.modules[key] = saved


def speed(s: dict, n: int = 300, earlier: Path | None = None) -> list[dict]:
    """Per-frame cost of every step and pipeline, timed interleaved frame by frame (the same load for all)."""
    rng = np.random.default_rng(0)
    bg = np.stack([np.rot90(s["bg"], k) for k in range(3)])
    sigma = sigma_for_target(s["mag"], s["r"] < 3)
    frames = (
        bg[None]
        + sigma * (rng.standard_normal((n + 20, 3, 128, 128)) + 1j * rng.standard_normal((n + 20, 3, 128, 128)))
    ).astype(np.complex64)
    tissue = np.stack([np.rot90(s["tissue"] & (s["r"] > 12), k) for k in range(3)])
    base = frames[0]
    temps = (37.0 + np.angle(frames[20:] * np.conj(base)) / -0.0803).astype(np.float32)  # noise around 37 °C
    steps: list[tuple[str, object]] = [
        ("baseline: bare complex-ratio phase", lambda i, f: np.angle(f * np.conj(base))),
        ("step: phase by fast_angle(z * conj(b))", lambda i, f: fast_angle(f * np.conj(base))),
    ]
    for dtype in (np.float32, np.float64):
        acc = DoseAccumulator(temps.shape[1:], dtype=dtype)
        label = f"step: CEM43 update, {np.dtype(dtype).name} rates"
        steps.append((label, lambda i, f, a=acc: a.update(temps[i], 3.0 * i)))
    versions: list[tuple[str, type]] = [("", RealtimeThermometry)]
    if earlier is not None:
        versions.append(("before: ", load_earlier(earlier)))
    for prefix, engine_type in versions:
        for label, method, n_base in (
            ("baseline subtraction + drift (order 1) + uncertainty + CEM43", "baseline", 1),
            ("multi-baseline (20-frame library) + drift + uncertainty + CEM43", "multibaseline", 20),
        ):
            engine = engine_type(
                te_s=TE, b0_t=B0, method=method, drift_order=1, reference_mask=tissue, noise_sigma=sigma
            )
            engine.set_baseline(frames[:n_base])
            steps.append((prefix + label, lambda i, f, e=engine: e.update(f, 3.0 * i)))
    lat: dict[str, list[float]] = {label: [] for label, _ in steps}
    cpu: dict[str, list[float]] = {label: [] for label, _ in steps}
    for i, f in enumerate(frames[20:]):
        for label, step in steps:
            t0, c0 = time.perf_counter(), time.thread_time()
            step(i, f)  # type: ignore[operator]
            cpu[label].append(time.thread_time() - c0)
            lat[label].append(time.perf_counter() - t0)
    ref = float(np.median(lat[steps[0][0]]))
    return [
        {
            "what": label,
            "p50": float(np.median(lat[label])) * 1e3,
            "p95": float(np.percentile(lat[label], 95)) * 1e3,
            "p99": float(np.percentile(lat[label], 99)) * 1e3,
            "ratio": float(np.median(lat[label])) / ref,
            "cpu50": float(np.median(cpu[label])) * 1e3,
            "cpu99": float(np.percentile(cpu[label], 99)) * 1e3,
        }
        for label, _ in steps
    ]


def render(
    acc: list[dict],
    dose: list[dict],
    spd: list[dict],
    load: str,
    *,
    command: str = ".venv/bin/python bench/fus_thermometry.py --write-docs",
    args_note: str = "",
) -> str:
    lines = [
        SECTION,
        "",
        "PRF thermometry (`igikit.workflows.fus`) on simulated heating over a real complex MR image: the",
        "complex GRE image of a small-animal MR-HIFU system (`../shared/data/thermometry/gre_baseline_complex.mat`,",
        "poormanme/smallAnimalMRgHIFU, CC BY-NC 4.0; its native 128 x 128), with the PRF phase of a Pennes",
        "simulation (`igikit.sim.heating`, adult muscle, 0.5 W Gaussian focus, peak about 58 °C), B0 drift,",
        "rigid breathing motion and complex Gaussian noise added (`igikit.sim.thermometry`). 1.5 T, TE 20 ms,",
        "alpha -0.01 ppm/°C. Noise set so that theory gives sigma_T = 0.9 °C over the heated region (voxels",
        "> 5 °C above body temperature; theory includes the baseline's noise). Errors are over heated voxels",
        "and all frames after the first; static rows pool five noise seeds. `theory (est.)` is the RMS of the",
        "written `uncertainty_c` map, from the noise the command estimates from the series itself.",
        "",
        "Issue 5 targets: static drift-corrected |bias| < 0.2 °C and measured sigma within 15 % of theory;",
        "periodic motion with multi-baseline RMSE < 1.2 °C (anchor 1.2 °C in volunteer abdomen); CEM43",
        "within 0.5 % of analytic; thermometry + dose <= 10 ms per frame of 3 x 128 x 128.",
        "",
        f"Command: `{command}`",
        "",
        "| scenario | heated voxels | bias (°C) | measured sigma (°C) | theory sigma (°C) | measured / theory"
        " | theory (est.) | RMSE (°C) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in acc:
        lines.append(
            f"| {r['scenario']} | {r['voxels']} | {r['bias']:+.3f} | {r['sigma']:.3f} | {r['theory']:.2f} | "
            f"{r['sigma'] / r['theory']:.3f} | {r['theory_est']:.3f} | {r['rmse']:.3f} |"
        )
    lines += [
        "",
        "Thermal dose: CEM43 (Sapareto & Dewey 1984) integrated exactly for piecewise-linear temperature",
        "against the analytic value, and a left rectangle rule on the same samples for comparison.",
        "",
        "| case | analytic CEM43 (min) | igikit (min) | relative error | rectangle rule error |",
        "|---|---|---|---|---|",
    ]
    for d in dose:
        lines.append(
            f"| {d['case']} | {d['analytic']:.6g} | {d['exact']:.6g} | {d['rel']:.2e} | {100 * d['rect_rel']:.1f} % |"
        )
    lines += [
        "",
        "Per frame (3 slices x 128 x 128, complex64; 300 frames): wall time of `RealtimeThermometry.update`,",
        "and the CPU time of the calling thread (`time.thread_time`, coarse), which leaves out the waits for",
        "a core on the shared, loaded machine:",
        "",
        "| what | wall median ms | wall p95 ms | wall p99 ms | wall median / baseline | CPU median ms | CPU p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in spd:
        lines.append(
            f"| {p['what']} | {p['p50']:.3f} | {p['p95']:.3f} | {p['p99']:.3f} | {p['ratio']:.1f}x | "
            f"{p['cpu50']:.3f} | {p['cpu99']:.3f} |"
        )
    full = [p for p in spd if "+ CEM43" in p["what"] and not p["what"].startswith("before")]
    before = [p for p in spd if p["what"].startswith("before")]
    worst_p99 = max(p["p99"] for p in full)
    lines += [
        "",
        "Reading: the accuracy targets hold (static drift-corrected bias well under 0.2 °C, measured sigma",
        "within a few % of theory; multi-baseline RMSE under 1.2 °C where a single baseline is off by ~10 °C;",
        "CEM43 exact to rounding, where a rectangle rule is off by up to 7 %). Referenceless thermometry is",
        "exact on smooth background phase (tests) but fails on this real image: the animal's phase texture",
        "is not a low-order polynomial across 14 mm (residual ~1 rad = 12 °C), so use it only with a small",
        "ring in smooth tissue.",
        "",
        f"Speed: a whole frame takes {min(p['p50'] for p in full):.1f}-{max(p['p50'] for p in full):.1f} ms wall "
        f"(median), p99 {worst_p99:.1f} ms, against the 10 ms budget"
        + (" - met at p99." if worst_p99 < 10 else " - not met at p99 here."),
        *(
            [
                f"The implementation before (rows `before:`, {args_note}, timed in the same loop on the same frames)",
                f"takes {min(p['cpu50'] for p in before):.1f}-{max(p['cpu50'] for p in before):.1f} ms CPU per frame "
                f"(median) where this one takes {min(p['cpu50'] for p in full):.1f}-"
                f"{max(p['cpu50'] for p in full):.1f} ms.",
            ]
            if before
            else []
        ),
        "What changed: NumPy's float64 `exp` and",
        "`arctan2` are scalar C-library loops here (no AVX-512), so the phase is a polynomial arctangent",
        "(`fast_angle`, max error 3.2e-7 rad = 4e-6 °C, as accurate as `np.angle` of complex64), the CEM43",
        "update keeps each voxel's dose rate and needs one vectorised float32 exponential per voxel, with no",
        "masked assignments (relative error <= 5e-5 against the float64 integral, a temperature error",
        "< 1e-4 °C), the drift fit weights its normal equations instead of copying the kept voxels and",
        "takes medians by partial sort, the baseline's share of the uncertainty is cached per baseline, and",
        "the finiteness check is one sum. No compiled extension (numba) was needed; results are unchanged",
        "(the accuracy tables above come from the same code).",
        "",
        f"Machine: {load}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true", help="replace the section in docs/benchmarks.md")
    parser.add_argument(
        "--compare-with",
        type=Path,
        default=None,
        metavar="SRC",
        help="also time RealtimeThermometry of this igikit source tree (e.g. `git archive REV src | tar -x -C DIR`, "
        "then DIR/src), interleaved with this one",
    )
    parser.add_argument("--compare-label", default="", help="what --compare-with holds, for the docs (e.g. a commit)")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    s = scene()
    acc = static(s) + motion(s)
    dose = dose_checks(s)
    spd = speed(s, earlier=args.compare_with)
    load_end = os.getloadavg()[0]
    busy = max(load_start, load_end) > 0.75 * (os.cpu_count() or 1)
    load = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy {np.__version__}; load average {load_start:.1f} at the start and {load_end:.1f} at the "
        "end of the run" + (" (shared with other jobs: measured under load)" if busy else " (a quiet machine)")
    )
    command = ".venv/bin/python bench/fus_thermometry.py --write-docs"
    note = ""
    if args.compare_with is not None:
        command += f" --compare-with {args.compare_with}"
        note = args.compare_label or str(args.compare_with)
        if args.compare_label:
            command += f' --compare-label "{args.compare_label}"'
    text = render(acc, dose, spd, load, command=command, args_note=note)
    print(text)
    if args.write_docs:
        replace_section(text)


if __name__ == "__main__":
    main()
