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
    searched near the last position with a motion-continuity penalty; a frame that scores far
    below the recent matches (corrupted, target hidden) keeps the last position at low confidence,
    and the whole frame is searched again only when the target stays lost.
``registration``
    Deformable registration of every frame *to the first frame* (DIS optical flow, warm-started
    from the last good flow), carrying the label along the flow. Registering to frame 0 rather than
    chaining frame-to-frame keeps the target from drifting; a frame whose similarity after
    registration drops well below the recent ones is treated as corrupted and the last good
    result is kept.
``ensemble``
    Runs any set of member trackers (default ``template`` and ``registration``): a robust,
    reliability-weighted consensus of their positions, the shape from the deformable members moved
    onto it, and a confidence that falls when the members disagree.

Every label is carried as a soft map (:func:`soft_label`), so a sub-pixel motion moves its
thresholded boundary by a sub-pixel amount instead of snapping it to the pixel grid.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import cv2
import numpy as np
from scipy import ndimage

from igikit.core.masks import centroid_mm, dice
from igikit.errors import InputError
from igikit.register.flow2d import FlowRegistration2D, intensity_window, to_uint8, warp
from igikit.register.template import match_template


@dataclass(frozen=True)
class TrackResult:
    """The tracked target on one frame.

    ``details`` holds per-method numbers; two keys have a shared meaning: ``corrupted`` (1.0: the
    frame was judged corrupted and the last good result is repeated) and ``rigid`` (1.0: the mask
    is the first label moved rigidly, so its shape carries no information; see the ensemble).
    """

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


def soft_label(label: np.ndarray, sigma_px: float = 1.0) -> np.ndarray:
    """The label as a soft map whose 0.5 level is a smooth, sub-pixel boundary enclosing its area.

    A binary label moved by a fraction of a pixel and thresholded snaps back to the pixel grid;
    blurring it first by about a pixel (the partial-volume width of its true boundary) lets the
    moved boundary fall where sub-pixel motion puts it. The blurred map is then rescaled so that
    its 0.5 level encloses as many pixels as the label: a blur alone shrinks a small convex target
    (by ~7 % of the area for a 4-pixel radius), which would make a gate see less of it outside.
    """
    binary = np.asarray(label) > 0
    soft = ndimage.gaussian_filter(binary.astype(np.float32), sigma_px)
    n = int(binary.sum())
    if n == 0 or n >= soft.size:
        return soft.astype(np.float32)
    level = float(np.partition(soft.ravel(), soft.size - n)[soft.size - n])  # n pixels are >= level
    level = min(max(level, 1e-3), 1.0 - 1e-3)
    low = soft * np.float32(0.5 / level)
    high = np.float32(0.5) + (soft - np.float32(level)) * np.float32(0.5 / (1.0 - level))
    return np.where(soft < level, low, high).astype(np.float32)


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
        self.soft0 = soft_label(self.label0)
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
        return self.result(self.label0.astype(np.float32), sim, ncc=sim, rigid=1.0)


