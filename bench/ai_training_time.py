"""Benchmark: time to train the patient-specific network (issue 6 target: under 60 s on 2 cores).

The ``ai`` tracker of each case learns from the registration-propagated labels of its pre-beam
frames and trains on its own thread while the registration tracker keeps tracking (the case is
replayed as fast as it runs); the time is from the start of training to the exported ONNX model
ready for ONNX Runtime. Phantom cases of the unseen seeds (``igikit sim cine``). The machine's load
average is printed with the table, and the section goes to docs/benchmarks.md.

Usage::

    .venv/bin/python bench/ai_training_time.py [--cases out/phantoms-seed1/SIM_000 ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import replace_section

from igikit.ai.tracker import AITracker
from igikit.io.trackrad import read_case
from igikit.workflows.mrgrt.tracking import make_tracker
from igikit.workflows.mrgrt.workflow import spacing_rc

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CASES = [
    "out/phantoms-seed1/SIM_000",
    "out/phantoms-seed1/SIM_005",
    "out/phantoms-seed1/SIM_015",
    "out/phantoms-seed2/SIM_003",
    "out/phantoms-seed2/SIM_010",
    "out/phantoms-seed2/SIM_020",
]


def train_time_s(case_dir: Path) -> float:
    """Replay one case through the ``ai`` tracker; the seconds its network took to train and export."""
    case = read_case(case_dir)
    tracker = make_tracker("ai")
    assert isinstance(tracker, AITracker)
    tracker.start(case.frames[:, :, 0], case.first_label, spacing_rc(case))
    for t in range(1, case.n_frames):
        tracker.update(case.frames[:, :, t])
    if tracker._thread is not None:
        tracker._thread.join()
    return float(tracker.train_time_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", type=Path, default=[ROOT / c for c in DEFAULT_CASES])
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    times = []
    for case_dir in args.cases:
        times.append(train_time_s(case_dir))
        print(f"{case_dir.parent.name}/{case_dir.name}: {times[-1]:.1f} s", flush=True)
    a = np.array(times)
    load_end = os.getloadavg()[0]
    text = "\n".join(
        [
            "## Patient-specific network: training time",
            "",
            f"Command: `.venv/bin/python bench/ai_training_time.py` ({len(a)} cases of the unseen phantom seeds; "
            f"{os.cpu_count()} cores, load average {load_start:.1f} at the start and {load_end:.1f} at the end).",
            "",
            "| cases | median s | p95 s | max s | target |",
            "|---|---|---|---|---|",
            f"| {len(a)} | {np.median(a):.1f} | {np.percentile(a, 95):.1f} | {a.max():.1f} | < 60 s |",
            "",
            "Per case: "
            + ", ".join(f"{c.parent.name}/{c.name} {t:.1f} s" for c, t in zip(args.cases, a, strict=True))
            + ". Under heavy load (other jobs, load average about 8 on 2 cores) the first case of a run took up to "
            '68 s (see "Patient-specific AI tracking").',
        ]
    )
    print(text)
    if not args.no_docs:
        replace_section(text)


if __name__ == "__main__":
    main()
