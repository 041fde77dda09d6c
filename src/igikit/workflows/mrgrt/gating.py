"""Beam gating from the predicted target position, with hysteresis and safety interlocks.

Geometry: the gating boundary is the first-frame target expanded by a margin (mm). The beam may be
on while at most ``threshold_pct`` of the predicted target area lies outside it; once held, it
resumes only when the outside share falls to ``threshold_pct - hysteresis_pct`` so that noise at the
edge does not chatter the beam (MRIdian and Unity gate the same way, with a percentage-outside
threshold on the tracked contour). :meth:`Gate.recentre` translates the boundary when the breathing
baseline has drifted and the shift was approved (:mod:`igikit.workflows.mrgrt.drift`).

Safety interlocks win over geometry and over any autonomy level: the beam holds when the newest
frame is older than its deadline, the tracking confidence is below its threshold, the source is
lost, or the input contains NaN. Every decision is a :class:`~igikit.supervise.records.DecisionRecord`
whose explanation carries the numbers behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from igikit.errors import InputError
from igikit.supervise.records import DecisionRecord

COMPONENT = "igikit.mrgrt.gate"
VERSION = "1"


@dataclass(frozen=True)
class GatingConfig:
    """Gating parameters (clinically set per patient / plan)."""

    margin_mm: float = 3.0
    threshold_pct: float = 5.0
    hysteresis_pct: float = 2.0
    min_confidence: float = 0.5
    stale_after_ms: float = 500.0
    #: The boundary shrinks by this many times the predictor's running RMS error at the horizon
    #: (at most by the margin): a prediction that has been 2 mm off lately gets 2 mm less room.
    #: Off (0) by default: on the unseen phantom cases a factor of 1 cost 7 points of duty cycle
    #: without reducing beam-on time with the target outside (docs/benchmarks.md, "Gating and
    #: dose under motion").
    uncertainty_factor: float = 0.0

    def __post_init__(self) -> None:
        if self.margin_mm < 0:
            raise InputError(f"gating margin must be >= 0 mm, got {self.margin_mm}")
        if not 0 <= self.threshold_pct <= 100:
            raise InputError(f"gating threshold must be in 0..100 %, got {self.threshold_pct}")
        if not 0 <= self.hysteresis_pct <= self.threshold_pct:
            raise InputError(f"hysteresis must be in 0..threshold ({self.threshold_pct} %), got {self.hysteresis_pct}")
        if not 0 <= self.min_confidence <= 1:
            raise InputError(f"minimum confidence must be in 0..1, got {self.min_confidence}")
        if not self.stale_after_ms > 0:
            raise InputError(f"stale-frame deadline must be > 0 ms, got {self.stale_after_ms}")
        if not 0 <= self.uncertainty_factor <= 10:
            raise InputError(f"uncertainty factor must be in 0..10, got {self.uncertainty_factor}")


@dataclass(frozen=True)
class GateDecision:
    """One gating decision."""

    beam_on: bool
    reason: str  # "inside", "outside", "resuming", "stale_frame", "low_confidence", "source_lost", "invalid_input"
    outside_pct: float
    outside_mm: float
    confidence: float
    explanation: str
    safety: bool

    @property
    def value(self) -> str:
        return "on" if self.beam_on else "hold"


class Gate:
    """Stateful gate (it remembers whether the beam is held, for hysteresis).

    Parameters
    ----------
    first_label
        Frame-0 target (H, W).
    spacing_mm
        (row, col) mm.
    config
        Thresholds and deadlines.
    """

    def __init__(self, first_label: np.ndarray, spacing_mm: Sequence[float], config: GatingConfig | None = None):
        target = np.asarray(first_label) > 0
        if not target.any():
            raise InputError("the first-frame target is empty")
        self.config = config or GatingConfig()
        self.spacing = np.asarray(spacing_mm, dtype=np.float64)
        # Distance (mm) of each pixel to the planned target: the boundary is where it is <= margin.
        self._to_target = ndimage.distance_transform_edt(~target, sampling=self.spacing)
        #: (row, col) mm translation of the boundary from its planned position (see :meth:`recentre`).
        self.shift_mm = np.zeros(2)
        self._set_boundary(self._to_target <= self.config.margin_mm)
        self.beam_on = False

    def _set_boundary(self, boundary: np.ndarray) -> None:
        self.boundary = boundary
        # Distance (mm) of each pixel outside the boundary to the boundary: how far a target edge strays.
        self.distance_outside = ndimage.distance_transform_edt(~self.boundary, sampling=self.spacing)
        # Depth (mm) of each boundary pixel inside it: the boundary shrunk by u mm is depth > u.
        self.depth_inside = ndimage.distance_transform_edt(self.boundary, sampling=self.spacing)

    def recentre(self, shift_mm: Sequence[float] | np.ndarray) -> None:
        """Translate the boundary by ``shift_mm`` (row, col mm) from its planned position.

        The planned target's distance map is moved sub-pixel (linear interpolation) and cut at the
        margin again, so the moved boundary keeps the margin's shape; ``(0, 0)`` restores the plan.
        """
        s = np.asarray(shift_mm, dtype=np.float64)
        if s.shape != (2,) or not np.isfinite(s).all():
            raise InputError(f"a boundary shift is (row, col) mm, finite, got {shift_mm!r}")
        if not s.any():
            boundary = self._to_target <= self.config.margin_mm
        else:
            moved = ndimage.shift(self._to_target, s / self.spacing, order=1, mode="nearest")
            boundary = moved <= self.config.margin_mm
            if not boundary.any():
                raise InputError(f"a shift of {s.tolist()} mm moves the gating boundary off the image")
        self.shift_mm = s.copy()
        self._set_boundary(boundary)

    def shrink_mm(self, uncertainty_mm: float) -> float:
        """How far the boundary shrinks for a prediction uncertainty (mm): factor x it, at most the margin."""
        if not np.isfinite(uncertainty_mm) or uncertainty_mm <= 0:
            return 0.0
        return float(min(self.config.uncertainty_factor * uncertainty_mm, self.config.margin_mm))

    def geometry(self, predicted_mask: np.ndarray, shrink_mm: float = 0.0) -> tuple[float, float]:
        """Share (%) of the predicted target outside the boundary (shrunk by ``shrink_mm``), and its
        farthest excursion beyond the boundary itself (mm)."""
        m = np.asarray(predicted_mask) > 0
        if m.shape != self.boundary.shape:
            raise InputError(f"predicted mask {m.shape} differs from the boundary {self.boundary.shape}")
        area = int(m.sum())
        if area == 0:
            return 100.0, float("inf")
        inside = self.boundary if shrink_mm <= 0 else self.depth_inside > shrink_mm
        outside = m & ~inside
        return 100.0 * int(outside.sum()) / area, float(self.distance_outside[m].max())

    def decide(
        self,
        predicted_mask: np.ndarray | None,
        *,
        confidence: float,
        frame_age_ms: float,
        source_ok: bool = True,
        uncertainty_mm: float = 0.0,
    ) -> GateDecision:
        """Decide beam on / hold for the newest frame.

        ``uncertainty_mm`` is the predictor's running RMS error at the horizon: the boundary the
        predicted target must stay inside shrinks by :meth:`shrink_mm` of it.
        """
        cfg = self.config
        safety_reason = None
        if not source_ok:
            safety_reason = ("source_lost", "image source lost")
        elif predicted_mask is None or not np.isfinite(confidence) or not np.isfinite(frame_age_ms):
            safety_reason = ("invalid_input", "no valid target estimate (missing or NaN input)")
        elif frame_age_ms > cfg.stale_after_ms:
            age = f"newest frame {frame_age_ms:.0f} ms old (deadline {cfg.stale_after_ms:.0f} ms)"
            safety_reason = ("stale_frame", age)
        elif confidence < cfg.min_confidence:
            safety_reason = (
                "low_confidence",
                f"tracking confidence {confidence:.2f} below {cfg.min_confidence:.2f}",
            )
        if safety_reason is not None:
            self.beam_on = False
            pct, mm = (float("nan"), float("nan"))
            if predicted_mask is not None and safety_reason[0] not in ("invalid_input", "source_lost"):
                pct, mm = self.geometry(predicted_mask, self.shrink_mm(uncertainty_mm))
            return GateDecision(False, safety_reason[0], pct, mm, confidence,
                                f"beam hold: {safety_reason[1]}", safety=True)
        assert predicted_mask is not None
        shrink = self.shrink_mm(uncertainty_mm)
        pct, mm = self.geometry(predicted_mask, shrink)
        limit = cfg.threshold_pct if self.beam_on else cfg.threshold_pct - cfg.hysteresis_pct
        on = pct <= limit
        boundary = f"the {cfg.margin_mm:.1f} mm gating boundary"
        if self.shift_mm.any():
            boundary += f" (re-centred SI {self.shift_mm[0]:+.1f} mm, AP {self.shift_mm[1]:+.1f} mm)"
        if shrink > 0:
            boundary += f" less {shrink:.1f} mm for the prediction uncertainty (RMS {uncertainty_mm:.1f} mm)"
        where = (f"predicted target {pct:.1f}% outside {boundary}"
                 + (f", up to {mm:.1f} mm beyond the boundary" if mm > 0 else ""))
        if on:
            reason = "inside" if self.beam_on else "resuming"
            text = f"beam on: {where} (limit {limit:.1f}%); tracking confidence {confidence:.2f}"
        else:
            reason = "outside"
            text = f"beam hold: {where} (limit {limit:.1f}%); tracking confidence {confidence:.2f}"
        self.beam_on = on
        return GateDecision(on, reason, pct, mm, confidence, text, safety=False)


def decision_record(
    d: GateDecision, *, frame_id: int, frame_time_s: float, session_id: str = "", workflow: str = "mrgrt"
) -> DecisionRecord:
    """The audit-log record of a gating decision."""
    data: dict[str, str | float] = {"reason": d.reason}
    if np.isfinite(d.outside_pct):
        data["outside_pct"] = round(d.outside_pct, 3)
    if np.isfinite(d.outside_mm):
        data["outside_mm"] = round(d.outside_mm, 3)
    return DecisionRecord(
        decision="beam",
        value=d.value,
        explanation=d.explanation,
        confidence=float(np.clip(d.confidence, 0.0, 1.0)) if np.isfinite(d.confidence) else 0.0,
        component=COMPONENT,
        component_version=VERSION,
        frame_time_s=frame_time_s,
        input_frame_ids=(frame_id,),
        workflow=workflow,
        session_id=session_id,
        safety=d.safety,
        data=data,
    )
