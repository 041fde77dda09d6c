"""Theranostics dosimetry benchmark: kernel validation, kernel-dose speed, TIA accuracy, pipeline speed.

Run: ``.venv/bin/python bench/theranostics.py [--write-docs]``. Prints (1) voxel S-values computed by
igikit's kernel model against the Monte Carlo values of Lanconelli et al., Phys Med Biol 57 (2012)
517 (``../shared/data/dosimetry``, 4.42 mm, soft tissue), (2) the time of kernel dose on a 128^3
grid, (3) time-integrated activity against the truth of the Lu-177 SPECT phantom
(:mod:`igikit.sim.spect`: 11 mm blur, Poisson noise, 4 mm shifts) with registration + GTM
partial-volume correction, and the baselines without them, for five and four scans, (4) the time
of the whole four-time-point Lu-177 pipeline (registration, GTM, fits, kernel dose) on 128^3, with
the registration of the previous version (metric over the whole field of view) as the baseline
measured in the same run. ``--write-docs`` replaces the section "Theranostics dosimetry" of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np
from _docs import replace_section  # bench/_docs.py: the script folder is on sys.path

from igikit.workflows.theranostics.dose import kernel_dose, voxel_s_values

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dosimetry"
NEIGHBOURS = [(0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1), (0, 0, 2)]


def _stats(xs: list[float]) -> tuple[float, float, float]:
    a = np.asarray(xs)
    return float(np.median(a)), float(np.percentile(a, 95)), float(np.percentile(a, 99))


def validate() -> list[str]:
    out = ["| nuclide | emissions | voxel (i,j,k) | Lanconelli mGy/(MBq s) | igikit | difference |",
           "|---|---|---|---|---|---|"]
    for name in ("Y-90", "Lu-177"):
        with (DATA / f"{name}_4.42mm_soft.csv").open() as f:
            ref = {(int(r["i"]), int(r["j"]), int(r["k"])): float(r["s_mGy_per_MBq_s"]) for r in csv.DictReader(f)}
        for electrons in ("all", "beta"):
            s = voxel_s_values(name, (4.42, 4.42, 4.42), electrons=electrons)
            c = np.array(s.shape) // 2
            for i, j, k in NEIGHBOURS:
                ours = float(s[c[0] + k, c[1] + j, c[2] + i]) if max(i, j, k) <= c.min() else 0.0
                out.append(f"| {name} | {electrons} electrons | ({i},{j},{k}) | {ref[i, j, k]:.3g} | {ours:.3g} | "
                           f"{100 * (ours / ref[i, j, k] - 1):+.1f} % |")
    return out


def speed(runs: int = 10) -> list[str]:
    rng = np.random.default_rng(0)
    tia = rng.uniform(0, 1e9, (128, 128, 128))
    out = ["| nuclide | voxel (mm) | first call (s, kernel built) | median (s) | p95 | p99 | runs |",
           "|---|---|---|---|---|---|---|"]
    for name, spacing in (("Y-90", (4.42,) * 3), ("Lu-177", (4.42,) * 3), ("Y-90", (2.0,) * 3)):
        t0 = time.perf_counter()
        kernel_dose(tia, spacing, name)  # first call also builds the kernel
        first = time.perf_counter() - t0
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            kernel_dose(tia, spacing, name)
            times.append(time.perf_counter() - t0)
        med, p95, p99 = _stats(times)
        out.append(f"| {name} | {spacing[0]} | {first:.2f} | {med:.2f} | {p95:.2f} | {p99:.2f} | {runs} |")
    return out


def pipeline_speed(runs: int = 5, baseline_runs: int = 1) -> list[str]:
    """The four-time-point Lu-177 pipeline on 128^3 (4.8 mm): registration, GTM, AICc/hybrid fits, kernel dose."""
    from igikit.sim.spect import lu177_spect_phantom
    from igikit.workflows.theranostics import registration
    from igikit.workflows.theranostics.pipeline import compute_dose

    p = lu177_spect_phantom(times_h=(4.0, 24.0, 96.0, 168.0), shape_zyx=(128, 128, 128), seed=0)
    compute_dose(list(p.images[:1]), [4.0], "Lu-177", method="kernel")  # imports and the kernel, once

    def timed(n: int) -> tuple[list[float], list[float], list[float]]:
        wall, cpu, err = [], [], []
        for _ in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            r = compute_dose(list(p.images), list(p.times_h), "Lu-177", labels=p.labels, resolution_mm=11.0,
                             method="kernel")
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            err.append(max(float(np.linalg.norm(np.subtract(g.translation_mm, s))) for g, s in
                           zip(r.registrations[1:], p.shifts_mm[1:], strict=True) if g is not None))
        return wall, cpu, err

    rows = [("igikit (metric on the activity's bounding box)", *timed(runs))]
    saved = registration.CROP_FRACTION
    registration.CROP_FRACTION = -1.0  # every voxel counts as activity: the whole field of view, as before
    try:
        rows.append(("baseline: metric over the whole field of view", *timed(baseline_runs)))
    finally:
        registration.CROP_FRACTION = saved
    base = float(np.median(rows[-1][1]))
    out = ["| pipeline, 4 scans on 128^3 | runs | wall median (s) | p95 | p99 | CPU time median (s) | "
           "worst shift error (mm) | wall vs baseline |", "|---|---|---|---|---|---|---|---|"]
    for name, wall, cpu, err in rows:
        med, p95, p99 = _stats(wall)
        out.append(f"| {name} | {len(wall)} | {med:.1f} | {p95:.1f} | {p99:.1f} | {np.median(cpu):.1f} | "
                   f"{max(err):.2f} | {med / base:.2f} |")
    return out


def tia_accuracy(seeds: tuple[int, ...] = (0, 1, 2)) -> list[str]:
    from igikit.sim.spect import LABELS, lu177_spect_phantom
    from igikit.workflows.theranostics.pipeline import compute_dose
    from igikit.workflows.theranostics.tac import trapezoid_tia

    organs = ("liver", "kidney_left", "kidney_right", "spleen", "tumour")
    out: list[str] = []
    for times in ((1.0, 4.0, 24.0, 96.0, 168.0), (4.0, 24.0, 96.0, 168.0)):
        errors: dict[str, dict[str, list[float]]] = {o: {} for o in organs}
        elapsed = []
        for seed in seeds:
            p = lu177_spect_phantom(times_h=times, seed=seed)
            t0 = time.perf_counter()
            full = compute_dose(list(p.images), list(p.times_h), "Lu-177", labels=p.labels, resolution_mm=11.0,
                                method="local")
            elapsed.append(time.perf_counter() - t0)
            plain = compute_dose(list(p.images), list(p.times_h), "Lu-177", labels=p.labels, method="local",
                                 register=False)
            lab = np.asarray(p.labels.array)
            vml = float(np.prod(p.labels.spacing_mm)) / 1000.0
            for o in organs:
                k, truth = LABELS[o], p.true_tia_mbq_h[o]
                voi_mbq = np.array([float(im.array[lab == k].sum()) * vml / 1e6 for im in p.images])
                runs = {
                    "registration + GTM + fit": full.vois[k].tia_mbq_h,
                    "no registration, no PVC, fit": plain.vois[k].tia_mbq_h,
                    "VOI sum, trapezoids": float(trapezoid_tia(np.array(p.times_h), voi_mbq, p.half_life_h)),
                }
                for name, value in runs.items():
                    errors[o].setdefault(name, []).append(100.0 * (value / truth - 1.0))
                fit = full.vois[k].fit
                errors[o].setdefault("model", []).append(fit.model if fit is not None else "-")  # type: ignore[arg-type]
        out += ["", f"Scans at {', '.join(f'{t:g}' for t in times)} h (seeds {', '.join(map(str, seeds))}; pipeline "
                f"median {np.median(elapsed):.0f} s under load):", "",
                "| VOI | volume (mL) | registration + GTM + fit | no registration, no PVC, fit | "
                "VOI sum, trapezoids | model chosen |", "|---|---|---|---|---|---|"]
        for o in organs:
            e = errors[o]

            def cell(xs: list[float]) -> str:
                return f"{np.mean(xs):+.1f} % ({min(xs):+.1f} to {max(xs):+.1f})"

            models = [str(m) for m in e["model"]]
            chosen = ", ".join(f"{m} {models.count(m)}/{len(seeds)}" for m in sorted(set(models)))
            out.append(f"| {o} | {p.true_volume_ml[o]:.0f} | {cell(e['registration + GTM + fit'])} | "
                       f"{cell(e['no registration, no PVC, fit'])} | {cell(e['VOI sum, trapezoids'])} | {chosen} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write-docs", action="store_true", help="replace the section in docs/benchmarks.md")
    parser.add_argument("--runs", type=int, default=5, help="runs of the 128^3 pipeline (default 5)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    parts = {"validate": validate(), "speed": speed(), "pipeline": pipeline_speed(args.runs), "tia": tia_accuracy()}
    load = max(load, os.getloadavg()[0])
    tables = {k: "\n".join(v) for k, v in parts.items()}
    text = SECTION.format(cores=os.cpu_count(), load=load, runs=args.runs, **tables)
    print(text)
    if args.write_docs:
        replace_section(text)


SECTION = """## Theranostics dosimetry

