"""The supervised MR-linac gating workflow: a real-time graph on :mod:`igikit.stream`.

Reading :meth:`GatingWorkflow.compose` gives the whole data path::

    ReplaySource -> track -> predict -> gate -> audit -> (recorder, trace, progress / console hooks)

* ``track`` follows the target on each cine frame (any method of
  :func:`~igikit.workflows.mrgrt.tracking.make_tracker`, default ``ensemble``);
* ``predict`` predicts the target centroid (SI and AP, one online predictor per axis) at the
  frame's acquisition time plus the system latency, and moves the tracked mask there;
* ``gate`` decides beam on / hold from the *predicted* mask, with the safety interlocks (stale
  frame, low confidence, NaN frame, and the engine's ``source_lost`` event) and simulates the
  beam obeying each decision after the system latency;
* ``audit`` appends every decision record to the hash-chained audit log;
* the recorder stores every frame with its results (tracked and predicted centroid and mask,
  contours, beam state, confidence, explanation) in a session file a console can replay.

:func:`run_gating` runs a case through it, writing ``session.h5`` and ``audit.db`` into an output
folder (and removing them again if the run fails).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
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
from igikit.stream.operator import Operator
from igikit.stream.operators import CollectResults
from igikit.stream.recorder import Recorder
from igikit.stream.source import ReplaySource, Source
from igikit.supervise.audit import AuditLog
from igikit.supervise.records import DecisionRecord
from igikit.workflows.mrgrt.delivery import DeliveryOutcome, ReferenceMotion, analyse_delivery
from igikit.workflows.mrgrt.gating import GatingConfig
from igikit.workflows.mrgrt.operators import (
    BEAM_EFFECT_TIME_S,
    BEAM_EFFECTIVE_ON,
    BEAM_ON,
    CENTROID_MM,
    CONFIDENCE,
    DECISION,
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
    SAFETY,
    TARGET_MASK,
    AuditWriter,
    BeamCommand,
    GateBeam,
    PredictTarget,
    TrackTarget,
)

log = logging.getLogger(__name__)

WORKFLOW = "mrgrt"
#: Files :func:`run_gating` writes into its output folder.
SESSION_FILE = "session.h5"
AUDIT_FILE = "audit.db"
#: Per-frame results kept in memory for the report (the session file holds all of them).
TRACE_KEYS: tuple[str, ...] = (
    TARGET_MASK,
    PREDICTED_MASK,
    CONFIDENCE,
    CENTROID_MM,
    FRAME_VALID,
    PREDICTED_CENTROID_MM,
    PREDICTED_NEXT_CENTROID_MM,
    PREDICTION_READY,
    BEAM_ON,
    BEAM_EFFECTIVE_ON,
    BEAM_EFFECT_TIME_S,
    GATE_REASON,
    SAFETY,
    OUTSIDE_PCT,
    OUTSIDE_MM,
    FRAME_AGE_MS,
)


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
        Tracking confidence below which the beam holds.
    max_frame_age_ms
        Stale-frame deadline: a frame older than this when decided on holds the beam.
    source_timeout_ms
        No frame for this long: ``source_lost``, beam hold (None: ``max_frame_age_ms``).
    hold_until_predicted
        Hold the beam while the motion predictor warms up (no latency compensation yet).
    cover_interval
        Judge the predicted target over the whole time a decision stays in force (until the next
        frame's decision reaches the beam: one frame interval later), not only at its start.
    profile
        Patient profile the defaults came from (recorded in the outputs).
    """

    margin_mm: float = 3.0
    threshold_pct: float = 5.0
    hysteresis_pct: float = 2.0
    latency_ms: float = 300.0
    tracking_method: str = "ensemble"
    predictor: str = "online"
    min_confidence: float = 0.5
    max_frame_age_ms: float = 500.0
    source_timeout_ms: float | None = None
    hold_until_predicted: bool = True
    cover_interval: bool = True
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
            min_confidence=self.min_confidence,
            stale_after_ms=self.max_frame_age_ms,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for the session file, the JSON report and the HTML report."""
        d = asdict(self)
        d["source_timeout_ms"] = self.source_timeout_s * 1e3
        return d


class GatingWorkflow(Application):
    """Cine frames -> tracking -> prediction -> gating -> audit log and sinks.

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
    audit
        The audit log every decision is appended to.
    recorder
        Records every frame with its results (the decision objects excluded: the log has them).
    sinks
        More sinks fed after the audit log (a progress display, a console hook).
    session_id
        Stored in every decision record.
    """

    def __init__(
        self,
        source: Source,
        first_label: np.ndarray,
        spacing_mm: Sequence[float],
        settings: GatingSettings,
        *,
        audit: AuditLog,
        recorder: Recorder | None = None,
        sinks: Sequence[Operator] = (),
        session_id: str = "",
    ) -> None:
        super().__init__(
            deadline_ms=settings.max_frame_age_ms, source_timeout_s=settings.source_timeout_s, log_drops=False
        )
        self.source = source
        self.settings = settings
        self.session_id = session_id
        self.track = TrackTarget(first_label, spacing_mm, settings.tracking_method)
        rate = source.metadata().get("frame_rate_hz")
        interval = 1.0 / float(rate) if settings.cover_interval and rate and np.isfinite(rate) and rate > 0 else None
        self.predict = PredictTarget(
            settings.latency_s, spacing_mm, settings.predictor, min_confidence=settings.min_confidence, hold_s=interval
        )
        self.gate = GateBeam(
            first_label, spacing_mm, settings.gating_config(), latency_s=settings.latency_s,
            hold_until_predicted=settings.hold_until_predicted, session_id=session_id, workflow=WORKFLOW,
        )
        self.audit = AuditWriter(audit)
        self.recorder = recorder
        self.trace = CollectResults(TRACE_KEYS, name="trace")
        self.sinks = tuple(sinks)

    def compose(self) -> None:
        """source -> track -> predict -> gate -> audit -> (recorder, trace, sinks); source_lost -> gate."""
        self.add_flow(self.source, self.track)
        self.add_flow(self.track, self.predict)
        self.add_flow(self.predict, self.gate)
        self.add_flow(self.gate, self.audit)
        if self.recorder is not None:
            self.add_flow(self.audit, self.recorder)
        self.add_flow(self.audit, self.trace)
        for sink in self.sinks:
            self.add_flow(self.audit, sink)
        # A lost source produces no frame, so the hold cannot travel the frame path: the
        # engine's watchdog event goes straight to the gate, whose decision goes to the log.
        self.subscribe(self.gate.handle_event)
        self.gate.listeners.append(self.audit.append)

    def on_decision(self, callback: Callable[[DecisionRecord], object]) -> None:
        """Also call ``callback`` with decisions made outside the frame path (a lost source).

        Frame decisions reach sinks in ``message.results["decision"]``.
        """
        self.gate.listeners.append(callback)


@dataclass(frozen=True, eq=False)
class GatingRun:
    """What a gating run produced (its files, its in-memory trace and its beam commands)."""

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
    extra: dict[str, Any] = field(default_factory=dict)


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
) -> GatingRun:
    """Replay ``case`` through :class:`GatingWorkflow`; write ``session.h5`` and ``audit.db``.

    Parameters
    ----------
    case
        The cine case (its ``first_label`` is the target unless ``first_label`` is given).
    settings
        Gating settings.
    out_dir
        Existing folder for the session file and the audit log; neither may exist yet. If the
        run fails, both are removed again.
    first_label
        (H, W) target on frame 0, for a case without a first label.
    fast
        Replay as fast as the graph runs instead of at the case's frame rate.
    max_frames
        Replay only the first frames.
    sinks
        Extra sinks (progress, a console hook).
    record
        Write the session file.
    source
        Replace the replay of ``case`` by another source (tests: a source that stalls).
    on_decision, on_event
        Callbacks for decisions made outside the frame path and for stream events.
    """
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
    audit_path = out_dir / AUDIT_FILE
    for path in (session_path, audit_path):
        if path is not None and path.exists():
            raise InputError("already exists; choose another output folder", path)
    spacing = spacing_rc(case)
    if source is None:
        source = ReplaySource(case, realtime=not fast, max_frames=max_frames, name="replay")
    session_id = uuid.uuid4().hex[:12]
    recorder = None
    audit = AuditLog(audit_path)
    try:
        if session_path is not None:
            meta = {
                **source.metadata(),
                "workflow": WORKFLOW,
                "session_id": session_id,
                "audit_log": AUDIT_FILE,
                "settings": settings.as_dict(),
                "spacing_rc_mm": list(spacing),
            }
            recorder = Recorder(session_path, metadata=meta, exclude=(DECISION, PREDICTED_NEXT_MASK), name="recorder")
        app = GatingWorkflow(
            source, label, spacing, settings, audit=audit, recorder=recorder, sinks=sinks, session_id=session_id
        )
        if on_decision is not None:
            app.on_decision(on_decision)
        if on_event is not None:
            app.subscribe(on_event)
        latency = app.run()
        _, head = audit.head()
    except BaseException:
        if recorder is not None:
            recorder.discard()
        audit.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{audit_path}{suffix}").unlink()
        raise
    audit.close()
    n = getattr(source, "n_frames", None)
    return GatingRun(
        case=case,
        first_label=(label > 0).astype(np.uint8),
        spacing_mm=spacing,
        settings=settings,
        session_id=session_id,
        frames=list(app.trace.rows),
        commands=list(app.gate.commands),
        decisions=list(app.audit.appended),
        latency=latency,
        events=list(app.events),
        session_path=session_path,
        audit_path=audit_path,
        n_frames=int(n) if n is not None else latency.frames_received,
        realtime=source.realtime,
        audit_head=head,
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
