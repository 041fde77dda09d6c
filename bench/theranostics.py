"""Theranostics dosimetry benchmark: kernel validation and kernel-dose speed.

Run: ``.venv/bin/python bench/theranostics.py``. Prints (1) voxel S-values computed by igikit's
kernel model against the Monte Carlo values of Lanconelli et al., Phys Med Biol 57 (2012) 517
(``../shared/data/dosimetry``, 4.42 mm, soft tissue), (2) the time of kernel dose on a 128^3 grid.
Results go to docs/benchmarks.md, section "Theranostics dosimetry".
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


if __name__ == "__main__":
    validate()
    speed()
