"""The supervised session: the one object a running workflow and its human supervisors share.

A workflow hands every automated decision to :meth:`SupervisedSession.submit`, which logs it and
decides — by the autonomy level (:mod:`igikit.supervise.autonomy`), the open alerts
(:mod:`igikit.supervise.alerts`) and whether a human paused — what the automation may put into
effect now. People act through the other methods (``acknowledge``, ``approve``, ``veto``,
``pause``, ``resume``, ``set_autonomy``, ``annotate``), each with an :class:`Actor` whose role is
checked; every action, allowed or refused, becomes a :class:`~igikit.supervise.records.HumanAction`
in the audit log with who did it. The console subscribes to :class:`SessionEvent` s and to the
per-frame :class:`FrameState` s the workflow publishes.

The **safe state** holds while the session is paused or any alert is unacknowledged: a decision
that would leave it is refused (``safe_state``), and :meth:`SupervisedSession.effective_value`
answers the safe value (``"hold"``). Entering the safe state cancels every pending decision, so
leaving it never revives a stale one: the automation must decide again (and wait for its veto
window again, at level 2). Safety interlocks (``DecisionRecord.safety``) take effect at every level
and in every state.

Thread safety: every method may be called from any thread (the treatment loop, the console's
request handlers, a timer). Subscribers are called outside the session's lock, in the order the
events happened; they must be quick (the treatment loop may be the caller).

Example
-------
>>> import tempfile, pathlib
>>> from igikit.supervise import AuditLog, DecisionRecord
>>> audit = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "s.db")
>>> session = SupervisedSession(audit, workflow="mrgrt", level=3, safe_values={"beam": "hold"})
>>> d = DecisionRecord(decision="beam", value="on", explanation="beam on: target inside", confidence=0.95,
...                    component="demo", component_version="1")
>>> session.submit(d).value
'on'
>>> session.pause(Actor("alice", "operator"), reason="patient coughing")
>>> session.effective_value("beam")
'hold'
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar

import numpy as np

from igikit.errors import IgikitError, InputError
from igikit.supervise.alerts import Alert, AlertBoard, Severity
from igikit.supervise.audit import AuditLog
from igikit.supervise.autonomy import AutonomyLevel, AutonomyPolicy, Mode, route_decision
from igikit.supervise.records import DecisionRecord, HumanAction, Scalar

if TYPE_CHECKING:  # data objects only: the session hands them over, it never reads them
    from igikit.console.scene import Scene, ToolState

log = logging.getLogger(__name__)

COMPONENT = "igikit.supervise.session"
COMPONENT_VERSION = "1"

# ------------------------------------------------------------------------------------- roles
#: The roles a supervisor can have.
ROLES: tuple[str, ...] = ("operator", "physicist", "observer")

_OPERATOR_ACTIONS = frozenset(
    {"approve", "override", "veto", "pause", "resume", "take_over", "hand_back", "acknowledge", "stop", "annotate"}
)
#: What each role may do: an operator acts, a physicist also changes the autonomy level, an
#: observer only views.
ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "observer": frozenset(),
        "operator": _OPERATOR_ACTIONS,
        "physicist": _OPERATOR_ACTIONS | {"set_autonomy"},
    }
)


def is_allowed(role: str, action: str) -> bool:
    """Whether ``role`` may perform the human action ``action`` (unknown roles may do nothing)."""
    return action in ROLE_PERMISSIONS.get(role, frozenset())


@dataclass(frozen=True)
class Actor:
    """A person acting on the session: their user name and role (checked against :data:`ROLES`)."""

    name: str
    role: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError("an actor needs a user name")
        if not isinstance(self.role, str) or not self.role.strip():
            raise InputError("an actor needs a role")


class ActionRefused(IgikitError):
    """A human action that was not carried out.

    Attributes
    ----------
    status
        ``"forbidden"`` (the role may not do it; HTTP 403), ``"conflict"`` (the state does not allow
        it: already acknowledged, veto window closed; HTTP 409) or ``"not_found"`` (no such alert or
        decision; HTTP 404).
    seq
        ``seq`` of the refused :class:`HumanAction` in the audit log (None for ``not_found``, which
        names nothing to respond to).
    """

    def __init__(self, message: str, *, status: Literal["forbidden", "conflict", "not_found"], seq: int | None):
        super().__init__(message)
        self.status = status
        self.seq = seq


# ---------------------------------------------------------------------------- frame state
OverlayStyle = Literal["target", "tracked", "predicted", "boundary", "truth", "risk", "dose", "other"]


@dataclass(frozen=True, eq=False)
class Overlay:
    """Something drawn over the frame: a mask's outline, a polygon, or a point.

    Coordinates are in frame pixels, ``x`` = column and ``y`` = row, ``(0, 0)`` the centre of the
    first pixel. The console chooses colours by ``style``; ``label`` is the legend text.

    Parameters
    ----------
    kind
        ``"mask"`` (``mask`` is an (H, W) array; its outline is drawn — extracted by the console,
        off the treatment loop), ``"contour"`` (closed polygon ``points_xy``) or ``"point"``
        (``points_xy`` holds one point).
    label
        Legend text: ``"target"``, ``"gating boundary"``, ``"predicted (+500 ms)"``.
    style
        ``"target"``, ``"tracked"``, ``"predicted"``, ``"boundary"``, ``"truth"``, ``"risk"`` (an
        organ at risk), ``"dose"`` (a dose or lesion contour) or ``"other"``.
    mask
        For ``kind="mask"``.
    points_xy
        For ``"contour"`` and ``"point"``.
    """

    kind: Literal["mask", "contour", "point"]
    label: str
    style: OverlayStyle = "target"
    mask: np.ndarray | None = None
    points_xy: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("mask", "contour", "point"):
            raise InputError(f"overlay kind must be 'mask', 'contour' or 'point', got {self.kind!r}")
        if self.kind == "mask":
            if self.mask is None or np.ndim(self.mask) != 2:
                raise InputError(f"overlay {self.label!r}: a mask overlay needs an (H, W) mask")
        else:
            pts = tuple((float(x), float(y)) for x, y in self.points_xy)
            if not pts or (self.kind == "point" and len(pts) != 1):
                raise InputError(
                    f"overlay {self.label!r}: a {self.kind} needs {'one point' if self.kind == 'point' else 'points'}"
                )
            object.__setattr__(self, "points_xy", pts)

    @classmethod
    def outline(cls, mask: np.ndarray, label: str, style: OverlayStyle = "target") -> Overlay:
        """The outline of ``mask`` (anything > 0 is inside)."""
        return cls("mask", label, style, mask=np.asarray(mask))

    @classmethod
    def point(cls, x: float, y: float, label: str, style: OverlayStyle = "predicted") -> Overlay:
        """A marker at pixel ``(x, y)`` (column, row)."""
        return cls("point", label, style, points_xy=((x, y),))


@dataclass(frozen=True, eq=False)
class HeatMap:
    """A colour-coded map drawn over the frame (temperature, dose), with the scale for its legend.

    Parameters
    ----------
    values
        ``(H, W)``, the frame's shape; NaN where nothing is to be shown (an untrusted voxel).
    low, high
        The colour scale's range, in ``units``; values outside it take the end colours.
    units, label
        For the legend: ``"°C"``, ``"temperature"``.
    transparent_below
        Values below this are not drawn (the frame shows through); None: all finite values drawn.
    """

    values: np.ndarray
    low: float
    high: float
    units: str = ""
    label: str = ""
    transparent_below: float | None = None

    def __post_init__(self) -> None:
        if np.ndim(self.values) != 2:
            raise InputError(f"heat map {self.label!r}: values must be (H, W), got {np.shape(self.values)}")
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low):
            raise InputError(f"heat map {self.label!r}: needs low < high, got {self.low}, {self.high}")


@dataclass(frozen=True)
class TracePlot:
    """How the console draws :attr:`FrameState.trace`: its title, each series' unit, the time shown.

    Series are plotted against one axis per unit: the first unit on the left, the others on the
    right (e.g. temperatures in °C on the left, the power in W on the right).

    Parameters
    ----------
    title
        The plot's heading (``"Temperature and power"``).
    units
        Unit of each series, by its label (``{"focus (°C)": "°C", "power (W)": "W"}``).
    window_s
        Seconds of history shown.
    """

    title: str = "Trajectory"
    units: Mapping[str, str] = field(default_factory=dict)
    window_s: float = 30.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.window_s) and self.window_s > 0):
            raise InputError(f"trace plot window must be a positive number of seconds, got {self.window_s}")


@dataclass(frozen=True, eq=False)
class FrameState:
    """What a supervisor sees of one frame: the image, overlays, the treatment output, confidence.

    This is the console's per-frame input; a workflow builds one per processed frame and calls
    :meth:`SupervisedSession.publish_frame`. Publishing costs a reference copy: encoding (JPEG,
    contours) happens on the console's own thread.

    Parameters
    ----------
    frame_id
        Index of the frame in its source.
    acquisition_time_s
        Frame time on the stream's clock (s); the trajectory plot's x axis.
    frame
        The (H, W) image, any numeric type (the console windows it to 8 bits).
    overlays
        Contours, boundary, predicted position (:class:`Overlay`).
    beam_on
        Whether the treatment output (beam, sonication) is on after this frame; None when the
        workflow has no such output.
    output
        The output in words, e.g. ``"beam on"``, ``"beam hold"``, ``"power 20 W"``.
    confidence
        Calibrated confidence of this frame's estimate, in ``[0, 1]``, if any.
    explanation
        The decision's sentence with its numbers.
    trace
        Values for the trajectory plot, by label, e.g. ``{"tracked SI (mm)": 2.1, "predicted SI
        (mm)": 2.4}`` (at most a few series).
    trace_band
        ``(low, high)``: the gating window drawn as a band on the trajectory plot, if any (on the
        first unit's axis).
    published_wall_s
        Unix time when the state was published (frame-to-screen latency is measured from it);
        set by :meth:`SupervisedSession.publish_frame` when left at 0.
    heatmap
        A colour-coded map over the frame (:class:`HeatMap`: temperature in MR thermometry), with
        its colour-scale legend; None: the frame alone.
    trace_plot
        Title, units and time window of the trace plot (:class:`TracePlot`); None: the gating
        trajectory's defaults (one axis, 30 s).
    """

    frame_id: int
    acquisition_time_s: float
    frame: np.ndarray
    overlays: tuple[Overlay, ...] = ()
    beam_on: bool | None = None
    output: str = ""
    confidence: float | None = None
    explanation: str = ""
    trace: Mapping[str, float] = field(default_factory=dict)
    trace_band: tuple[float, float] | None = None
    published_wall_s: float = 0.0
    heatmap: HeatMap | None = None
    trace_plot: TracePlot | None = None

    def __post_init__(self) -> None:
        if np.ndim(self.frame) != 2:
            raise InputError(f"frame {self.frame_id}: a frame state needs an (H, W) image, got {np.shape(self.frame)}")
        if self.heatmap is not None and np.shape(self.heatmap.values) != np.shape(self.frame):
            raise InputError(
                f"frame {self.frame_id}: heat map of shape {np.shape(self.heatmap.values)} over a frame of shape "
                f"{np.shape(self.frame)}"
            )


# ------------------------------------------------------------------------------ events etc.
@dataclass(frozen=True)
class SessionEvent:
    """Something that happened in the session, for the console's event log.

    ``kind`` is one of ``started``, ``decision``, ``alert``, ``acknowledged``, ``pending``,
    ``approved``, ``vetoed``, ``took_effect``, ``cancelled``, ``paused``, ``resumed``,
    ``autonomy``, ``annotate``, ``refused``, ``stream``, ``evidence``. ``text`` is one sentence with the
    numbers; ``seq`` the audit-log entry, ``actor``/``role`` who acted (human events).
    """

    kind: str
    text: str
    wall_time_s: float
    seq: int | None = None
    actor: str | None = None
    role: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {
            "kind": self.kind,
            "text": self.text,
            "wall_time_s": self.wall_time_s,
            "seq": self.seq,
            "actor": self.actor,
            "role": self.role,
            "data": dict(self.data),
        }


@dataclass(frozen=True)
class PendingDecision:
    """A decision waiting for a human: a level-1 proposal or a level-2 decision in its veto window.

    ``restored`` marks a proposal read back from the audit log (:meth:`SupervisedSession.restore_proposal`,
    e.g. a treatment plan): only ``approver_roles`` (when given) may approve or veto it, ``summary``
    holds the (label, text) rows a supervisor reads before signing off, and neither the safe state
    nor an autonomy change cancels it.
    """

    pending_id: int
    seq: int
    record: DecisionRecord
    kind: Literal["proposed", "pending"]
    created_wall_s: float
    deadline_wall_s: float | None  # the veto window's end (level 2); None: waits for approval
    approver_roles: tuple[str, ...] = ()  # empty: every role that may approve (ROLE_PERMISSIONS)
    summary: tuple[tuple[str, str], ...] = ()
    restored: bool = False

    def to_dict(self, now: float) -> dict[str, Any]:
        """Plain JSON form, with the seconds left in the veto window."""
        left = None if self.deadline_wall_s is None else max(0.0, self.deadline_wall_s - now)
        return {
            "pending_id": self.pending_id,
            "seq": self.seq,
            "kind": self.kind,
            "decision": self.record.decision,
            "value": self.record.value,
            "explanation": self.record.explanation,
            "confidence": self.record.confidence,
            "created_wall_s": self.created_wall_s,
            "deadline_wall_s": self.deadline_wall_s,
            "seconds_left": left,
            "approver_roles": list(self.approver_roles),
            "summary": [list(row) for row in self.summary],
            "restored": self.restored,
        }


#: Human actions that answer a proposal for good: after one, it no longer waits.
ANSWERS: frozenset[str] = frozenset({"approve", "veto", "override"})


def unanswered_proposals(audit: AuditLog, *, decision: str | None = None) -> list[tuple[int, DecisionRecord]]:
    """``(seq, record)`` of the proposals in ``audit`` that no human has answered yet, oldest first.

    A proposal is a decision record with ``proposal=True`` appended outside a supervised session
    (``igikit plan ... --audit``: its data has no ``supervision`` entry; a session's own proposals
    are answered or cancelled within that session). It is answered by a later approve, veto or
    override that names its ``seq`` and was not refused. ``decision`` keeps only proposals of that
    decision name (``"plan_activity"``).

    Raises
    ------
    InputError
        For a row whose record cannot be read (a tampered log).
    """
    proposals: dict[int, DecisionRecord] = {}
    answered: set[int] = set()
    for entry in audit.records():
        record = entry.record
        if isinstance(record, DecisionRecord):
            if record.proposal and "supervision" not in record.data and decision in (None, record.decision):
                proposals[entry.seq] = record
        elif record.action in ANSWERS and not record.refused and record.responds_to_seq is not None:
            answered.add(record.responds_to_seq)
    return [(seq, rec) for seq, rec in proposals.items() if seq not in answered]


@dataclass(frozen=True)
class Disposition:
    """What :meth:`SupervisedSession.submit` did with a decision.

    Attributes
    ----------
    seq
        The decision's entry in the audit log.
    mode
        See :data:`igikit.supervise.autonomy.Mode`.
    value
        What the automation should have in effect *now* for this decision's name: the decision's
        value when applied, the safe value in the safe state, the previous effective value while
        a decision is pending or proposed; None when nothing automated is in effect (level 0, or
        no decision has taken effect yet and no safe value is known).
    reason
        One sentence for the log.
    pending_id
        The pending decision created or continued, if any.
    """

    seq: int
    mode: Mode
    value: Scalar | None
    reason: str
    pending_id: int | None = None


Subscriber = Callable[[SessionEvent], None]
FrameSubscriber = Callable[[FrameState], None]
SceneSubscriber = Callable[["Scene"], None]
ToolSubscriber = Callable[["ToolState"], None]
_Item = TypeVar("_Item")


class SupervisedSession:
    """Autonomy level, alerts, pending decisions, pause and the audit log of one running workflow.

    Parameters
    ----------
    audit
        The session's hash-chained audit log; every decision and human action goes there.
    workflow, session_id
        Stamped on every record.
    level
        The starting autonomy level (logged as the session's first record).
    policy
        Veto window and handover threshold.
    safe_values
        The safe value of each decision name, e.g. ``{"beam": "hold", "power_w": 0.0}``: what the
        safe state puts into effect.
    clock
        Unix time (s); tests pass a fake clock to step through veto windows.
    max_events
        How many recent events :meth:`events` keeps for a console that connects late.
    """

    def __init__(
        self,
        audit: AuditLog,
        *,
        workflow: str,
        session_id: str = "",
        level: AutonomyLevel | int = AutonomyLevel.SUPERVISED,
        policy: AutonomyPolicy | None = None,
        safe_values: Mapping[str, Scalar] | None = None,
        clock: Callable[[], float] = time.time,
        max_events: int = 500,
    ) -> None:
        self.audit = audit
        self.workflow = workflow
        self.session_id = session_id
        self.policy = policy or AutonomyPolicy()
        self._level = AutonomyLevel.parse(level)
        self._safe_values: dict[str, Scalar] = dict(safe_values or {})
        self._clock = clock
        self._lock = threading.RLock()
        # re-entrant: a subscriber that reads the session (snapshot) may flush from inside a flush
        self._dispatch_lock = threading.RLock()
        self._outbox: deque[SessionEvent] = deque()
        self._events: deque[SessionEvent] = deque(maxlen=max_events)
        self._subscribers: list[Subscriber] = []
        self._frame_subscribers: list[FrameSubscriber] = []
        self._scene_subscribers: list[SceneSubscriber] = []
        self._tool_subscribers: list[ToolSubscriber] = []
        self.alerts = AlertBoard()
        self._pending: dict[int, PendingDecision] = {}
        self._resolved: dict[int, int] = {}
        self._next_pending = 1
        # at the start the safe values are in effect: the automation has decided nothing yet
        self._effective: dict[str, Scalar] = dict(self._safe_values)
        self._last_announced: dict[str, tuple[Scalar, str]] = {}
        self._paused_by: Actor | None = None
        self._pause_reason = ""
        self.latest_frame: FrameState | None = None
        self.latest_scene: Scene | None = None
        self.latest_tool: ToolState | None = None
        with self._lock:
            seq = self._log(
                DecisionRecord(
                    decision="autonomy",
                    value=int(self._level),
                    explanation=f"session started at autonomy level {int(self._level)} ({self._level.label}: "
                    f"{self._level.description}); veto window {self.policy.veto_window_s:g} s, handover below "
                    f"confidence {self.policy.handover_confidence:.2f}",
                    confidence=1.0,
                    component=COMPONENT,
                    component_version=COMPONENT_VERSION,
                    wall_time_s=self._clock(),
                    workflow=workflow,
                    session_id=session_id,
                )
            )
            self._emit(
                "started", f"session started at autonomy level {int(self._level)} ({self._level.label})", seq=seq
            )
        self._flush()

    # --------------------------------------------------------------------------- reading state
    @property
    def level(self) -> AutonomyLevel:
        """The current autonomy level."""
        with self._lock:
            return self._level

    @property
    def paused(self) -> bool:
        """Whether a human paused the session."""
        with self._lock:
            return self._paused_by is not None

    @property
    def in_safe_state(self) -> bool:
        """``True`` while paused or while any alert is unacknowledged."""
        return bool(self.safe_state_reasons())

    def safe_state_reasons(self) -> list[str]:
        """Why the session is in its safe state (empty when it is not)."""
        with self._lock:
            reasons = []
            if self._paused_by is not None:
                why = f": {self._pause_reason}" if self._pause_reason else ""
                reasons.append(f"paused by {self._paused_by.name} ({self._paused_by.role}){why}")
            reasons.extend(f"alert {a.alert_id} unacknowledged: {a.message}" for a in self.alerts.open_alerts())
            return reasons

    def open_alerts(self) -> list[Alert]:
        """Alerts waiting for acknowledgement, oldest first."""
        return self.alerts.open_alerts()

    def pending(self) -> list[PendingDecision]:
        """Decisions waiting for a human (proposals, veto windows), oldest first."""
        self.tick()
        with self._lock:
            return sorted(self._pending.values(), key=lambda p: p.pending_id)

    def effective_value(self, decision: str, default: Scalar | None = None) -> Scalar | None:
        """What the automation should have in effect for ``decision`` now.

        The safe value while in the safe state; else the last decision that took effect (closing
        veto windows first); else ``default``.
        """
        self.tick()
        with self._lock:
            if self.safe_state_reasons() and decision in self._safe_values:
                return self._safe_values[decision]
            return self._effective.get(decision, default)

    def events(self) -> list[SessionEvent]:
        """The most recent events, oldest first."""
        with self._lock:
            return list(self._events)

    def snapshot(self) -> dict[str, Any]:
        """The supervision state as plain JSON (what the console shows beside the frame)."""
        self.tick()
        now = self._clock()
        with self._lock:
            reasons = self.safe_state_reasons()
            return {
                "workflow": self.workflow,
                "session_id": self.session_id,
                "level": int(self._level),
                "level_label": self._level.label,
                "level_description": self._level.description,
                "veto_window_s": self.policy.veto_window_s,
                "handover_confidence": self.policy.handover_confidence,
                "paused": self._paused_by is not None,
                "paused_by": None if self._paused_by is None else self._paused_by.name,
                "safe_state": bool(reasons),
                "safe_state_reasons": reasons,
                "alerts": [a.to_dict() for a in self.alerts.open_alerts()],
                "pending": [p.to_dict(now) for p in sorted(self._pending.values(), key=lambda p: p.pending_id)],
                "effective": dict(self._effective),
                "wall_time_s": now,
            }

    # ---------------------------------------------------------------------------- subscribing
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every future event; returns a function that unsubscribes."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def subscribe_frames(self, callback: FrameSubscriber) -> Callable[[], None]:
        """Call ``callback(state)`` for every published frame; returns a function that unsubscribes.

        The callback runs on the workflow's thread: it must only hand the state over (a slot, a
        queue), never encode or send.
        """
        return self._add_subscriber(self._frame_subscribers, callback)

    def publish_frame(self, state: FrameState) -> FrameState:
        """Hand ``state`` to the frame subscribers (the console); returns it stamped with ``published_wall_s``."""
        if not state.published_wall_s:
            state = dataclasses.replace(state, published_wall_s=time.time())
        self.latest_frame = state
        self._hand_over(self._frame_subscribers, state, "frame")
        return state

    def subscribe_scene(self, callback: SceneSubscriber) -> Callable[[], None]:
        """Call ``callback(scene)`` for every published navigation scene; returns the unsubscriber.

        Like :meth:`subscribe_frames`, the callback runs on the publisher's thread and only hands over.
        """
        return self._add_subscriber(self._scene_subscribers, callback)

    def publish_scene(self, scene: Scene) -> Scene:
        """Hand a navigation :class:`~igikit.console.scene.Scene` (structures, target, plan) to the console.

        Publish it once when the plan is known and again whenever it changes; a console that
        connects later gets :attr:`latest_scene`.
        """
        self.latest_scene = scene
        self._hand_over(self._scene_subscribers, scene, "scene")
        return scene

    def subscribe_tool(self, callback: ToolSubscriber) -> Callable[[], None]:
        """Call ``callback(state)`` for every published tool state; returns the unsubscriber.

        The callback runs on the tracking loop's thread: it must only hand the state over.
        """
        return self._add_subscriber(self._tool_subscribers, callback)

    def publish_tool(self, state: ToolState) -> ToolState:
        """Hand a :class:`~igikit.console.scene.ToolState` to the console; returns it stamped with
        ``published_wall_s``. Costs a reference hand-over: the console encodes on its own thread and
        sends only the newest state to each viewer.
        """
        if not state.published_wall_s:
            # a stamped copy without re-validating: this runs at the tracker's rate
            state = copy.copy(state)
            object.__setattr__(state, "published_wall_s", time.time())
        self.latest_tool = state
        self._hand_over(self._tool_subscribers, state, "tool")
        return state

    def _add_subscriber(
        self, subscribers: list[Callable[[_Item], None]], callback: Callable[[_Item], None]
    ) -> Callable[[], None]:
        with self._lock:
            subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in subscribers:
                    subscribers.remove(callback)

        return unsubscribe

    @staticmethod
    def _hand_over(subscribers: list[Callable[[_Item], None]], item: _Item, what: str) -> None:
        for callback in tuple(subscribers):
            try:
                callback(item)
            except Exception:  # a broken viewer must never stop the treatment loop
                log.exception("%s subscriber failed", what)

    # --------------------------------------------------------------------------- workflow side
    def set_safe_value(self, decision: str, value: Scalar) -> None:
        """Declare the safe value of ``decision`` (``"beam"`` -> ``"hold"``)."""
        with self._lock:
            self._safe_values[decision] = value
            self._effective.setdefault(decision, value)

    def submit(
        self, record: DecisionRecord, *, safe_value: Scalar | None = None, near_limit: bool = False
    ) -> Disposition:
        """Log an automated decision and decide what of it takes effect now.

        Parameters
        ----------
        record
            The decision (its ``safety`` flag marks an interlock).
        safe_value
            The safe value of ``record.decision``, if not declared in ``safe_values``.
        near_limit
            The workflow sees a safety limit near (level 3 hands over to the human).

        Returns
        -------
        Disposition
            Mode, the value to have in effect now, the audit ``seq``.
        """
        if not isinstance(record, DecisionRecord):
            raise InputError(f"submit() takes a DecisionRecord, got {type(record).__name__}")
        now = self._clock()
        name = record.decision
        try:
            with self._lock:
                self._expire(now)
                if safe_value is not None and name not in self._safe_values:
                    self._safe_values[name] = safe_value
                    self._effective.setdefault(name, safe_value)
                safe = self._safe_values.get(name)
                toward_safe = safe is not None and record.value == safe
                route = route_decision(
                    self._level,
                    safety=record.safety,
                    confidence=record.confidence,
                    toward_safe=toward_safe,
                    near_limit=near_limit,
                    policy=self.policy,
                )
                mode, reason = route.mode, route.reason
                blocked = self.safe_state_reasons()
                if blocked and mode in ("applied", "proposed", "pending") and not toward_safe and not record.safety:
                    mode, reason = (
                        "safe_state",
                        "refused: the session is in its safe state (" + "; ".join(blocked) + ")",
                    )
                existing = self._pending_for(name)
                unchanged = mode in ("pending", "proposed") and self._effective.get(name) == record.value
                if unchanged:  # already in effect: nothing for a human to approve or veto
                    mode, reason = "applied", "already in effect"
                continued = (
                    existing
                    if mode in ("pending", "proposed")
                    and existing is not None
                    and existing.record.value == record.value
                    else None
                )
                supervision: dict[str, Any] = {"level": int(self._level), "mode": mode, "reason": reason}
                if mode == "pending":
                    supervision["veto_window_s"] = self.policy.veto_window_s
                if continued is not None:
                    supervision["continues_pending_seq"] = continued.seq
                logged = dataclasses.replace(
                    record,
                    proposal=record.proposal or (mode in ("pending", "proposed") and continued is None),
                    data={**record.data, "supervision": supervision},
                    workflow=record.workflow or self.workflow,
                    session_id=record.session_id or self.session_id,
                )
                seq = self._log(logged)
                pending_id: int | None = None
                if mode == "applied":
                    self._cancel_pending(name, f"superseded by decision {seq}", keep=None)
                    self._effective[name] = record.value
                elif mode in ("pending", "proposed"):
                    if continued is not None:
                        pending_id = continued.pending_id
                    else:
                        self._cancel_pending(name, f"superseded by decision {seq}", keep=None)
                        pending = PendingDecision(
                            self._next_pending,
                            seq,
                            logged,
                            "pending" if mode == "pending" else "proposed",
                            now,
                            now + self.policy.veto_window_s if mode == "pending" else None,
                        )
                        self._next_pending += 1
                        self._pending[pending.pending_id] = pending
                        pending_id = pending.pending_id
                        window = (
                            f"; takes effect in {self.policy.veto_window_s:g} s unless vetoed"
                            if mode == "pending"
                            else "; waits for approval"
                        )
                        self._emit(
                            "pending",
                            f"{record.explanation}{window}",
                            seq=seq,
                            data={"pending_id": pending_id, "decision": name, "value": record.value},
                        )
                elif mode == "handed_over":
                    if safe is not None:
                        self._effective[name] = safe
                    self._raise_alert_locked(
                        "handover",
                        f"{reason}. {record.explanation}",
                        severity="critical",
                        frame_id=_frame_of(record),
                        confidence=record.confidence,
                        now=now,
                        source_seq=seq,
                    )
                self._announce(name, record, mode, seq)
                value = self._effective_locked(name)
                return Disposition(seq, mode, value, reason, pending_id)
        finally:
            self._flush()

    def raise_alert(
        self,
        kind: str,
        message: str,
        *,
        severity: Severity = "warning",
        frame_id: int | None = None,
        confidence: float | None = None,
    ) -> Alert:
        """Ask for a human: open an alert (logged) that keeps the safe state until acknowledged.

        While an alert of the same ``kind`` is open, the existing one counts one more occurrence
        (no new log entry) and is returned.
        """
        if not isinstance(kind, str) or not kind.strip() or not isinstance(message, str) or not message.strip():
            raise InputError("an alert needs a kind and a message")
        try:
            with self._lock:
                return self._raise_alert_locked(
                    kind,
                    message,
                    severity=severity,
                    frame_id=frame_id,
                    confidence=confidence,
                    now=self._clock(),
                    source_seq=None,
                )
        finally:
            self._flush()

    def note_stream_event(self, kind: str, detail: str, *, frame_id: int | None = None) -> None:
        """Record an event of the stream itself (``source_lost``...); a lost source raises an alert.

        Wire it to :meth:`igikit.stream.Application.subscribe` with
        ``app.subscribe(lambda e: session.note_stream_event(e.kind, e.detail, frame_id=e.frame_id))``;
        frame drops are too frequent to log one by one and are ignored here.
        """
        if kind == "frame_dropped":
            return
        if kind == "source_lost":
            self.raise_alert("source_lost", f"image source lost: {detail}", severity="critical", frame_id=frame_id)
            return
        with self._lock:
            self._emit("stream", f"{kind.replace('_', ' ')}: {detail}", data={"stream_event": kind})
        self._flush()

    def log_evidence(self, record: DecisionRecord) -> int:
        """Log a record that shows something and decides nothing (a tracker's answer on a frame with
        its explanation map); returns its ``seq``. Nothing takes effect, no autonomy rule applies;
        it is announced as an ``evidence`` event whose ``data`` names the frame and the caption.
        """
        if not isinstance(record, DecisionRecord) or record.evidence is None:
            raise InputError("log_evidence() takes a DecisionRecord that carries evidence")
        caption = record.evidence.caption
        record = dataclasses.replace(
            record, workflow=record.workflow or self.workflow, session_id=record.session_id or self.session_id
        )
        try:
            with self._lock:
                seq = self._log(record)
                data = {"decision": record.decision, "frame_id": _frame_of(record), "caption": caption}
                self._emit("evidence", record.explanation, seq=seq, data=data)
                return seq
        finally:
            self._flush()

    def restore_proposal(
        self,
        seq: int,
        *,
        approver_roles: tuple[str, ...] = (),
        summary: tuple[tuple[str, str], ...] = (),
    ) -> PendingDecision:
        """Put the proposal logged at ``seq`` (before this session: ``igikit plan ... --audit``) up for approval.

        Nothing is logged: the proposal is already in the audit log, and the approve or veto that
        answers it names that ``seq``, so that :func:`unanswered_proposals` sees it answered after a
        restart. It waits for a human whatever the session's state (see :class:`PendingDecision`).

        Parameters
        ----------
        seq
            The proposal's row in this session's audit log.
        approver_roles
            The roles that may approve or veto it (e.g. ``("physicist",)`` for a treatment plan);
            empty: every role that may approve.
        summary
            ``(label, text)`` rows shown with it (activity, doses, limits...).

        Raises
        ------
        InputError
            When row ``seq`` is not a proposal, is already waiting here, or a role is unknown.
        """
        entry = next(self.audit.records(start_seq=seq), None) if seq >= 1 else None
        record = entry.record if entry is not None and entry.seq == seq else None
        if not isinstance(record, DecisionRecord) or not record.proposal:
            raise InputError(f"row {seq} of {self.audit.path} is not a decision proposal")
        unknown = [r for r in approver_roles if r not in ROLES]
        if unknown:
            raise InputError(f"unknown approver role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
        try:
            with self._lock:
                if any(p.seq == seq for p in self._pending.values()):
                    raise InputError(f"proposal {seq} is already waiting for approval")
                pending = PendingDecision(
                    self._next_pending, seq, record, "proposed", self._clock(), None,
                    approver_roles=tuple(approver_roles), summary=tuple(summary), restored=True,
                )
                self._next_pending += 1
                self._pending[pending.pending_id] = pending
                who = f" by a {' or '.join(approver_roles)}" if approver_roles else ""
                self._emit(
                    "pending",
                    f"{record.explanation}; proposal #{seq} from the audit log, waits for approval{who}",
                    seq=seq,
                    data={"pending_id": pending.pending_id, "decision": record.decision, "value": record.value},
                )
                return pending
        finally:
            self._flush()

    def tick(self) -> None:
        """Close veto windows that have expired (their decisions take effect); cheap when none did."""
        if not self._pending:
            return
        try:
            with self._lock:
                self._expire(self._clock())
        finally:
            self._flush()

    # ------------------------------------------------------------------------------ human side
    def acknowledge(self, alert_id: int, actor: Actor, *, reason: str = "") -> Alert:
        """A human saw alert ``alert_id``; it closes (leaving the safe state if it was the last).

        Raises
        ------
        ActionRefused
            ``not_found`` for an unknown alert, ``forbidden`` for a role that may not act,
            ``conflict`` when it was already acknowledged.
        """
        try:
            with self._lock:
                alert = self.alerts.get(alert_id)
                if alert is None:
                    raise ActionRefused(f"no alert {alert_id}", status="not_found", seq=None)
                self._check(actor, "acknowledge", responds_to_seq=alert.seq, reason=reason)
                if not alert.is_open:
                    self._refuse(
                        actor,
                        "acknowledge",
                        "conflict",
                        f"alert {alert_id} was already acknowledged by {alert.acknowledged_by}",
                        responds_to_seq=alert.seq,
                        reason=reason,
                    )
                now = self._clock()
                seq = self._log_action(actor, "acknowledge", responds_to_seq=alert.seq, reason=reason, now=now)
                closed = self.alerts.acknowledge(alert_id, by=actor.name, role=actor.role, wall_s=now, ack_seq=seq)
                left = self.safe_state_reasons()
                after = (
                    "safe state continues: " + "; ".join(left)
                    if left
                    else "safe state ends; the automation decides again"
                )
                self._emit(
                    "acknowledged",
                    f"alert {alert_id} acknowledged by {actor.name} ({actor.role}): {alert.message}; {after}",
                    seq=seq,
                    actor=actor,
                    data={"alert_id": alert_id},
                )
                return closed
        finally:
            self._flush()

    def approve(self, pending_id: int, actor: Actor, *, reason: str = "") -> PendingDecision:
        """A human approves a proposal or a decision in its veto window: it takes effect now."""
        return self._resolve(pending_id, actor, "approve", reason)

    def veto(self, pending_id: int, actor: Actor, *, reason: str = "") -> PendingDecision:
        """A human vetoes a decision in its veto window (or rejects a proposal): it never takes effect."""
        return self._resolve(pending_id, actor, "veto", reason)

    def pause(self, actor: Actor, *, reason: str = "") -> None:
        """Go to the safe state and stay there until a human resumes (pending decisions are cancelled)."""
        try:
            with self._lock:
                self._check(actor, "pause", reason=reason)
                seq = self._log_action(actor, "pause", reason=reason, now=self._clock())
                was_paused = self._paused_by is not None
                self._paused_by, self._pause_reason = actor, reason
                if not was_paused:
                    self._enter_safe_state(f"paused by {actor.name}")
                why = f" ({reason})" if reason else ""
                self._emit("paused", f"paused by {actor.name} ({actor.role}){why}: safe state", seq=seq, actor=actor)
        finally:
            self._flush()

    def resume(self, actor: Actor, *, reason: str = "") -> None:
        """Leave a pause; the safe state continues while any alert is unacknowledged.

        Raises
        ------
        ActionRefused
            ``forbidden`` for a role that may not act, ``conflict`` when the session is not paused.
        """
        try:
            with self._lock:
                self._check(actor, "resume", reason=reason)
                if self._paused_by is None:
                    self._refuse(actor, "resume", "conflict", "the session is not paused", reason=reason)
                seq = self._log_action(actor, "resume", reason=reason, now=self._clock())
                self._paused_by, self._pause_reason = None, ""
                left = self.safe_state_reasons()
                after = "; safe state continues: " + "; ".join(left) if left else "; the automation decides again"
                self._emit("resumed", f"resumed by {actor.name} ({actor.role}){after}", seq=seq, actor=actor)
        finally:
            self._flush()

    def set_autonomy(self, level: AutonomyLevel | int | str, actor: Actor, *, reason: str = "") -> AutonomyLevel:
        """Change the autonomy level (physicists only); pending decisions are cancelled.

        Raises
        ------
        InputError
            For a level that is not 0-3.
        ActionRefused
            ``forbidden`` for a role other than physicist (the refusal is logged).
        """
        new = AutonomyLevel.parse(level)
        try:
            with self._lock:
                self._check(actor, "set_autonomy", value=int(new), reason=reason)
                seq = self._log_action(actor, "set_autonomy", value=int(new), reason=reason, now=self._clock())
                old, self._level = self._level, new
                self._cancel_pending(None, f"autonomy level changed to {int(new)}", keep=None)
                self._emit(
                    "autonomy",
                    f"autonomy level {int(old)} ({old.label}) -> {int(new)} ({new.label}) by {actor.name} "
                    f"({actor.role}): {new.description}",
                    seq=seq,
                    actor=actor,
                    data={"from": int(old), "to": int(new)},
                )
                return new
        finally:
            self._flush()

    def annotate(self, text: str, actor: Actor) -> int:
        """A note for the record; returns its ``seq``."""
        try:
            with self._lock:
                self._check(actor, "annotate", reason=text)
                seq = self._log_action(actor, "annotate", reason=text, now=self._clock())
                self._emit("annotate", f"note by {actor.name} ({actor.role}): {text}", seq=seq, actor=actor)
                return seq
        finally:
            self._flush()

    # ------------------------------------------------------------------------------- internals
    def _log(self, record: DecisionRecord | HumanAction) -> int:
        return self.audit.append(record)

    def _log_action(
        self,
        actor: Actor,
        action: str,
        *,
        now: float,
        responds_to_seq: int | None = None,
        reason: str = "",
        value: Scalar | None = None,
        refused: bool = False,
    ) -> int:
        return self._log(
            HumanAction(
                action=action,
                operator=actor.name,
                role=actor.role,
                responds_to_seq=responds_to_seq,
                reason=reason,
                value=value,
                wall_time_s=now,
                workflow=self.workflow,
                session_id=self.session_id,
                refused=refused,
            )
        )

    def _check(self, actor: Actor, action: str, **kwargs: Any) -> None:
        if not isinstance(actor, Actor):
            raise InputError(f"a human action needs an Actor, got {type(actor).__name__}")
        if not is_allowed(actor.role, action):
            allowed = [r for r in ROLES if is_allowed(r, action)]
            why = f"role {actor.role!r} may not {action.replace('_', ' ')}" + (
                f" (allowed: {', '.join(allowed)})" if allowed else ""
            )
            self._refuse(actor, action, "forbidden", why, **kwargs)

    def _refuse(
        self,
        actor: Actor,
        action: str,
        status: Literal["forbidden", "conflict"],
        why: str,
        *,
        responds_to_seq: int | None = None,
        reason: str = "",
        value: Scalar | None = None,
    ) -> NoReturn:
        text = f"refused: {why}" + (f" (stated reason: {reason})" if reason else "")
        seq = self._log_action(
            actor, action, responds_to_seq=responds_to_seq, reason=text, value=value, refused=True, now=self._clock()
        )
        self._emit(
            "refused",
            f"{action.replace('_', ' ')} by {actor.name} ({actor.role}) refused: {why}",
            seq=seq,
            actor=actor,
            data={"action": action, "status": status},
        )
        log.warning("%s by %s (%s) refused: %s", action, actor.name, actor.role, why)
        raise ActionRefused(why, status=status, seq=seq)

    def _resolve(
        self, pending_id: int, actor: Actor, action: Literal["approve", "veto"], reason: str
    ) -> PendingDecision:
        try:
            with self._lock:
                now = self._clock()
                self._expire(now)
                pending = self._pending.get(pending_id)
                if pending is None:
                    gone_seq = self._resolved.get(pending_id)
                    if gone_seq is None:
                        raise ActionRefused(f"no pending decision {pending_id}", status="not_found", seq=None)
                    self._check(actor, action, responds_to_seq=gone_seq, reason=reason)
                    self._refuse(
                        actor,
                        action,
                        "conflict",
                        f"decision {pending_id} is no longer pending (it took effect, or was superseded or cancelled)",
                        responds_to_seq=gone_seq,
                        reason=reason,
                    )
                if pending.approver_roles and actor.role not in pending.approver_roles:
                    self._refuse(
                        actor,
                        action,
                        "forbidden",
                        f"only a {' or '.join(pending.approver_roles)} may {action} {pending.record.decision} "
                        f"{pending.record.value} (role {actor.role!r})",
                        responds_to_seq=pending.seq,
                        reason=reason,
                    )
                self._check(actor, action, responds_to_seq=pending.seq, reason=reason)
                seq = self._log_action(actor, action, responds_to_seq=pending.seq, reason=reason, now=now)
                del self._pending[pending_id]
                self._forget(pending_id, pending.seq)
                name, value = pending.record.decision, pending.record.value
                if action == "approve":
                    if self.safe_state_reasons() and value != self._safe_values.get(name):
                        # approval is recorded, but the safe state still wins
                        self._emit(
                            "approved",
                            f"{name} {value} approved by {actor.name} ({actor.role}), but the session is "
                            "in its safe state: not in effect",
                            seq=seq,
                            actor=actor,
                            data={"pending_id": pending_id},
                        )
                    else:
                        self._effective[name] = value
                        self._emit(
                            "approved",
                            f"{name} {value} approved by {actor.name} ({actor.role}): in effect now",
                            seq=seq,
                            actor=actor,
                            data={"pending_id": pending_id},
                        )
                else:
                    why = f" ({reason})" if reason else ""
                    self._emit(
                        "vetoed",
                        f"{name} {value} vetoed by {actor.name} ({actor.role}){why}: never takes effect",
                        seq=seq,
                        actor=actor,
                        data={"pending_id": pending_id},
                    )
                return pending
        finally:
            self._flush()

    def _forget(self, pending_id: int, seq: int) -> None:
        # remembers the decision seq of pending decisions that are gone, so that a late approve or
        # veto can be logged as refused in response to it; bounded, a session can run for hours
        self._resolved[pending_id] = seq
        if len(self._resolved) > 10_000:
            for key in sorted(self._resolved)[:5_000]:
                del self._resolved[key]

    def _pending_for(self, name: str) -> PendingDecision | None:
        return next((p for p in self._pending.values() if p.record.decision == name), None)

    def _cancel_pending(self, name: str | None, why: str, *, keep: int | None) -> None:
        # a restored proposal (a treatment plan) is no live decision that the safe state makes stale
        for pid in [
            p
            for p, d in self._pending.items()
            if (name is None or d.record.decision == name) and p != keep and not d.restored
        ]:
            pending = self._pending.pop(pid)
            self._forget(pid, pending.seq)
            self._emit(
                "cancelled",
                f"pending {pending.record.decision} {pending.record.value} cancelled: {why}",
                seq=pending.seq,
                data={"pending_id": pid},
            )

    def _expire(self, now: float) -> None:
        for pid, pending in sorted(self._pending.items()):
            if pending.deadline_wall_s is None or now < pending.deadline_wall_s:
                continue
            del self._pending[pid]
            self._forget(pid, pending.seq)
            rec = pending.record
            seq = self._log(
                DecisionRecord(
                    decision=rec.decision,
                    value=rec.value,
                    explanation=f"{rec.decision} {rec.value} takes effect: veto window of "
                    f"{self.policy.veto_window_s:g} s closed without a veto "
                    f"(decision {pending.seq}: {rec.explanation})",
                    confidence=rec.confidence,
                    component=COMPONENT,
                    component_version=COMPONENT_VERSION,
                    frame_time_s=rec.frame_time_s,
                    wall_time_s=now,
                    input_frame_ids=rec.input_frame_ids,
                    workflow=self.workflow,
                    session_id=self.session_id,
                    data={"took_effect_seq": pending.seq, "pending_id": pid},
                )
            )
            self._effective[rec.decision] = rec.value
            self._emit(
                "took_effect",
                f"{rec.decision} {rec.value} in effect: veto window closed without a veto",
                seq=seq,
                data={"pending_id": pid},
            )

    def _enter_safe_state(self, why: str) -> None:
        self._cancel_pending(None, f"safe state ({why})", keep=None)
        for name, safe in self._safe_values.items():
            self._effective[name] = safe

    def _raise_alert_locked(
        self,
        kind: str,
        message: str,
        *,
        severity: Severity,
        frame_id: int | None,
        confidence: float | None,
        now: float,
        source_seq: int | None,
    ) -> Alert:
        existing = self.alerts.open_of_kind(kind)
        if existing is not None:
            return self.alerts.repeat(existing.alert_id, wall_s=now)
        was_safe = bool(self.safe_state_reasons())
        conf = 1.0 if confidence is None or not np.isfinite(confidence) else float(np.clip(confidence, 0.0, 1.0))
        data: dict[str, Any] = {"kind": kind, "severity": severity}
        if source_seq is not None:
            data["raised_by_seq"] = source_seq
        seq = self._log(
            DecisionRecord(
                decision="alert",
                value=kind,
                explanation=f"alert ({severity}): {message}; safe state until a human acknowledges",
                confidence=conf,
                component=COMPONENT,
                component_version=COMPONENT_VERSION,
                wall_time_s=now,
                input_frame_ids=() if frame_id is None else (int(frame_id),),
                workflow=self.workflow,
                session_id=self.session_id,
                safety=True,
                data=data,
            )
        )
        alert = self.alerts.add(
            kind, message, seq=seq, wall_s=now, severity=severity, frame_id=frame_id, confidence=confidence
        )
        if not was_safe:
            self._enter_safe_state(f"alert {alert.alert_id}")
        self._emit("alert", f"alert {alert.alert_id} ({severity}): {message}", seq=seq, data=alert.to_dict())
        return alert

    def _effective_locked(self, name: str) -> Scalar | None:
        if self.safe_state_reasons() and name in self._safe_values:
            return self._safe_values[name]
        return self._effective.get(name)

    def _announce(self, name: str, record: DecisionRecord, mode: str, seq: int) -> None:
        # every decision is logged; only changes are announced, or the event log would scroll at 8 Hz
        key = (record.value, mode)
        if self._last_announced.get(name) == key:
            return
        self._last_announced[name] = key
        if mode in ("pending", "proposed"):
            return  # announced as a "pending" event
        self._emit(
            "decision",
            f"{record.explanation} [{mode.replace('_', ' ')}]",
            seq=seq,
            data={
                "decision": name,
                "value": record.value,
                "mode": mode,
                "confidence": record.confidence,
                "safety": record.safety,
            },
        )

    def _emit(
        self,
        kind: str,
        text: str,
        *,
        seq: int | None = None,
        actor: Actor | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        event = SessionEvent(
            kind,
            text,
            self._clock(),
            seq=seq,
            actor=None if actor is None else actor.name,
            role=None if actor is None else actor.role,
            data=dict(data or {}),
        )
        self._events.append(event)
        self._outbox.append(event)

    def _flush(self) -> None:
        # Called after the session lock is released; the dispatch lock keeps events in order when
        # two threads flush at once.
        with self._dispatch_lock:
            while True:
                with self._lock:
                    if not self._outbox:
                        return
                    event = self._outbox.popleft()
                    subscribers = tuple(self._subscribers)
                for callback in subscribers:
                    try:
                        callback(event)
                    except Exception:
                        log.exception("session subscriber failed")


def _frame_of(record: DecisionRecord) -> int | None:
    ids = [i for i in record.input_frame_ids if isinstance(i, int)]
    return ids[-1] if ids else None
