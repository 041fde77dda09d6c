"""What a gated delivery achieved: the beam replayed on a fine time grid against the target.

After a run, the beam commands (each with the time it reached the linac) are replayed against a
*reference* target motion: the true target of a phantom case, or, for a real case without truth,
the tracked target (the report says which). Between frames the reference target is moved
linearly from one frame's position to the next (its mask translated sub-pixel), on a 20 ms grid,
so that beam-on time, excursions and beam-off latency are resolved finer than the frame interval.

Three strategies are compared on the same window (from the first command's effect to the last
frame) with the 2D dose model of :mod:`igikit.workflows.mrgrt.dose`:

``no motion management``
    the beam stays on, the aperture where it was planned;
``gating``
    the beam follows the gating commands (on / hold), the aperture where it was planned, or moved
    with the window when the window was re-centred on a drifting baseline (each command carries
    the shift in force; the target is then judged against the moved window too);
``tracking``
    the beam stays on (except for safety-interlock holds) and the aperture follows the
    predicted target (MLC tracking), each aim taking effect after the system latency.

With gating and tracking a command that is not renewed within the stale-frame deadline lapses
(:attr:`BeamCommand.expires_s`): the beam then holds even if igikit itself stalled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from igikit.core.masks import centroid_mm
from igikit.errors import InputError
from igikit.workflows.mrgrt.dose import DoseSummary, delivered_dose, dvh, planned_dose, summarise
from igikit.workflows.mrgrt.gating import Gate, GatingConfig
from igikit.workflows.mrgrt.operators import BeamCommand

#: Time step (s) of the grid the beam is replayed on.
GRID_STEP_S = 0.02
#: The strategies compared, in report order.
STRATEGIES: tuple[str, ...] = ("no motion management", "gating", "tracking")


@dataclass(frozen=True)
class ReferenceMotion:
    """The target motion a delivery is judged against, sampled at frame times.

    Attributes
    ----------
    kind
        ``"truth"`` (phantom labels) or ``"tracked"`` (the tracker's own masks: no truth exists).
    time_s
        (n,) sample times (s), increasing.
    masks
        (n, H, W) uint8 target masks at those times.
    centroid_mm
        (n, 2) target centroids, (row, col) mm.
    """

    kind: str
    time_s: np.ndarray
    masks: np.ndarray
    centroid_mm: np.ndarray

    @classmethod
    def from_masks(
        cls, kind: str, time_s: Sequence[float] | np.ndarray, masks: np.ndarray, spacing_mm: Sequence[float]
    ) -> ReferenceMotion:
        """Reference from masks; samples with an empty mask are dropped."""
        masks = np.asarray(masks)
        t = np.asarray(time_s, dtype=np.float64)
        keep = masks.reshape(len(masks), -1).any(axis=1)
        if keep.sum() < 1:
            raise InputError("no frame has a reference target mask")
        masks, t = masks[keep], t[keep]
        cents = np.array([centroid_mm(m, spacing_mm) for m in masks])
        return cls(kind, t, masks.astype(np.uint8), cents)


@dataclass(frozen=True)
class BeamOffLatency:
    """How fast the beam stopped after the reference target left the gating window.

    Only exits with the beam on count; ``latency_ms`` holds one value per exit the beam stopped
    for. ``n_already_held``: exits during a hold (often thanks to the prediction); ``n_missed``:
    excursions that ended before the beam stopped (their durations in ``missed_ms``).
    """

    n_exits: int
    n_already_held: int
    latency_ms: tuple[float, ...]
    missed_ms: tuple[float, ...]

    @property
    def n_missed(self) -> int:
        return len(self.missed_ms)

    def summary(self) -> dict[str, float | int | None]:
        """Counts and the median / p95 / max latency (ms); None where nothing was measured."""
        lat = np.asarray(self.latency_ms)
        stat = (lambda f: round(float(f(lat)), 1)) if lat.size else (lambda f: None)
        return {
            "exits": self.n_exits,
            "already_held": self.n_already_held,
            "stopped": int(lat.size),
            "missed": self.n_missed,
            "median_ms": stat(np.median),
            "p95_ms": stat(lambda a: np.percentile(a, 95)),
            "max_ms": stat(np.max),
        }


@dataclass(frozen=True)
class DeliveryOutcome:
    """Metrics of one run plus the series the report plots.

    Attributes
    ----------
    reference_kind
        ``"truth"`` or ``"tracked"`` (see :class:`ReferenceMotion`).
    window_s
        (start, end) of the evaluated delivery (s).
    duty_cycle_pct
        Gating: beam-on time / window.
    beam_on_outside_pct
        Gating: share of beam-on time with the reference target outside the gating window
        (more than the threshold share of its area outside the boundary).
    beam_on_excursion_mm
        Gating: how far the reference target reached beyond the boundary while the beam was on
        (``p95`` and ``max`` over beam-on time, mm; 0 = inside).
    beam_off
        Beam-off latency after the reference target leaves the window.
    dose
        Target D98 / D2 / mean relative to the prescription, per strategy (and ``"plan"``).
    dvh
        Per strategy (and ``"plan"``): (dose levels, volume fraction).
    grid_time_s, grid_beam_on, grid_tracking_on, grid_centroid_mm, grid_outside
        The replay grid: times, gating beam state, tracking beam state, reference centroid
        (row, col mm), reference outside the window.
    prediction_rmse_mm
        2D RMSE of the position at acquisition + latency: ``{"predicted": .., "no prediction": ..}``
        (NaN when no frame could be scored).
    tracking_error_mm
        Mean centroid distance tracked vs truth (frames after the first), NaN without truth.
    """

    reference_kind: str
    window_s: tuple[float, float]
    duty_cycle_pct: float
    beam_on_outside_pct: float
    beam_on_excursion_mm: Mapping[str, float]
    beam_off: BeamOffLatency
    dose: Mapping[str, DoseSummary]
    dvh: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    grid_time_s: np.ndarray = field(repr=False)
    grid_beam_on: np.ndarray = field(repr=False)
    grid_tracking_on: np.ndarray = field(repr=False)
    grid_centroid_mm: np.ndarray = field(repr=False)
    grid_outside: np.ndarray = field(repr=False)
    prediction_rmse_mm: Mapping[str, float] = field(default_factory=dict)
    tracking_error_mm: float = float("nan")
    #: (T, 2) shift (row, col mm) of the gating window in force on the grid (zeros: never re-centred).
    grid_window_shift_mm: np.ndarray | None = field(default=None, repr=False)

    def metrics(self) -> dict[str, Any]:
        """The numbers of the report as plain JSON values."""

        def num(v: float) -> float | None:
            return round(float(v), 4) if np.isfinite(v) else None

        return {
            "reference": self.reference_kind,
            "window_s": [round(self.window_s[0], 3), round(self.window_s[1], 3)],
            "duty_cycle_pct": num(self.duty_cycle_pct),
            "beam_on_outside_pct": num(self.beam_on_outside_pct),
            "beam_on_excursion_mm": {k: num(v) for k, v in self.beam_on_excursion_mm.items()},
            "beam_off_latency": self.beam_off.summary(),
            "dose": {
                name: {"d98": num(s.d98), "d2": num(s.d2), "mean": num(s.mean)} for name, s in self.dose.items()
            },
            "prediction_rmse_mm": {k: num(v) for k, v in self.prediction_rmse_mm.items()},
            "tracking_error_mm": num(self.tracking_error_mm),
        }


def _outside_share(soft: np.ndarray, outside: np.ndarray) -> float:
    total = float(soft.sum())
    return 100.0 * float(soft[outside].sum()) / total if total > 0 else 100.0


def _interpolate_reference(
    ref: ReferenceMotion, times: np.ndarray, outside: np.ndarray, spacing: np.ndarray, beyond_mm: np.ndarray,
    window_shift_mm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference centroid (row, col mm), outside share (%) and excursion beyond the boundary (mm)
    at ``times`` (the target moved linearly between samples). With ``window_shift_mm`` ((T, 2) mm)
    the boundary stands moved by it at each time: the target is judged moved by minus that."""
    n = len(ref.time_s)
    j = np.clip(np.searchsorted(ref.time_s, times, side="right") - 1, 0, n - 1)
    nxt = np.minimum(j + 1, n - 1)
    span = ref.time_s[nxt] - ref.time_s[j]
    frac = np.where(span > 0, (times - ref.time_s[j]) / np.where(span > 0, span, 1.0), 0.0)
    frac = np.clip(frac, 0.0, 1.0)
    step = ref.centroid_mm[nxt] - ref.centroid_mm[j]
    cent = ref.centroid_mm[j] + frac[:, None] * step
    h, w = ref.masks.shape[1:]
    share = np.empty(len(times))
    excursion = np.empty(len(times))
    floats = ref.masks.astype(np.float32)
    for i, (jj, f) in enumerate(zip(j, frac, strict=True)):
        d = f * step[i] / spacing
        if window_shift_mm is not None:
            d = d - window_shift_mm[i] / spacing
        if abs(d[0]) < 1e-3 and abs(d[1]) < 1e-3:
            soft = floats[jj]
        else:
            m = np.array([[1, 0, d[1]], [0, 1, d[0]]], dtype=np.float32)
            soft = cv2.warpAffine(floats[jj], m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
        share[i] = _outside_share(soft, outside)
        inside = soft >= 0.5
        excursion[i] = float(beyond_mm[inside].max()) if inside.any() else float("nan")
    return cent, share, excursion


def _beam_off_latency(times: np.ndarray, out: np.ndarray, on: np.ndarray) -> BeamOffLatency:
    exits = np.flatnonzero(out[1:] & ~out[:-1]) + 1
    held = 0
    latency: list[float] = []
    missed: list[float] = []
    for i in exits:
        if not on[i]:
            held += 1
            continue
        off = np.flatnonzero(~on[i:])
        back = np.flatnonzero(~out[i:])
        first_off = int(off[0]) if off.size else None
        first_back = int(back[0]) if back.size else None
        if first_off is not None and (first_back is None or first_off <= first_back):
            latency.append(1e3 * float(times[i + first_off] - times[i]))
        else:
            end = i + first_back if first_back is not None else len(times) - 1
            missed.append(1e3 * float(times[end] - times[i]))
    return BeamOffLatency(len(exits), held, tuple(latency), tuple(missed))


def _quantise(shift_mm: np.ndarray, spacing: np.ndarray, step_px: float = 0.1) -> np.ndarray:
    # Shifts on a 0.1-pixel lattice: the dose model then shifts the plan once per distinct offset
    # (a few hundred) instead of once per grid sample, at a dose error far below the penumbra's.
    return np.round(shift_mm / (spacing * step_px)) * (spacing * step_px)


def analyse_delivery(
    commands: Sequence[BeamCommand],
    reference: ReferenceMotion,
    first_label: np.ndarray,
    spacing_mm: Sequence[float],
    config: GatingConfig,
    *,
    latency_s: float,
    frames: Sequence[Mapping[str, Any]] = (),
    truth: ReferenceMotion | None = None,
    grid_step_s: float = GRID_STEP_S,
) -> DeliveryOutcome:
    """Replay the beam commands against ``reference`` and compute the delivery metrics.

    Parameters
    ----------
    commands
        Beam commands of the run (:attr:`GateBeam.commands`).
    reference
        Target motion to judge against (truth, or the tracked target).
    first_label
        (H, W) planned target (frame 0); the plan covers it plus ``config.margin_mm``.
    spacing_mm
        (row, col) mm.
    config
        The gating configuration of the run (boundary and threshold).
    latency_s
        System latency of the run (s): the window starts when the first command can act.
    frames
        Per-frame results of the run (``frame_id``, ``acquisition_time_s``, ``centroid_mm``,
        ``predicted_centroid_mm``, ``prediction_ready``, ``frame_valid``), for the prediction
        and tracking errors.
    truth
        The true motion, when known, for the tracking error.
    grid_step_s
        Replay grid step (s).
    """
    if not commands:
        raise InputError("the run made no beam decision: nothing to evaluate")
    spacing_t = (float(spacing_mm[0]), float(spacing_mm[1]))
    spacing = np.asarray(spacing_t)
    gate = Gate(first_label, spacing_t, config)
    outside_region = ~gate.boundary
    by_effect = sorted(commands, key=lambda c: c.effect_time_s)
    effect_t = np.array([c.effect_time_s for c in by_effect])
    start = float(effect_t[0])
    end = float(reference.time_s[-1])
    if end - start < grid_step_s:
        raise InputError(
            f"the run is too short to evaluate: the first command takes effect at {start:.2f} s, "
            f"the last frame is at {end:.2f} s (system latency {latency_s * 1e3:.0f} ms)"
        )
    times = np.arange(start, end, grid_step_s)
    idx = np.searchsorted(effect_t, times, side="right") - 1
    valid = idx >= 0
    idx = np.maximum(idx, 0)
    window = np.array([c.window_shift_mm for c in by_effect], dtype=np.float64)
    window_shift = np.where(valid[:, None], window[idx], 0.0)
    cent, share, excursion = _interpolate_reference(
        reference, times, outside_region, spacing, gate.distance_outside,
        window_shift if window_shift.any() else None,
    )
    out = share > config.threshold_pct
    cmd_on = np.array([c.beam_on for c in by_effect])
    cmd_safety = np.array([c.safety for c in by_effect])
    aperture = np.array([c.aperture_mm for c in by_effect], dtype=np.float64)
    # A command lapses when not renewed in time (the linac's heartbeat), whatever it said.
    fresh = valid & (times < np.array([c.expires_s for c in by_effect])[idx])
    gating_on = fresh & cmd_on[idx]
    tracking_on = fresh & ~cmd_safety[idx]
    always_on = np.ones_like(gating_on)

    planned_centroid = centroid_mm(first_label, spacing)
    plan = planned_dose(first_label, spacing_t, margin_mm=config.margin_mm)
    target_shift = _quantise(cent - planned_centroid, spacing)
    static = np.zeros_like(target_shift)
    beam_aim = _quantise(np.where(valid[:, None], aperture[idx], 0.0), spacing)
    doses = {
        "no motion management": delivered_dose(plan, target_shift, static, always_on, spacing_t),
        "gating": delivered_dose(plan, target_shift, _quantise(window_shift, spacing), gating_on, spacing_t),
        "tracking": delivered_dose(plan, target_shift, beam_aim, tracking_on, spacing_t),
    }
    target = np.asarray(first_label) > 0
    summaries = {"plan": summarise(plan, target)}
    curves = {"plan": dvh(plan, target)}
    for name in STRATEGIES:
        dose = doses[name]
        if name == "gating" and not gating_on.any():
            summaries[name] = DoseSummary(0.0, 0.0, 0.0)
        else:
            summaries[name] = summarise(dose, target)
        curves[name] = dvh(dose, target)

    on_time = float(gating_on.sum())
    duty = 100.0 * on_time / len(times)
    outside_on = 100.0 * float((gating_on & out).sum()) / on_time if on_time else float("nan")
    on_excursion = excursion[gating_on & np.isfinite(excursion)]
    excursion_mm = (
        {"p95": float(np.percentile(on_excursion, 95)), "max": float(on_excursion.max())}
        if on_excursion.size
        else {"p95": float("nan"), "max": float("nan")}
    )

    pred_err, none_err, track_err = [], [], []
    truth_cent = None
    if truth is not None:
        truth_cent = {round(float(t), 6): c for t, c in zip(truth.time_s, truth.centroid_mm, strict=True)}
    for row in frames:
        t = float(row["acquisition_time_s"])
        if not row.get("frame_valid", True):
            continue
        measured = np.asarray(row["centroid_mm"], dtype=np.float64)
        if truth_cent is not None and row.get("frame_id", 0) > 0:
            c = truth_cent.get(round(t, 6))
            if c is not None and np.isfinite(measured).all():
                track_err.append(float(np.linalg.norm(measured - c)))
        at = t + latency_s
        if not row.get("prediction_ready", False) or at > end:
            continue
        expected = np.array([np.interp(at, reference.time_s, reference.centroid_mm[:, a]) for a in (0, 1)])
        predicted = np.asarray(row["predicted_centroid_mm"], dtype=np.float64)
        pred_err.append(float(np.sum((predicted - expected) ** 2)))
        none_err.append(float(np.sum((measured - expected) ** 2)))
    rmse = {
        "predicted": float(np.sqrt(np.mean(pred_err))) if pred_err else float("nan"),
        "no prediction": float(np.sqrt(np.mean(none_err))) if none_err else float("nan"),
    }
    return DeliveryOutcome(
        reference_kind=reference.kind,
        window_s=(start, end),
        duty_cycle_pct=duty,
        beam_on_outside_pct=outside_on,
        beam_on_excursion_mm=excursion_mm,
        beam_off=_beam_off_latency(times, out, gating_on),
        dose=summaries,
        dvh=curves,
        grid_time_s=times,
        grid_beam_on=gating_on,
        grid_tracking_on=tracking_on,
        grid_centroid_mm=cent,
        grid_outside=out,
        prediction_rmse_mm=rmse,
        tracking_error_mm=float(np.mean(track_err)) if track_err else float("nan"),
        grid_window_shift_mm=window_shift,
    )


def decisions_by_reason(reasons: Sequence[str]) -> dict[str, int]:
    """Count of decisions per reason, most frequent first."""
    return dict(Counter(reasons).most_common())
