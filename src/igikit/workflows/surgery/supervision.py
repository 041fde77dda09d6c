"""Navigation under supervision: proximity warnings as decision records, alerts, the console.

:class:`NavigationSupervision` is the navigation loop's link to its
:class:`~igikit.supervise.session.SupervisedSession`:

* a proximity level that changes (``clear`` -> ``warning`` -> ``critical`` and back) is a
  :class:`~igikit.supervise.records.DecisionRecord` named ``proximity.<structure>`` whose
  explanation carries the distance, the TRE at the tip and whether the margin is guaranteed.
  Escalations are safety decisions (they take effect at every autonomy level, at once); easing
  back to ``clear`` follows the autonomy level like any other decision. Only changes are logged,
  not every update of a 60 Hz tracker;
* a ``critical`` level also raises a ``proximity`` alert (a human must acknowledge it);
* the :class:`~igikit.workflows.surgery.watchdog.ToolWatchdog` raises a ``tool_lost`` or
  ``tool_frozen`` alert (critical) within its timeout; the recovery is logged as a stream event;
* with a console, the scene is published once and the tool state at every update.

Headless (nobody watches: ``igikit navigate`` without ``--console``, ``igikit demo surgery
--no-console``), an alert is acknowledged by ``igikit-headless`` (logged) as soon as its condition
has cleared, as in the other workflows' headless runs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from igikit.supervise.records import DecisionRecord
from igikit.supervise.session import Actor, SupervisedSession
from igikit.workflows.surgery.navigation import Level, NavigationPlan, NavigationUpdate, Proximity
from igikit.workflows.surgery.watchdog import StreamAlarm

if TYPE_CHECKING:
    from igikit.console.scene import Scene

log = logging.getLogger(__name__)

WORKFLOW = "surgery"
COMPONENT = "igikit.workflows.surgery.navigation"
COMPONENT_VERSION = "1"
#: Who acknowledges alerts when no human watches (logged under this name, never a person's).
HEADLESS_ACTOR = Actor("igikit-headless", "operator")


@dataclass
class AlertTiming:
    """One tool-stream alarm as raised: kind, detection delay (ms after the last good pose), alert id."""

    kind: str
    detection_ms: float
    limit_ms: float
    alert_id: int | None
    wall_s: float
    frame_id: int


@dataclass
class SupervisionLog:
    """What the supervision did during a run (for the metrics summary and the report)."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    stream_alarms: list[AlertTiming] = field(default_factory=list)
    acknowledged_automatically: int = 0


def decision_name(p: Proximity) -> str:
    """``proximity.<structure key>``."""
    return f"proximity.{p.structure.key}"


