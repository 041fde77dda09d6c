"""``igikit thermometry``: PRF temperature, thermal dose and lesion maps from complex MR frames."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from igikit.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``igikit thermometry`` to the ``igikit`` parser."""
    p = sub.add_parser(
        "thermometry",
        help="PRF-shift temperature, CEM43 and lesion maps from complex MR frames",
        description=(
            "Read complex MR frames (HDF5: /frames, /frame_times_s, attributes te_s, b0_t, spacing_mm; or a "
            "DICOM folder of magnitude + phase), compute absolute temperature by PRF shift (baseline "
            "subtraction, multi-baseline for periodic motion, or referenceless), its per-voxel uncertainty "
            "from the magnitude SNR, the thermal dose (CEM43) and the lesion (CEM43 >= 240 min), and write "
            "OUT/temperature.h5."
        ),
    )
    p.add_argument("series", type=Path, metavar="SERIES.h5|DIR", help="HDF5 series or DICOM magnitude + phase folder")
    p.add_argument("--out", required=True, type=Path, help="output folder (temperature.h5 is written there)")
    p.add_argument(
        "--method",
        choices=("baseline", "multibaseline", "referenceless"),
        default="baseline",
        help="baseline subtraction (default), multi-baseline atlas for periodic motion, or referenceless",
    )
    p.add_argument(
        "--baseline-frames",
        type=int,
        default=None,
        metavar="N",
        help="unheated frames at the start: averaged baseline, or the multi-baseline library (default 1; "
        "multibaseline needs >= 2, covering a breathing cycle)",
    )
    p.add_argument(
        "--drift-order",
        type=int,
        default=None,
        choices=(0, 1, 2, 3),
        metavar="N",
        help="polynomial order (0-2) of the drift fitted in the reference region (default: 1 with "
        "--reference-mask, otherwise no drift correction); for referenceless the background order (default 2)",
    )
    p.add_argument(
        "--reference-mask",
        type=Path,
        default=None,
        metavar="M",
        help="unheated reference region, ([S,] H, W): .npy, HDF5 (/mask) or an image file (NIfTI, MHA)",
    )
    p.add_argument("--noise-sigma", type=float, default=None, help="noise per channel (default: from the series)")
    p.add_argument(
        "--max-uncertainty-c",
        type=float,
        default=2.0,
        help="voxels with a larger temperature standard deviation are not trusted (default 2 °C)",
    )
    p.add_argument("--lesion-threshold-min", type=float, default=240.0, help="CEM43 of a lesion (default 240 min)")
    p.add_argument("--te-s", type=float, default=None, help="echo time (s), overrides the file")
    p.add_argument("--b0-t", type=float, default=None, help="field strength (T), overrides the file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from igikit.workflows.fus.series import read_mask, read_series, write_result
    from igikit.workflows.fus.thermometry import prf_thermometry

    for name in ("te_s", "b0_t", "noise_sigma"):
        value = getattr(args, name)
        if value is not None and not (np.isfinite(value) and value > 0):
            raise InputError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    if args.out.exists() and not args.out.is_dir():
        raise InputError("--out must be a folder", args.out)
    series = read_series(args.series, te_s=args.te_s, b0_t=args.b0_t)
    mask = None
    if args.reference_mask is not None:
        mask = read_mask(args.reference_mask, tuple(series.frames.shape[1:]))
    drift_order = args.drift_order
    if drift_order is None and mask is not None and args.method != "referenceless":
        drift_order = 1
    start = time.perf_counter()
    try:
        result = prf_thermometry(
            series.frames,
            series.frame_times_s,
            te_s=series.te_s,
            b0_t=series.b0_t,
            alpha_ppm_per_c=series.alpha_ppm_per_c,
            body_temperature_c=series.body_temperature_c,
            method=args.method,
            baseline_frames=args.baseline_frames,
            drift_order=drift_order,
            reference_mask=mask,
            noise_sigma=args.noise_sigma,
            max_uncertainty_c=args.max_uncertainty_c,
            lesion_threshold_min=args.lesion_threshold_min,
        )
    except InputError as exc:
        raise InputError(exc.problem, args.series) from None
    elapsed = time.perf_counter() - start
    target = write_result(result, series, args.out)
    voxel_mm3 = float(np.prod(series.spacing_mm))
    trusted = result.trusted.astype(bool)
    hottest = float(result.temperature_c[trusted].max()) if trusted.any() else float("nan")
    n = series.frames.shape[0]
    print(
        f"{n} frames, method {args.method}: max trusted temperature {hottest:.1f} °C, "
        f"trusted {100 * trusted.mean():.0f} % of voxels, lesion {int(result.lesion.sum())} voxels "
        f"({result.lesion.sum() * voxel_mm3 / 1000:.2f} mL), {1000 * elapsed / n:.2f} ms per frame"
    )
    print(f"written {target}")
    return 0
