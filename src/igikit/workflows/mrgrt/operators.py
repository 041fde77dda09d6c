"""The stream operators of the MR-linac gating workflow: track, predict, gate (under supervision),
display.

Each one is an :class:`igikit.stream.Operator` (``setup`` declares what it reads and adds,
``compute`` turns one message into the next) so it can be tested alone and composed in
:class:`igikit.workflows.mrgrt.workflow.GatingWorkflow`. Result names are the module constants
below; a console or a recorder reads them from ``message.results``.

Supervision: the gate hands every decision to a
:class:`~igikit.supervise.session.SupervisedSession` (:class:`BeamSupervision`), which logs it and
rules — by autonomy level, open alerts and pause — what may take effect; the simulated beam obeys
the session's effective value, never the raw decision. Without a session (unit tests of the gate
alone) every decision takes effect as decided and goes nowhere but ``results["decision"]``.

Coordinates: positions are ``(row, col)`` mm in the image, i.e. on a sagittal cine ``(SI, AP)``
with SI positive towards the feet (inferior) and AP positive towards the back (posterior).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from igikit.core.masks import centroid_mm
from igikit.errors import InputError
from igikit.stream.events import StreamEvent
from igikit.stream.message import Message, wall_clock
from igikit.stream.operator import FRAME, Operator, OperatorSpec, Sink
from igikit.supervise.records import DecisionRecord
from igikit.supervise.session import Actor, FrameState, Overlay, SupervisedSession
from igikit.workflows.mrgrt.confidence import ConfidenceCalibrator, ConfidenceModel
from igikit.workflows.mrgrt.drift import RecentreConfig, RecentreState, Recentring, shift_words
from igikit.workflows.mrgrt.gating import Gate, GateDecision, GatingConfig, decision_record
from igikit.workflows.mrgrt.prediction import make_predictor
from igikit.workflows.mrgrt.tracking import Tracker, make_tracker

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- result names
#: (H, W) uint8 tracked target on this frame.
TARGET_MASK = "target_mask"
#: Tracking confidence in [0, 1]; NaN when the frame could not be tracked (e.g. NaN pixels). With
#: a calibration (the default for ``ensemble``) it is the calibrated probability that the centroid
#: error is below the calibration's tolerance; the gate, the handover and the explanations use it.
CONFIDENCE = "confidence"
#: The tracker's own confidence before calibration (equal to ``confidence`` without one).
RAW_CONFIDENCE = "raw_confidence"
#: (2,) tracked target centroid, (row, col) mm = (SI, AP) on a sagittal cine.
CENTROID_MM = "centroid_mm"
#: False when the frame held NaN / infinite pixels or the tracker failed on it.
FRAME_VALID = "frame_valid"
#: Why a frame was not tracked ("" when it was).
TRACK_NOTE = "track_note"
#: (2,) centroid predicted for acquisition time + system latency, (row, col) mm.
PREDICTED_CENTROID_MM = "predicted_centroid_mm"
#: (H, W) uint8 tracked mask shifted to the predicted position: what the gate judges.
PREDICTED_MASK = "predicted_mask"
#: The same at acquisition + latency + frame interval: when the next decision takes over.
PREDICTED_NEXT_CENTROID_MM = "predicted_next_centroid_mm"
PREDICTED_NEXT_MASK = "predicted_next_mask"
#: False while the predictor warms up (the measured position stands in for the prediction).
PREDICTION_READY = "prediction_ready"
#: Running RMS (mm, 2D) of the predictor's realised error at the horizon: each prediction is
#: scored when the tracked position at its target time is known (NaN until the first is).
PREDICTION_UNCERTAINTY_MM = "prediction_uncertainty_mm"
#: The gating decision: "on" or "hold" (text), and the same as a bool.
BEAM = "beam"
BEAM_ON = "beam_on"
#: Beam state in effect when this frame was acquired (earlier decisions, after the latency).
BEAM_EFFECTIVE_ON = "beam_effective_on"
#: When this decision reaches the beam (stream time, s).
BEAM_EFFECT_TIME_S = "beam_effect_time_s"
#: Decision reason ("inside", "outside", "resuming", "stale_frame", "low_confidence",
#: "source_lost", "invalid_input"), whether it was a safety interlock, and its sentence.
GATE_REASON = "gate_reason"
SAFETY = "safety"
EXPLANATION = "explanation"
#: Share (%) of the predicted target outside the gating boundary, and its farthest excursion (mm).
OUTSIDE_PCT = "outside_pct"
OUTSIDE_MM = "outside_mm"
#: Age of the frame when the gate decided (ms): acquisition-to-decision time inside igikit.
FRAME_AGE_MS = "frame_age_ms"
#: Contours for display, pixel (row, col): {"target": [...], "predicted": [...], "boundary": [...]}.
OVERLAY = "overlay"
#: Displacement of the tracked and predicted target from its planned position (mm), for plots:
#: SI (rows, + inferior) and AP (columns, + posterior).
TRACKED_SI_MM = "tracked_si_mm"
TRACKED_AP_MM = "tracked_ap_mm"
PREDICTED_SI_MM = "predicted_si_mm"
PREDICTED_AP_MM = "predicted_ap_mm"
#: The :class:`DecisionRecord` object (not recorded; the audit log holds it) and its audit-log row.
DECISION = "decision"
AUDIT_SEQ = "audit_seq"
#: What supervision did with the decision (:data:`igikit.supervise.autonomy.Mode`: "applied",
#: "pending", "proposed", "displayed", "handed_over", "safe_state"; "unsupervised" without a session).
SUPERVISION = "supervision"
#: The beam command sent after supervision (the session's effective value): what the linac obeys,
#: after the system latency. ``beam_on`` is the automation's decision, this is what it was allowed.
BEAM_COMMAND_ON = "beam_command_on"
#: (2,) shift (SI, AP mm) of the gating window (and the gated beam's aperture) the gate judged this
#: frame against: (0, 0) until a re-centring took effect.
BOUNDARY_SHIFT_MM = "boundary_shift_mm"
#: Baseline monitor (:class:`MonitorBaseline`, with re-centring on): the end-exhale baseline (SI, AP
#: mm, NaN until enough breathing cycles were seen), its drift from the first baseline, the number
#: of cycles it is the median of, the window shift in effect, whether the drift is beyond the hard
#: limit (the beam holds), and one sentence on it.
BASELINE_MM = "baseline_mm"
BASELINE_DRIFT_MM = "baseline_drift_mm"
BASELINE_CYCLES = "baseline_cycles"
RECENTRE_SHIFT_MM = "recentre_shift_mm"
DRIFT_HOLD = "drift_hold"
DRIFT_NOTE = "drift_note"


def contours_px(mask: np.ndarray) -> list[list[list[float]]]:
    """Outlines of ``mask`` as polygons of (row, col) pixel coordinates (for drawing)."""
    m = np.ascontiguousarray(np.asarray(mask) > 0, dtype=np.uint8)
    found, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[[float(p[0][1]), float(p[0][0])] for p in c] for c in found if len(c) >= 2]


def shift_mask(mask: np.ndarray, shift_rc_px: Sequence[float] | np.ndarray) -> np.ndarray:
    """``mask`` translated by ``(rows, cols)`` pixels, sub-pixel (bilinear, then >= 0.5)."""
    m = np.array([[1, 0, shift_rc_px[1]], [0, 1, shift_rc_px[0]]], dtype=np.float32)
    h, w = mask.shape
    soft = cv2.warpAffine(np.asarray(mask, dtype=np.float32), m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return (soft >= 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------------ track
class TrackTarget(Operator):
    """Tracks the target on every frame; the stream's first frame starts the tracker.

    Adds ``target_mask``, ``confidence``, ``raw_confidence``, ``centroid_mm``, ``frame_valid`` and
    ``track_note``. A frame with NaN or infinite pixels is not given to the tracker: it is marked
    invalid with confidence NaN (the gate then holds); so is a frame on which the tracker raises.

    With a ``calibration`` (:class:`~igikit.workflows.mrgrt.confidence.ConfidenceModel`, fitted for
    this tracking method), ``confidence`` is the calibrated probability that the centroid error is
    below its tolerance, computed from the tracker's raw confidence, its details and the run's
    recent positions; ``raw_confidence`` keeps the tracker's own number. The first frame's label is
    given, not tracked: confidence 1.

    Parameters
    ----------
    first_label
        (H, W) target on the first frame of the stream.
    spacing_mm
        (row, col) pixel spacing, mm.
    method
        A tracking method of :func:`igikit.workflows.mrgrt.tracking.make_tracker`.
    calibration
        The confidence calibration, or None (the raw confidence is used).

    The live tracker is :attr:`tracker` (built at the first frame). The tracker counts the frames
    it was given (its frame 0 is the first one); a real-time stream drops frames it cannot keep
    up with and a NaN frame is never given to it, so :meth:`frame_id` and :meth:`tracker_index`
    translate between that count and the stream's frame ids (for the last
    :data:`FRAME_IDS_KEPT` frames), e.g. for an explanation of the tracker's answer on a frame.
    """

    #: Recent tracker frames whose stream frame ids :meth:`frame_id` / :meth:`tracker_index` know.
    FRAME_IDS_KEPT = 1024

    def __init__(
        self, first_label: np.ndarray, spacing_mm: Sequence[float], method: str = "ensemble", name: str = "track",
        *, calibration: ConfidenceModel | None = None,
    ) -> None:
        label = np.asarray(first_label) > 0
        if label.ndim != 2 or not label.any():
            raise InputError(f"the first label must be a non-empty 2D mask, got shape {label.shape}")
        make_tracker(method)  # an unknown method fails here, before any frame flows
        if calibration is not None and calibration.tracking_method != method:
            raise InputError(
                f"the confidence calibration was fitted for tracking method {calibration.tracking_method!r}, "
                f"not {method!r}"
            )
        self.first_label = label.astype(np.uint8)
        self.spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
        self.method = method
        self.calibration = calibration
        self._tracker: Tracker | None = None
        self._calibrator: ConfidenceCalibrator | None = None
        self._last_mask = self.first_label
        # stream frame ids of the tracker's last frames; the tracker's count of the first one kept
        self._ids_lock = threading.Lock()
        self._frame_ids: collections.deque[int] = collections.deque(maxlen=self.FRAME_IDS_KEPT)
        self._frames_given = 0
        super().__init__(name)

    @property
    def tracker(self) -> Tracker | None:
        """The run's live tracker (None before the first frame); read it, never update it from another thread."""
        return self._tracker

    def frame_id(self, tracker_index: int) -> int | None:
        """The stream frame id of the tracker's frame ``tracker_index`` (0: the first); None when not kept."""
        with self._ids_lock:
            k = int(tracker_index) - (self._frames_given - len(self._frame_ids))
            return self._frame_ids[k] if 0 <= k < len(self._frame_ids) else None

    def tracker_index(self, frame_id: int) -> int | None:
        """The tracker's count of stream frame ``frame_id``; None when it was not given to the tracker
        (dropped, a NaN frame, not yet arrived) or is older than the frames kept."""
        with self._ids_lock:
            first = self._frames_given - len(self._frame_ids)
            for k in range(len(self._frame_ids) - 1, -1, -1):  # ids increase: search from the newest
                if self._frame_ids[k] == frame_id:
                    return first + k
                if self._frame_ids[k] < frame_id:
                    return None
        return None

    def _given(self, frame_id: int) -> None:
        with self._ids_lock:
            self._frame_ids.append(int(frame_id))
            self._frames_given += 1

    def setup(self, spec: OperatorSpec) -> None:
        """Reads the frame; adds the tracked target."""
        spec.input(FRAME)
        for key in (TARGET_MASK, CONFIDENCE, RAW_CONFIDENCE, CENTROID_MM, FRAME_VALID, TRACK_NOTE):
            spec.output(key)

    def start(self) -> None:
        """Forget the previous run: the next frame is the first one again."""
        self._tracker = None
        self._calibrator = None
        self._last_mask = self.first_label
        with self._ids_lock:
            self._frame_ids.clear()
            self._frames_given = 0

    def warm_up(self, message: Message) -> Message:
        """Track a synthetic target on two synthetic frames with a throw-away tracker.

        The target is drawn into the warm-up frame, then moved by a pixel and a half, so the
        tracker's first optical flow, template match and calibration run here rather than on the
        first real frames (the tracker of the run is untouched).
        """
        frame = np.asarray(message.frame, dtype=np.float64)
        if frame.shape != self.first_label.shape:
            return message
        lo, hi = float(frame.min()), float(frame.max())
        first = frame + (0.5 * (hi - lo) + 1.0) * self.first_label
        moved = np.roll(first, (1, 2), axis=(0, 1))
        dtype = message.frame.dtype
        tracker = make_tracker(self.method)
        tracker.start(first.astype(dtype), self.first_label, self.spacing)
        calibrator = ConfidenceCalibrator(self.calibration) if self.calibration is not None else None
        if calibrator is not None:
            calibrator.first(0.0, centroid_mm(self.first_label, self.spacing))
        out = message
        for k, image in enumerate((moved, first), start=1):
            result = tracker.update(image.astype(dtype))
            out = self._tracked(message, result.mask.astype(np.uint8), float(result.confidence),
                                np.asarray(result.centroid_mm, dtype=np.float64), result.details, calibrator,
                                time_s=0.1 * k)
        return out

    def _invalid(self, message: Message, note: str) -> Message:
        return message.with_results(
            **{
                TARGET_MASK: self._last_mask,
                CONFIDENCE: float("nan"),
                RAW_CONFIDENCE: float("nan"),
                CENTROID_MM: np.full(2, np.nan),
                FRAME_VALID: False,
                TRACK_NOTE: note,
            }
        )

    def _tracked(
        self, message: Message, mask: np.ndarray, raw: float, centroid: np.ndarray, details: Mapping[str, float],
        calibrator: ConfidenceCalibrator | None, *, time_s: float,
    ) -> Message:
        confidence = raw if calibrator is None else calibrator.calibrate(time_s, raw, centroid, details)
        return message.with_results(
            **{
                TARGET_MASK: mask,
                CONFIDENCE: confidence,
                RAW_CONFIDENCE: raw,
                CENTROID_MM: centroid,
                FRAME_VALID: bool(np.isfinite(centroid).all()),
                TRACK_NOTE: "" if np.isfinite(centroid).all() else "the tracker returned an empty mask",
            }
        )

    def compute(self, message: Message) -> Message:
        """Track the target on this frame."""
        frame = message.frame
        if frame.shape != self.first_label.shape:
            raise InputError(f"frame {message.frame_id} is {frame.shape}; the first label is {self.first_label.shape}")
        if frame.dtype.kind == "f" and not np.isfinite(frame).all():
            bad = int(np.count_nonzero(~np.isfinite(frame)))
            return self._invalid(message, f"frame {message.frame_id} has {bad} NaN or infinite pixels")
        t = float(message.acquisition_time_s)
        if self._tracker is None:
            tracker = make_tracker(self.method)
            tracker.start(np.asarray(frame), self.first_label, self.spacing)
            self._given(message.frame_id)
            self._tracker = tracker
            centroid = centroid_mm(self.first_label, self.spacing)
            if self.calibration is not None:
                self._calibrator = ConfidenceCalibrator(self.calibration)
                self._calibrator.first(t, centroid)
            self._last_mask = self.first_label
            return self._tracked(message, self.first_label, 1.0, centroid, {}, None, time_s=t)
        self._given(message.frame_id)  # counted by the tracker even when its update raises
        try:
            result = self._tracker.update(np.asarray(frame))
        except Exception as exc:  # a tracker failure must hold the beam, not end the treatment
            log.exception("tracking failed on frame %d", message.frame_id)
            return self._invalid(message, f"tracking failed on frame {message.frame_id}: {exc}")
        mask = result.mask.astype(np.uint8)
        self._last_mask = mask
        centroid = np.asarray(result.centroid_mm, dtype=np.float64)
        return self._tracked(message, mask, float(result.confidence), centroid, result.details, self._calibrator,
                             time_s=t)


