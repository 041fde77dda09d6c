"""Tumour tracking on 2D cine-MRI: propagate the first-frame target to every later frame, causally.

Every tracker has the same two calls: :meth:`Tracker.start` with frame 0 and its label, then
:meth:`Tracker.update` once per new frame, which sees only that frame (and what the tracker kept
from earlier ones) and returns a :class:`TrackResult` with the mask and a confidence in [0, 1].

Methods
-------
``copy``
    The first label on every frame: the baseline every report compares against.
``template``
    Normalised cross-correlation of the first-frame target neighbourhood (rigid translation),
    searched near the last position, widened to the whole frame when the match is weak.
``registration``
    Deformable registration of every frame *to the first frame* (DIS optical flow, warm-started
    from the last good flow), carrying the label along the flow. Registering to frame 0 rather than
    chaining frame-to-frame keeps the target from drifting.
``ensemble``
    Runs ``template`` and ``registration``; the mask is their confidence-weighted soft vote and
    the confidence falls with their disagreement (centroid distance and overlap).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np
from scipy import ndimage

from igikit.core.masks import centroid_mm, dice
from igikit.errors import InputError
from igikit.register.flow2d import FlowRegistration2D, intensity_window, to_uint8, warp
from igikit.register.template import match_template


@dataclass(frozen=True)
class TrackResult:
    """The tracked target on one frame."""

    mask: np.ndarray
    confidence: float
    centroid_mm: tuple[float, float]
    soft: np.ndarray | None = field(default=None, repr=False)
    details: Mapping[str, float] = field(default_factory=dict)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _padded_box(mask: np.ndarray, pad_rc: tuple[int, int]) -> tuple[int, int, int, int]:
    r0, r1, c0, c1 = _bbox(mask)
    h, w = mask.shape
    return max(0, r0 - pad_rc[0]), min(h, r1 + pad_rc[0]), max(0, c0 - pad_rc[1]), min(w, c1 + pad_rc[1])


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def _shift_soft(label: np.ndarray, shift_rc: tuple[float, float]) -> np.ndarray:
    m = np.array([[1, 0, shift_rc[1]], [0, 1, shift_rc[0]]], dtype=np.float32)
    h, w = label.shape
    return cv2.warpAffine(label.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)


class Tracker(ABC):
    """A causal single-target tracker for a 2D cine series."""

    name: ClassVar[str] = ""

    def start(self, frame0: np.ndarray, label0: np.ndarray, spacing_mm: tuple[float, float]) -> None:
        """Begin a sequence with frame 0 and its label; ``spacing_mm`` is (row, col) mm."""
        if frame0.ndim != 2 or label0.shape != frame0.shape:
            raise InputError(f"frame {frame0.shape} and label {label0.shape} must be the same 2D size")
        if not np.any(label0):
            raise InputError("the first label is empty")
        if not np.all(np.isfinite(frame0)):
            raise InputError("the first frame contains NaN or infinite values")
        self.spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
        self.label0 = (np.asarray(label0) > 0).astype(np.uint8)
        self.shape = frame0.shape
        self.window = intensity_window(frame0)
        self.frame0_u8 = to_uint8(frame0, self.window)
        self._start()

    def px(self, mm: float) -> tuple[int, int]:
        """A distance in mm as whole pixels along (rows, cols)."""
        return max(1, round(mm / self.spacing[0])), max(1, round(mm / self.spacing[1]))

    def result(self, soft: np.ndarray, confidence: float, **details: float) -> TrackResult:
        mask = (soft >= 0.5).astype(np.uint8)
        if not mask.any():  # never return an empty mask while the soft map still locates the target
            mask = (soft >= 0.5 * float(soft.max())).astype(np.uint8) if soft.max() > 0 else mask
        c = centroid_mm(mask, self.spacing)
        conf = float(np.clip(confidence, 0.0, 1.0)) if np.isfinite(confidence) else 0.0
        return TrackResult(mask, conf, (float(c[0]), float(c[1])), soft, dict(details))

    @abstractmethod
    def _start(self) -> None: ...

    @abstractmethod
    def update(self, frame: np.ndarray) -> TrackResult:
        """Track the target on the next frame."""


class CopyTracker(Tracker):
    """The baseline: the first label, unchanged. Its confidence is the local image similarity."""

    name = "copy"

    def _start(self) -> None:
        self.box = _padded_box(self.label0, self.px(5.0))

    def update(self, frame: np.ndarray) -> TrackResult:
        r0, r1, c0, c1 = self.box
        sim = _ncc(to_uint8(frame, self.window)[r0:r1, c0:c1], self.frame0_u8[r0:r1, c0:c1])
        return self.result(self.label0.astype(np.float32), sim, ncc=sim)


class TemplateTracker(Tracker):
    """Rigid NCC template tracking of the first-frame target neighbourhood.

    Parameters
    ----------
    margin_mm
        Context around the target's bounding box included in the template.
    search_mm
        Search radius around the last position; the whole frame is searched when the match there
        scores below ``rescue_score``.
    """

    name = "template"

    def __init__(self, margin_mm: float = 8.0, search_mm: float = 20.0, rescue_score: float = 0.5) -> None:
        self.margin_mm = margin_mm
        self.search_mm = search_mm
        self.rescue_score = rescue_score

    def _start(self) -> None:
        self.box = _padded_box(self.label0, self.px(self.margin_mm))
        r0, r1, c0, c1 = self.box
        self.template = self.frame0_u8[r0:r1, c0:c1].copy()
        self.last = (float(r0), float(c0))

    def update(self, frame: np.ndarray) -> TrackResult:
        img = to_uint8(frame, self.window)
        sr, sc = self.px(self.search_mm)
        lr, lc = self.last
        m = match_template(img, self.template, search=(int(lr) - sr, int(lr) + sr + 1, int(lc) - sc, int(lc) + sc + 1))
        if m.score < self.rescue_score:
            wide = match_template(img, self.template)
            if wide.score > m.score + 0.1:
                m = wide
        self.last = (m.row, m.col)
        shift = (m.row - self.box[0], m.col - self.box[2])
        soft = _shift_soft(self.label0, shift)
        # A weak or ambiguous peak (a similar structure elsewhere) lowers confidence.
        distinct = np.clip((m.score - m.second_score) / 0.1, 0.0, 1.0)
        conf = np.clip((m.score - 0.3) / 0.6, 0.0, 1.0) * (0.5 + 0.5 * distinct)
        return self.result(soft, float(conf), ncc=m.score, ncc_second=m.second_score)


class RegistrationTracker(Tracker):
    """Deformable registration of each frame to frame 0 (DIS optical flow); the label follows the flow.

    Parameters
    ----------
    roi_mm
        Margin around the target's bounding box registered (the rest of the frame is ignored).
    preset
        DIS preset (0 ultrafast, 1 fast, 2 medium).
    corruption_drop
        A frame whose post-registration similarity falls this far below the recent median is
        treated as corrupted (ghosting, noise burst): the last good result is kept, confidence low.
    """

    name = "registration"

    def __init__(self, roi_mm: float = 45.0, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
                 corruption_drop: float = 0.25) -> None:
        self.roi_mm = roi_mm
        self.preset = preset
        self.corruption_drop = corruption_drop

    def _start(self) -> None:
        self.roi = _padded_box(self.label0, self.px(self.roi_mm))
        r0, r1, c0, c1 = self.roi
        self.ref = self.frame0_u8[r0:r1, c0:c1].copy()
        self.label_roi = self.label0[r0:r1, c0:c1].astype(np.float32)
        self.reg = FlowRegistration2D(self.ref, self.preset)
        # Similarity is measured around the target (its box + 5 mm), where the registration matters.
        near = _padded_box(self.label0, self.px(5.0))
        self.near = (near[0] - r0, near[1] - r0, near[2] - c0, near[3] - c0)
        self.flow: np.ndarray | None = None
        self.history: deque[float] = deque(maxlen=15)
        self.last_result: TrackResult | None = None

    def _place(self, soft_roi: np.ndarray) -> np.ndarray:
        full = np.zeros(self.shape, np.float32)
        r0, r1, c0, c1 = self.roi
        full[r0:r1, c0:c1] = soft_roi
        return full

    def update(self, frame: np.ndarray, initial_flow: np.ndarray | None = None) -> TrackResult:
        r0, r1, c0, c1 = self.roi
        moving = to_uint8(frame, self.window)[r0:r1, c0:c1]
        flow = self.reg.register(moving, self.flow if initial_flow is None else initial_flow)
        n0, n1, m0, m1 = self.near
        warped = warp(self.ref, flow)
        # Similarity at the target's new place: the warped reference vs the frame, both on the moving grid.
        soft_roi = warp(self.label_roi, flow)
        sel = soft_roi > 0.05
        sel = ndimage.binary_dilation(sel, iterations=3) if sel.any() else np.zeros_like(sel)
        if sel.sum() < 16:
            sel = np.zeros_like(sel)
            sel[n0:n1, m0:m1] = True
        sim = _ncc(warped[sel], moving[sel])
        baseline = float(np.median(self.history)) if len(self.history) >= 3 else None
        corrupted = baseline is not None and sim < baseline - self.corruption_drop
        if corrupted and self.last_result is not None:
            prev = self.last_result
            return TrackResult(prev.mask, 0.25 * prev.confidence, prev.centroid_mm, prev.soft,
                               {"ncc": sim, "corrupted": 1.0})
        self.history.append(sim)
        self.flow = flow
        conf = np.clip((sim - 0.4) / 0.5, 0.0, 1.0)
        res = self.result(self._place(soft_roi), float(conf), ncc=sim, corrupted=0.0)
        self.last_result = res
        return res


class EnsembleTracker(Tracker):
    """Template and registration trackers voting; their agreement is the confidence.

    Parameters
    ----------
    members
        Trackers to combine (default: template and registration).
    agreement_mm
        Centroid disagreement at which the confidence has fallen to about 37% (exp(-1)).
    """

    name = "ensemble"

    def __init__(self, members: list[Tracker] | None = None, agreement_mm: float = 3.0) -> None:
        self.members = members if members is not None else [TemplateTracker(), RegistrationTracker()]
        self.agreement_mm = agreement_mm

    def _start(self) -> None:
        for m in self.members:
            m.start(self.frame0_raw, self.label0, self.spacing)

    def start(self, frame0: np.ndarray, label0: np.ndarray, spacing_mm: tuple[float, float]) -> None:
        self.frame0_raw = frame0
        super().start(frame0, label0, spacing_mm)

    def update(self, frame: np.ndarray) -> TrackResult:
        results = [m.update(frame) for m in self.members]
        weights = np.array([max(r.confidence, 1e-3) for r in results])
        soft = sum(w * (r.soft if r.soft is not None else r.mask.astype(np.float32))
                   for w, r in zip(weights, results, strict=True)) / weights.sum()
        cents = np.array([r.centroid_mm for r in results])
        spread = float(np.max(np.linalg.norm(cents - cents.mean(axis=0), axis=1))) * 2.0
        overlap = min(dice(a.mask, b.mask) for i, a in enumerate(results) for b in results[i + 1 :])
        agreement = float(np.exp(-((spread / self.agreement_mm) ** 2))) * overlap
        conf = agreement * float(np.average([r.confidence for r in results], weights=weights))
        details = {f"{m.name}_confidence": r.confidence for m, r in zip(self.members, results, strict=True)}
        return self.result(soft, conf, spread_mm=spread, overlap=overlap, **details)


TRACKERS: dict[str, Callable[[], Tracker]] = {
    "copy": CopyTracker,
    "template": TemplateTracker,
    "registration": RegistrationTracker,
    "ensemble": EnsembleTracker,
}


def make_tracker(method: str, **options: Any) -> Tracker:
    """A tracker by name (see :data:`TRACKERS`)."""
    if method not in TRACKERS:
        raise InputError(f"unknown tracking method {method!r}; choose from {', '.join(TRACKERS)}")
    return TRACKERS[method](**options)


@dataclass(frozen=True)
class TrackedSequence:
    """Labels (H, W, T), per-frame confidence and per-frame processing time (ms; frame 0 is 0)."""

    labels: np.ndarray
    confidence: np.ndarray
    latency_ms: np.ndarray
    details: list[Mapping[str, float]]


def track_sequence(
    frames_hwt: np.ndarray,
    label0: np.ndarray,
    spacing_mm: tuple[float, float],
    method: str | Tracker = "ensemble",
    *,
    progress: Callable[[int, int], None] | None = None,
) -> TrackedSequence:
    """Track through a whole (H, W, T) sequence, one frame at a time, causally.

    ``spacing_mm`` is (row, col) mm. The latency of frame t is the time of ``update`` on it.
    """
    if frames_hwt.ndim != 3:
        raise InputError(f"frames must be (H, W, T), got {frames_hwt.shape}")
    tracker = make_tracker(method) if isinstance(method, str) else method
    h, w, t_total = frames_hwt.shape
    tracker.start(np.asarray(frames_hwt[:, :, 0]), label0, spacing_mm)
    labels = np.zeros((h, w, t_total), np.uint8)
    labels[:, :, 0] = tracker.label0
    conf = np.ones(t_total)
    lat = np.zeros(t_total)
    details: list[Mapping[str, float]] = [{}]
    for t in range(1, t_total):
        frame = np.asarray(frames_hwt[:, :, t])
        tic = time.perf_counter()
        r = tracker.update(frame)
        lat[t] = (time.perf_counter() - tic) * 1e3
        labels[:, :, t] = r.mask
        conf[t] = r.confidence
        details.append(r.details)
        if progress is not None:
            progress(t, t_total)
    return TrackedSequence(labels, conf, lat, details)


@dataclass(frozen=True)
class ForwardBackward:
    """Forward-backward consistency of a tracker on a sequence without ground truth."""

    end_dsc: float
    mean_dsc: float
    forward: TrackedSequence
    backward: TrackedSequence


def forward_backward(
    frames_hwt: np.ndarray, label0: np.ndarray, spacing_mm: tuple[float, float], method: str = "ensemble"
) -> ForwardBackward:
    """Consistency without ground truth: track to the last frame, then back to the first.

    The backward pass starts from the forward pass's last mask on the reversed sequence.
    ``end_dsc`` is the Dice of its final mask with the original first label (1.0 = the tracker came
    back exactly where it started); ``mean_dsc`` averages, over every frame, the Dice of the forward
    and backward masks on that frame (low where either pass lost or drifted off the target).
    """
    forward = track_sequence(frames_hwt, label0, spacing_mm, method)
    last = forward.labels[:, :, -1]
    if not last.any():
        return ForwardBackward(0.0, 0.0, forward, forward)
    backward = track_sequence(frames_hwt[:, :, ::-1], last, spacing_mm, method)
    back = backward.labels[:, :, ::-1]
    per_frame = [dice(forward.labels[:, :, t], back[:, :, t]) for t in range(frames_hwt.shape[2])]
    return ForwardBackward(dice(back[:, :, 0], label0), float(np.mean(per_frame)), forward, backward)