`bench/theranostics.py --write-docs` ({cores}-core development machine, CPU only, shared with other jobs: load
average up to {load:.1f} during the run, so wall times are inflated; CPU time is the process's own,
all threads). Kernel model: Loevinger's beta point kernel from the ICRP-107 beta endpoint
(icrp107-database), cut at the Katz-Penfold range, integrated exactly over source and target voxels
(`igikit.workflows.theranostics.dose`); electrons only, no photon transport. Reference: Monte Carlo
voxel S-values of Lanconelli et al., Phys Med Biol 57 (2012) 517, soft tissue, 4.42 mm
(`../shared/data/dosimetry`, via MGHPhysicsResearch/MIRDCalculation).

{validate}

Reading: the source voxel is within 5 % and the face neighbours within 3 % for Y-90; the second
shell is overestimated (+40 % at (0,0,2), 0.4 % of the source-voxel value) because Loevinger's
tail decays more slowly than Monte Carlo. Lanconelli's Lu-177 table holds 0.1417 MeV per decay in
all, less than ICRP-107's 0.1479 MeV of electrons alone, so it was computed without conversion and
Auger electrons; compared like with like (beta only) the source voxel is -4.2 % and the face
neighbours -0.7 %. Beyond the first shell Lu-177 is dominated by photons (0.035 MeV per decay),
which the kernel does not transport: those voxels are 10^-4 of the source voxel.

