"""Alerts: the workflow asks for a human, and keeps its safe state until one acknowledges.

An alert is raised when the automation wants a person (confidence low, a safety limit near, the
image source lost, a level-3 handover). It stays *open* until a human acknowledges it; while any
alert is open, :class:`~igikit.supervise.session.SupervisedSession` reports the safe state and
refuses decisions that would leave it. A condition that persists raises a new alert after the
acknowledgement, so acknowledging never silences a problem that is still there.

While an alert of a kind is open, raising the same kind again counts an occurrence on it instead of
opening a second one: a confidence that stays low for 40 frames is one alert, not 40.

:class:`AlertBoard` only holds the state; the session writes the audit log and publishes events.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Literal

Severity = Literal["warning", "critical"]


@dataclass(frozen=True)
class Alert:
    """One alert, as raised and (later) acknowledged.

    Parameters
    ----------
    alert_id
        Number of the alert in its session (1, 2, ...).
    kind
        What it is about: ``"low_confidence"``, ``"near_limit"``, ``"handover"``, ``"source_lost"``...
    message
        One sentence with the numbers, e.g. ``"tracking confidence 0.42 below 0.60"``.
    seq
        ``seq`` of the audit-log entry that raised it (an acknowledgement responds to it).
    raised_wall_s
        When it was raised (Unix time, s).
    severity
        ``"warning"`` or ``"critical"``.
    frame_id, confidence
        The frame and confidence that raised it, when known.
    occurrences, last_wall_s
        How often the condition was seen while the alert was open, and when last.
    acknowledged_by, acknowledged_role, acknowledged_wall_s, ack_seq
        Who acknowledged it, in which role, when, and the ``seq`` of that human action.
    """

    alert_id: int
    kind: str
    message: str
    seq: int
    raised_wall_s: float
    severity: Severity = "warning"
    frame_id: int | None = None
    confidence: float | None = None
    occurrences: int = 1
    last_wall_s: float | None = None
    acknowledged_by: str | None = None
    acknowledged_role: str | None = None
    acknowledged_wall_s: float | None = None
    ack_seq: int | None = None

    @property
    def is_open(self) -> bool:
        """``True`` until a human acknowledges it."""
        return self.acknowledged_wall_s is None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (for the console)."""
        return {
            "alert_id": self.alert_id,
            "kind": self.kind,
            "message": self.message,
            "seq": self.seq,
            "raised_wall_s": self.raised_wall_s,
            "severity": self.severity,
            "frame_id": self.frame_id,
            "confidence": self.confidence,
            "occurrences": self.occurrences,
            "last_wall_s": self.last_wall_s if self.last_wall_s is not None else self.raised_wall_s,
            "open": self.is_open,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_role": self.acknowledged_role,
            "acknowledged_wall_s": self.acknowledged_wall_s,
            "ack_seq": self.ack_seq,
        }


class AlertBoard:
    """The open alerts of a session and the recently closed ones (thread-safe).

    Parameters
    ----------
    keep_closed
        How many acknowledged alerts to keep for display (the audit log keeps them all).
    """

    def __init__(self, *, keep_closed: int = 200) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, Alert] = {}
        self._closed: deque[Alert] = deque(maxlen=keep_closed)
        self._next_id = 1

    def open_of_kind(self, kind: str) -> Alert | None:
        """The open alert of ``kind``, if any."""
        with self._lock:
            return next((a for a in self._open.values() if a.kind == kind), None)

    def add(
        self,
        kind: str,
        message: str,
        *,
        seq: int,
        wall_s: float,
        severity: Severity = "warning",
        frame_id: int | None = None,
        confidence: float | None = None,
    ) -> Alert:
        """Open a new alert (the caller has logged it as entry ``seq``)."""
        with self._lock:
            alert = Alert(
                self._next_id,
                kind,
                message,
                seq,
                wall_s,
                severity=severity,
                frame_id=frame_id,
                confidence=confidence,
                last_wall_s=wall_s,
            )
            self._open[alert.alert_id] = alert
            self._next_id += 1
            return alert

    def repeat(self, alert_id: int, *, wall_s: float) -> Alert:
        """Count one more occurrence of an open alert's condition.

        Raises
        ------
        KeyError
            When no alert ``alert_id`` is open.
        """
        with self._lock:
            alert = replace(self._open[alert_id], occurrences=self._open[alert_id].occurrences + 1, last_wall_s=wall_s)
            self._open[alert_id] = alert
            return alert

    def get(self, alert_id: int) -> Alert | None:
        """The alert ``alert_id``, open or recently closed."""
        with self._lock:
            if alert_id in self._open:
                return self._open[alert_id]
            return next((a for a in self._closed if a.alert_id == alert_id), None)

    def acknowledge(self, alert_id: int, *, by: str, role: str, wall_s: float, ack_seq: int) -> Alert:
        """Close alert ``alert_id`` (the caller has logged the acknowledgement as entry ``ack_seq``).

        Raises
        ------
        KeyError
            When no alert ``alert_id`` is open.
        """
        with self._lock:
            alert = replace(
                self._open.pop(alert_id),
                acknowledged_by=by,
                acknowledged_role=role,
                acknowledged_wall_s=wall_s,
                ack_seq=ack_seq,
            )
            self._closed.append(alert)
            return alert

    def open_alerts(self) -> list[Alert]:
        """Open alerts, oldest first."""
        with self._lock:
            return sorted(self._open.values(), key=lambda a: a.alert_id)

    def closed_alerts(self) -> list[Alert]:
        """Recently acknowledged alerts, oldest first."""
        with self._lock:
            return list(self._closed)

    @property
    def any_open(self) -> bool:
        """``True`` while any alert waits for acknowledgement."""
        with self._lock:
            return bool(self._open)
