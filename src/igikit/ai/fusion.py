"""``ensemble_ai``: template, registration and the patient-specific network fused into one target.

The members are the rigid template tracker, the deformable registration tracker and the ``ai``
tracker (which runs that same registration tracker beside its network, so it is run once and
shared). Per frame:

1. **Gating.** The network counts only when it is itself answering (not in its learning phase,
   where its answer *is* the registration's, nor on a fallback frame) and, with ``qc_gate``, only
   when its own quality control passed (members agree, close to the registration); its weight
   falls with its frame uncertainty (exp(-u / ``uncertainty_scale``); on the development set the
   uncertainty was the feature that best told when the network beat the registration, r = -0.37).
2. **Position.** A robust, reliability-weighted mean of the members' centroids: each member's
   prior weight (its base weight x its reported confidence x its reliability, an exponential
   moving average of how near it stayed to the consensus) is reweighted by a Gaussian kernel of
   its distance from the consensus (iteratively reweighted mean), so one member losing the target
   does not drag the result. The rigid template, blind to deformation, is good at position.
3. **Shape.** The deformable members' maps (registration, network), each moved onto the fused
   position, are averaged with the same weights in the chosen domain: ``"soft"`` (linear pool of
   probabilities), ``"logit"`` (log-opinion pool) or ``"sdf"`` (signed distances to each member's
   0.5 contour, sub-pixel; Rohlfing & Maurer, "Shape-based averaging", IEEE TIP 2007).
4. **Confidence.** As in the plain ensemble: the members' weighted confidence times their
   agreement (the confidence-weighted share of members near the consensus, squared).

Options were tuned on the development phantom set (seed 0) only, offline on the members' cached
outputs (``bench/ai_tracking.py``'s cases); see docs/benchmarks.md for what was tried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from scipy import ndimage

from igikit.errors import InputError
from igikit.workflows.mrgrt.tracking import TemplateTracker, Tracker, TrackResult, robust_consensus

MEMBERS = ("template", "registration", "ai")


@dataclass(frozen=True)
class FusionConfig:
    """How ``ensemble_ai`` weighs and combines its members.

    Parameters
    ----------
    template_weight, ai_weight
        Position weight of the template and of the (trusted) network relative to registration.
    ai_shape_weight
        Shape weight of the network relative to registration.
    agreement_mm
        Distance from the consensus at which a member's weight has fallen to exp(-1).
    memory
        Memory of the reliability average (0: the last frame only).
    shape
        ``"soft"``, ``"logit"`` or ``"sdf"`` (see the module docstring).
    qc_gate
        Leave the network out on frames its own quality control flags (``qc_disagree``,
        ``qc_uncertain``).
    uncertainty_scale
        The network's weight is multiplied by exp(-u / scale), u its frame uncertainty (mean std
        of its members near the target); None: not used.
    pixel_uncertainty_scale
        In the shape, the network's weight at each pixel is multiplied by exp(-std / scale), std
        its members' standard deviation there (the uncertainty map); None: not used.
    """

    template_weight: float = 0.5
    ai_weight: float = 1.0
    ai_shape_weight: float = 1.0
    agreement_mm: float = 3.0
    memory: float = 0.8
    shape: Literal["soft", "logit", "sdf"] = "sdf"
    qc_gate: bool = True
    uncertainty_scale: float | None = 0.05
    pixel_uncertainty_scale: float | None = None

    def __post_init__(self) -> None:
        if self.shape not in ("soft", "logit", "sdf"):
            raise InputError(f"shape fusion must be 'soft', 'logit' or 'sdf', got {self.shape!r}")
        if min(self.template_weight, self.ai_weight, self.ai_shape_weight) < 0 or self.agreement_mm <= 0:
            raise InputError("fusion weights must be >= 0 and agreement_mm > 0")
        if not 0.0 <= self.memory < 1.0:
            raise InputError(f"memory must lie in [0, 1), got {self.memory}")


def _shift(soft: np.ndarray, shift_rc: np.ndarray) -> np.ndarray:
    if float(np.hypot(*shift_rc)) <= 0.01:
        return soft.astype(np.float32, copy=False)
    m = np.array([[1, 0, shift_rc[1]], [0, 1, shift_rc[0]]], dtype=np.float32)
    h, w = soft.shape
    return cv2.warpAffine(soft.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)


def signed_distance(soft: np.ndarray, spacing_rc: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Signed distance (mm, negative inside) to the 0.5 contour of a soft map, sub-pixel near the contour.

    Far from the contour: the Euclidean distance transform of the thresholded map (to the pixel
    edges). Within 1.5 pixels of it: the first-order estimate (0.5 - soft) / |grad soft|, so that a
    sub-pixel shift of the map moves the zero level by the same sub-pixel amount.
    """
    soft = np.asarray(soft, np.float32)
    inside = soft >= 0.5
    if not inside.any():
        return np.full(soft.shape, 1e3, np.float32)
    if inside.all():
        return np.full(soft.shape, -1e3, np.float32)
    step = float(min(spacing_rc))
    d_out = ndimage.distance_transform_edt(~inside, sampling=spacing_rc)
    d_in = ndimage.distance_transform_edt(inside, sampling=spacing_rc)
    sd = np.where(inside, -(d_in - 0.5 * step), d_out - 0.5 * step)
    grads = np.gradient(soft, spacing_rc[0], spacing_rc[1])
    grad = np.hypot(grads[0], grads[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        local = (0.5 - soft) / grad
    near = (grad > 0.05 / step) & (np.abs(local) <= 1.5 * step) & (np.abs(sd) <= 2.0 * step)
    return np.where(near, local, sd).astype(np.float32)


def _combine(maps: list[np.ndarray], weights: list[Any], how: str, spacing: tuple[float, float]) -> np.ndarray:
    """Weighted average of soft maps in the ``how`` domain; a weight is a number or a per-pixel map."""
    if len(maps) == 1:
        return maps[0].astype(np.float32, copy=False)
    if how == "sdf":  # work in the box around the maps, where the contours are
        union: np.ndarray = np.zeros(maps[0].shape, bool)
        for m in maps:
            union |= m > 0.02
        if not union.any():
            how = "soft"
        else:
            rows, cols = np.flatnonzero(union.any(1)), np.flatnonzero(union.any(0))
            h, wd = union.shape
            box = (slice(max(0, rows[0] - 4), min(h, rows[-1] + 5)), slice(max(0, cols[0] - 4), min(wd, cols[-1] + 5)))
    if how == "sdf":
        terms = [signed_distance(m[box], spacing) for m in maps]
        ws = [w[box] if np.ndim(w) else w for w in weights]
    elif how == "logit":
        eps = 1e-3
        terms = [np.log(np.clip(m, eps, 1 - eps) / np.clip(1 - m, eps, 1 - eps)) for m in maps]
        ws = list(weights)
    else:
        terms, ws = list(maps), list(weights)
    total = sum(ws)
    avg = sum(w * t for w, t in zip(ws, terms, strict=True)) / np.maximum(total, 1e-12)
    if how == "soft":
        return np.asarray(avg, np.float32)
    if how == "logit":
        return (1.0 / (1.0 + np.exp(-np.asarray(avg)))).astype(np.float32)
    out = np.zeros(maps[0].shape, np.float32)
    # back to a soft map whose 0.5 level is the fused contour (about one pixel wide ramp)
    out[box] = 1.0 / (1.0 + np.exp(np.asarray(avg) / (0.5 * min(spacing))))
    return out


class MemberFusion:
    """The fusion state across frames (members' reliabilities) and one frame's fusion.

    Parameters
    ----------
    spacing_mm
        (row, col) pixel spacing.
    config
        Weights and shape domain.
    """

    def __init__(self, spacing_mm: tuple[float, float], config: FusionConfig | None = None) -> None:
        self.spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
        self.config = config or FusionConfig()
        self.reliability = np.ones(len(MEMBERS))

    def ai_trusted(self, ai: TrackResult | None) -> bool:
        """Whether the network's answer on this frame is its own and passed its quality control."""
        if ai is None:
            return False
        d = ai.details
        if d.get("learning", 0.0) >= 0.5 or d.get("fallback", 0.0) >= 0.5:
            return False
        return not (self.config.qc_gate and max(d.get("qc_disagree", 0.0), d.get("qc_uncertain", 0.0)) >= 0.5)

    def __call__(self, template: TrackResult, registration: TrackResult, ai: TrackResult | None,
                 ai_std: np.ndarray | None = None) -> tuple[np.ndarray, float, dict[str, float]]:
        """The fused soft map, the confidence and the per-member details for one frame.

        ``ai_std`` is the network's uncertainty map on this frame (its members' standard deviation).
        """
        cfg = self.config
        results = [template, registration, ai if ai is not None else registration]
        ai_w = cfg.ai_weight if self.ai_trusted(ai) else 0.0
        if ai_w > 0 and ai is not None and cfg.uncertainty_scale is not None:
            ai_w *= float(np.exp(-ai.details.get("uncertainty", 0.0) / cfg.uncertainty_scale))
        base = np.array([cfg.template_weight, 1.0, ai_w])
        cents = np.array([r.centroid_mm for r in results], dtype=np.float64)
        found = np.all(np.isfinite(cents), axis=1)
        cents = np.where(found[:, None], cents, 0.0)
        conf = np.array([r.confidence for r in results])
        prior = base * found * self.reliability * np.maximum(conf, 1e-3)
        if prior.sum() <= 0:
            prior = np.array([0.0, 1.0, 0.0])
        fused, w, d, near = robust_consensus(cents, prior, cfg.agreement_mm)

        spacing = np.asarray(self.spacing)
        shape_w = np.array([0.0, w[1], w[2] * cfg.ai_shape_weight / max(cfg.ai_weight, 1e-12)])
        if shape_w.sum() <= 0:
            shape_w = np.array([0.0, 1.0, 0.0])
        maps: list[np.ndarray] = []
        weights: list[Any] = []
        for i in (1, 2):
            if shape_w[i] <= 0 or not found[i]:
                continue
            r = results[i]
            soft = r.soft if r.soft is not None else r.mask.astype(np.float32)
            move = (fused - cents[i]) / spacing
            maps.append(_shift(soft, move))
            if i == 2 and ai_std is not None and cfg.pixel_uncertainty_scale is not None:
                weights.append(shape_w[i] * np.exp(-_shift(ai_std, move) / cfg.pixel_uncertainty_scale))
            else:
                weights.append(float(shape_w[i]))
        if not maps:  # no deformable member found the target: the template's map
            soft = template.soft if template.soft is not None else template.mask.astype(np.float32)
            maps, weights = [soft.astype(np.float32)], [1.0]
        fused_soft = _combine(maps, weights, cfg.shape, self.spacing)

        self.reliability = np.where(
            base > 0, cfg.memory * self.reliability + (1.0 - cfg.memory) * near, self.reliability)
        vote = np.where(base > 0, base, 0.0) * np.maximum(conf, 1e-3) * found
        vote = vote if vote.sum() > 0 else np.array([0.0, 1.0, 0.0])
        agreement = float((vote * near).sum() / vote.sum()) ** 2
        confidence = agreement * float(np.average(conf, weights=np.maximum(w, 1e-12)))
        details: dict[str, float] = {"agreement": agreement, "ai_trusted": float(base[2] > 0),
                                     "spread_mm": float(np.sqrt((vote * d**2).sum() / vote.sum()))}
        for key, r, wi, di in zip(MEMBERS, results, w, d, strict=True):
            details[f"{key}_confidence"] = r.confidence
            details[f"{key}_weight"] = float(wi / w.sum())
            details[f"{key}_offset_mm"] = float(di)
        return fused_soft, confidence, details


class AIEnsembleTracker(Tracker):
    """``ensemble_ai``: template + registration + the patient-specific network (see the module docstring).

    Parameters
    ----------
    ai
        The network member (default ``AITracker()``); its registration tracker is the registration member.
    template
        The rigid member (default ``TemplateTracker()``).
    config
        Fusion weights (:class:`FusionConfig`).
    """

    name = "ensemble_ai"

    def __init__(self, ai: Any = None, template: Tracker | None = None, config: FusionConfig | None = None) -> None:
        from igikit.ai.tracker import AITracker

        self.ai = ai if ai is not None else AITracker()
        if not isinstance(self.ai, AITracker):
            raise InputError(f"the ai member must be an AITracker, got {type(self.ai).__name__}")
        if not (self.ai.qc or self.ai.config.prior):
            raise InputError("ensemble_ai shares the AI tracker's registration tracker: build the AI with qc=True")
        self.template = template if template is not None else TemplateTracker()
        self.members = [self.template, self.ai]
        self.config = config or FusionConfig()
        #: The members' results on the last frame (template, registration, ai) and their update times (ms).
        self.last_members: tuple[TrackResult, ...] = ()
        self.last_member_ms: dict[str, float] = {}

    def start(self, frame0: np.ndarray, label0: np.ndarray, spacing_mm: tuple[float, float]) -> None:
        self.frame0_raw = frame0
        super().start(frame0, label0, spacing_mm)

    def _start(self) -> None:
        self.template.start(self.frame0_raw, self.label0, self.spacing)
        self.ai.start(self.frame0_raw, self.label0, self.spacing)
        self.fusion = MemberFusion(self.spacing, self.config)

    def update(self, frame: np.ndarray) -> TrackResult:
        tic = time.perf_counter()
        ai = self.ai.update(frame)
        registration = self.ai.last_registration
        if registration is None:  # not reached with qc=True; kept as a clear failure
            raise InputError("the AI tracker ran no registration tracker on this frame")
        toc = time.perf_counter()
        template = self.template.update(frame)
        self.last_members = (template, registration, ai)
        self.last_member_ms = {"ai": (toc - tic) * 1e3, "template": (time.perf_counter() - toc) * 1e3}
        std = self.ai.last_uncertainty if ai.details.get("learning", 1.0) < 0.5 else None
        soft, confidence, details = self.fusion(template, registration, ai, std)
        return self.result(soft, confidence, **details)