Energy conservation: kernel sum x voxel mass equals the mean ICRP-107 electron energy (tested for
Y-90, Ho-166, Lu-177, I-131 at 4.42, 2 x 2 x 3 and 0.8 mm). Deep inside a uniform Y-90 cube
(60 mm, 2 mm voxels) kernel dose equals local deposition within 2 % (test). Local deposition uses
49.67 Gy per GBq/kg for Y-90 and 15.87 for Ho-166 (ICRP-107 electrons alone: 49.77 and 15.53).

Speed, kernel dose on 128^3 (FFT convolution; target < 2 s):

{speed}

### Four-time-point Lu-177 pipeline on 128^3

`pipeline_speed`: the Lu-177 phantom below on a 128^3 grid of 4.8 mm (a 614 mm field of view),
scans at 4, 24, 96 and 168 h, through `compute_dose(..., resolution_mm=11, method="kernel")`: three
rigid registrations, GTM partial-volume correction, TAC fits, kernel dose, VOI statistics
({runs} runs after one warm-up; the baseline is the same pipeline with the registration metric over
the whole field of view, as in the previous version, measured in the same run; the GTM change below is
in both rows). Target < 30 s on 2 cores.

{pipeline}

Reading: registration dominated the pipeline; its metric now runs on the bounding box of the
activity (1 % of the robust maximum, plus 25 mm), which on this 128^3 SPECT grid holds 18 % of the
voxels, with the same shift errors. The GTM matrix is built once for all time points (each VOI
blurred inside its own box, exact), not once per time point. The CPU time (all threads) bounds the
wall time on two idle cores from above; the wall times here were taken on a machine running other
jobs.

### Time-integrated activity on a Lu-177 SPECT phantom

`tia_accuracy`, phantom `igikit.sim.spect.lu177_spect_phantom`: liver 1339 mL with a 50 mL tumour
inside, kidneys 157 and 141 mL, spleen 202 mL, body; bi-exponential kinetics with uptake per organ
(known TIA); 4.8 mm voxels, 11 mm FWHM Gaussian blur, Poisson noise at 2000 counts per MBq in a
voxel, a 4 mm random shift of every scan after the first. Pipeline: `compute_dose(...,
resolution_mm=11)` = rigid registration of each scan into the first one's frame (SimpleITK Euler3D,
normalised correlation, 3 levels), GTM partial-volume correction, TAC fit. Error of the TIA against
the truth, mean (range) over seeds 0, 1, 2.
{tia}

Reading: the target (organs of 100 mL or more within 5 %, the 50 mL tumour within 10 %) is met with
five scans and with four; `tests/workflows/theranostics/test_spect_accuracy.py` holds both. Without
registration and partial-volume correction the same fit is 13-26 % low on the kidneys, spleen and
tumour, the loss the issue describes. Four scans are too few for AICc to judge the 3-parameter
uptake model (models are judged from n - p >= 2), and a mono-exponential through all four points
bends its clearance to meet the 4 h point that is still rising: that gave the tumour +14 % and the
liver +6 % before. The four-point rule (`igikit.workflows.theranostics.tac`, "hybrid") takes the
first point as the uptake phase: a rectangle to it, a trapezoid to the second point, and a
mono-exponential fitted to the later points for the tail (MIRD Pamphlet 16's hybrid integration;
Sandstrom et al., J Nucl Med 54 (2013) 33, fit the late Lu-177 points mono-exponentially). The VOI
sum with trapezoids is not uniformly low because its physical-decay tail after 168 h overestimates
organs that keep clearing (liver +31 %). Registration recovers the 4 mm shifts within 0.7 mm and 1
degree; a left-right flipped scan is refused (correlation 0.56 < 0.7) and so is an antero-posterior
flip (it needs a 74 degree rotation).
"""


if __name__ == "__main__":
    main()