class NavigationSupervision:
    """Submits proximity decisions, raises alerts, feeds the console (see the module docstring).

    Parameters
    ----------
    session
        The supervised session.
    plan
        The navigation plan (its structures' levels start ``clear``).
    headless
        Acknowledge alerts automatically once their condition clears (nobody watches).
    tool_name
        Named in stream alerts (``"needle"``).
    """

    def __init__(self, session: SupervisedSession, plan: NavigationPlan, *, headless: bool, tool_name: str = "tool"):
        self.session = session
        self.plan = plan
        self.headless = headless
        self.tool_name = tool_name
        self.log = SupervisionLog()
        self._held: dict[str, Level] = {s.key: "clear" for s in plan.structures}
        self._lock = threading.Lock()
        self._publish_tool = getattr(session, "publish_tool", None)
        self._tool_state: Any = None
        if self._publish_tool is not None:
            from igikit.console.scene import ToolState

            self._tool_state = ToolState

    # ---------------------------------------------------------------------------- console
    def publish_scene(self, scene: Scene) -> None:
        """Hand the 3D scene to the console (when the session can carry one)."""
        publish = getattr(self.session, "publish_scene", None)
        if publish is not None:
            publish(scene)

    # ------------------------------------------------------------------------- per update
    def on_update(self, update: NavigationUpdate, *, stream_ok: bool = True) -> None:
        """Log the proximity changes of ``update``, raise or clear its alerts, publish the tool."""
        s = self.session
        if self.headless and stream_ok and s.open_alerts() and all(p.level != "critical" for p in update.proximity):
            self._acknowledge(
                ("proximity", "handover"), f"no structure within its critical margin at frame {update.frame_id}"
            )
        for p in update.proximity:
            key = p.structure.key
            before = self._held[key]
            if p.level == before:
                continue
            self._held[key] = p.level
            escalation = ["clear", "warning", "critical"].index(p.level) > ["clear", "warning", "critical"].index(
                before
            )
            record = DecisionRecord(
                decision=decision_name(p),
                value=p.level,
                explanation=p.explanation,
                confidence=p.confidence,
                component=COMPONENT,
                component_version=COMPONENT_VERSION,
                frame_time_s=update.time_s,
                input_frame_ids=(update.frame_id,),
                workflow=WORKFLOW,
                safety=escalation,
                data={
                    "structure": p.structure.name,
                    "distance_mm": round(p.distance_mm, 3),
                    "tre_mm": round(update.tre_mm, 3),
                    "lower_bound_mm": round(p.lower_bound_mm, 3),
                    "warn_mm": p.structure.warn_mm,
                    "critical_mm": p.structure.critical_mm,
                    "previous": before,
                },
            )
            disposition = s.submit(record)
            self.log.decisions.append(
                {
                    "frame_id": update.frame_id,
                    "time_s": update.time_s,
                    "structure": p.structure.name,
                    "level": p.level,
                    "previous": before,
                    "distance_mm": p.distance_mm,
                    "tre_mm": update.tre_mm,
                    "lower_bound_mm": p.lower_bound_mm,
                    "confidence": p.confidence,
                    "explanation": p.explanation,
                    "mode": disposition.mode,
                    "seq": disposition.seq,
                }
            )
            if p.level == "critical":
                s.raise_alert(
                    "proximity", p.explanation, severity="critical", frame_id=update.frame_id, confidence=p.confidence
                )
        if self._publish_tool is not None:
            self._publish_tool(
                self._tool_state(
                    tip_mm=update.tip_mm,
                    axis=update.axis,
                    target_distance_mm=update.target_distance_mm,
                    angle_to_trajectory_deg=None if update.angle_deg != update.angle_deg else update.angle_deg,
                    distances_mm=update.distances_mm,
                    tre_mm=update.tre_mm,
                    warnings=update.warnings,
                    time_s=update.time_s,
                )
            )

    # ------------------------------------------------------------------------- tool stream
    def on_alarm(self, alarm: StreamAlarm) -> None:
        """The watchdog's callback: raise the tool-stream alert, or log the recovery."""
        if alarm.kind == "restored":
            self.session.note_stream_event("tool_restored", alarm.sentence(self.tool_name), frame_id=alarm.frame_id)
            if self.headless:
                self._acknowledge(
                    ("tool_lost", "tool_frozen"), f"poses arrive again ({alarm.sentence(self.tool_name)})"
                )
            return
        alert = self.session.raise_alert(
            f"tool_{alarm.kind}", alarm.sentence(self.tool_name), severity="critical", frame_id=alarm.frame_id
        )
        with self._lock:
            self.log.stream_alarms.append(
                AlertTiming(alarm.kind, alarm.silence_ms, alarm.limit_ms, alert.alert_id, time.time(), alarm.frame_id)
            )
        log.warning("%s", alarm.sentence(self.tool_name))

    def _acknowledge(self, kinds: tuple[str, ...], why: str) -> None:
        for alert in self.session.open_alerts():
            if alert.kind in kinds:
                self.session.acknowledge(
                    alert.alert_id,
                    HEADLESS_ACTOR,
                    reason=f"headless run, no human supervisor: acknowledged automatically once the condition "
                    f"cleared: {why}",
                )
                with self._lock:
                    self.log.acknowledged_automatically += 1


__all__ = ["COMPONENT", "HEADLESS_ACTOR", "WORKFLOW", "AlertTiming", "NavigationSupervision", "SupervisionLog"]