# ---------------------------------------------------------------------------------- predict
class PredictTarget(Operator):
    """Predicts where the target will be when the beam responds, and moves the mask there.

    One online predictor per axis (SI = rows, AP = columns) is fed the tracked centroid at each
    frame's acquisition time and asked for the position ``horizon_s`` later (the system
    latency). The tracked mask is translated by the predicted displacement. Frames that are
    invalid or tracked with confidence below ``min_confidence`` are not fed to the predictors (a
    wrong measurement would corrupt them; the gate holds on those frames anyway). While a
    predictor warms up it returns NaN and the measured position stands in
    (``prediction_ready`` False).

    With ``hold_s`` (the frame interval), a second pair of predictors looks ``horizon_s +
    hold_s`` ahead: a decision stays in force until the next frame's decision reaches the beam,
    so the gate can check that the target stays inside for that whole time
    (``predicted_next_centroid_mm`` / ``predicted_next_mask``).

    Parameters
    ----------
    horizon_s
        Prediction horizon (s): the system latency.
    spacing_mm
        (row, col) pixel spacing, mm.
    method
        A method of :func:`igikit.workflows.mrgrt.prediction.make_predictor`.
    min_confidence
        Measurements below this confidence are not learnt from.
    hold_s
        How long a decision stays in force (the frame interval), or None.
    """

    def __init__(
        self,
        horizon_s: float,
        spacing_mm: Sequence[float],
        method: str = "online",
        *,
        min_confidence: float = 0.5,
        hold_s: float | None = None,
        name: str = "predict",
    ) -> None:
        make_predictor(method, horizon_s)  # unknown method / bad horizon fail here
        if hold_s is not None and not hold_s > 0:
            raise InputError(f"the decision hold time must be > 0 s, got {hold_s}")
        self.horizon_s = float(horizon_s)
        self.horizons = (self.horizon_s,) if hold_s is None else (self.horizon_s, self.horizon_s + float(hold_s))
        self.spacing = np.asarray(spacing_mm, dtype=np.float64)
        self.method = method
        self.min_confidence = float(min_confidence)
        self._predictors: list[list[Any]] = []
        self._last_t = -np.inf
        self._scorer = PredictionScorer()
        super().__init__(name)

    def setup(self, spec: OperatorSpec) -> None:
        """Reads the tracked target; adds the predicted centroid and mask (and the next ones)."""
        for key in (TARGET_MASK, CONFIDENCE, CENTROID_MM, FRAME_VALID):
            spec.input(key)
        for key in (PREDICTED_CENTROID_MM, PREDICTED_MASK, PREDICTION_READY, PREDICTED_NEXT_CENTROID_MM,
                    PREDICTED_NEXT_MASK, PREDICTION_UNCERTAINTY_MM):
            spec.output(key)

    def start(self) -> None:
        """Fresh predictors for a new run (they learn online, from this run only)."""
        self._predictors = [[make_predictor(self.method, h) for _ in range(2)] for h in self.horizons]
        self._last_t = -np.inf
        self._scorer = PredictionScorer()

    #: Synthetic breathing samples a warm-up feeds: enough for every member of the ``online``
    #: ensemble to have predicted (its pattern memory joins after a few seconds).
    WARM_UP_SAMPLES = 48

    def warm_up(self, message: Message) -> Message:
        """Feed throw-away predictors a synthetic breathing trace, then predict and move the mask.

        The run's predictors are untouched (they learn from this run's frames only).
        """
        r = message.results
        if not all(key in r for key in (TARGET_MASK, CONFIDENCE, CENTROID_MM, FRAME_VALID)):
            return message
        predictors = [make_predictor(self.method, h) for h in self.horizons]
        for k in range(self.WARM_UP_SAMPLES):
            t = k / 8.0
            for p in predictors:
                p.update(t, 5.0 * np.sin(2.0 * np.pi * t / 4.0))
        ahead = [float(p.predict(h)) for p, h in zip(predictors, self.horizons, strict=True)]
        measured = np.asarray(r[CENTROID_MM], dtype=np.float64)
        mask = np.asarray(r[TARGET_MASK])
        shift = np.array([1.5, -0.5]) * self.spacing if np.isfinite(ahead).all() else np.zeros(2)
        moved = self._moved(mask, measured, measured + shift) if np.isfinite(measured).all() else mask
        return message.with_results(
            **{
                PREDICTED_CENTROID_MM: measured + shift, PREDICTED_MASK: moved, PREDICTION_READY: True,
                PREDICTED_NEXT_CENTROID_MM: measured + shift, PREDICTED_NEXT_MASK: moved,
                PREDICTION_UNCERTAINTY_MM: 1.0,
            }
        )

    def _moved(self, mask: np.ndarray, measured: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        shift_px = (predicted - measured) / self.spacing
        moved = shift_mask(mask, shift_px) if np.abs(shift_px).max() >= 0.01 else mask
        # Shifted off the image: keep the measured mask (the gate sees it outside anyway).
        return moved if moved.any() else mask

    def compute(self, message: Message) -> Message:
        """Add the predicted centroid and the predicted mask."""
        r = message.results
        measured = np.asarray(r[CENTROID_MM], dtype=np.float64)
        mask = np.asarray(r[TARGET_MASK])
        confidence = float(r[CONFIDENCE])
        usable = bool(r[FRAME_VALID]) and np.isfinite(confidence) and confidence >= self.min_confidence
        t = float(message.acquisition_time_s)
        if not usable:
            return message.with_results(
                **{
                    PREDICTED_CENTROID_MM: measured, PREDICTED_MASK: mask, PREDICTION_READY: False,
                    PREDICTED_NEXT_CENTROID_MM: measured, PREDICTED_NEXT_MASK: mask,
                    PREDICTION_UNCERTAINTY_MM: self._scorer.rms_mm,
                }
            )
        if t > self._last_t:
            for pair in self._predictors:
                for predictor, x in zip(pair, measured, strict=True):
                    predictor.update(t, float(x))
            self._last_t = t
            self._scorer.measured(t, measured)
        predictions = [
            np.array([p.predict(h) for p in pair], dtype=np.float64)
            for h, pair in zip(self.horizons, self._predictors, strict=True)
        ]
        ready = all(bool(np.isfinite(p).all()) for p in predictions)
        if not ready:
            predictions = [measured for _ in predictions]
        self._scorer.predicted(t + self.horizon_s, predictions[0])  # the measured stand-in is scored too
        moved = [self._moved(mask, measured, p) for p in predictions]
        return message.with_results(
            **{
                PREDICTED_CENTROID_MM: predictions[0],
                PREDICTED_MASK: moved[0],
                PREDICTION_READY: ready,
                PREDICTED_NEXT_CENTROID_MM: predictions[-1],
                PREDICTED_NEXT_MASK: moved[-1],
                PREDICTION_UNCERTAINTY_MM: self._scorer.rms_mm,
            }
        )


class PredictionScorer:
    """Running RMS error of a predictor, from this run only, causally.

    Each prediction waits until the tracked position at its target time is known (the first
    measurement at or after it; the position there is interpolated linearly between the two
    measurements around it); its 2D error then enters an exponentially weighted mean square.

    Parameters
    ----------
    weight
        Weight of the newest error (0.1: about the last ten predictions).
    """

    def __init__(self, weight: float = 0.1) -> None:
        self.weight = float(weight)
        self._pending: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._previous: tuple[float, np.ndarray] | None = None
        self._mean_square = float("nan")
        self.n_scored = 0

    @property
    def rms_mm(self) -> float:
        """The running RMS error (mm); NaN until a prediction was scored."""
        return float(np.sqrt(self._mean_square))

    def predicted(self, target_time_s: float, position_mm: np.ndarray) -> None:
        """A prediction of the position at ``target_time_s``."""
        if np.isfinite(position_mm).all():
            self._pending.append((float(target_time_s), np.array(position_mm, dtype=np.float64)))

    def measured(self, time_s: float, position_mm: np.ndarray) -> None:
        """A tracked position: score every prediction whose target time has come."""
        x = np.asarray(position_mm, dtype=np.float64)
        previous, self._previous = self._previous, (float(time_s), x.copy())
        while self._pending and self._pending[0][0] <= time_s:
            due, guess = self._pending.popleft()
            if previous is None or due < previous[0]:
                continue  # no measurement before its time (a gap): cannot be scored fairly
            t0, x0 = previous
            truth = x if time_s <= t0 else x0 + (x - x0) * (due - t0) / (time_s - t0)
            error2 = float(np.sum((guess - truth) ** 2))
            self._mean_square = (
                error2 if self.n_scored == 0 else (1 - self.weight) * self._mean_square + self.weight * error2
            )
            self.n_scored += 1


# --------------------------------------------------------------------------------- baseline
class MonitorBaseline(Operator):
    """Measures the breathing baseline on the tracked target and re-centres the gating window.

    Every usable tracked position (valid, confidence at least ``min_confidence``: the ones the
    predictor learns from) feeds a :class:`~igikit.workflows.mrgrt.drift.BaselineDriftEstimator`;
    :class:`~igikit.workflows.mrgrt.drift.Recentring` turns a lasting drift into a proposal to the
    supervised session and reports the window shift the session has put into effect
    (``recentre_shift_mm``, which the gate applies) and whether the drift is beyond the hard limit
    (``drift_hold``, which the gate obeys with a safety hold).

    Parameters
    ----------
    config
        Threshold, persistence, cycles, hard limit.
    session
        The supervised session the proposals go to (None: they apply at once, unsupervised).
    min_confidence
        Tracked positions below this confidence are not used.
    session_id, workflow
        Stamped on the proposals (the session's own id when there is one).
    """

    #: Synthetic breathing samples a warm-up feeds (8 s at 8 Hz: five 1.5 s cycles).
    WARM_UP_SAMPLES = 64

    def __init__(
        self, config: RecentreConfig, *, session: SupervisedSession | None = None, min_confidence: float = 0.5,
        session_id: str = "", workflow: str = "mrgrt", name: str = "baseline",
    ) -> None:
        self.config = config
        self.session = session
        self.min_confidence = float(min_confidence)
        self.session_id, self.workflow = session_id, workflow
        self.estimator = config.estimator()
        self.recentring = Recentring(config, session=session, session_id=session_id, workflow=workflow)
        super().__init__(name)

    def setup(self, spec: OperatorSpec) -> None:
        """Reads the tracked target; adds the baseline, the window shift in effect and the drift hold."""
        for key in (CENTROID_MM, CONFIDENCE, FRAME_VALID):
            spec.input(key)
        for key in (BASELINE_MM, BASELINE_DRIFT_MM, BASELINE_CYCLES, RECENTRE_SHIFT_MM, DRIFT_HOLD, DRIFT_NOTE):
            spec.output(key)

    def start(self) -> None:
        """A new run: no history, no shift."""
        self.estimator = self.config.estimator()
        self.recentring = Recentring(
            self.config, session=self.session, session_id=self.session_id, workflow=self.workflow
        )

    def warm_up(self, message: Message) -> Message:
        """Run a throw-away estimator and policy (no session) over a synthetic breathing trace."""
        estimator = self.config.estimator()
        policy = Recentring(self.config)
        state = None
        for k in range(self.WARM_UP_SAMPLES):
            t = k / 8.0
            state = policy.step(t, estimator.update(t, (4.0 * np.cos(np.pi * t / 1.5) ** 4, 1.0)), frame_id=k)
        assert state is not None
        return self._results(message, state)

    @staticmethod
    def _results(message: Message, state: RecentreState) -> Message:
        est = state.estimate
        return message.with_results(
            **{
                BASELINE_MM: np.full(2, np.nan) if est is None else np.asarray(est.baseline_mm, dtype=np.float64),
                BASELINE_DRIFT_MM: np.full(2, np.nan) if est is None else np.asarray(est.drift_mm, dtype=np.float64),
                BASELINE_CYCLES: 0 if est is None else est.n_cycles,
                RECENTRE_SHIFT_MM: np.asarray(state.shift_mm, dtype=np.float64),
                DRIFT_HOLD: state.hold,
                DRIFT_NOTE: state.note,
            }
        )

    def compute(self, message: Message) -> Message:
        """Update the baseline with this frame's tracked position; re-centre under supervision."""
        r = message.results
        confidence = float(r[CONFIDENCE])
        t = float(message.acquisition_time_s)
        usable = bool(r[FRAME_VALID]) and np.isfinite(confidence) and confidence >= self.min_confidence
        centroid = np.asarray(r[CENTROID_MM], dtype=np.float64)
        estimate = self.estimator.update(t, centroid) if usable else self.estimator.latest
        state = self.recentring.step(t, estimate, frame_id=int(message.frame_id))
        return self._results(message, state)


# ------------------------------------------------------------------------------------- gate
@dataclass(frozen=True)
class BeamCommand:
    """One command sent to the (simulated) linac: it takes effect after the system latency.

    Attributes
    ----------
    frame_id
        The newest frame the decision used (-1: none).
    decided_time_s
        Stream time (s) at which igikit decided: the frame's acquisition time plus its age.
    effect_time_s
        When the beam responds: the frame's acquisition time plus the system latency (or the
        decision time, when deciding took longer than the stated latency).
    beam_on
        What the beam was commanded: under supervision the session's effective value (a decision
        waiting in its veto window, refused in the safe state or only displayed does not turn the
        beam on), else the gating decision.
    safety
        A safety hold (an interlock, or the session's safe state: paused, alert open); it also
        stops a tracking beam.
    reason
        The decision's reason (``"supervision"`` for a hold the session ordered between frames).
    aperture_mm
        (row, col) mm displacement of the predicted target from its planned position: where a
        tracking beam (MLC tracking) would aim.
    expires_s
        The linac's heartbeat: a command not renewed by this time lapses and the beam holds by
        itself (its effect time plus the stale-frame deadline), so a stalled igikit can never
        leave the beam on.
    supervision
        What the session did with the decision (:data:`SUPERVISION`), ``"unsupervised"`` without one.
    window_shift_mm
        (row, col) mm baseline shift in force when decided: the gating window was re-centred by it,
        and the gated beam's aperture moves with it (a couch or MLC baseline shift); (0, 0) when
        the window is where it was planned.
    """

    frame_id: int
    decided_time_s: float
    effect_time_s: float
    beam_on: bool
    safety: bool
    reason: str
    aperture_mm: tuple[float, float]
    expires_s: float = float("inf")
    supervision: str = "unsupervised"
    window_shift_mm: tuple[float, float] = (0.0, 0.0)

    def on_at(self, time_s: float) -> bool:
        """Whether this command keeps the (gating) beam on at ``time_s``."""
        return self.beam_on and self.effect_time_s <= time_s < self.expires_s


#: Who acknowledges alerts in a headless run, where no human watches (every such action is logged
#: under this name, so it can never pass for a person's).
HEADLESS_ACTOR = Actor("igikit-headless", "operator")


@dataclass(frozen=True)
class Verdict:
    """What supervision let a gating decision do: the beam command, the mode, the audit row."""

    beam_on: bool
    mode: str
    seq: int | None
    safe_state: bool


class BeamSupervision:
    """The gate's link to its :class:`~igikit.supervise.session.SupervisedSession`.

    Every decision is submitted (the session writes it to the audit log, once) and the beam is
    commanded with the session's *effective* value, so autonomy levels, veto windows, handover,
    pause and alerts all act on the beam; safety interlocks act at once at every level (the
    session's rule). On top of the session's own handover (level 3), low tracking confidence (or an
    untrackable frame) and a frame near its stale deadline raise an alert at every level: it keeps
    the beam held until a human acknowledges it.

    Parameters
    ----------
    session
        The supervised session (``"beam"``'s safe value ``"hold"`` is declared on it).
    min_confidence
        The gate's confidence interlock; below it an alert asks for a human.
    stale_after_ms
        The stale-frame deadline.
    near_limit_frac
        A frame at least this share of the deadline old when decided is *near the limit*.
    headless
        Nobody watches (``igikit gate``, ``igikit demo --no-console``): an open alert is
        acknowledged by :data:`HEADLESS_ACTOR` at the first frame on which its condition has
        cleared (valid, confident, fresh), with that reason in the log. Without it an alert stays
        until a person acknowledges it, and the beam stays held.
    """

    def __init__(
        self,
        session: SupervisedSession,
        *,
        min_confidence: float,
        stale_after_ms: float,
        near_limit_frac: float = 0.8,
        headless: bool = False,
    ) -> None:
        if not 0 < near_limit_frac <= 1:
            raise InputError(f"near-limit fraction must be in (0, 1], got {near_limit_frac}")
        self.session = session
        self.min_confidence = float(min_confidence)
        self.stale_after_ms = float(stale_after_ms)
        self.near_limit_frac = float(near_limit_frac)
        self.headless = headless
        #: Alerts the headless policy acknowledged.
        self.acknowledged_automatically = 0
        session.set_safe_value("beam", "hold")

    def near_limit(self, frame_age_ms: float) -> str | None:
        """A sentence when the frame's age is near (or past) the stale-frame deadline, else None."""
        limit = self.stale_after_ms
        if not np.isfinite(frame_age_ms) or frame_age_ms < self.near_limit_frac * limit:
            return None
        where = "past" if frame_age_ms > limit else "near"
        return f"frame {frame_age_ms:.0f} ms old when decided, {where} the {limit:.0f} ms stale-frame deadline"

    def authorise(
        self, record: DecisionRecord, *, reason: str, confidence: float, near_limit: str | None, frame_id: int
    ) -> Verdict:
        """Submit one frame's decision; raise the alerts it calls for; the beam command it allows."""
        s = self.session
        clear_above = max(self.min_confidence, s.policy.handover_confidence)
        clear = not record.safety and near_limit is None and np.isfinite(confidence) and confidence >= clear_above
        if self.headless and clear:
            for alert in s.open_alerts():
                s.acknowledge(
                    alert.alert_id,
                    HEADLESS_ACTOR,
                    reason=f"headless run, no human supervisor: acknowledged automatically once the condition "
                    f"cleared (frame {frame_id}, confidence {confidence:.2f})",
                )
                self.acknowledged_automatically += 1
        disposition = s.submit(record, safe_value="hold", near_limit=near_limit is not None)
        if disposition.mode != "handed_over":  # a level-3 handover has raised its own alert
            if reason in ("low_confidence", "invalid_input"):
                what = record.explanation.removeprefix("beam hold: ")
                s.raise_alert(
                    "low_confidence",
                    f"{what} (frame {frame_id}); check the image and the target",
                    frame_id=frame_id,
                    confidence=confidence if np.isfinite(confidence) else None,
                )
            elif near_limit is not None:
                s.raise_alert("near_limit", near_limit, frame_id=frame_id)
        beam_on = s.effective_value("beam") == "on"
        return Verdict(beam_on, disposition.mode, disposition.seq, s.in_safe_state)

    def submit_hold(self, record: DecisionRecord) -> int:
        """Submit a safety hold decided between frames (source lost, stalled worker); its ``seq``."""
        return self.session.submit(record, safe_value="hold").seq

    def holds_now(self) -> str | None:
        """Why the beam must hold now although the last command turned it on (None: it need not)."""
        if self.session.effective_value("beam") == "on":
            return None
        reasons = self.session.safe_state_reasons()
        return "; ".join(reasons) if reasons else "the beam-on decision is no longer in effect"


class GateBeam(Operator):
    """Gating decisions from the predicted target, safety interlocks, supervision, a simulated beam.

    For every frame: the beam may be on while the predicted target lies inside the gating
    boundary (:class:`igikit.workflows.mrgrt.gating.Gate`, with hysteresis); it holds on a stale
    frame, low tracking confidence or an invalid (NaN) frame. The ``source_lost`` stream event
    (no frame within the source timeout) reaches :meth:`handle_event`, which holds the beam at
    once, from the engine's watchdog thread, without waiting for a frame; and a watchdog of its
    own holds the beam when no frame has been decided for longer than the stale-frame deadline
    while the beam is on (a stalled worker: its frames are dropped, none gets old in the graph).
    Every decision becomes a :class:`~igikit.supervise.records.DecisionRecord`; frame decisions
    travel in ``results["decision"]``, event decisions go to the callbacks in :attr:`listeners`.

    With ``supervision``, every decision goes through the session first and the beam obeys what the
    session lets into effect (:class:`BeamSupervision`); the watchdog also holds the beam between
    frames as soon as the session no longer allows it on (a human paused, an alert opened).

    The beam obeys a command ``latency_s`` after the frame was acquired (the system latency),
    never before igikit made it; :attr:`commands` holds every command with its effect time so
    the delivered beam can be replayed afterwards (:meth:`beam_state_at`).

    With a :class:`MonitorBaseline` upstream (re-centring on), the gate moves its boundary to the
    window shift the session has put into effect (``recentre_shift_mm``: a translated boundary,
    logged; every command carries it, for the beam's aperture) and holds the beam as a safety hold
    (reason ``drift_limit``) while ``drift_hold`` says the drift is beyond the hard limit. Without
    one the boundary stays where it was planned.

    Parameters
    ----------
    first_label
        (H, W) planned target on the first frame; the gating boundary is it plus the margin.
    spacing_mm
        (row, col) pixel spacing, mm.
    config
        Margin, threshold, hysteresis, minimum confidence and stale-frame deadline.
    latency_s
        System latency (acquisition to beam response), s.
    hold_until_predicted
        Hold (reason ``prediction_warmup``, not a safety hold) while the predictor warms up:
        without latency compensation the beam would lag the target by the system latency.
    session_id, workflow
        Stored in every decision record.
    supervision
        The supervised session's link, or None (every decision takes effect as decided).
    """

    def __init__(
        self,
        first_label: np.ndarray,
        spacing_mm: Sequence[float],
        config: GatingConfig,
        *,
        latency_s: float,
        hold_until_predicted: bool = True,
        session_id: str = "",
        workflow: str = "mrgrt",
        supervision: BeamSupervision | None = None,
        name: str = "gate",
    ) -> None:
        if not latency_s >= 0:
            raise InputError(f"system latency must be >= 0 s, got {latency_s}")
        self.first_label = (np.asarray(first_label) > 0).astype(np.uint8)
        self.spacing = tuple(float(s) for s in spacing_mm)
        self.config = config
        self.latency_s = float(latency_s)
        self.hold_until_predicted = hold_until_predicted
        self.session_id, self.workflow = session_id, workflow
        self.supervision = supervision
        self.gate = Gate(self.first_label, self.spacing, config)
        self.planned_centroid_mm = centroid_mm(self.first_label, self.spacing)
        self.boundary_contours = contours_px(self.gate.boundary)
        #: Called with every decision made outside the frame path (source lost), from any thread.
        self.listeners: list[Callable[[DecisionRecord], object]] = []
        #: Every beam command of the run, in the order decided.
        self.commands: list[BeamCommand] = []
        #: Decision records made by :meth:`handle_event` (not attached to a frame).
        self.event_decisions: list[DecisionRecord] = []
        #: (audit seq, record) of every decision submitted to the session, in order.
        self.decisions: list[tuple[int, DecisionRecord]] = []
        # re-entrant: a session subscriber running on the worker thread may read the gate
        self._lock = threading.RLock()
        self._last: Message | None = None
        self._source_lost = False
        self._done = threading.Event()
        self._watchdog: threading.Thread | None = None
        super().__init__(name)

    def setup(self, spec: OperatorSpec) -> None:
        """Reads the predicted target; adds the decision, its supervision and the beam state."""
        for key in (
            PREDICTED_MASK, PREDICTED_NEXT_MASK, PREDICTED_CENTROID_MM, PREDICTION_READY, CONFIDENCE, FRAME_VALID,
            TRACK_NOTE, TARGET_MASK, CENTROID_MM,
        ):
            spec.input(key)
        for key in (
            BEAM, BEAM_ON, BEAM_EFFECTIVE_ON, BEAM_EFFECT_TIME_S, GATE_REASON, SAFETY, EXPLANATION,
            OUTSIDE_PCT, OUTSIDE_MM, FRAME_AGE_MS, OVERLAY, DECISION, AUDIT_SEQ, SUPERVISION, BEAM_COMMAND_ON,
            TRACKED_SI_MM, TRACKED_AP_MM, PREDICTED_SI_MM, PREDICTED_AP_MM, BOUNDARY_SHIFT_MM,
        ):
            spec.output(key)

    def start(self) -> None:
        """A new run starts with the beam held and no commands."""
        with self._lock:
            self.gate.beam_on = False
            self._recentre((0.0, 0.0), None)
            self.commands = []
            self.event_decisions = []
            self.decisions = []
            self._last = None
            self._source_lost = False
        self._done.clear()
        self._watchdog = threading.Thread(target=self._watch, name="igikit-gate-watchdog", daemon=True)
        self._watchdog.start()

    def warm_up(self, message: Message) -> Message:
        """Decide on the synthetic message without the session, then restore the gate as it was.

        The gate's hysteresis state, commands and decisions are put back and nothing reaches the
        session or its audit log: only the code paths (geometry, contours, the decision record)
        have run once.
        """
        if not all(key in message.results for key in self.spec.inputs):
            return message
        with self._lock:
            saved = (self.gate.beam_on, self.commands, self.event_decisions, self.decisions, self._last,
                     self._source_lost, self.supervision, self.gate.shift_mm)
            self.commands, self.event_decisions, self.decisions, self.supervision = [], [], [], None
            try:
                return self.compute(message)
            finally:
                (self.gate.beam_on, self.commands, self.event_decisions, self.decisions, self._last,
                 self._source_lost, self.supervision, shift) = saved
                self._recentre(shift, None)

    def stop(self) -> None:
        """Stop the decision watchdog."""
        self._done.set()
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None

    # ------------------------------------------------------------------ the beam
    def beam_state_at(self, time_s: float) -> BeamCommand | None:
        """The newest command in effect at stream time ``time_s`` (None: before the first one took
        effect); the beam is on when :meth:`BeamCommand.on_at` says so."""
        current = None
        for command in self.commands:
            if command.effect_time_s <= time_s and (current is None or command.effect_time_s >= current.effect_time_s):
                current = command
        return current

    def _commanded_on(self) -> bool:
        return bool(self.commands) and self.commands[-1].beam_on

    @property
    def window_shift_mm(self) -> tuple[float, float]:
        """The shift (row, col mm) of the gating window from its planned position, now."""
        return (float(self.gate.shift_mm[0]), float(self.gate.shift_mm[1]))

    def _recentre(self, shift_mm: Sequence[float] | np.ndarray, time_s: float | None) -> None:
        """Move the boundary (and its contours) to ``shift_mm`` from the planned position (caller holds the lock)."""
        if np.allclose(self.gate.shift_mm, shift_mm, atol=1e-9, rtol=0.0):
            return
        self.gate.recentre(shift_mm)
        self.boundary_contours = contours_px(self.gate.boundary)
        if time_s is not None:
            log.info("gating boundary re-centred at %.2f s: %s from the planned position", time_s,
                     shift_words(shift_mm))

    def _record(
        self, d: GateDecision, *, frame_id: int, frame_time_s: float | None, extra: dict[str, float]
    ) -> DecisionRecord:
        record = decision_record(
            d, frame_id=max(frame_id, 0), frame_time_s=frame_time_s if frame_time_s is not None else 0.0,
            session_id=self.session_id, workflow=self.workflow,
        )
        data = {**record.data, **{k: round(v, 3) for k, v in extra.items() if np.isfinite(v)}}
        ids = record.input_frame_ids if frame_id >= 0 else ()
        return dataclasses.replace(record, data=data, input_frame_ids=ids, frame_time_s=frame_time_s)

    def _authorise(
        self, record: DecisionRecord, d: GateDecision, *, frame_id: int, frame_age_ms: float
    ) -> Verdict:
        if self.supervision is None:
            return Verdict(d.beam_on, "unsupervised", None, False)
        verdict = self.supervision.authorise(
            record, reason=d.reason, confidence=float(d.confidence),
            near_limit=self.supervision.near_limit(frame_age_ms), frame_id=frame_id,
        )
        if verdict.seq is not None:
            self.decisions.append((verdict.seq, record))
        return verdict

    # ------------------------------------------------------------------ frames
    def compute(self, message: Message) -> Message:
        """Decide beam on / hold for this frame, under supervision; command the beam."""
        r = message.results
        t = float(message.acquisition_time_s)
        predicted = np.asarray(r[PREDICTED_CENTROID_MM], dtype=np.float64)
        with self._lock:
            age_s = wall_clock() - message.available_wall_s
            effective = self.beam_state_at(t)
            if RECENTRE_SHIFT_MM in r:  # a baseline monitor runs upstream
                self._recentre(np.asarray(r[RECENTRE_SHIFT_MM], dtype=np.float64), t)
            judged = None
            if r[FRAME_VALID]:
                # The decision stays in force until the next one reaches the beam: judge the
                # predicted target at the start and at the end of that time, the worse of the two.
                now, then = np.asarray(r[PREDICTED_MASK]), np.asarray(r[PREDICTED_NEXT_MASK])
                judged = then if self.gate.geometry(then)[0] > self.gate.geometry(now)[0] else now
            d = self.gate.decide(
                judged,
                confidence=float(r[CONFIDENCE]),
                frame_age_ms=age_s * 1e3,
                uncertainty_mm=float(r.get(PREDICTION_UNCERTAINTY_MM, np.nan)),
            )
            if not r[FRAME_VALID] and r[TRACK_NOTE]:
                d = dataclasses.replace(d, explanation=f"{d.explanation}: {r[TRACK_NOTE]}")
            if d.beam_on and self.hold_until_predicted and not r[PREDICTION_READY]:
                self.gate.beam_on = False
                where = d.explanation.removeprefix("beam on: ")
                d = dataclasses.replace(
                    d, beam_on=False, reason="prediction_warmup",
                    explanation=f"beam hold: motion prediction warming up, latency not yet compensated; {where}",
                )
            if r.get(DRIFT_HOLD, False) and not d.safety:
                self.gate.beam_on = False
                where = d.explanation.split(": ", 1)[-1]
                d = dataclasses.replace(
                    d, beam_on=False, reason="drift_limit", safety=True,
                    explanation=f"beam hold: {r[DRIFT_NOTE]}; {where}",
                )
            shift = self.window_shift_mm
            aperture = predicted - self.planned_centroid_mm
            if not np.isfinite(aperture).all():
                aperture = np.asarray(self.commands[-1].aperture_mm) if self.commands else np.zeros(2)
            effect = t + max(self.latency_s, age_s)
            record = self._record(
                d, frame_id=message.frame_id, frame_time_s=t,
                extra={
                    "frame_age_ms": age_s * 1e3,
                    "effect_time_s": effect,
                    "predicted_si_mm": float(predicted[0]),
                    "predicted_ap_mm": float(predicted[1]),
                    **({"window_shift_si_mm": shift[0], "window_shift_ap_mm": shift[1]} if any(shift) else {}),
                },
            )
            verdict = self._authorise(record, d, frame_id=message.frame_id, frame_age_ms=age_s * 1e3)
            command = BeamCommand(
                message.frame_id, t + age_s, effect, verdict.beam_on, d.safety or verdict.safe_state, d.reason,
                (float(aperture[0]), float(aperture[1])), effect + self.config.stale_after_ms / 1e3,
                verdict.mode, shift,
            )
            self.commands.append(command)
            self._last = message
            self._source_lost = False
        overlay = {
            "target": contours_px(r[TARGET_MASK]),
            "predicted": contours_px(r[PREDICTED_MASK]) if r[FRAME_VALID] else [],
            "boundary": self.boundary_contours,
        }
        tracked = np.asarray(r[CENTROID_MM], dtype=np.float64) - self.planned_centroid_mm
        ahead = predicted - self.planned_centroid_mm
        return message.with_results(
            **{
                BEAM: d.value,
                BEAM_ON: d.beam_on,
                BEAM_EFFECTIVE_ON: bool(effective is not None and effective.on_at(t)),
                BEAM_EFFECT_TIME_S: effect,
                GATE_REASON: d.reason,
                SAFETY: d.safety,
                EXPLANATION: d.explanation,
                OUTSIDE_PCT: float(d.outside_pct),
                OUTSIDE_MM: float(d.outside_mm),
                FRAME_AGE_MS: age_s * 1e3,
                OVERLAY: overlay,
                DECISION: record,
                AUDIT_SEQ: -1 if verdict.seq is None else int(verdict.seq),
                SUPERVISION: verdict.mode,
                BEAM_COMMAND_ON: verdict.beam_on,
                TRACKED_SI_MM: float(tracked[0]),
                TRACKED_AP_MM: float(tracked[1]),
                PREDICTED_SI_MM: float(ahead[0]) if r[FRAME_VALID] else float("nan"),
                PREDICTED_AP_MM: float(ahead[1]) if r[FRAME_VALID] else float("nan"),
                BOUNDARY_SHIFT_MM: np.asarray(shift, dtype=np.float64),
            }
        )

    # ------------------------------------------------------------------ stream events
    def handle_event(self, event: StreamEvent) -> None:
        """Hold the beam when the engine reports ``source_lost`` (runs on the watchdog thread).

        The hold is decided the moment the event arrives; in stream time that is the last
        frame's acquisition time plus the wall time elapsed since it became available. Other
        events are left to the frame path (a stale frame is caught there by its age).
        """
        if event.kind != "source_lost":
            return
        with self._lock:
            if self._source_lost:
                return
            self._source_lost = True
            record = self._hold_without_frame(event.wall_time_s, source_ok=False, detail=event.detail)
        for listener in self.listeners:
            listener(record)

    def _watch(self) -> None:
        deadline_s = self.config.stale_after_ms / 1e3
        while not self._done.wait(min(0.05, max(0.005, deadline_s / 4))):
            record = None
            with self._lock:
                last = self._last
                if last is None or not self._commanded_on():
                    continue
                now = wall_clock()
                why = self.supervision.holds_now() if self.supervision is not None else None
                if why is not None:
                    # a human paused or an alert opened: the beam holds now, not at the next frame
                    self._supervised_hold(now, why)
                elif now - last.available_wall_s > deadline_s:
                    record = self._hold_without_frame(
                        now, source_ok=True, detail=f"no frame decided since frame {last.frame_id}"
                    )
            if record is not None:
                for listener in self.listeners:
                    listener(record)

    def _stream_time(self, wall_s: float) -> tuple[float, float]:
        """(stream time now, seconds since the last frame became available); caller holds the lock."""
        last = self._last
        since = 0.0 if last is None else wall_s - last.available_wall_s
        return (0.0 if last is None else float(last.acquisition_time_s)) + since, since

    def _supervised_hold(self, wall_s: float, why: str) -> None:
        """Hold the beam between frames because the session says so (caller holds the lock).

        No decision record: the session has logged its cause (the pause, the alert).
        """
        decided, _ = self._stream_time(wall_s)
        aperture = self.commands[-1].aperture_mm if self.commands else (0.0, 0.0)
        frame_id = -1 if self._last is None else self._last.frame_id
        self.commands.append(
            BeamCommand(frame_id, decided, decided + self.latency_s, False, True, "supervision", aperture,
                        supervision="safe_state", window_shift_mm=self.window_shift_mm)
        )
        log.info("beam hold between frames: %s", why)

    def _hold_without_frame(self, wall_s: float, *, source_ok: bool, detail: str) -> DecisionRecord:
        """A safety hold decided between frames (caller holds the lock)."""
        last = self._last
        decided, since = self._stream_time(wall_s)
        confidence = float(last.results[CONFIDENCE]) if last is not None else float("nan")
        mask = None if last is None else np.asarray(last.results[PREDICTED_MASK])
        d = self.gate.decide(mask, confidence=confidence, frame_age_ms=since * 1e3, source_ok=source_ok)
        d = dataclasses.replace(d, explanation=f"{d.explanation}: {detail}")
        aperture = self.commands[-1].aperture_mm if self.commands else (0.0, 0.0)
        # No frame: the hold goes straight to the linac; the stated latency is kept as its bound.
        effect = decided + self.latency_s
        frame_id = -1 if last is None else last.frame_id
        record = self._record(
            d, frame_id=frame_id, frame_time_s=None if last is None else float(last.acquisition_time_s),
            extra={"silence_ms": since * 1e3, "effect_time_s": effect},
        )
        mode = "unsupervised"
        if self.supervision is not None:
            self.decisions.append((self.supervision.submit_hold(record), record))
            mode = "applied"
        self.commands.append(BeamCommand(frame_id, decided, effect, False, True, d.reason, aperture, supervision=mode,
                                         window_shift_mm=self.window_shift_mm))
        self.event_decisions.append(record)
        return record


# ---------------------------------------------------------------------------------- display
#: How the console words each supervision mode after the decision's explanation.
MODE_WORDS = {
    "applied": "in effect",
    "pending": "pending: takes effect when the veto window closes",
    "proposed": "proposed: waits for a human's approval",
    "displayed": "displayed only (manual)",
    "handed_over": "handed over to the human",
    "safe_state": "not in effect: safe state",
    "unsupervised": "unsupervised",
}


class PublishFrame(Sink):
    """Publishes every frame to the supervised session as a :class:`FrameState` (the console's view).

    The state carries the frame, the gating boundary, the tracked target contour, the predicted
    target contour and centre, the beam as commanded after supervision, the tracking confidence,
    the decision's explanation with what supervision did with it, and the SI / AP displacement
    (tracked and predicted, mm from the planned position) for the trajectory plot, with the
    gating margin (moved with any re-centring) as its band. Building it costs a few small objects;
    the console encodes it on its own thread.

    Parameters
    ----------
    session
        Where frames are published.
    spacing_mm
        (row, col) pixel spacing, mm.
    latency_ms, margin_mm
        For the labels and the plot's band.
    """

    def __init__(
        self, session: SupervisedSession, spacing_mm: Sequence[float], *, latency_ms: float, margin_mm: float,
        name: str = "display",
    ) -> None:
        self.session = session
        self.spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
        self.latency_ms = float(latency_ms)
        self.margin_mm = float(margin_mm)
        super().__init__(name)

    def setup(self, spec: OperatorSpec) -> None:
        """Reads the frame and the gate's results."""
        spec.input(FRAME)
        for key in (OVERLAY, BEAM_COMMAND_ON, CONFIDENCE, EXPLANATION, SUPERVISION, PREDICTED_CENTROID_MM, FRAME_VALID,
                    TRACKED_SI_MM, TRACKED_AP_MM, PREDICTED_SI_MM, PREDICTED_AP_MM, BOUNDARY_SHIFT_MM):
            spec.input(key)

    def frame_state(self, message: Message) -> FrameState:
        """The :class:`FrameState` of one gated frame."""
        r = message.results
        contours = r[OVERLAY]
        overlays: list[Overlay] = []

        def add(polygons: Sequence[Sequence[Sequence[float]]], label: str, style: Any) -> None:
            for poly in polygons:
                overlays.append(Overlay("contour", label, style, points_xy=tuple((p[1], p[0]) for p in poly)))

        add(contours.get("boundary", []), f"gating boundary (target + {self.margin_mm:g} mm)", "boundary")
        add(contours.get("target", []), "target (tracked)", "tracked")
        add(contours.get("predicted", []), f"target (predicted +{self.latency_ms:g} ms)", "predicted")
        pc = np.asarray(r[PREDICTED_CENTROID_MM], dtype=np.float64)
        if r[FRAME_VALID] and np.isfinite(pc).all():
            overlays.append(Overlay.point(pc[1] / self.spacing[1], pc[0] / self.spacing[0], "predicted centre"))
        on = bool(r[BEAM_COMMAND_ON])
        confidence = float(r[CONFIDENCE])
        mode = str(r[SUPERVISION])
        shift_si = float(np.asarray(r[BOUNDARY_SHIFT_MM])[0])
        return FrameState(
            frame_id=int(message.frame_id),
            acquisition_time_s=float(message.acquisition_time_s),
            frame=message.frame,
            overlays=tuple(overlays),
            beam_on=on,
            output=f"beam {'on' if on else 'hold'}",
            confidence=confidence if np.isfinite(confidence) else None,
            explanation=f"{r[EXPLANATION]} [{MODE_WORDS.get(mode, mode)}]",
            trace={
                "tracked SI (mm)": float(r[TRACKED_SI_MM]),
                "predicted SI (mm)": float(r[PREDICTED_SI_MM]),
                "tracked AP (mm)": float(r[TRACKED_AP_MM]),
                "predicted AP (mm)": float(r[PREDICTED_AP_MM]),
            },
            trace_band=(shift_si - self.margin_mm, shift_si + self.margin_mm),
        )

    def warm_up(self, message: Message) -> Message:
        """Build the synthetic frame's state once; nothing is published."""
        if all(key in message.results for key in self.spec.inputs if key != FRAME):
            self.frame_state(message)
        return message

    def receive(self, message: Message) -> None:
        """Publish this frame (a viewer's failure never reaches the treatment loop)."""
        self.session.publish_frame(self.frame_state(message))
