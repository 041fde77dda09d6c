"""A varied set of cine tracking phantoms, written as TrackRAD case folders with a ``cases.json``.

Parameters are spread over their ranges by Latin hypercube sampling (each range cut into
``n`` strata, one case per stratum, McKay et al. 1979), so any seed covers every range evenly; a
different seed gives a different set built the same way. The set mixes both real backgrounds,
high and low contrast (brighter and darker targets), small and large targets, 4-8 Hz, drift,
extra irregularity, through-slice motion and corrupted frames, and draws the breathing of
pediatric and veterinary cases from their patient profiles (rate, amplitude, AP/SI ratio).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from igikit.core.profile import BreathingProfile, load_profile
from igikit.errors import InputError
from igikit.io.atomic import atomic_path
from igikit.io.trackrad import write_case
from igikit.sim.cine import CinePhantomSpec, FrameCorruption, default_data_dir, make_case
from igikit.sim.preview import write_preview

#: Ranges of the set (the issue's: amplitude 5-25 mm comes from the adult profile's range).
RADIUS_MM = (5.0, 15.0)
FRAME_RATE_HZ = (4.0, 8.0)
CONTRAST_ABS = (0.12, 0.8)  # log-uniform, so a third of the cases are low contrast (|c| < 0.25)
SNR = (10.0, 40.0)  # log-uniform
DURATION_S = (10.0, 20.0)
FRAMES = (60, 120)
DRIFT_MM_PER_MIN = (1.0, 6.0)
#: The extra irregularity knob adds roughly this coefficient of variation at 1 (see breathing.py).
_IRREGULARITY_CV_PER_UNIT = 0.25
#: Profiles whose cases keep the volunteer's own breathing rate (the traces are adult volunteers').
_NATIVE_RATE_PROFILES = ("adult",)

ProgressFn = Callable[[int, int, str], None]


@functools.lru_cache(maxsize=16)
def _breathing(profile: str) -> BreathingProfile:
    """The breathing section of a profile (parsed once per process: a set asks for it per case)."""
    return load_profile(profile).breathing


def _strata(rng: np.random.Generator, n: int, lo: float, hi: float, *, log: bool = False) -> np.ndarray:
    """``n`` values, one per equal stratum of [lo, hi] (log scale if asked), in random order."""
    u = (rng.permutation(n) + rng.uniform(size=n)) / max(n, 1)
    if log:
        return np.asarray(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))))
    return np.asarray(lo + u * (hi - lo))


def spec_for_profile(
    profile: str,
    *,
    rng: np.random.Generator | None = None,
    keep_trace_rate: bool = False,
    **overrides: Any,
) -> CinePhantomSpec:
    """A phantom spec whose breathing (rate, SI amplitude, AP/SI ratio, irregularity) comes from a profile.

    Parameters
    ----------
    profile
        A patient profile name or YAML path (:func:`igikit.core.profile.load_profile`).
    rng
        None takes the profile's typical values; a generator draws rate and amplitude uniformly
        within the profile's population ranges (typical ±15 % / ±30 % where it gives none).
    keep_trace_rate
        Keep the recorded volunteer's own rate instead of time-scaling to the profile's.
    **overrides
        Any other :class:`CinePhantomSpec` field (they win over the profile).

    Returns
    -------
    CinePhantomSpec
    """
    b = _breathing(str(profile))
    rate_range = b.rate_range_per_min or (0.85 * b.rate_per_min, 1.15 * b.rate_per_min)
    amp_range = b.amplitude_si_range_mm or (0.7 * b.amplitude_si_mm, 1.3 * b.amplitude_si_mm)
    if rng is None:
        rate, amp = b.rate_per_min, b.amplitude_si_mm
    else:
        rate, amp = float(rng.uniform(*rate_range)), float(rng.uniform(*amp_range))
    ap = b.amplitude_ap_mm / b.amplitude_si_mm if b.amplitude_si_mm > 0 else 0.0
    fields: dict[str, Any] = {
        "profile": str(profile),
        "breathing_rate_per_min": None if keep_trace_rate else round(rate, 2),
        "amplitude_si_mm": round(amp, 2),
        "ap_fraction": round(ap, 3),
        "irregularity": round(min(1.5, b.irregularity / _IRREGULARITY_CV_PER_UNIT), 3),
    }
    fields.update(overrides)
    return CinePhantomSpec(**fields)


def _profile_counts(n: int, profiles: Sequence[str]) -> list[str]:
    """Profile of each case: each non-adult profile ~1/6 of the set, adults at least half of it."""
    others = [p for p in profiles if p != "adult"]
    if "adult" not in profiles:
        return [others[i % len(others)] for i in range(n)]
    each = max(1, round(n / 6))
    names = [p for _ in range(each) for p in others][: max(0, n - max(1, n // 2))]
    return ["adult"] * (n - len(names)) + names


def sample_specs(
    n_cases: int = 24,
    *,
    seed: int = 0,
    profiles: Sequence[str] = ("adult", "pediatric", "veterinary_dog"),
    trace_files: Sequence[str] | None = None,
    data_dir: str | Path | None = None,
) -> list[CinePhantomSpec]:
    """Draw the specs of a varied phantom set (no rendering).

    Parameters
    ----------
    n_cases
        Number of cases (>= 1).
    seed
        Seed of the whole set; each case gets its own seed from it.
    profiles
        Patient profiles to include; ``"adult"`` cases span the adult amplitude range and keep the
        volunteers' own breathing rate, the others take rate and amplitude from their profile.
    trace_files
        Respiration trace file names to draw from; default every CSV in ``DATA/respiration``.
    data_dir
        The real data folder (for the list of traces).

    Returns
    -------
    list of CinePhantomSpec
        Case ids ``SIM_000``, ``SIM_001``, ...; background frame and target position are left to
        :func:`~igikit.sim.cine.make_case` to draw from each case's seed.
    """
    if n_cases < 1:
        raise InputError(f"the number of cases must be at least 1, got {n_cases}")
    if not profiles:
        raise InputError("give at least one patient profile")
    if trace_files is None:
        folder = Path(data_dir if data_dir is not None else default_data_dir()) / "respiration"
        trace_files = sorted(p.name for p in folder.glob("*.csv"))
        if not trace_files:
            raise InputError("no respiration traces (*.csv) found", folder)
    rng = np.random.default_rng(seed)
    n = n_cases
    names = [str(p) for p in rng.permutation(_profile_counts(n, list(profiles)))]
    radius = _strata(rng, n, *RADIUS_MM)
    rate = _strata(rng, n, *FRAME_RATE_HZ)
    contrast = _strata(rng, n, *CONTRAST_ABS, log=True) * np.where(rng.uniform(size=n) < 0.4, -1.0, 1.0)
    snr = _strata(rng, n, *SNR, log=True)
    oop_frac = _strata(rng, n, 0.0, 0.8)
    backgrounds = rng.permutation(["magdeburg_liver", "eth_thorax"] * ((n + 1) // 2))[:n]
    # Amplitudes: strata within each profile's own range, so every profile group spans its range.
    amp_u = np.empty(n)
    for p in set(names):
        idx = [i for i, q in enumerate(names) if q == p]
        amp_u[idx] = _strata(rng, len(idx), 0.0, 1.0)
    specs = []
    for i in range(n):
        case_rng = np.random.default_rng([seed, i])
        base = spec_for_profile(names[i], rng=case_rng, keep_trace_rate=names[i] in _NATIVE_RATE_PROFILES)
        amp_range = _breathing(names[i]).amplitude_si_range_mm or (
            0.7 * base.amplitude_si_mm, 1.3 * base.amplitude_si_mm
        )
        amplitude = amp_range[0] + amp_u[i] * (amp_range[1] - amp_range[0])
        r = float(radius[i])
        oop = float(oop_frac[i]) * r
        offset = float(case_rng.uniform(-0.1 * r, min(0.1 * r, 0.9 * r - oop)))
        fr = round(float(rate[i]), 2)
        n_frames = int(np.clip(round(case_rng.uniform(*DURATION_S) * fr), *FRAMES))
        drift = float(case_rng.uniform(*DRIFT_MM_PER_MIN)) * float(case_rng.choice([-1.0, 1.0]))
        drift = 0.0 if case_rng.uniform() < 1 / 3 else drift
        irr_scale = 0.0 if case_rng.uniform() < 1 / 3 else float(case_rng.uniform(0.3, 1.2))
        specs.append(
            CinePhantomSpec.from_dict(
                {
                    **base.to_dict(),
                    "corruptions": _corruptions(case_rng, n_frames),
                    "case_id": f"SIM_{i:03d}",
                    "background": str(backgrounds[i]),
                    "target_radius_mm": round(r, 2),
                    "target_contrast": round(float(contrast[i]), 3),
                    "target_texture": round(float(case_rng.uniform(0.0, 0.25)), 3),
                    "slice_offset_mm": round(offset, 2),
                    "out_of_plane_mm": round(oop, 2),
                    "trace_file": str(case_rng.choice(list(trace_files))),
                    "amplitude_si_mm": round(float(amplitude), 2),
                    "ap_fraction": round(base.ap_fraction * float(case_rng.uniform(0.6, 1.2)), 3),
                    "rotation_deg": round(float(case_rng.uniform(-2.0, 2.0)), 2),
                    "deformation_nonuniformity": round(float(case_rng.uniform(0.6, 1.0)), 2),
                    "irregularity": round(min(1.5, base.irregularity * irr_scale), 3),
                    "drift_mm_per_min": round(drift, 2),
                    "frame_rate_hz": fr,
                    "duration_s": n_frames / fr,
                    "snr": round(float(snr[i]), 2),
                    "phase_encode": "ap" if case_rng.uniform() < 0.7 else "si",
                    "seed": int(case_rng.integers(2**31 - 1)),
                }
            )
        )
    return specs


def _corruptions(rng: np.random.Generator, n_frames: int) -> list[dict[str, Any]]:
    """0-3 artefacts at distinct frames after the first (frame 0 carries the given label)."""
    count = int(rng.choice([0, 1, 2, 3], p=[0.3, 0.3, 0.25, 0.15]))
    frames = sorted(int(f) for f in rng.choice(np.arange(1, n_frames), size=count, replace=False))
    out = []
    for f in frames:
        if rng.uniform() < 0.5:
            c = FrameCorruption(f, "ghosting", round(float(rng.uniform(0.15, 0.5)), 3),
                                round(float(rng.uniform(0.25, 0.5)), 3))
        else:
            c = FrameCorruption(f, "noise_burst", round(float(rng.uniform(2.5, 6.0)), 3))
        out.append(dataclasses.asdict(c))
    return out


def make_phantom_set(
    out_dir: str | Path,
    *,
    n_cases: int = 24,
    seed: int = 0,
    profiles: Sequence[str] = ("adult", "pediatric", "veterinary_dog"),
    data_dir: str | Path | None = None,
    previews: bool = True,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Render a varied phantom set into ``out_dir``: one TrackRAD folder per case and ``cases.json``.

    Parameters
    ----------
    out_dir
        Output folder (created if missing).
    n_cases, seed, profiles
        See :func:`sample_specs`.
    data_dir
        The real data folder (``../shared/data``); default :func:`~igikit.sim.cine.default_data_dir`.
    previews
        Also write ``preview.png`` (first / middle / farthest / hardest frame with the truth
        contour) into each case folder.
    progress
        Called as ``progress(done, total, case_id)`` after each case.

    Returns
    -------
    dict
        The content of ``cases.json``: ``generator``, ``seed``, ``profiles`` and ``cases``, one
        entry per case with ``case_id``, ``folder``, the fully resolved ``spec`` and ``derived``
        quantities (frames, rate, CNR, ...), so results can be broken down by any parameter.
    """
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = sample_specs(n_cases, seed=seed, profiles=profiles, data_dir=data)
    entries = []
    for k, spec in enumerate(specs):
        case = make_case(spec, data)
        folder = write_case(out, case)
        if previews:
            write_preview(case, folder / "preview.png")
        h, w, t = case.frames.shape
        entries.append(
            {
                "case_id": case.case_id,
                "folder": folder.name,
                "spec": case.meta["phantom_spec"],
                "derived": {
                    **case.meta["derived"],
                    "shape_numpy_HWT": [h, w, t],
                    "pixel_spacing_mm": list(case.pixel_spacing_mm),
                    "scanned_region": case.scanned_region,
                },
            }
        )
        if progress is not None:
            progress(k + 1, len(specs), case.case_id)
    index = {
        "generator": "igikit.sim.cine",
        "seed": seed,
        "profiles": list(profiles),
        "n_cases": len(entries),
        "sources": {
            "backgrounds": "OvGU Magdeburg liver cine; ETH Zurich 4D-MRI (via pohl-michel/2D-MR-image-prediction)",
            "breathing": "Krilavicius et al. 2013 external-marker traces (CC BY 4.0)",
        },
        "cases": entries,
    }
    with atomic_path(out / "cases.json") as tmp:
        tmp.write_text(json.dumps(index, indent=1))
    return index
