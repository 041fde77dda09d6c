"""The navigation loop as a stream graph, and what a run reports.

``compose()`` shows the whole data path::

    poses (recording | simulated tracker | OpenIGTLink), watched
        -> NavigationOperator (tip, target, trajectory, distances, TRE, proximity -> supervision)
        -> Recorder (every pose, every update, to the session file)

:func:`run_navigation` runs it until the source ends (or ``stop`` is set) and returns a
:class:`NavigationRun`; :func:`summary` turns a run into the JSON metrics summary.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igikit.stream.application import Application
from igikit.stream.latency import LatencyReport
from igikit.stream.message import Message, wall_clock
from igikit.stream.operator import FRAME, Operator, OperatorSpec
from igikit.stream.recorder import Recorder
from igikit.stream.source import Source
from igikit.workflows.surgery.navigation import NavigationUpdate, Navigator
from igikit.workflows.surgery.supervision import NavigationSupervision
from igikit.workflows.surgery.tracker import SIM_FAULT, STREAM_STATE, TRUE_TIP, WatchedPoseSource
from igikit.workflows.surgery.watchdog import ToolWatchdog

log = logging.getLogger(__name__)

#: Files a navigation run writes into its output folder.
SESSION_FILE = "navigation.h5"
AUDIT_FILE = "audit.db"


@dataclass
class UpdateRecord:
    """The few numbers of one update kept in memory for the summary and the report."""

    frame_id: int
    time_s: float
    tip_mm: np.ndarray
    target_distance_mm: float
    lateral_mm: float
    angle_deg: float
    tre_mm: float
    distances_mm: np.ndarray
    levels: tuple[str, ...]
    stream_state: str
    update_ms: float
    true_tip_mm: np.ndarray | None = None


class NavigationOperator(Operator):
    """One pose in, the navigation numbers out; proximity changes go to the supervision.

    Parameters
    ----------
    navigator
        Computes the update.
    supervision
        Logs decisions, raises alerts, publishes the tool (None: unsupervised).
    """

    def __init__(self, navigator: Navigator, supervision: NavigationSupervision | None, name: str = "navigation"):
        self.navigator = navigator
        self.supervision = supervision
        self.records: list[UpdateRecord] = []
        self.last: NavigationUpdate | None = None
        super().__init__(name)

    def setup(self, spec: OperatorSpec) -> None:
        """Reads the pose (the frame) and the stream state; adds the update's results."""
        spec.input(FRAME)
        spec.input(STREAM_STATE)
        for name in ("tip_mm", "axis", "target_distance_mm", "tre_mm", "warnings", "update_ms"):
            spec.output(name)

    def compute(self, message: Message) -> Message:
        """Navigate one pose."""
        t0 = wall_clock()
        state = str(message.results.get(STREAM_STATE, "ok"))
        update = self.navigator.update(np.asarray(message.frame), message.acquisition_time_s, message.frame_id)
        if self.supervision is not None:
            self.supervision.on_update(update, stream_ok=state == "ok")
        cost_ms = (wall_clock() - t0) * 1e3
        truth = None if message.results.get(SIM_FAULT) else message.results.get(TRUE_TIP)
        self.last = update
        self.records.append(
            UpdateRecord(
                frame_id=update.frame_id,
                time_s=update.time_s,
                tip_mm=update.tip_mm,
                target_distance_mm=update.target_distance_mm,
                lateral_mm=update.lateral_mm,
                angle_deg=update.angle_deg,
                tre_mm=update.tre_mm,
                distances_mm=np.array([p.distance_mm for p in update.proximity]),
                levels=tuple(p.level for p in update.proximity),
                stream_state=state,
                update_ms=cost_ms,
                true_tip_mm=None if truth is None else np.asarray(truth, dtype=np.float64),
            )
        )
        return message.with_results(**update.results(), update_ms=cost_ms)


class NavigationApp(Application):
    """Watched poses -> navigation -> session file (see the module docstring)."""

    def __init__(self, source: Source, operator: NavigationOperator, recorder: Recorder | None) -> None:
        super().__init__()
        self.source = source
        self.operator = operator
        self.recorder = recorder

    def compose(self) -> None:
        """The graph."""
        self.add_flow(self.source, self.operator)
        if self.recorder is not None:
            self.add_flow(self.operator, self.recorder)


