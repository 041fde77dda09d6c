"""What the console shows when no workflow publishes to it: a recorded session, or a plain live stream.

A workflow that runs under supervision builds a :class:`~igikit.supervise.FrameState` per frame,
submits its decisions to the :class:`~igikit.supervise.SupervisedSession` and publishes the state:
the console needs nothing else (``igikit console --case`` and ``igikit demo`` run the MR-linac gating
workflow that way). This module feeds the console from two other places:

* a **session file** (``igikit gate`` / ``igikit demo`` recordings, ``igikit replay --record``):
  :class:`ReplayFeed` replays it at its recorded rhythm; the decisions a workflow recorded are
  submitted again, to the console's session;
* a **plain live stream graph** (a synthetic source, the load benchmark): :class:`LiveFeed` runs
  :class:`~igikit.stream.MotionReplay` with a sink that supervises each frame.

Both turn each frame's results into supervision with :class:`FrameSupervisor`. Results a workflow
recorded are used as they are (the recording convention below); a plain motion replay carries no
decision, so a **stand-in gate** (:class:`StandInGate`) makes one from the rigid motion estimate —
a fixed window on the superior-inferior shift, confidence from the phase-correlation peak. It is a
demonstration of the supervision loop, not a clinical gate (that is ``igikit.workflows.mrgrt``).

Recording convention (result names a recorded frame may carry; all optional):

==========================  ===============================================================
``beam``                    ``"on"`` / ``"hold"`` (or ``beam_on``: bool)
``confidence``              calibrated confidence in [0, 1]
``explanation``             the decision's sentence
``safety``                  the decision was a safety interlock
``tracked_mask``            (H, W) target on this frame (or ``target_mask``)
``predicted_mask``          (H, W) predicted target
``boundary_mask``           (H, W) gating boundary (or the recorder attribute of that name)
``tracked_centroid_px``     (x, y) pixels; likewise ``predicted_centroid_px``
``tracked_si_mm``           superior-inferior position for the plot; likewise ``predicted_si_mm``
                            (the mrgrt workflow records both as displacement from the plan)
``centroid_mm``             (row, col) mm, row = SI (older mrgrt recordings); likewise
                            ``predicted_centroid_mm``; ``overlay["boundary"]``: (row, col) pixels
``shift_mm``, ``response``  rigid motion ``(dx, dy)`` and its phase-correlation peak
==========================  ===============================================================
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from igikit.errors import InputError
from igikit.stream.application import Application
from igikit.stream.latency import LatencyReport
from igikit.stream.message import Message
from igikit.stream.motion_replay import MotionReplay
from igikit.stream.operator import OperatorSpec, Sink
from igikit.stream.recorder import Session as RecordedSession
from igikit.stream.source import Source
from igikit.supervise.records import DecisionRecord
from igikit.supervise.session import FrameState, Overlay, SupervisedSession

log = logging.getLogger(__name__)

STAND_IN_COMPONENT = "igikit.console.stand_in_gate"
STAND_IN_VERSION = "1"
#: Leads every stand-in explanation and header, so nobody mistakes it for the clinical gate.
STAND_IN_LABEL = "STAND-IN gate (demonstration, not clinical)"


class StandInGate:
    """A demonstration gate: beam on while the rigid SI shift stays within ``window_mm`` of frame 0.

    Not a clinical gate: it exists so that the console and the supervision loop can run on a plain
    motion recording. Confidence below ``min_confidence`` holds the beam as an interlock and asks
    for a human (an alert), the way a real workflow does.
    """

    def __init__(self, *, window_mm: float = 4.0, min_confidence: float = 0.6) -> None:
        if not window_mm > 0 or not 0 <= min_confidence <= 1:
            raise InputError(
                f"stand-in gate needs window_mm > 0 and min_confidence in [0, 1], got {window_mm}, {min_confidence}"
            )
        self.window_mm = float(window_mm)
        self.min_confidence = float(min_confidence)

    def decide(self, si_mm: float, confidence: float, *, frame_id: int, frame_time_s: float) -> DecisionRecord:
        """The beam decision for one frame."""
        common: dict[str, Any] = {
            "decision": "beam",
            "component": STAND_IN_COMPONENT,
            "component_version": STAND_IN_VERSION,
            "frame_time_s": frame_time_s,
            "input_frame_ids": (frame_id,),
        }
        conf = float(np.clip(confidence, 0.0, 1.0)) if np.isfinite(confidence) else 0.0
        if not np.isfinite(si_mm) or conf < self.min_confidence:
            return DecisionRecord(
                value="hold",
                explanation=f"{STAND_IN_LABEL}: beam hold: motion confidence {conf:.2f} "
                f"below {self.min_confidence:.2f}",
                confidence=conf,
                safety=True,
                data={"reason": "low_confidence", "min_confidence": self.min_confidence},
                **common,
            )
        outside = abs(si_mm) - self.window_mm
        on = outside <= 0
        where = (
            f"SI shift {si_mm:+.1f} mm inside the ±{self.window_mm:.1f} mm window"
            if on
            else f"SI shift {si_mm:+.1f} mm, {outside:.1f} mm outside the ±{self.window_mm:.1f} mm window"
        )
        return DecisionRecord(
            value="on" if on else "hold",
            explanation=f"{STAND_IN_LABEL}: beam {'on' if on else 'hold'}: {where}; confidence {conf:.2f}",
            confidence=conf,
            data={"si_mm": round(float(si_mm), 3), "window_mm": self.window_mm},
            **common,
        )


def _first(results: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = results.get(name)
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            return value
    return None


def _mask(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value)
    return arr if arr.ndim == 2 and arr.size else None


class FrameSupervisor:
    """Turns one frame and its results into supervision (a submitted decision) and a :class:`FrameState`.

    Parameters
    ----------
    session
        Where decisions go and frames are published.
    gate
        The stand-in used when a frame carries no recorded decision.
    pixel_spacing_mm
        ``(dx, dy)`` (column, row), to place the stand-in's overlays.
    boundary_mask
        A gating boundary to draw on every frame (e.g. from the recording's attributes).
    """

    def __init__(
        self,
        session: SupervisedSession,
        *,
        gate: StandInGate | None = None,
        pixel_spacing_mm: tuple[float, float] = (1.0, 1.0),
        boundary_mask: np.ndarray | None = None,
    ) -> None:
        self.session = session
        self.gate = gate or StandInGate()
        self.spacing = (float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1]))
        self.boundary_mask = boundary_mask
        session.set_safe_value("beam", "hold")

    def __call__(
        self, frame_id: int, acquisition_time_s: float, frame: np.ndarray, results: Mapping[str, Any]
    ) -> FrameState:
        """Supervise one frame and publish it; returns the published state."""
        recorded_beam = _first(results, "beam")
        if recorded_beam is None and results.get("beam_on") is not None:
            recorded_beam = "on" if bool(results["beam_on"]) else "hold"
        confidence = _first(results, "confidence")
        shift = _first(results, "shift_mm")
        si = _first(results, "tracked_si_mm")
        if si is None and results.get("centroid_mm") is not None:  # the mrgrt workflow: (row, col) mm, row = SI
            si = float(np.asarray(results["centroid_mm"], dtype=float).ravel()[0])
        if si is None and shift is not None:
            si = float(np.asarray(shift, dtype=float).ravel()[1])
        if confidence is None:
            confidence = _first(results, "response")
        conf = float(confidence) if confidence is not None else float("nan")
        if recorded_beam is not None:
            record = DecisionRecord(
                decision="beam",
                value=str(recorded_beam),
                explanation=str(_first(results, "explanation") or f"beam {recorded_beam} (recorded)"),
                confidence=float(np.clip(conf, 0, 1)) if np.isfinite(conf) else 0.0,
                component=str(_first(results, "component") or "recorded"),
                component_version="1",
                frame_time_s=acquisition_time_s,
                input_frame_ids=(frame_id,),
                safety=bool(_first(results, "safety") or False),
            )
        else:
            record = self.gate.decide(
                float(si) if si is not None else float("nan"), conf, frame_id=frame_id, frame_time_s=acquisition_time_s
            )
        if record.confidence < self.gate.min_confidence:
            self.session.raise_alert(
                "low_confidence",
                f"confidence {record.confidence:.2f} below {self.gate.min_confidence:.2f} at frame {frame_id}: "
                "check the image and the target",
                frame_id=frame_id,
                confidence=record.confidence,
            )
        disposition = self.session.submit(record)
        beam_on = disposition.value == "on"
        overlays = self._overlays(frame, results, shift)
        trace: dict[str, float] = {}
        if si is not None:
            trace["tracked SI (mm)"] = float(si)
        predicted = _first(results, "predicted_si_mm")
        if predicted is None and results.get("predicted_centroid_mm") is not None:
            predicted = float(np.asarray(results["predicted_centroid_mm"], dtype=float).ravel()[0])
        if predicted is not None:
            trace["predicted SI (mm)"] = float(predicted)
        band = None
        if recorded_beam is None:
            band = (-self.gate.window_mm, self.gate.window_mm)
        state = FrameState(
            frame_id=int(frame_id),
            acquisition_time_s=float(acquisition_time_s),
            frame=frame,
            overlays=tuple(overlays),
            beam_on=beam_on,
            output=f"beam {'on' if beam_on else 'hold'}",
            confidence=float(record.confidence),
            explanation=f"{record.explanation} [{disposition.mode.replace('_', ' ')}]",
            trace=trace,
            trace_band=band,
        )
        return self.session.publish_frame(state)

    def _overlays(self, frame: np.ndarray, results: Mapping[str, Any], shift: Any) -> list[Overlay]:
        overlays: list[Overlay] = []
        boundary = _mask(results.get("boundary_mask"))
        boundary = boundary if boundary is not None else self.boundary_mask
        if boundary is not None:
            overlays.append(Overlay.outline(boundary, "gating boundary", "boundary"))
        contours = results.get("overlay")
        if boundary is None and isinstance(contours, Mapping) and contours.get("boundary"):
            # the mrgrt workflow's display contours, pixel (row, col)
            rc = np.asarray(contours["boundary"], dtype=float).reshape(-1, 2)
            overlays.append(
                Overlay("contour", "gating boundary", "boundary", points_xy=tuple(zip(rc[:, 1], rc[:, 0], strict=True)))
            )
        tracked = _mask(_first(results, "tracked_mask", "target_mask"))
        if tracked is not None:
            overlays.append(Overlay.outline(tracked, "target (tracked)", "tracked"))
        predicted = _mask(results.get("predicted_mask"))
        if predicted is not None:
            overlays.append(Overlay.outline(predicted, "target (predicted)", "predicted"))
        for key, label, style in (
            ("tracked_centroid_px", "tracked centre", "tracked"),
            ("predicted_centroid_px", "predicted centre", "predicted"),
        ):
            point = results.get(key)
            if point is not None and np.all(np.isfinite(np.asarray(point, dtype=float))):
                x, y = (float(v) for v in np.asarray(point, dtype=float).ravel()[:2])
                overlays.append(Overlay.point(x, y, label, style))  # type: ignore[arg-type]
        predicted_mm = results.get("predicted_centroid_mm")
        if results.get("predicted_centroid_px") is None and predicted_mm is not None:
            row_mm, col_mm = (float(v) for v in np.asarray(predicted_mm, dtype=float).ravel()[:2])
            if np.isfinite(row_mm) and np.isfinite(col_mm):
                overlays.append(Overlay.point(col_mm / self.spacing[0], row_mm / self.spacing[1], "predicted centre"))
        if not overlays and shift is not None:
            # a plain motion recording: the stand-in's window around the frame centre, and the
            # frame centre moved by the estimated rigid shift
            h, w = frame.shape
            cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
            dx, dy = (float(v) for v in np.asarray(shift, dtype=float).ravel()[:2])
            half = self.gate.window_mm / self.spacing[1]
            overlays.append(
                Overlay(
                    "contour",
                    f"gating window ±{self.gate.window_mm:g} mm (stand-in)",
                    "boundary",
                    points_xy=(
                        (cx - 0.25 * w, cy - half),
                        (cx + 0.25 * w, cy - half),
                        (cx + 0.25 * w, cy + half),
                        (cx - 0.25 * w, cy + half),
                    ),
                )
            )
            overlays.append(
                Overlay.point(cx + dx / self.spacing[0], cy + dy / self.spacing[1], "tracked (rigid)", "tracked")
            )
        return overlays


class ReplayFeed:
    """Replays a session file into a supervised session at its recorded rhythm, in a thread.

    Parameters
    ----------
    path
        The session file (``igikit replay --record``, a workflow's recording), or the file as read.
    session
        The supervised session the console shows.
    loop
        Start again at the end (a demo that keeps running); otherwise the last frame stays.
    rate_hz
        Replay at this rate instead of the recorded acquisition times.
    gate
        The stand-in for recordings without decisions.
    """

    def __init__(
        self,
        path: str | Path | RecordedSession,
        session: SupervisedSession,
        *,
        loop: bool = False,
        rate_hz: float | None = None,
        gate: StandInGate | None = None,
    ) -> None:
        from igikit.stream.recorder import Session, read_session

        self.recording = path if isinstance(path, Session) else read_session(path)
        if self.recording.n_frames == 0:
            raise InputError("session file holds no complete frame", self.recording.path)
        if rate_hz is not None and not rate_hz > 0:
            raise InputError(f"replay rate must be positive, got {rate_hz}")
        self.session = session
        self.loop = loop
        attrs = self.recording.attrs
        spacing = attrs.get("pixel_spacing_mm") or (1.0, 1.0)
        boundary = attrs.get("boundary_mask")
        self.supervisor = FrameSupervisor(
            session,
            gate=gate,
            pixel_spacing_mm=(float(spacing[0]), float(spacing[1])),
            boundary_mask=None if boundary is None else np.asarray(boundary),
        )
        times = self.recording.acquisition_time_s.astype(float)
        if rate_hz is None:
            rate = attrs.get("frame_rate_hz")
            if len(times) > 1 and np.all(np.diff(times) > 0):
                rate_hz = None
            else:
                rate_hz = float(rate) if rate and np.isfinite(rate) else 8.0
        self.times = (times - times[0]) if rate_hz is None else np.arange(len(times)) / rate_hz
        self.period_s = float(np.median(np.diff(self.times))) if len(self.times) > 1 else 0.125
        self.frames_published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="igikit-console-replay", daemon=True)
        self.error: BaseException | None = None

    def describe(self) -> str:
        """One line for the console header (naming the stand-in gate when the recording has no decisions)."""
        results = self.recording.results
        recorded = "beam" in results or "beam_on" in results
        gate = "" if recorded else f" — {STAND_IN_LABEL}: the recording holds no decisions"
        return (
            f"replay of {self.recording.path.name} ({self.recording.n_frames} frames, {1 / self.period_s:.1f} Hz)"
            f"{gate}"
        )

    def _results(self, k: int) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name, column in self.recording.results.items():
            results[name] = column[k]
        results.update(self.recording.extra.get(int(self.recording.frame_id[k]), {}))
        return results

    def _run(self) -> None:
        try:
            lap = 0
            while not self._stop.is_set():
                start = time.perf_counter()
                offset_t = lap * (self.times[-1] + self.period_s)
                for k in range(self.recording.n_frames):
                    delay = start + self.times[k] - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        return
                    fid = int(self.recording.frame_id[k]) + lap * self.recording.n_frames
                    self.supervisor(fid, float(offset_t + self.times[k]), self.recording.frames[k], self._results(k))
                    self.frames_published += 1
                if not self.loop:
                    return
                lap += 1
                # the last frame's interval before starting again
                if self._stop.wait(self.period_s):
                    return
        except BaseException as exc:
            self.error = exc
            log.exception("session replay failed")

    def start(self) -> None:
        """Start replaying (returns at once)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class _StoppableSource(Source):
    """Wraps a source so that the console can end a live graph (the engine's own stop is internal)."""

    def __init__(self, inner: Source) -> None:
        super().__init__(inner.name, realtime=inner.realtime)
        self.inner = inner
        self.provides = inner.provides
        self.halt = threading.Event()

    @property
    def n_frames(self) -> int | None:
        return self.inner.n_frames

    def metadata(self) -> dict[str, Any]:
        return self.inner.metadata()

    def messages(self, stop: threading.Event) -> Iterator[Message]:
        for message in self.inner.messages(stop):
            if self.halt.is_set():
                return
            yield message


class _SupervisingSink(Sink):
    """The last step of a live graph: hands each frame to a :class:`FrameSupervisor`."""

    def __init__(self, supervisor: FrameSupervisor) -> None:
        self.supervisor = supervisor
        super().__init__("supervise")

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("frame")

    def receive(self, message: Message) -> None:
        self.supervisor(message.frame_id, message.acquisition_time_s, message.frame, message.results)


class LiveFeed:
    """A live stream graph (normalise -> rigid motion -> supervise) run in a thread.

    Parameters
    ----------
    source
        A real-time source (:class:`~igikit.stream.ReplaySource` of a case, a synthetic source).
    session
        The supervised session the console shows.
    deadline_ms
        The treatment loop's end-to-end deadline; misses are counted in :attr:`report`.
    gate
        The stand-in gate.
    """

    def __init__(
        self,
        source: Source,
        session: SupervisedSession,
        *,
        deadline_ms: float = 100.0,
        source_timeout_s: float | None = 1.0,
        gate: StandInGate | None = None,
    ) -> None:
        meta = source.metadata()
        spacing = meta.get("pixel_spacing_mm") or (1.0, 1.0)
        self.source = _StoppableSource(source)
        source = self.source
        self.session = session
        self.supervisor = FrameSupervisor(session, gate=gate, pixel_spacing_mm=(float(spacing[0]), float(spacing[1])))
        self.app: Application = MotionReplay(
            source,
            sinks=[_SupervisingSink(self.supervisor)],
            deadline_ms=deadline_ms,
            source_timeout_s=source_timeout_s,
        )
        self.app.subscribe(lambda e: session.note_stream_event(e.kind, e.detail, frame_id=e.frame_id))
        self.report: LatencyReport | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="igikit-console-live", daemon=True)

    def describe(self) -> str:
        """One line for the console header."""
        return f"live: {self.source.metadata().get('case_id') or self.source.name} — {STAND_IN_LABEL}"

    def _run(self) -> None:
        try:
            self.report = self.app.run()
        except BaseException as exc:
            self.error = exc
            log.exception("live stream failed")

    def start(self) -> None:
        """Start the graph (returns at once)."""
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the source to end."""
        self._thread.join(timeout)

    def stop(self) -> None:
        """End the stream after the frame in flight; waits for the thread."""
        self.source.halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
