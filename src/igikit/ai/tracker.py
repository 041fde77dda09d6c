"""The ``ai`` tracking method: a patient-specific network, learnt during a pre-beam learning phase.

Learning phase (frames 0 to ``learning_frames`` - 1): the tracker *is* the registration tracker
(it returns that tracker's results, ``details["learning"] = 1``) while it keeps each frame and
its propagated label. After the last learning frame it trains the patient-specific network on
them (:func:`igikit.ai.personalize.train_personal_model`; in the same call, or in a background
thread with ``background=True`` while the registration tracker goes on answering), exports it to
ONNX with its card and, from then on, segments each frame with the network in a window around the
target's last position. Nothing from a frame later than the one being tracked is ever used.

Every AI frame carries an uncertainty: the network's heads on the frame and its mirror image
(test-time augmentation) give a per-pixel standard deviation and the members' agreement. Quality
control: the registration tracker keeps running beside the network; when the two disagree beyond
``qc_tolerance_mm`` / ``qc_min_dice``, or the members' agreement is low, the confidence falls and
``details`` say why (``qc_disagree``, ``qc_uncertain``); when the network's answer is implausible
(nothing found, the area far from the first label's) the registration result is returned instead
(``fallback`` = 1) with a low confidence. :attr:`AITracker.reason` says the same in words.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from igikit.ai.personalize import LearningSet, PersonalizeConfig, PersonalModel, Window, train_personal_model
from igikit.ai.uncertainty import augmentations, ensemble_probabilities, summarise
from igikit.core.masks import dice
from igikit.errors import InputError
from igikit.workflows.mrgrt.tracking import RegistrationTracker, Tracker, TrackResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class NetworkView:
    """What the network saw and answered on one frame: enough to explain that answer later.

    Kept by :class:`AITracker` for its last few network frames (references, no copies of the
    frame), so an explanation can be computed on another thread without touching the tracker.
    """

    frame_index: int
    frame: np.ndarray = field(repr=False)
    window: Window
    inputs: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    confidence: float
    centroid_mm: tuple[float, float]
    reason: str
    details: dict[str, float]


def _select_component(mask: np.ndarray, prob: np.ndarray, near_rc: tuple[float, float]) -> np.ndarray:
    """The connected component most likely to be the target: probability mass, discounted by distance."""
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    idx = np.arange(1, n + 1)
    mass = ndimage.sum_labels(prob, lab, idx)
    cents = np.array(ndimage.center_of_mass(prob, lab, idx))
    dist = np.hypot(cents[:, 0] - near_rc[0], cents[:, 1] - near_rc[1])
    best = int(idx[np.argmax(mass / (1.0 + dist / 8.0))])
    return lab == best


class AITracker(Tracker):
    """Patient-specific network tracker with a registration-tracked learning phase.

    Parameters
    ----------
    learning_frames
        Frames of the learning phase, frame 0 included (20-40: 3-10 s of cine at 4-8 Hz).
    config
        Network and training options (:class:`~igikit.ai.personalize.PersonalizeConfig`).
    qc
        Keep the registration tracker running after the learning phase for quality control.
    background
        Train in a background thread; the registration tracker answers until the model is ready.
        The switch frame then depends on the machine's speed (the outputs stay causal).
    tta
        Test-time augmentation per frame: ``"flip"`` (default, 2 passes in one batch), ``"none"``
        or ``"full"`` (mirror + shifts, 10 passes).
    qc_tolerance_mm, qc_min_dice
        AI-registration centroid distance at which the confidence has fallen to exp(-1), and the
        Dice below which they are said to disagree.
    min_agreement
        Members' agreement (mean Dice with the consensus) below which the frame is uncertain.
    area_range
        Plausible target area relative to the first label's; outside it the network's answer is
        not used.
    threads
        ONNX Runtime intra-op threads.
    model_dir
        Where to write ``personal.onnx`` and its card (nothing is written when None).
    calibrator
        Maps the raw confidence to a calibrated one (e.g. :class:`~igikit.ai.calibration.IsotonicCalibrator`).
    keep_views
        Network frames remembered in :attr:`views` for explanations on request.
    """

    name = "ai"

    def __init__(
        self,
        learning_frames: int = 30,
        config: PersonalizeConfig | None = None,
        *,
        qc: bool = True,
        background: bool = False,
        tta: str = "flip",
        qc_tolerance_mm: float = 3.0,
        qc_min_dice: float = 0.6,
        min_agreement: float = 0.8,
        area_range: tuple[float, float] = (0.35, 2.5),
        threads: int = 2,
        model_dir: str | Path | None = None,
        calibrator: Callable[[float], float] | None = None,
        keep_views: int = 16,
    ) -> None:
        if learning_frames < 2:
            raise InputError(f"the learning phase needs at least 2 frames, got {learning_frames}")
        self.learning_frames = int(learning_frames)
        self.config = config or PersonalizeConfig()
        self.qc = qc
        self.background = background
        self.augs = augmentations(tta)
        self.qc_tolerance_mm = qc_tolerance_mm
        self.qc_min_dice = qc_min_dice
        self.min_agreement = min_agreement
        self.area_range = area_range
        self.threads = threads
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.calibrator = calibrator
        self.keep_views = int(keep_views)

    # -- public state -------------------------------------------------------------------------
    @property
    def learning(self) -> bool:
        """True until the network has taken over."""
        return self.runtime is None

    def start(self, frame0: np.ndarray, label0: np.ndarray, spacing_mm: tuple[float, float]) -> None:
        self.frame0_raw = np.asarray(frame0, dtype=np.float32)
        super().start(frame0, label0, spacing_mm)

    def _start(self) -> None:
        self.reg = RegistrationTracker()
        self.reg.start(self.frame0_raw, self.label0, self.spacing)
        self.frames: list[np.ndarray] = [self.frame0_raw]
        self.labels: list[np.ndarray] = [self.label0.astype(np.float32)]
        self.area0 = float(self.label0.sum())
        self.center = self._com(self.label0)
        self.model: PersonalModel | None = None
        self.runtime: Any = None
        self.train_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.train_time_s = float("nan")
        self.switch_frame = -1
        self.frame_index = 0
        self.last_ai: TrackResult | None = None
        self.last_uncertainty: np.ndarray | None = None
        self.last_registration: TrackResult | None = None
        self.views: deque[NetworkView] = deque(maxlen=self.keep_views)
        self.prior: np.ndarray | None = None
        self.reason = "learning phase: registration tracker"

    # -- learning phase -----------------------------------------------------------------------
    def _learning_set(self) -> LearningSet:
        return LearningSet(np.stack(self.frames), np.stack(self.labels), self.spacing, self.window)

    def _train(self, data: LearningSet) -> None:
        try:
            tic = time.perf_counter()
            model = train_personal_model(data, self.config)
            runtime = model.runtime(self.threads)
            if self.model_dir is not None:
                from igikit.ai.runtime import save_model

                save_model(model.onnx, model.card, self.model_dir / "personal.onnx")
            self.train_time_s = time.perf_counter() - tic
            self.model = model
            self.runtime = runtime  # set last: update() switches on it
        except BaseException as err:
            log.error("personal model training failed: %s", err)
            self.train_error = err

    def wait_until_trained(self, timeout_s: float | None = None) -> bool:
        """Block until background training ends (immediately True when it is not running)."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.runtime is not None

    def _learning_update(self, frame: np.ndarray) -> TrackResult:
        r = self.reg.update(frame)
        self.last_registration = r
        if len(self.frames) < self.learning_frames:
            self.frames.append(np.asarray(frame, dtype=np.float32))
            corrupted = r.details.get("corrupted", 0.0) >= 0.5
            soft = r.soft if r.soft is not None else r.mask.astype(np.float32)
            self.labels.append(np.zeros(self.shape, np.float32) if corrupted else soft.astype(np.float32))
            if len(self.frames) == self.learning_frames:
                data = self._learning_set()
                if self.background:
                    self._thread = threading.Thread(target=self._train, args=(data,), daemon=True)
                    self._thread.start()
                else:
                    self._train(data)
        if r.mask.any():
            self.center = self._com(r.mask)
        details = dict(r.details)
        details.update(learning=1.0, registration_confidence=r.confidence)
        return TrackResult(r.mask, r.confidence, r.centroid_mm, r.soft, details)

    # -- network phase ------------------------------------------------------------------------
    def _window(self, center: tuple[float, float]) -> Window:
        card = self.runtime.card
        return Window(center, int(card.input_shape[-1]), float(card.extra.get("window_step", 1.0)))

    @property
    def uses_prior(self) -> bool:
        """Whether the network takes the registration tracker's label as a second input channel."""
        return self.runtime is not None and self.runtime.card.input_shape[1] == 2

    def _inputs(self, frame: np.ndarray, win: Window) -> np.ndarray:
        channels = [self.runtime.card.normalise(win.extract(frame))]
        if self.uses_prior:
            channels.append(win.extract(self.prior) if self.prior is not None else np.zeros_like(channels[0]))
        return np.stack(channels)

    def _segment(self, frame: np.ndarray, augs: list[Any] | None = None) -> tuple[np.ndarray, np.ndarray, Any, Window]:
        """Network mask and soft map on the frame grid, the members' summary and the window used."""
        win = self._window(self.center)
        self._last_inputs = self._inputs(frame, win)
        members = ensemble_probabilities(self.runtime.run, self._last_inputs,
                                         augs if augs is not None else self.augs)
        mean = members.mean(axis=0)
        keep = _select_component(mean >= 0.5, mean, win.to_window(self.center))
        summary = summarise(members, keep)
        near = ndimage.binary_dilation(keep, iterations=2) if keep.any() else keep
        soft = win.paste(np.where(near, mean, 0.0), self.shape)
        mask = soft >= 0.5
        if mask.any():
            lab, n = ndimage.label(mask)
            if n > 1:  # resampling can split a thin component: keep the largest piece
                mask = lab == (1 + int(np.argmax(ndimage.sum_labels(mask, lab, np.arange(1, n + 1)))))
        return mask, soft, summary, win

    def update(self, frame: np.ndarray) -> TrackResult:
        self.frame_index += 1
        if not np.all(np.isfinite(frame)) or frame.shape != self.shape:
            raise InputError(f"frame {self.frame_index}: expected a finite {self.shape} image, got {frame.shape}")
        if self.runtime is None:
            return self._learning_update(frame)
        if self.switch_frame < 0:
            self.switch_frame = self.frame_index
        reg_result: TrackResult | None = None
        if self.qc or self.uses_prior:
            reg_result = self.reg.update(frame)
            self.prior = reg_result.soft if reg_result.soft is not None else reg_result.mask.astype(np.float32)
        self.last_registration = reg_result
        tic = time.perf_counter()
        mask, soft, summary, win = self._segment(frame)
        network_ms = (time.perf_counter() - tic) * 1e3
        self.last_uncertainty = win.paste(summary.std, self.shape)
        area_ratio = float(mask.sum()) / self.area0
        plausible = bool(mask.any()) and self.area_range[0] <= area_ratio <= self.area_range[1]
        details: dict[str, float] = {"learning": 0.0, "agreement": summary.agreement,
                                     "uncertainty": summary.uncertainty, "area_ratio": area_ratio,
                                     "network_ms": network_ms}
        uncertain = summary.agreement < self.min_agreement
        raw = float(np.clip((summary.agreement - 0.5) / 0.5, 0.0, 1.0)) if plausible else 0.0
        reasons = []
        if reg_result is not None:
            details["registration_confidence"] = reg_result.confidence
            if plausible and reg_result.mask.any():
                dist = float(np.hypot(*np.subtract(self._centroid(mask), reg_result.centroid_mm)))
                overlap = dice(mask, reg_result.mask)
                details.update(qc_distance_mm=dist, qc_dice=overlap)
                disagree = dist > self.qc_tolerance_mm or overlap < self.qc_min_dice
                details["qc_disagree"] = float(disagree)
                if disagree:
                    reasons.append(f"AI and registration disagree ({dist:.1f} mm apart, Dice {overlap:.2f})")
                # Agreement with an independent method raises trust; disagreement lowers it.
                raw *= float(np.exp(-((dist / self.qc_tolerance_mm) ** 2))) * (0.5 + 0.5 * overlap)
        details["qc_uncertain"] = float(uncertain)
        if uncertain:
            reasons.append(f"network members disagree (agreement {summary.agreement:.2f})")
        if not plausible:
            reasons.append("network found no plausible target" if not mask.any()
                           else f"network target area {area_ratio:.2f}x the first label's")
            details["fallback"] = 1.0
            fallback = reg_result if reg_result is not None else self.last_ai
            self.reason = "; ".join(reasons) + ("; registration result used" if reg_result is not None
                                                else "; last result kept")
            if fallback is None:
                fallback = self.result(self.label0.astype(np.float32), 0.0)
            conf = 0.25 * fallback.confidence
            details["raw_confidence"] = conf
            out = TrackResult(fallback.mask, self._calibrated(conf), fallback.centroid_mm, fallback.soft, details)
            self._remember(frame, win, out)
            return out
        details["fallback"] = 0.0
        details["raw_confidence"] = raw
        self.reason = "; ".join(reasons) if reasons else "AI and registration agree"
        self.center = self._com(mask)
        res = TrackResult(mask.astype(np.uint8), self._calibrated(raw), self._centroid(mask), soft, details)
        self.last_ai = res
        self._remember(frame, win, res)
        return res

    def _remember(self, frame: np.ndarray, win: Window, result: TrackResult) -> None:
        self.views.append(NetworkView(self.frame_index, frame, win, self._last_inputs, result.mask,
                                      result.confidence, result.centroid_mm, self.reason, dict(result.details)))

    def view(self, frame_index: int | None = None) -> NetworkView:
        """The network's view of a recent frame (default: the latest), for an explanation.

        Raises
        ------
        InputError
            In the learning phase, or when ``frame_index`` is not among the last :attr:`keep_views`
            network frames.
        """
        views = tuple(getattr(self, "views", ()))  # the tracking thread appends; search a snapshot
        if not views:
            raise InputError("the personal model is not trained yet (still in the learning phase)")
        if frame_index is None:
            return views[-1]
        for v in views:
            if v.frame_index == frame_index:
                return v
        raise InputError(f"frame {frame_index} is not among the network's last {len(views)} frames "
                         f"({views[0].frame_index}-{views[-1].frame_index})")

    @staticmethod
    def _com(mask: np.ndarray) -> tuple[float, float]:
        c = ndimage.center_of_mass(mask)
        return float(c[0]), float(c[1])

    def _centroid(self, mask: np.ndarray) -> tuple[float, float]:
        c = ndimage.center_of_mass(mask)
        return float(c[0]) * self.spacing[0], float(c[1]) * self.spacing[1]

    def _calibrated(self, raw: float) -> float:
        return float(np.clip(self.calibrator(raw), 0.0, 1.0)) if self.calibrator is not None else raw

    # -- on request ---------------------------------------------------------------------------
    def _require_model(self) -> None:
        if self.runtime is None:
            raise InputError("the personal model is not trained yet (still in the learning phase)")

    def uncertainty_map(self, frame: np.ndarray, tta: str = "full") -> tuple[np.ndarray, np.ndarray, float]:
        """Mean probability and per-pixel std on the frame grid, and the members' agreement, with ``tta``.

        Uses the current target position; does not change the tracker's state.
        """
        self._require_model()
        _, _, summary, win = self._segment(frame, augmentations(tta))
        return win.paste(summary.mean, self.shape), win.paste(summary.std, self.shape), summary.agreement

    def explain(self, frame: np.ndarray, *, patch_px: int = 8, stride_px: int = 4) -> Any:
        """Occlusion-sensitivity map (a :class:`~igikit.ai.explain.SaliencyMap`) of the network on ``frame``."""
        from igikit.ai.explain import occlusion_sensitivity

        self._require_model()
        win = self._window(self.center)
        prior = win.extract(self.prior)[None] if self.uses_prior and self.prior is not None else None
        return occlusion_sensitivity(self.runtime, np.asarray(frame, dtype=np.float32), win,
                                     extra_channels=prior, patch_px=patch_px, stride_px=stride_px)


def ai_ensemble(**ai_options: Any) -> Tracker:
    """``ensemble_ai``: template + registration + an ``ai`` member (options passed to :class:`AITracker`),
    fused by :class:`~igikit.ai.fusion.AIEnsembleTracker`."""
    from igikit.ai.fusion import AIEnsembleTracker

    return AIEnsembleTracker(AITracker(**ai_options))