@dataclass
class NavigationRun:
    """What a run produced."""

    records: list[UpdateRecord]
    latency: LatencyReport
    supervision: NavigationSupervision | None
    watchdog: ToolWatchdog
    session_path: Path | None
    duration_s: float
    metadata: dict[str, Any] = field(default_factory=dict)


def run_navigation(
    source: Source,
    navigator: Navigator,
    supervision: NavigationSupervision | None,
    *,
    session_path: Path | None,
    lost_after_s: float = 0.15,
    frozen_after_s: float = 0.15,
    metadata: dict[str, Any] | None = None,
    stop: threading.Event | None = None,
) -> NavigationRun:
    """Navigate every pose of ``source`` under ``supervision``; record to ``session_path``.

    Parameters
    ----------
    source
        Tool poses (tool to tracker, 4x4 mm).
    navigator
        The plan, distance maps, registration and tool.
    supervision
        Decisions, alerts and the console (None: none of them; the watchdog still runs).
    session_path
        HDF5 session file to create (every pose as a frame, every update's numbers as results);
        None: no file.
    lost_after_s, frozen_after_s
        Tool-stream watchdog timeouts.
    metadata
        Stored in the session file's attributes.
    stop
        Set it (from any thread) to end the run after the pose in flight.
    """
    watchdog = ToolWatchdog(
        supervision.on_alarm if supervision is not None else (lambda alarm: None),
        lost_after_s=lost_after_s,
        frozen_after_s=frozen_after_s,
    )
    # a source pulled as fast as possible says so (pace=False); anything else keeps its own clock
    watched = WatchedPoseSource(source, watchdog, live=bool(getattr(source, "pace", True)))
    operator = NavigationOperator(navigator, supervision)
    meta = {**source.metadata(), **(metadata or {})}
    recorder = None if session_path is None else Recorder(session_path, metadata=meta, name="recorder")
    app = NavigationApp(Until(watched, event=stop) if stop is not None else watched, operator, recorder)
    t0 = time.perf_counter()
    watchdog.start()
    try:
        report = app.run()
    except BaseException:
        if recorder is not None:
            recorder.discard()
        raise
    finally:
        watchdog.stop()
    return NavigationRun(
        records=operator.records,
        latency=report,
        supervision=supervision,
        watchdog=watchdog,
        session_path=session_path,
        duration_s=time.perf_counter() - t0,
        metadata=meta,
    )


class Until(Source):
    """A source that also ends when ``event`` is set or ``seconds`` after it starts (both optional).

    Ctrl-C in a console run sets the event; ``--seconds`` bounds a live stream.
    """

    def __init__(self, inner: Source, *, event: threading.Event | None = None, seconds: float | None = None) -> None:
        super().__init__(inner.name, realtime=inner.realtime)
        self.inner, self.event, self.seconds = inner, event, seconds
        self.provides = inner.provides

    @property
    def n_frames(self) -> int | None:
        """As the inner source (when no limit cuts it short)."""
        return self.inner.n_frames

    def metadata(self) -> dict[str, Any]:
        """As the inner source, with the time limit."""
        extra = {} if self.seconds is None else {"seconds": self.seconds}
        return {**self.inner.metadata(), **extra}

    def messages(self, stop: threading.Event) -> Any:
        """The inner source's messages until ``stop``, the event or the time limit."""
        ends = float("inf") if self.seconds is None else wall_clock() + self.seconds
        done = threading.Event()

        def relay() -> None:
            while not done.is_set():
                if (
                    stop.wait(min(0.05, max(0.0, ends - wall_clock())))
                    or wall_clock() >= ends
                    or (self.event is not None and self.event.is_set())
                ):
                    done.set()

        t = threading.Thread(target=relay, name="igikit-source-until", daemon=True)
        t.start()
        try:
            for m in self.inner.messages(done):
                if done.is_set():
                    return
                yield m
        finally:
            done.set()
            t.join()


# ------------------------------------------------------------------------------ summary
def _pct(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"median": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "median": round(float(p50), 4),
        "p95": round(float(p95), 4),
        "p99": round(float(p99), 4),
        "max": round(float(values.max()), 4),
    }


