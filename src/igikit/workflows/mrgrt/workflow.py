"""The supervised MR-linac gating workflow: a real-time graph on :mod:`igikit.stream`.

Reading :meth:`GatingWorkflow.compose` gives the whole data path::

    ReplaySource -> track -> predict [-> baseline] -> gate (+ supervised session)
        -> (recorder, trace, display, progress)

* ``track`` follows the target on each cine frame (any method of
  :func:`~igikit.workflows.mrgrt.tracking.make_tracker`, default ``ensemble``) and calibrates its
  confidence (:mod:`~igikit.workflows.mrgrt.confidence`: the probability that the centroid is
  within 2 mm; the raw value is kept as ``raw_confidence``);
* ``predict`` predicts the target centroid (SI and AP, one online predictor per axis) at the
  frame's acquisition time plus the system latency, and moves the tracked mask there;
* ``baseline`` (only with ``recentre``: :class:`~igikit.workflows.mrgrt.operators.MonitorBaseline`)
  measures the end-exhale baseline on the tracked target and, when it has drifted beyond the
  threshold for longer than the persistence time, proposes to the session to re-centre the
  gating window (and the gated beam's aperture) by the drift; the gate moves its boundary only
  once the session has put the shift into effect (by autonomy level: at once at level 3, after
  the veto window at level 2, on a human's approval at level 1, never at level 0), and holds the
  beam while the drift is beyond the hard limit (:mod:`~igikit.workflows.mrgrt.drift`);
* ``gate`` decides beam on / hold from the *predicted* mask, with the safety interlocks (stale
  frame, low confidence, NaN frame, and the engine's ``source_lost`` event), submits every
  decision to the :class:`~igikit.supervise.session.SupervisedSession` — which writes it to the
  hash-chained audit log (once) and rules, by autonomy level, veto window, open alerts and pause,
  what takes effect — and simulates the beam obeying the session's effective value after the
  system latency; low confidence or a frame near its deadline raises an alert that keeps the beam
  held until acknowledged (a handover at level 3), and a lost source raises one too;
* ``display`` publishes each frame as a :class:`~igikit.supervise.session.FrameState` (contours,
  predicted centre, boundary, beam, confidence, explanation, SI / AP trace) for the console;
* the recorder stores every frame with its results (tracked and predicted centroid and mask,
  contours, beam decision and command, supervision, confidence, explanation) in a session file a
  console can replay.

:func:`run_gating` runs a case through it, writing ``session.h5`` and ``audit.db`` into an output
folder (and removing them again if the run fails). A run nobody watches (``igikit gate``) is
*headless*: see :class:`SupervisionSettings` for what its alerts do.

Before the source starts, the engine warms every operator up on a synthetic frame of the case's
shape (:meth:`igikit.stream.operator.Operator.warm_up`: a throw-away tracker, predictors and gate
decision, the session file's datasets), so the first real frame meets the deadline.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igikit.core.profile import load_profile
from igikit.errors import InputError
from igikit.io.trackrad import CineCase
from igikit.stream.application import Application
from igikit.stream.events import StreamEvent
from igikit.stream.latency import LatencyReport
from igikit.stream.message import Message
from igikit.stream.operator import Operator
from igikit.stream.operators import CollectResults
from igikit.stream.recorder import Recorder
from igikit.stream.source import ReplaySource, Source
from igikit.supervise.audit import AuditLog
from igikit.supervise.autonomy import AutonomyLevel, AutonomyPolicy
from igikit.supervise.records import DecisionRecord, HumanAction
from igikit.supervise.session import SupervisedSession
from igikit.workflows.mrgrt.confidence import ConfidenceModel, shipped_model
from igikit.workflows.mrgrt.delivery import DeliveryOutcome, ReferenceMotion, analyse_delivery
from igikit.workflows.mrgrt.drift import RecentreConfig
from igikit.workflows.mrgrt.gating import GatingConfig
from igikit.workflows.mrgrt.operators import (
    BASELINE_CYCLES,
    BASELINE_DRIFT_MM,
    BASELINE_MM,
    BEAM_COMMAND_ON,
    BEAM_EFFECT_TIME_S,
    BEAM_EFFECTIVE_ON,
    BEAM_ON,
    BOUNDARY_SHIFT_MM,
    CENTROID_MM,
    CONFIDENCE,
    DECISION,
    DRIFT_HOLD,
    FRAME_AGE_MS,
    FRAME_VALID,
    GATE_REASON,
    OUTSIDE_MM,
    OUTSIDE_PCT,
    PREDICTED_CENTROID_MM,
    PREDICTED_MASK,
    PREDICTED_NEXT_CENTROID_MM,
    PREDICTED_NEXT_MASK,
    PREDICTION_READY,
    PREDICTION_UNCERTAINTY_MM,
    RAW_CONFIDENCE,
    RECENTRE_SHIFT_MM,
    SAFETY,
    SUPERVISION,
    TARGET_MASK,
    BeamCommand,
    BeamSupervision,
    GateBeam,
    MonitorBaseline,
    PredictTarget,
    PublishFrame,
    TrackTarget,
)

log = logging.getLogger(__name__)

WORKFLOW = "mrgrt"
#: Files :func:`run_gating` writes into its output folder.
SESSION_FILE = "session.h5"
AUDIT_FILE = "audit.db"
#: The confidence interlock's threshold on a raw (uncalibrated) tracking confidence.
RAW_MIN_CONFIDENCE = 0.5
#: Per-frame results kept in memory for the report (the session file holds all of them).
TRACE_KEYS: tuple[str, ...] = (
    TARGET_MASK,
    PREDICTED_MASK,
    CONFIDENCE,
    RAW_CONFIDENCE,
    CENTROID_MM,
    FRAME_VALID,
    PREDICTED_CENTROID_MM,
    PREDICTED_NEXT_CENTROID_MM,
    PREDICTION_READY,
    PREDICTION_UNCERTAINTY_MM,
    BEAM_ON,
    BEAM_COMMAND_ON,
    SUPERVISION,
    BEAM_EFFECTIVE_ON,
    BEAM_EFFECT_TIME_S,
    GATE_REASON,
    SAFETY,
    OUTSIDE_PCT,
    OUTSIDE_MM,
    FRAME_AGE_MS,
    BOUNDARY_SHIFT_MM,
)
#: Per-frame results of the baseline monitor kept for the report when re-centring is on.
BASELINE_TRACE_KEYS: tuple[str, ...] = (BASELINE_MM, BASELINE_DRIFT_MM, BASELINE_CYCLES, RECENTRE_SHIFT_MM, DRIFT_HOLD)


@dataclass(frozen=True)
class GatingSettings:
    """Everything a gating run is configured with.

    Parameters
    ----------
    margin_mm
        Gating boundary = first-frame target expanded by this margin.
    threshold_pct
        Beam on while at most this share of the predicted target lies outside the boundary.
    hysteresis_pct
        A held beam resumes only at ``threshold_pct - hysteresis_pct`` (capped at the threshold).
    latency_ms
        System latency, acquisition to beam response (150-700 ms on current MR-linacs): the
        prediction horizon and the delay after which the beam obeys.
    tracking_method, predictor
        Tracking method and prediction method.
    min_confidence
        Tracking confidence below which the beam holds. None (the default): the calibration's own
        threshold when the confidence is calibrated (0.99: hold unless the centroid is within 2 mm
        with 99 % probability; see :class:`~igikit.workflows.mrgrt.confidence.ConfidenceModel`),
        :data:`RAW_MIN_CONFIDENCE` on a raw confidence. :meth:`confidence_threshold` resolves it.
    max_frame_age_ms
        Stale-frame deadline: a frame older than this when decided on holds the beam.
    source_timeout_ms
        No frame for this long: ``source_lost``, beam hold (None: ``max_frame_age_ms``).
    calibrated_confidence
        Use the shipped confidence calibration
        (:func:`~igikit.workflows.mrgrt.confidence.shipped_model`, fitted for ``ensemble``): the
        confidence the gate, the handover and the explanations see is then the probability that
        the tracked centroid is within the calibration's tolerance (2 mm); the raw one is kept as
        ``raw_confidence``. Methods it was not fitted for keep their raw confidence.
    hold_until_predicted
        Hold the beam while the motion predictor warms up (no latency compensation yet).
    cover_interval
        Judge the predicted target over the whole time a decision stays in force (until the next
        frame's decision reaches the beam: one frame interval later), not only at its start.
    uncertainty_factor
        The gating boundary shrinks by this many times the predictor's running RMS error at the
        horizon, measured in this run (at most by the margin); 0 (the default): gate on the
        prediction alone (see :class:`~igikit.workflows.mrgrt.gating.GatingConfig`).
    recentre
        Measure the breathing baseline and propose to re-centre the gating window (with the gated
        beam's aperture) when it drifts (:mod:`~igikit.workflows.mrgrt.drift`); off by default:
        on the unseen phantom sets (10-20 s) it never triggered, and on 120 s drifting phantoms
        it raised the duty cycle without a consistent gain in D98 or in beam-on time with the
        target outside (docs/benchmarks.md, "Baseline-drift re-centring").
    drift_threshold_mm, drift_persist_s, drift_cycles
        Propose when the end-exhale baseline (median of ``drift_cycles`` breathing cycles) lies
        more than ``drift_threshold_mm`` from the window's centre for longer than
        ``drift_persist_s``.
    max_shift_mm
        Hard limit on the total shift; a drift beyond it holds the beam and asks a human. None (the
        default): the margin plus 5 mm.
    profile
        Patient profile the defaults came from (recorded in the outputs).
    """

    margin_mm: float = 3.0
    threshold_pct: float = 5.0
    hysteresis_pct: float = 2.0
    latency_ms: float = 300.0
    tracking_method: str = "ensemble"
    predictor: str = "online"
    min_confidence: float | None = None
    max_frame_age_ms: float = 500.0
    source_timeout_ms: float | None = None
    calibrated_confidence: bool = True
    hold_until_predicted: bool = True
    cover_interval: bool = True
    uncertainty_factor: float = 0.0
    recentre: bool = False
    drift_threshold_mm: float = 2.0
    drift_persist_s: float = 5.0
    drift_cycles: int = 3
    max_shift_mm: float | None = None
    profile: str = "adult"

    def __post_init__(self) -> None:
        if not np.isfinite(self.margin_mm) or self.margin_mm < 0:
            raise InputError(f"--margin-mm must be >= 0, got {self.margin_mm:g}")
        if not (np.isfinite(self.threshold_pct) and 0 <= self.threshold_pct <= 100):
            raise InputError(f"--threshold-pct must be in 0..100, got {self.threshold_pct:g}")
        if not (np.isfinite(self.latency_ms) and 0 < self.latency_ms <= 5000):
            raise InputError(f"--latency-ms must be in (0, 5000] ms, got {self.latency_ms:g}")
        if not (np.isfinite(self.max_frame_age_ms) and self.max_frame_age_ms > 0):
            raise InputError(f"the stale-frame deadline must be > 0 ms, got {self.max_frame_age_ms:g}")
        if self.source_timeout_ms is not None and not self.source_timeout_ms > 0:
            raise InputError(f"the source timeout must be > 0 ms, got {self.source_timeout_ms:g}")
        self.gating_config()  # the remaining checks (confidence range, hysteresis)
        self.recentre_config()

    @classmethod
    def from_profile(cls, profile: str = "adult", **overrides: Any) -> GatingSettings:
        """Defaults from the patient profile's ``limits.gating`` section; ``None`` overrides are ignored."""
        p = load_profile(profile)
        base: dict[str, Any] = {
            "margin_mm": p.number("limits.gating.margin_mm"),
            "threshold_pct": p.number("limits.gating.outside_threshold_pct"),
            "max_frame_age_ms": p.number("limits.gating.max_frame_age_ms"),
            "profile": p.name,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    @property
    def latency_s(self) -> float:
        return self.latency_ms / 1e3

    @property
    def source_timeout_s(self) -> float:
        return (self.source_timeout_ms if self.source_timeout_ms is not None else self.max_frame_age_ms) / 1e3

    def gating_config(self) -> GatingConfig:
        """The :class:`GatingConfig` of these settings."""
        return GatingConfig(
            margin_mm=self.margin_mm,
            threshold_pct=self.threshold_pct,
            hysteresis_pct=min(self.hysteresis_pct, self.threshold_pct),
            min_confidence=self.confidence_threshold(),
            stale_after_ms=self.max_frame_age_ms,
            uncertainty_factor=self.uncertainty_factor,
        )

    def recentre_config(self) -> RecentreConfig:
        """The re-centring settings (the hard limit resolved: margin + 5 mm unless given)."""
        if isinstance(self.drift_cycles, bool) or not isinstance(self.drift_cycles, int) or self.drift_cycles < 1:
            raise InputError(f"--drift-cycles must be a whole number >= 1, got {self.drift_cycles!r}")
        limit = self.margin_mm + 5.0 if self.max_shift_mm is None else float(self.max_shift_mm)
        return RecentreConfig(
            threshold_mm=float(self.drift_threshold_mm), persist_s=float(self.drift_persist_s),
            cycles=self.drift_cycles, max_shift_mm=limit,
        )

    def confidence_model(self) -> ConfidenceModel | None:
        """The confidence calibration this run uses (None: the tracker's raw confidence)."""
        if not self.calibrated_confidence:
            return None
        model = shipped_model()
        return model if model.tracking_method == self.tracking_method else None

    def confidence_threshold(self) -> float:
        """The tracking confidence below which the beam holds (``min_confidence`` resolved)."""
        if self.min_confidence is not None:
            return float(self.min_confidence)
        model = self.confidence_model()
        return model.min_confidence if model is not None else RAW_MIN_CONFIDENCE

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for the session file, the JSON report and the HTML report."""
        d = asdict(self)
        d["source_timeout_ms"] = self.source_timeout_s * 1e3
        d["min_confidence"] = self.confidence_threshold()
        d["max_shift_mm"] = self.recentre_config().max_shift_mm
        return d


#: The supervision summary's headless note (the report and the terminal print it).
HEADLESS_NOTE = (
    "No human supervisor watched, so every alert was acknowledged automatically (logged as "
    "'igikit-headless') at the first frame on which its condition had cleared; the beam stayed held "
    "while the condition lasted"
)


@dataclass(frozen=True)
class SupervisionSettings:
    """How a gating run is supervised: the session's starting state and who acknowledges alerts.

    Parameters
    ----------
    level
        Starting autonomy level, 0-3 (only a physicist changes it later, in the console).
    veto_window_s
        Level 2: seconds a human has to veto a beam-on decision before it takes effect.
    handover_confidence
        Level 3 hands over to the human (alert, beam held) below this tracking confidence; None
        (the default) takes the gate's own minimum confidence
        (:meth:`GatingSettings.confidence_threshold`: 0.99 on the calibrated confidence), so the
        handover and the confidence interlock trip together.
    near_limit_frac
        A frame this share of the stale-frame deadline old is *near the limit*: an alert (handover
        at level 3).
    headless
        Nobody watches (``igikit gate``, ``igikit demo --no-console``). An alert holds the beam
        until it is acknowledged; with no human that would be for the rest of the run after the
        first one, so the headless policy acknowledges each alert itself (as ``igikit-headless``,
        logged) at the first frame on which its condition has cleared. The default for a headless
        run is therefore level 3 (act; hand over on low confidence or a near limit) with this
        policy: the beam follows the gate, holds through every interlock and every alert, and the
        report says the run was headless. Levels 0-2 headless mean a human who never acts: level 0
        and 1 never turn the beam on, level 2 delays every beam-on by the veto window.
    """

    level: int = 3
    veto_window_s: float = 3.0
    handover_confidence: float | None = None
    near_limit_frac: float = 0.8
    headless: bool = True

    def __post_init__(self) -> None:
        AutonomyLevel.parse(self.level)
        self.policy()  # checks the veto window and the handover threshold
        if not 0 < self.near_limit_frac <= 1:
            raise InputError(f"near-limit fraction must be in (0, 1], got {self.near_limit_frac:g}")

    def policy(self, gate_min_confidence: float = 0.5) -> AutonomyPolicy:
        """The session's :class:`AutonomyPolicy` (the handover threshold defaults to the gate's)."""
        handover = self.handover_confidence if self.handover_confidence is not None else gate_min_confidence
        return AutonomyPolicy(veto_window_s=self.veto_window_s, handover_confidence=handover)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for the session file and the reports."""
        return asdict(self)


def open_session(
    audit: AuditLog, supervision: SupervisionSettings, *, session_id: str | None = None,
    settings: GatingSettings | None = None,
) -> SupervisedSession:
    """A :class:`SupervisedSession` for a gating run, logging to ``audit`` (beam safe value: hold).

    With ``settings`` the handover threshold defaults to the gate's minimum confidence.
    """
    gate_min = settings.confidence_threshold() if settings is not None else RAW_MIN_CONFIDENCE
    return SupervisedSession(
        audit,
        workflow=WORKFLOW,
        session_id=session_id if session_id is not None else uuid.uuid4().hex[:12],
        level=AutonomyLevel.parse(supervision.level),
        policy=supervision.policy(gate_min),
        safe_values={"beam": "hold"},
    )


class GatingWorkflow(Application):
    """Cine frames -> tracking -> prediction -> supervised gating -> sinks (recorder, display...).

    Parameters
    ----------
    source
        Where frames come from (a :class:`ReplaySource`, a live source); its first frame is the
        one ``first_label`` was drawn on.
    first_label
        (H, W) planned target on the first frame.
    spacing_mm
        (row, col) pixel spacing, mm.
    settings
        The run's settings.
    session
        The supervised session: every decision is submitted to it (it writes the audit log), every
        frame published to it, the engine's stream events reported to it.
    supervision
        Headless policy and near-limit threshold (the session holds level and policy).
    recorder
        Records every frame with its results (the decision objects excluded: the log has them).
    sinks
        More sinks fed after the display (a progress display).
    """

    def __init__(
        self,
        source: Source,
        first_label: np.ndarray,
        spacing_mm: Sequence[float],
        settings: GatingSettings,
        *,
        session: SupervisedSession,
        supervision: SupervisionSettings | None = None,
        recorder: Recorder | None = None,
        sinks: Sequence[Operator] = (),
    ) -> None:
        super().__init__(
            deadline_ms=settings.max_frame_age_ms, source_timeout_s=settings.source_timeout_s, log_drops=False
        )
        supervision = supervision or SupervisionSettings()
        self.source = source
        self.settings = settings
        self.session = session
        self.session_id = session.session_id
        self.track = TrackTarget(
            first_label, spacing_mm, settings.tracking_method, calibration=settings.confidence_model()
        )
        rate = source.metadata().get("frame_rate_hz")
        interval = 1.0 / float(rate) if settings.cover_interval and rate and np.isfinite(rate) and rate > 0 else None
        self.predict = PredictTarget(
            settings.latency_s, spacing_mm, settings.predictor, min_confidence=settings.confidence_threshold(),
            hold_s=interval,
        )
        self.baseline = (
            MonitorBaseline(
                settings.recentre_config(), session=session, min_confidence=settings.confidence_threshold(),
                workflow=WORKFLOW,
            )
            if settings.recentre else None
        )
        self.supervision = BeamSupervision(
            session, min_confidence=settings.confidence_threshold(), stale_after_ms=settings.max_frame_age_ms,
            near_limit_frac=supervision.near_limit_frac, headless=supervision.headless,
        )
        self.gate = GateBeam(
            first_label, spacing_mm, settings.gating_config(), latency_s=settings.latency_s,
            hold_until_predicted=settings.hold_until_predicted, session_id=session.session_id, workflow=WORKFLOW,
            supervision=self.supervision,
        )
        self.recorder = recorder
        keys = TRACE_KEYS + (BASELINE_TRACE_KEYS if self.baseline is not None else ())
        self.trace = CollectResults(keys, name="trace")
        self.display = PublishFrame(
            session, spacing_mm, latency_ms=settings.latency_ms, margin_mm=settings.margin_mm
        )
        self.sinks = tuple(sinks)

    def compose(self) -> None:
        """source -> track -> predict [-> baseline] -> gate -> (recorder, trace, display, sinks); stream events ->
        gate, session."""
        self.add_flow(self.source, self.track)
        self.add_flow(self.track, self.predict)
        if self.baseline is not None:
            self.add_flow(self.predict, self.baseline)
            self.add_flow(self.baseline, self.gate)
        else:
            self.add_flow(self.predict, self.gate)
        if self.recorder is not None:
            self.add_flow(self.gate, self.recorder)
        self.add_flow(self.gate, self.trace)
        self.add_flow(self.gate, self.display)
        for sink in self.sinks:
            self.add_flow(self.gate, sink)
        # A lost source produces no frame, so the hold cannot travel the frame path: the
        # engine's watchdog event goes straight to the gate (which submits its hold to the
        # session), then to the session itself (an alert: the image source is lost).
        self.subscribe(self.gate.handle_event)
        self.subscribe(lambda e: self.session.note_stream_event(e.kind, e.detail, frame_id=e.frame_id))

    def on_decision(self, callback: Callable[[DecisionRecord], object]) -> None:
        """Also call ``callback`` with decisions made outside the frame path (a lost source).

        Frame decisions reach sinks in ``message.results["decision"]``.
        """
        self.gate.listeners.append(callback)


class StoppableSource(Source):
    """Wraps a source so that a caller can end the run (the console's Ctrl-C) after the frame in flight."""

    def __init__(self, inner: Source, stop: threading.Event) -> None:
        super().__init__(inner.name, realtime=inner.realtime)
        self.inner = inner
        self.provides = inner.provides
        self.halt = stop

    @property
    def n_frames(self) -> int | None:
        """The inner source's frame count."""
        return getattr(self.inner, "n_frames", None)

    def metadata(self) -> dict[str, Any]:
        """The inner source's metadata."""
        return self.inner.metadata()

    def warm_up_message(self) -> Message | None:
        """The inner source's warm-up message."""
        return self.inner.warm_up_message()

    def messages(self, stop: threading.Event) -> Iterator[Message]:
        """The inner source's messages until either stop is set."""
        for message in self.inner.messages(stop):
            if self.halt.is_set():
                return
            yield message


@dataclass(frozen=True, eq=False)
class GatingRun:
    """What a gating run produced (its files, its in-memory trace and its beam commands).

    ``decisions`` holds the gate's decisions with their audit-log rows; ``supervision`` sums up
    what supervision did (:func:`supervision_summary`); ``recentring`` what re-centring did
    (:meth:`~igikit.workflows.mrgrt.drift.Recentring.summary`; empty when it was off).
    """

    case: CineCase
    first_label: np.ndarray
    spacing_mm: tuple[float, float]
    settings: GatingSettings
    session_id: str
    frames: list[dict[str, Any]]
    commands: list[BeamCommand]
    decisions: list[tuple[int, DecisionRecord]]
    latency: LatencyReport
    events: list[StreamEvent]
    session_path: Path | None
    audit_path: Path
    n_frames: int
    realtime: bool
    audit_head: str = ""
    supervision: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    recentring: dict[str, Any] = field(default_factory=dict)


def supervision_summary(
    audit: AuditLog, session: SupervisedSession, supervision: SupervisionSettings, frames: Sequence[dict[str, Any]],
    *, acknowledged_automatically: int,
) -> dict[str, Any]:
    """What supervision did in a run: level, modes of the beam decisions, alerts, human actions."""
    alerts, actions = [], []
    for entry in audit.records():
        rec = entry.record
        if isinstance(rec, DecisionRecord) and rec.decision == "alert" and rec.session_id == session.session_id:
            alerts.append(str(rec.value))
        elif isinstance(rec, HumanAction) and rec.session_id == session.session_id:
            actions.append(rec)
    by_person = [a for a in actions if a.operator != "igikit-headless"]
    return {
        "level_start": int(supervision.level),
        "level_end": int(session.level),
        "level_label": AutonomyLevel.parse(supervision.level).label,
        "veto_window_s": supervision.veto_window_s,
        "handover_confidence": session.policy.handover_confidence,
        "headless": supervision.headless,
        "note": HEADLESS_NOTE if supervision.headless else "supervised in the console by the people named below",
        "modes": dict(Counter(str(f[SUPERVISION]) for f in frames).most_common()),
        "alerts": dict(Counter(alerts).most_common()),
        "acknowledged_automatically": acknowledged_automatically,
        "human_actions": dict(Counter(f"{a.action}{' (refused)' if a.refused else ''}" for a in by_person)),
        "people": sorted({f"{a.operator} ({a.role})" for a in by_person}),
        "open_alerts_at_end": len(session.open_alerts()),
    }


def spacing_rc(case: CineCase) -> tuple[float, float]:
    """(row, col) mm pixel spacing of a case (a :class:`CineCase` stores (col, row))."""
    dx, dy = case.pixel_spacing_mm
    return float(dy), float(dx)


def disc_label(
    shape_hw: tuple[int, int], center_rc_px: Sequence[float], radius_mm: float, spacing_mm: Sequence[float]
) -> np.ndarray:
    """A filled disc target (uint8), centre in pixels (row, col), radius in mm."""
    if not radius_mm > 0:
        raise InputError(f"target radius must be > 0 mm, got {radius_mm:g}")
    h, w = shape_hw
    r0, c0 = float(center_rc_px[0]), float(center_rc_px[1])
    if not (0 <= r0 < h and 0 <= c0 < w):
        raise InputError(f"target centre ({r0:g}, {c0:g}) px lies outside the {h} x {w} frame")
    rows, cols = np.mgrid[0:h, 0:w]
    d2 = ((rows - r0) * spacing_mm[0]) ** 2 + ((cols - c0) * spacing_mm[1]) ** 2
    label = (d2 <= radius_mm**2).astype(np.uint8)
    if not label.any():
        raise InputError(f"a {radius_mm:g} mm target is smaller than one pixel")
    return label


def run_gating(
    case: CineCase,
    settings: GatingSettings,
    out_dir: Path,
    *,
    first_label: np.ndarray | None = None,
    fast: bool = False,
    max_frames: int | None = None,
    sinks: Sequence[Operator] = (),
    record: bool = True,
    source: Source | None = None,
    on_decision: Callable[[DecisionRecord], None] | None = None,
    on_event: Callable[[StreamEvent], None] | None = None,
    supervision: SupervisionSettings | None = None,
    session: SupervisedSession | None = None,
    stop: threading.Event | None = None,
    on_workflow: Callable[[GatingWorkflow], None] | None = None,
) -> GatingRun:
    """Replay ``case`` through :class:`GatingWorkflow` under supervision; write ``session.h5`` and ``audit.db``.

    Parameters
    ----------
    case
        The cine case (its ``first_label`` is the target unless ``first_label`` is given).
    settings
        Gating settings.
    out_dir
        Existing folder for the session file and the audit log; neither may exist yet. If the
        run fails, both are removed again (an audit log given with ``session`` is left to its owner).
    first_label
        (H, W) target on frame 0, for a case without a first label.
    fast
        Replay as fast as the graph runs instead of at the case's frame rate.
    max_frames
        Replay only the first frames.
    sinks
        Extra sinks (progress).
    record
        Write the session file.
    source
        Replace the replay of ``case`` by another source (tests: a source that stalls).
    on_decision, on_event
        Callbacks for decisions made outside the frame path and for stream events.
    supervision
        Autonomy level, policy, headless or not (default: :class:`SupervisionSettings()`,
        headless at level 3). With ``session``, only its headless flag and near-limit threshold
        are used (the session has its level and policy).
    session
        A session made by the caller (a console serves it; its audit log is the run's); default: a
        new one logging to ``out_dir/audit.db``.
    stop
        Set it to end the replay after the frame in flight (the run then reports what it did).
    on_workflow
        Called with the :class:`GatingWorkflow` once it is built, before the first frame (a console
        reaches the live tracker through its ``track`` operator, :attr:`TrackTarget.tracker`).
    """
    supervision = supervision or SupervisionSettings()
    label = case.first_label if first_label is None else first_label
    if label is None:
        raise InputError(f"case {case.case_id} has no first-frame target label; give a target")
    label = np.asarray(label)
    h, w = case.frames.shape[:2]
    if label.shape != (h, w):
        raise InputError(f"target label is {label.shape}, frames are {(h, w)}")
    if not label.any():
        raise InputError(f"case {case.case_id}: the first-frame target label is empty")
    if case.frame_rate_hz is None and not fast:
        raise InputError(f"{case.case_id}: frame rate unknown (no frame-rate.json); use --fast")
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise InputError("output folder does not exist", out_dir)
    session_path = out_dir / SESSION_FILE if record else None
    own_audit = session is None
    audit_path = out_dir / AUDIT_FILE if own_audit else Path(session.audit.path)  # type: ignore[union-attr]
    for path in (session_path, audit_path if own_audit else None):
        if path is not None and path.exists():
            raise InputError("already exists; choose another output folder", path)
    spacing = spacing_rc(case)
    if source is None:
        source = ReplaySource(case, realtime=not fast, max_frames=max_frames, name="replay")
    if stop is not None:
        source = StoppableSource(source, stop)
    recorder = None
    audit = AuditLog(audit_path) if own_audit else session.audit  # type: ignore[union-attr]
    try:
        if session is None:
            session = open_session(audit, supervision, settings=settings)
        session_id = session.session_id or uuid.uuid4().hex[:12]
        if session_path is not None:
            meta = {
                **source.metadata(),
                "workflow": WORKFLOW,
                "session_id": session_id,
                "audit_log": audit_path.name,
                "settings": settings.as_dict(),
                "supervision": supervision.as_dict(),
                "spacing_rc_mm": list(spacing),
            }
            model = settings.confidence_model()
            if model is not None:
                meta["confidence_calibration"] = {"tolerance_mm": model.tolerance_mm, **model.card}
            recorder = Recorder(session_path, metadata=meta, exclude=(DECISION, PREDICTED_NEXT_MASK), name="recorder")
        app = GatingWorkflow(
            source, label, spacing, settings, session=session, supervision=supervision, recorder=recorder, sinks=sinks
        )
        if on_decision is not None:
            app.on_decision(on_decision)
        if on_event is not None:
            app.subscribe(on_event)
        if on_workflow is not None:
            on_workflow(app)
        latency = app.run()
        _, head = audit.head()
        frames = list(app.trace.rows)
        summary = supervision_summary(
            audit, session, supervision, frames, acknowledged_automatically=app.supervision.acknowledged_automatically
        )
    except BaseException:
        if recorder is not None:
            recorder.discard()
        if own_audit:
            audit.close()
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{audit_path}{suffix}").unlink()
        raise
    if own_audit:
        audit.close()
    n = getattr(source, "n_frames", None)
    return GatingRun(
        case=case,
        first_label=(label > 0).astype(np.uint8),
        spacing_mm=spacing,
        settings=settings,
        session_id=session_id,
        frames=frames,
        commands=list(app.gate.commands),
        decisions=list(app.gate.decisions),
        latency=latency,
        events=list(app.events),
        session_path=session_path,
        audit_path=audit_path,
        n_frames=latency.frames_received if (stop is not None and stop.is_set()) or n is None else int(n),
        realtime=source.realtime,
        # a served session goes on logging human actions after the run: no head to pin
        audit_head=head if own_audit else "",
        supervision=summary,
        recentring={} if app.baseline is None else app.baseline.recentring.summary(),
    )


def reference_motion(run: GatingRun) -> ReferenceMotion:
    """The truth of a phantom case; for a case without labels, the tracked target (say so)."""
    case = run.case
    n = min(run.n_frames, case.n_frames)
    if case.labels is not None:
        masks = np.moveaxis(case.labels[:, :, :n], 2, 0)
        return ReferenceMotion.from_masks("truth", case.frame_times_s()[:n], masks, run.spacing_mm)
    rows = [r for r in run.frames if r[FRAME_VALID]]
    if not rows:
        raise InputError(f"{case.case_id}: no frame was tracked; nothing to evaluate")
    times = [r["acquisition_time_s"] for r in rows]
    return ReferenceMotion.from_masks("tracked", times, np.stack([r[TARGET_MASK] for r in rows]), run.spacing_mm)


def evaluate(run: GatingRun) -> DeliveryOutcome:
    """Duty cycle, beam-on time outside the window, beam-off latency and dose of a run."""
    reference = reference_motion(run)
    truth = reference if reference.kind == "truth" else None
    return analyse_delivery(
        run.commands,
        reference,
        run.first_label,
        run.spacing_mm,
        run.settings.gating_config(),
        latency_s=run.settings.latency_s,
        frames=run.frames,
        truth=truth,
    )