class TemplateTracker(Tracker):
    """Rigid NCC template tracking of the first-frame target neighbourhood, with motion continuity.

    Each frame is searched within ``search_mm`` of the last position, the peak chosen with a
    quadratic penalty on the distance moved (so a look-alike structure does not capture the
    match). A frame whose best score falls far below the recent scores (a corrupted frame, or
    the target hidden) keeps the last position at low confidence; the whole frame is searched
    again only after ``redetect_after`` such frames in a row, and the far match is taken only if
    it scores like the target did.

    Parameters
    ----------
    margin_mm
        Context around the target's bounding box included in the template.
    search_mm
        Search radius around the last position (mm).
    continuity
        NCC penalty for moving the whole search radius (quadratic in the distance).
    drop_fraction
        A score below ``(1 - drop_fraction)`` times the median of the last accepted scores is a miss.
    redetect_after, max_hold
        Misses in a row before a whole-frame search; before the local match is accepted anyway
        (the target's appearance has really changed).
    """

    name = "template"

    def __init__(self, margin_mm: float = 8.0, search_mm: float = 20.0, continuity: float = 0.15,
                 drop_fraction: float = 0.35, redetect_after: int = 2, max_hold: int = 4) -> None:
        self.margin_mm = margin_mm
        self.search_mm = search_mm
        self.continuity = continuity
        self.drop_fraction = drop_fraction
        self.redetect_after = redetect_after
        self.max_hold = max_hold

    def _start(self) -> None:
        self.box = _padded_box(self.label0, self.px(self.margin_mm))
        r0, r1, c0, c1 = self.box
        self.template = self.frame0_u8[r0:r1, c0:c1].copy()
        self.last = (float(r0), float(c0))
        self.scores: deque[float] = deque(maxlen=15)
        self.misses = 0
        self.exclusion = max(3, min(r1 - r0, c1 - c0) // 4)
        self.last_result: TrackResult | None = None

    def update(self, frame: np.ndarray) -> TrackResult:
        img = to_uint8(frame, self.window)
        sr, sc = self.px(self.search_mm)
        lr, lc = round(self.last[0]), round(self.last[1])
        m = match_template(img, self.template, search=(lr - sr, lr + sr + 1, lc - sc, lc + sc + 1),
                           exclusion_px=self.exclusion, expected_rc=self.last, continuity=self.continuity,
                           continuity_px=float(max(sr, sc)))
        base = float(np.median(self.scores)) if len(self.scores) >= 3 else None
        redetected = 0.0
        if base is not None and self.last_result is not None and m.score < (1.0 - self.drop_fraction) * base:
            self.misses += 1
            if self.misses >= self.redetect_after:
                wide = match_template(img, self.template, exclusion_px=self.exclusion)
                if wide.score >= (1.0 - 0.5 * self.drop_fraction) * base:  # it looks like the target again
                    m, redetected = wide, 1.0
            if not redetected and self.misses < self.max_hold:
                prev = self.last_result
                conf = 0.5 * prev.confidence * float(np.clip(m.score / base, 0.0, 1.0))
                return TrackResult(prev.mask, conf, prev.centroid_mm, prev.soft,
                                   {"ncc": m.score, "held": 1.0, "corrupted": 1.0, "rigid": 1.0})
        self.misses = 0
        self.scores.append(m.score)
        self.last = (m.row, m.col)
        soft = _shift_soft(self.soft0, (m.row - self.box[0], m.col - self.box[2]))
        # A weak peak, one well below the recent scores, or a similar structure nearby lower confidence.
        distinct = float(np.clip((m.score - m.second_score) / 0.1, 0.0, 1.0))
        relative = float(np.clip(m.score / base, 0.0, 1.0)) if base else 1.0
        conf = float(np.clip((m.score - 0.2) / 0.75, 0.0, 1.0)) * relative**2 * (0.5 + 0.5 * distinct)
        res = self.result(soft, conf, ncc=m.score, ncc_second=m.second_score, redetected=redetected,
                          held=0.0, corrupted=0.0, rigid=1.0)
        self.last_result = res
        return res


class RegistrationTracker(Tracker):
    """Deformable registration of each frame to frame 0 (optical flow); the label follows the flow.

    Parameters
    ----------
    roi_mm
        Margin around the target's bounding box registered (the rest of the frame is ignored).
    preset
        DIS preset (0 ultrafast, 1 fast, 2 medium).
    corruption_drop
        A frame whose post-registration similarity falls this far below the recent median is
        treated as corrupted (ghosting, noise burst): the last good result is kept, confidence low.
    finest_scale
        DIS's finest pyramid level (0: full resolution; None: the preset's).
    algorithm
        ``"dis"`` or ``"farneback"`` (see :class:`~igikit.register.flow2d.FlowRegistration2D`).
    max_hold
        Corrupted frames in a row after which the new registration is accepted anyway (at low
        confidence), so a lasting change of the image cannot freeze the tracker.
    """

    name = "registration"

    def __init__(self, roi_mm: float = 45.0, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
                 corruption_drop: float = 0.25, finest_scale: int | None = None, algorithm: str = "dis",
                 max_hold: int = 4) -> None:
        self.roi_mm = roi_mm
        self.preset = preset
        self.corruption_drop = corruption_drop
        self.finest_scale = finest_scale
        self.algorithm = algorithm
        self.max_hold = max_hold

    def _start(self) -> None:
        self.roi = _padded_box(self.label0, self.px(self.roi_mm))
        r0, r1, c0, c1 = self.roi
        self.ref = self.frame0_u8[r0:r1, c0:c1].copy()
        self.label_roi = self.soft0[r0:r1, c0:c1].copy()
        self.reg = FlowRegistration2D(self.ref, self.preset, self.finest_scale, self.algorithm)
        # Similarity is measured around the target (its box + 5 mm), where the registration matters.
        near = _padded_box(self.label0, self.px(5.0))
        self.near = (near[0] - r0, near[1] - r0, near[2] - c0, near[3] - c0)
        self.flow: np.ndarray | None = None
        self.history: deque[float] = deque(maxlen=15)
        self.last_result: TrackResult | None = None
        self.held = 0

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
        if corrupted and self.last_result is not None and self.held < self.max_hold:
            self.held += 1
            prev = self.last_result
            return TrackResult(prev.mask, 0.25 * prev.confidence, prev.centroid_mm, prev.soft,
                               {"ncc": sim, "corrupted": 1.0})
        accepted_late = 0.5 if corrupted else 1.0
        self.held = 0
        self.history.append(sim)
        self.flow = flow
        relative = float(np.clip(sim / baseline, 0.0, 1.0)) if baseline else 1.0
        conf = float(np.clip((sim - 0.3) / 0.5, 0.0, 1.0)) * relative**2 * accepted_late
        res = self.result(self._place(soft_roi), conf, ncc=sim, corrupted=0.0)
        self.last_result = res
        return res


class Consensus(NamedTuple):
    """Where a set of members agree the target is (:func:`robust_consensus`)."""

    #: The consensus position (mm, the members' centroid coordinates).
    position_mm: np.ndarray
    #: Each member's final weight: its prior times how near it is to the consensus.
    weights: np.ndarray
    #: Each member's distance from the consensus (mm).
    offset_mm: np.ndarray
    #: exp(-(offset / agreement)^2) per member: 1 on the consensus, exp(-1) at ``agreement_mm``.
    nearness: np.ndarray


def robust_consensus(centroids_mm: np.ndarray, prior: np.ndarray, agreement_mm: float) -> Consensus:
    """The members' consensus position: an iteratively reweighted mean of ``centroids_mm`` (n, 2).

    Starting from the ``prior``-weighted mean, five times each member's weight becomes its prior
    times exp(-(distance to the mean / ``agreement_mm``)^2), so members far from the others count
    less; when every member is that far, the prior weights stay. ``prior`` must have a positive sum.
    """
    fused = (prior[:, None] * centroids_mm).sum(axis=0) / prior.sum()
    w = prior
    for _ in range(5):
        d = np.linalg.norm(centroids_mm - fused, axis=1)
        w = prior * np.exp(-((d / agreement_mm) ** 2))
        if w.sum() <= 1e-12 * prior.sum():
            w = prior
        fused = (w[:, None] * centroids_mm).sum(axis=0) / w.sum()
    d = np.linalg.norm(centroids_mm - fused, axis=1)
    return Consensus(fused, w, d, np.exp(-((d / agreement_mm) ** 2)))


class EnsembleTracker(Tracker):
    """Trackers voting on the target's position; the deformable ones give its shape.

    Each member's position is weighted by its own confidence and by its reliability, an
    exponential moving average of how well it has agreed with the consensus; a member far from the
    consensus of the others counts less (iteratively reweighted mean, Gaussian kernel of width
    ``agreement_mm``), so one member losing the target does not drag the result. Members whose
    result is a rigidly moved first label (``details["rigid"]``) count ``rigid_weight`` times as
    much for the position (they cannot follow deformation) and give the shape only when no
    deformable member is trusted. The deformable members' soft maps are moved onto the consensus
    position and averaged. The confidence is the members' weighted confidence times their
    agreement (the confidence-weighted share of members near the consensus, squared), so it falls
    when they disagree. ``details`` carries, per member ``KEY`` (its name), ``KEY_confidence``,
    ``KEY_weight``, ``KEY_offset_mm`` (its distance from the consensus) and every one of its own
    details as ``KEY_NAME`` (e.g. ``template_ncc``, ``registration_corrupted``): the features the
    gating workflow's confidence calibration reads.

    Parameters
    ----------
    members
        Trackers to combine (default: template and registration). Any :class:`Tracker` works
        (e.g. a network, or ``RegistrationTracker(algorithm="farneback")`` as a second flow).
    agreement_mm
        Distance from the consensus at which a member's weight and the agreement have fallen to
        exp(-1).
    memory
        Memory of the reliability average (0: the last frame only).
    rigid_weight
        Relative position weight of rigid members.
    """

    name = "ensemble"

    def __init__(self, members: list[Tracker] | None = None, agreement_mm: float = 3.0, memory: float = 0.8,
                 rigid_weight: float = 0.1) -> None:
        self.members = members if members is not None else [
            TemplateTracker(), RegistrationTracker()]
        if not self.members:
            raise InputError("an ensemble needs at least one member")
        self.agreement_mm = agreement_mm
        self.memory = memory
        self.rigid_weight = rigid_weight

    def start(self, frame0: np.ndarray, label0: np.ndarray, spacing_mm: tuple[float, float]) -> None:
        self.frame0_raw = frame0
        super().start(frame0, label0, spacing_mm)

    def _start(self) -> None:
        for m in self.members:
            m.start(self.frame0_raw, self.label0, self.spacing)
        self.reliability = np.ones(len(self.members))
        names = [m.name or type(m).__name__ for m in self.members]
        self._keys = [n if names.count(n) == 1 else f"{n}{names[:i].count(n) + 1}" for i, n in enumerate(names)]

    def update(self, frame: np.ndarray) -> TrackResult:
        results = [m.update(frame) for m in self.members]
        cents = np.array([r.centroid_mm for r in results], dtype=np.float64)
        conf = np.array([r.confidence for r in results])
        rigid = np.array([r.details.get("rigid", 0.0) >= 0.5 for r in results])
        prior = np.where(rigid, self.rigid_weight, 1.0) * self.reliability * np.maximum(conf, 1e-3)
        fused, w, d, near = robust_consensus(cents, prior, self.agreement_mm)

        shape_w = np.where(rigid, 0.0, w)
        if shape_w.sum() <= 0.05 * w.sum():
            shape_w = w
        spacing = np.asarray(self.spacing)
        soft = np.zeros(self.shape, np.float32)
        for wi, r, c in zip(shape_w, results, cents, strict=True):
            if wi <= 0:
                continue
            member_soft = r.soft if r.soft is not None else r.mask.astype(np.float32)
            shift = (fused - c) / spacing
            if np.hypot(*shift) > 0.01:
                member_soft = _shift_soft(member_soft, (float(shift[0]), float(shift[1])))
            soft += np.float32(wi / shape_w.sum()) * member_soft
        self.reliability = self.memory * self.reliability + (1.0 - self.memory) * near
        # Agreement: the confidence-weighted share of the members near the consensus, squared. It
        # does not use the reliability: two confident members that keep disagreeing stay a conflict
        # however long it lasts (0.25 for a split pair), while a member that itself reports low
        # confidence (a corrupted frame, a lost target) does not pull the agreement down.
        vote = np.where(rigid, self.rigid_weight, 1.0) * np.maximum(conf, 1e-3)
        agreement = float((vote * near).sum() / vote.sum()) ** 2
        spread = float(np.sqrt((vote * d**2).sum() / vote.sum()))
        confidence = agreement * float(np.average(conf, weights=np.maximum(w, 1e-12)))
        details: dict[str, float] = {}
        for key, r, wi, di in zip(self._keys, results, w, d, strict=True):
            details[f"{key}_confidence"] = r.confidence
            details[f"{key}_weight"] = float(wi / w.sum())
            details[f"{key}_offset_mm"] = float(di)
            # The members' own evidence (NCC peak, post-registration similarity, held / corrupted
            # flags), so a confidence calibrator can learn from more than the fused number.
            for name, value in r.details.items():
                details[f"{key}_{name}"] = float(value)
        return self.result(soft, confidence, spread_mm=spread, agreement=agreement, **details)


def _ai_tracker(**options: Any) -> Tracker:
    from igikit.ai.tracker import AITracker  # lazy: igikit.ai imports this module (and torch)

    return AITracker(**options)


def _ai_ensemble(**options: Any) -> Tracker:
    from igikit.ai.tracker import ai_ensemble

    return ai_ensemble(**options)


TRACKERS: dict[str, Callable[..., Tracker]] = {
    "copy": CopyTracker,
    "template": TemplateTracker,
    "registration": RegistrationTracker,
    "ensemble": EnsembleTracker,
    # patient-specific network, trained on the first 30 frames (the learning phase; see igikit.ai)
    "ai": _ai_tracker,
    "ensemble_ai": _ai_ensemble,
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