def summary(run: NavigationRun, navigator: Navigator) -> dict[str, Any]:
    """The run's metrics as plain JSON values (the ``--json`` summary, the report's facts)."""
    recs = run.records
    plan = navigator.plan
    reg = navigator.registration
    n = len(recs)
    times = np.array([r.time_s for r in recs])
    out: dict[str, Any] = {
        "poses": n,
        "duration_s": round(float(times[-1] - times[0]), 3) if n > 1 else 0.0,
        "rate_hz": round(float((n - 1) / (times[-1] - times[0])), 2) if n > 1 and times[-1] > times[0] else None,
        "wall_time_s": round(run.duration_s, 3),
        "update_ms": _pct(np.array([r.update_ms for r in recs])),
        "end_to_end_ms": {
            "median": run.latency.end_to_end.median_ms if n else None,
            "p99": run.latency.end_to_end.p99_ms if n else None,
        },
        "registration": {
            "fiducials": int(reg.layout.n),
            "fle_mm": reg.fle_mm,
            "fre_mm": None if not np.isfinite(reg.fre_mm) else round(reg.fre_mm, 4),
            "tre_at_target_mm": round(reg.tre_mm(plan.target_mm), 4),
        },
        "tool": {
            "tip_offset_mm": [round(float(v), 4) for v in navigator.tool.tip_offset_mm],
            "smoothing": None if navigator.smoother is None else f"mean of {navigator.smoother.window} poses",  # type: ignore[attr-defined]
        },
        "session_file": None if run.session_path is None else str(run.session_path),
    }
    if n:
        last = recs[-1]
        tre = np.array([r.tre_mm for r in recs])
        out["final"] = {
            "time_s": round(last.time_s, 3),
            "tip_mm": [round(float(v), 3) for v in last.tip_mm],
            "target_distance_mm": round(last.target_distance_mm, 3),
            "lateral_mm": None if not np.isfinite(last.lateral_mm) else round(last.lateral_mm, 3),
            "angle_deg": None if not np.isfinite(last.angle_deg) else round(last.angle_deg, 3),
            "tre_mm": round(last.tre_mm, 3),
        }
        out["tre_at_tip_mm"] = {"min": round(float(tre.min()), 4), "max": round(float(tre.max()), 4)}
        d = np.stack([r.distances_mm for r in recs])
        structures = {}
        for k, s in enumerate(plan.structures):
            j = int(np.argmin(d[:, k]))
            levels = [r.levels[k] for r in recs]
            structures[s.name] = {
                "label": s.label,
                "warn_mm": s.warn_mm,
                "critical_mm": s.critical_mm,
                "min_distance_mm": round(float(d[j, k]), 3),
                "min_at_s": round(float(recs[j].time_s), 3),
                "tre_at_min_mm": round(float(recs[j].tre_mm), 3),
                "updates_warning": levels.count("warning"),
                "updates_critical": levels.count("critical"),
            }
        out["structures"] = structures
        # a simulated freeze shows a stale pose on purpose: its error is the freeze's, not the navigation's
        truth = [r for r in recs if r.true_tip_mm is not None]
        if truth:
            err = np.array([np.linalg.norm(r.tip_mm - r.true_tip_mm) for r in truth if r.true_tip_mm is not None])
            out["simulation"] = {
                "tip_error_rms_mm": round(float(np.sqrt(np.mean(err**2))), 4),
                "tip_error_max_mm": round(float(err.max()), 4),
                "predicted_tre_rms_mm": round(float(np.sqrt(np.mean(np.array([r.tre_mm for r in truth]) ** 2))), 4),
                "note": "tip error = registration error (fiducials with FLE) + tracker jitter, against the simulated "
                "truth (poses of a simulated freeze left out)",
            }
        out["stream_states"] = {state: sum(1 for r in recs if r.stream_state == state) for state in ("ok", "frozen")}
    sup = run.supervision
    if sup is not None:
        by_level: dict[str, int] = {}
        for dct in sup.log.decisions:
            by_level[dct["level"]] = by_level.get(dct["level"], 0) + 1
        out["warnings"] = {
            "decisions": len(sup.log.decisions),
            "by_level": by_level,
            "log": [
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dct.items()} for dct in sup.log.decisions
            ],
        }
        out["stream_alerts"] = [
            {
                "kind": a.kind,
                "detected_after_ms": round(a.detection_ms, 1),
                "limit_ms": a.limit_ms,
                "alert_id": a.alert_id,
                "frame_id": a.frame_id,
            }
            for a in sup.log.stream_alarms
        ]
        out["acknowledged_automatically"] = sup.log.acknowledged_automatically
        out["headless"] = sup.headless
    return out


__all__ = [
    "AUDIT_FILE",
    "SESSION_FILE",
    "NavigationApp",
    "NavigationOperator",
    "NavigationRun",
    "Until",
    "UpdateRecord",
    "run_navigation",
    "summary",
]
