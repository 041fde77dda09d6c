"""The sonication loop under a supervised session: its decisions go through the session, every frame to the console.

:func:`igikit.workflows.fus.loop.run_sonication` calls a :class:`SonicationSupervision`, when it is
given one, at three points of each frame:

* :meth:`~SonicationSupervision.log_stop` / :meth:`~SonicationSupervision.log_done` with the safety
  supervisor's stop (a safety interlock: it takes effect at every autonomy level, and opens a
  critical alert) or the goal-reached record, which the session logs and shows in the console's log;
* :meth:`~SonicationSupervision.authorise` with the power the controller asks for: the decision
  ``sonication: on | off`` is submitted to the session, whose effective value gates the power —
  paused, an open alert, a level-2 veto window, a level-0/1 session waiting for a human, or a
  level-3 handover all hold the power at 0 W. A handover happens at level 3 when an organ at risk
  comes within ``near_limit_margin_c`` of its limit (or the target of the maximum temperature)
  while the controller wants to heat, or when too few voxels are trusted (the decision's
  confidence is the trusted fraction of the target and organs at risk), as in the cine workflow;
* :meth:`~SonicationSupervision.publish` with the frame's results: a
  :class:`~igikit.supervise.session.FrameState` with the magnitude image, the temperature as a
  heat map (37-90 °C by default, clear below 40 °C), the planned target, the organs at risk and the
  measured lesion (CEM43 >= 240 min) as contours, the focus / organ temperatures and the power as
  traces, and the sonication state. With ``speed`` > 0 the loop is paced to the frame times
  (``speed`` times real time) so that a person can follow it.

The console computes nothing: it shows these states and forwards human actions to the session.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from igikit.errors import InputError

if TYPE_CHECKING:
    from igikit.supervise.records import DecisionRecord
    from igikit.supervise.session import FrameState, SupervisedSession
    from igikit.workflows.fus.plan import SonicationPlan

#: The decision the session gates, and its safe value.
DECISION = "sonication"
SAFE_VALUE = "off"
#: A limit is near (level 3 hands over) when the measured temperature is within this of it (°C).
NEAR_LIMIT_MARGIN_C = 1.0
#: Temperatures shown on the heat map: clear below body temperature + this (°C).
HEAT_CLEAR_ABOVE_BODY_C = 3.0
#: Seconds of history on the temperature / power plot.
TRACE_WINDOW_S = 300.0


@dataclass(frozen=True, eq=False)
class SonicationFrame:
    """What the loop knows after one frame: the console's view and the numbers of the decisions.

    Maps are ``(H, W)``; temperatures are measured (thermometry), never the simulator's truth.
    """

    index: int
    time_s: float
    phase: str
    magnitude: np.ndarray
    temperature_c: np.ndarray
    trusted: np.ndarray
    cem43_min: np.ndarray
    power_w: float
    controlled_c: float
    oar_max_c: dict[str, float] = field(default_factory=dict)
    trusted_fraction: float = 1.0
    stop_reason: str = ""  # the safety stop, once one has latched


class SonicationSupervision:
    """The link between the sonication loop and a :class:`~igikit.supervise.session.SupervisedSession`.

    Parameters
    ----------
    session
        The supervised session (the console shows it); ``sonication``'s safe value ``off`` is
        declared on it. Its audit log receives every decision.
    plan
        The sonication plan (target, organs at risk and their limits, the goal).
    controller
        ``"pid"`` or ``"mpc"``, for the records.
    near_limit_margin_c
        A limit is *near* within this many °C (level 3 hands over).
    speed
        Pace the loop at ``speed`` times real time (0: as fast as it computes).
    stop
        Set to stop the sonication (the console was closed): power 0 from then on, no pacing.
    """

    def __init__(
        self,
        session: SupervisedSession,
        plan: SonicationPlan,
        *,
        controller: str,
        near_limit_margin_c: float = NEAR_LIMIT_MARGIN_C,
        speed: float = 1.0,
        stop: threading.Event | None = None,
    ) -> None:
        if not (math.isfinite(near_limit_margin_c) and near_limit_margin_c >= 0):
            raise InputError(f"near-limit margin must be a non-negative number of °C, got {near_limit_margin_c}")
        if not (math.isfinite(speed) and speed >= 0):
            raise InputError(f"speed must be a non-negative factor of real time, got {speed}")
        self.session = session
        self.plan = plan
        self.controller = controller
        self.near_limit_margin_c = float(near_limit_margin_c)
        self.speed = float(speed)
        self.stop = stop or threading.Event()
        session.set_safe_value(DECISION, SAFE_VALUE)
        shape, spacing = plan.shape, plan.spacing_mm
        self._target = plan.target.mask(shape, spacing)
        self._organs = {o.name: (o.region.mask(shape, spacing), o.limit_c) for o in plan.organs_at_risk}
        self._explanation = ""
        self._mode = ""
        self._done = ""
        self._start_wall: float | None = None
        self._start_time_s = 0.0
        #: Decisions handed over to the human (level 3), for the summary.
        self.handovers = 0

    @property
    def stop_requested(self) -> bool:
        """Whether the sonication must end now (the console is closing)."""
        return self.stop.is_set()

    # ------------------------------------------------------------------------- decisions
    def log_stop(self, record: DecisionRecord, frame_index: int) -> None:
        """A safety stop: logged through the session (applied at every level) and a critical alert."""
        self.session.submit(record)
        self.session.raise_alert(
            "safety_stop",
            record.explanation,
            severity="critical",
            frame_id=frame_index,
            confidence=record.confidence,
        )

    def log_done(self, record: DecisionRecord) -> None:
        """The goal reached (or the time limit): the power goes to 0, logged through the session."""
        self._done = record.explanation
        self.session.submit(record)

    def near_limit(self, headroom: dict[str, tuple[float, float]]) -> str | None:
        """A sentence naming the limits within the margin, or None."""
        near = []
        for name, (value, limit) in headroom.items():
            if math.isfinite(value) and value >= limit - self.near_limit_margin_c:
                what = "target" if name == "target" and name not in self._organs else f"organ at risk '{name}'"
                margin = self.near_limit_margin_c
                near.append(f"{what} at {value:.1f} °C, within {margin:g} °C of its {limit:g} °C limit")
        return "; ".join(near) or None

    def authorise(
        self,
        power_w: float,
        *,
        frame_index: int,
        time_s: float,
        phase: str,
        controlled_c: float,
        headroom: dict[str, tuple[float, float]],
        trusted_fraction: float,
    ) -> float:
        """Submit this frame's sonication decision; the power the session lets through now (W)."""
        from igikit import __version__
        from igikit.supervise.records import DecisionRecord

        if self.stop.is_set():
            return 0.0
        plan = self.plan
        on = power_w > 0
        what = "focus" if plan.goal.type == "ablation" else "target mean"
        measured = f"{what} {controlled_c:.1f} °C" if math.isfinite(controlled_c) else f"{what} not measured"
        organs = "; ".join(
            f"{name} {value:.1f} °C (limit {limit:g} °C)"
            for name, (value, limit) in headroom.items()
            if name in self._organs and math.isfinite(value)
        )
        if phase == "test":
            why = f"test sonication at {power_w:.2f} W to identify the thermal model" if on else "test cooling"
        elif phase == "control":
            why = f"{self.controller.upper()} asks {power_w:.2f} W towards {plan.goal.setpoint_c:g} °C"
        else:
            why = "cooling: the sonication is over"
        near = self.near_limit(headroom) if on else None
        explanation = f"sonication {'on' if on else 'off'}: {why}; {measured}" + (f"; {organs}" if organs else "")
        if near:
            explanation += f"; near a limit: {near}"
        record = DecisionRecord(
            decision=DECISION,
            value="on" if on else SAFE_VALUE,
            explanation=explanation,
            confidence=float(np.clip(trusted_fraction, 0.0, 1.0)) if math.isfinite(trusted_fraction) else 0.0,
            component=f"fus.control.{self.controller}",
            component_version=__version__,
            frame_time_s=float(time_s),
            input_frame_ids=(int(frame_index),),
            workflow="fus",
            session_id=self.session.session_id,
            data={"power_w": float(power_w), "phase": phase, "controlled_c": controlled_c},
        )
        disposition = self.session.submit(record, safe_value=SAFE_VALUE, near_limit=near is not None)
        if disposition.mode == "handed_over":
            self.handovers += 1
        self._explanation, self._mode = explanation, disposition.mode
        return float(power_w) if self.session.effective_value(DECISION) == "on" else 0.0

    # --------------------------------------------------------------------------- display
    def frame_state(self, frame: SonicationFrame) -> FrameState:
        """The console's view of one frame."""
        from igikit.supervise.session import FrameState, HeatMap, Overlay, TracePlot

        plan = self.plan
        body = plan.body_temperature_c
        trusted = np.asarray(frame.trusted, dtype=bool)
        overlays = [Overlay.outline(self._target, "target (planned)", "target")]
        for name, (mask, limit) in self._organs.items():
            overlays.append(Overlay.outline(mask, f"{name} (limit {limit:g} °C)", "risk"))
        lesion = (np.asarray(frame.cem43_min) >= plan.goal.cem43_threshold_min) & trusted
        if lesion.any():
            overlays.append(Overlay.outline(lesion, f"lesion (CEM43 ≥ {plan.goal.cem43_threshold_min:g} min)", "dose"))
        what = "focus" if plan.goal.type == "ablation" else "target mean"
        trace = {f"{what} (°C)": frame.controlled_c}
        units = {f"{what} (°C)": "°C"}
        for name, value in frame.oar_max_c.items():
            trace[f"{name} max (°C)"] = value
            units[f"{name} max (°C)"] = "°C"
        trace["power (W)"] = frame.power_w
        units["power (W)"] = "W"
        band = plan.goal.window_c if plan.goal.type == "hyperthermia" else (plan.goal.setpoint_c, plan.goal.setpoint_c)
        on = frame.power_w > 0
        if frame.stop_reason:
            output = "sonication stopped"
            explanation = frame.stop_reason
        elif self._done and not on:
            output = "sonication off"
            explanation = f"{self._done}; cooling"
        else:
            output = f"sonication on {frame.power_w:.2f} W" if on else "sonication off"
            explanation = self._explanation + (f" [{self._mode.replace('_', ' ')}]" if self._mode else "")
        return FrameState(
            frame_id=frame.index,
            acquisition_time_s=frame.time_s,
            frame=np.asarray(frame.magnitude),
            overlays=tuple(overlays),
            beam_on=on,
            output=output,
            confidence=frame.trusted_fraction if math.isfinite(frame.trusted_fraction) else None,
            explanation=explanation,
            trace=trace,
            trace_band=(float(band[0]), float(band[1])),
            heatmap=HeatMap(
                np.where(trusted, frame.temperature_c, np.nan),
                low=body,
                high=max(plan.safety.max_temperature_c, body + 10.0),
                units="°C",
                label="temperature",
                transparent_below=body + HEAT_CLEAR_ABOVE_BODY_C,
            ),
            trace_plot=TracePlot(title="Temperature and power", units=units, window_s=TRACE_WINDOW_S),
        )

    def publish(self, frame: SonicationFrame) -> None:
        """Publish the frame to the console, then wait until its time comes (``speed`` > 0)."""
        self.session.publish_frame(self.frame_state(frame))
        self.session.tick()
        if self.speed <= 0 or self.stop.is_set():
            return
        now = time.monotonic()
        if self._start_wall is None:
            self._start_wall, self._start_time_s = now, frame.time_s
        due = self._start_wall + (frame.time_s - self._start_time_s) / self.speed
        # the next frame is acquired one interval later: wait for it, waking for a stop request
        self.stop.wait(max(0.0, due + self.plan.frame_interval_s / self.speed - now))
