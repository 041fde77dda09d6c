"""Theranostics dosimetry benchmark: kernel validation, kernel-dose speed, TIA accuracy on a SPECT phantom.

Run: ``.venv/bin/python bench/theranostics.py``. Prints (1) voxel S-values computed by igikit's
kernel model against the Monte Carlo values of Lanconelli et al., Phys Med Biol 57 (2012) 517
(``../shared/data/dosimetry``, 4.42 mm, soft tissue), (2) the time of kernel dose on a 128^3 grid,
(3) time-integrated activity against the truth of the Lu-177 SPECT phantom (:mod:`igikit.sim.spect`:
11 mm blur, Poisson noise, 4 mm shifts) with registration + GTM partial-volume correction, and the
baselines without them. Results go to docs/benchmarks.md, section "Theranostics dosimetry".
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from igikit.workflows.theranostics.dose import kernel_dose, voxel_s_values

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dosimetry"
NEIGHBOURS = [(0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1), (0, 0, 2)]


def validate() -> None:
    print("| nuclide | emissions | voxel (i,j,k) | Lanconelli mGy/(MBq s) | igikit | difference |")
    print("|---|---|---|---|---|---|")
    for name in ("Y-90", "Lu-177"):
        with (DATA / f"{name}_4.42mm_soft.csv").open() as f:
            ref = {(int(r["i"]), int(r["j"]), int(r["k"])): float(r["s_mGy_per_MBq_s"]) for r in csv.DictReader(f)}
        for electrons in ("all", "beta"):
            s = voxel_s_values(name, (4.42, 4.42, 4.42), electrons=electrons)
            c = np.array(s.shape) // 2
            for i, j, k in NEIGHBOURS:
                ours = float(s[c[0] + k, c[1] + j, c[2] + i]) if max(i, j, k) <= c.min() else 0.0
                print(f"| {name} | {electrons} electrons | ({i},{j},{k}) | {ref[i, j, k]:.3g} | {ours:.3g} | "
                      f"{100 * (ours / ref[i, j, k] - 1):+.1f} % |")


def speed() -> None:
    rng = np.random.default_rng(0)
    tia = rng.uniform(0, 1e9, (128, 128, 128))
    for name, spacing in (("Y-90", (4.42,) * 3), ("Lu-177", (4.42,) * 3), ("Y-90", (2.0,) * 3)):
        t0 = time.perf_counter()
        kernel_dose(tia, spacing, name)  # first call also builds the kernel
        first = time.perf_counter() - t0
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            kernel_dose(tia, spacing, name)
            times.append(time.perf_counter() - t0)
        print(f"kernel dose 128^3 {name} {spacing[0]} mm: first call {first:.2f} s (kernel built), "
              f"then median {np.median(times):.2f} s")


def tia_accuracy(seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    from igikit.sim.spect import LABELS, lu177_spect_phantom
    from igikit.workflows.theranostics.pipeline import compute_dose
    from igikit.workflows.theranostics.tac import trapezoid_tia

    organs = ("liver", "kidney_left", "kidney_right", "spleen", "tumour")
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
                errors[o].setdefault("model", []).append(float(full.vois[k].fit is not None
                                                               and full.vois[k].fit.model == "bi"))
        print(f"\nscans at {', '.join(f'{t:g}' for t in times)} h; seeds {seeds}; pipeline (4-5 registrations, "
              f"GTM, fits, local dose) median {np.median(elapsed):.1f} s")
        print("| VOI | volume (mL) | registration + GTM + AICc fit | no registration, no PVC, fit | "
              "VOI sum, trapezoids | bi-exponential chosen |")
        print("|---|---|---|---|---|---|")
        for o in organs:
            e = errors[o]

            def cell(xs: list[float]) -> str:
                return f"{np.mean(xs):+.1f} % ({min(xs):+.1f} to {max(xs):+.1f})"

            print(f"| {o} | {p.true_volume_ml[o]:.0f} | {cell(e['registration + GTM + fit'])} | "
                  f"{cell(e['no registration, no PVC, fit'])} | {cell(e['VOI sum, trapezoids'])} | "
                  f"{int(sum(e['model']))}/{len(seeds)} |")


if __name__ == "__main__":
    validate()
    speed()
    tia_accuracy()
