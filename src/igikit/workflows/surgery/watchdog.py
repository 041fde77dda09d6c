"""A watchdog for the tool stream: it says when poses stop (lost) or stop changing (frozen).

A tracker that loses sight of the tool stops sending its pose (or, for some devices and bridges,
keeps re-sending the last one unchanged); in both cases the position on screen is stale and the
surgeon must know at once. The watchdog's own thread sleeps exactly until the earlier of the two
deadlines, the last pose's arrival plus ``lost_after_s`` and the last *change* of the pose plus
``frozen_after_s``, so the alarm comes within the timeout plus the thread's wake-up (about a
millisecond), independent of the tracker's rate or of how long a navigation update takes.
SlicerIGT's watchdog polls about every 0.5 s.

A real tool always moves by some measurement noise (hundredths of a millimetre for an optical
tracker), so a pose that repeats the previous one to within ``1e-6`` (mm, and rotation matrix
entries) counts as no change.

The watchdog arms with the first pose: before it, nothing is shown that could go stale. A source
that is pulled as fast as the navigation runs (a replay, a simulation with ``--fast``) has no
clock of its own: :meth:`ToolWatchdog.pause` and :meth:`ToolWatchdog.resume` stop the watchdog's
clock while the consumer is busy, so only the time spent waiting for a pose counts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from igikit.errors import InputError
from igikit.stream.message import wall_clock

log = logging.getLogger(__name__)

#: Two poses closer than this (max entry difference) count as the same pose.
SAME_POSE_TOL = 1e-6

StreamState = Literal["waiting", "ok", "lost", "frozen", "ended"]


@dataclass(frozen=True)
class StreamAlarm:
    """What the watchdog reports: a loss, a freeze, or the stream back.

    Attributes
    ----------
    kind
        ``"lost"``, ``"frozen"`` or ``"restored"``.
    wall_s
        When it was detected (:data:`~igikit.stream.message.wall_clock`).
    silence_ms
        For ``lost``: time since the last pose arrived; for ``frozen``: since the pose last
        changed; for ``restored``: how long the fault lasted.
    limit_ms
        The timeout that applied.
    frame_id
        The last pose's frame id.
    """

    kind: Literal["lost", "frozen", "restored"]
    wall_s: float
    silence_ms: float
    limit_ms: float
    frame_id: int

    def sentence(self, tool: str = "tool") -> str:
        """One sentence for the alert or event."""
        if self.kind == "lost":
            return (
                f"{tool} stream lost: no pose for {self.silence_ms:.0f} ms (limit {self.limit_ms:.0f} ms) after "
                f"frame {self.frame_id}; the position shown is stale"
            )
        if self.kind == "frozen":
            return (
                f"{tool} stream frozen: the pose has not changed for {self.silence_ms:.0f} ms (limit "
                f"{self.limit_ms:.0f} ms), frame {self.frame_id}; the tracker may repeat a stale pose"
            )
        return f"{tool} stream back after {self.silence_ms:.0f} ms (frame {self.frame_id})"


class ToolWatchdog:
    """Watches a pose stream; calls ``on_alarm`` on loss, freeze and recovery (on its own thread).

    Parameters
    ----------
    on_alarm
        Called with each :class:`StreamAlarm`; keep it short (it raises an alert, logs).
    lost_after_s
        No pose for this long is a loss.
    frozen_after_s
        An unchanged pose for this long is a freeze.
    clock
        Monotonic clock (s), :data:`~igikit.stream.message.wall_clock` by default; the arrival
        times given to :meth:`pose` must use it.
    """

    def __init__(
        self,
        on_alarm: Callable[[StreamAlarm], None],
        *,
        lost_after_s: float = 0.15,
        frozen_after_s: float = 0.15,
        clock: Callable[[], float] = wall_clock,
    ) -> None:
        for what, v in (("lost_after_s", lost_after_s), ("frozen_after_s", frozen_after_s)):
            if not (isinstance(v, int | float) and 0 < v < 60):
                raise InputError(f"{what} must be between 0 and 60 s, got {v!r}")
        self.on_alarm = on_alarm
        self.lost_after_s = float(lost_after_s)
        self.frozen_after_s = float(frozen_after_s)
        self._clock = clock
        self._cond = threading.Condition()
        self._state: StreamState = "waiting"
        self._last_arrival = 0.0
        self._last_change = 0.0
        self._fault_since = 0.0
        self._last_pose: np.ndarray | None = None
        self._frame_id = -1
        self._done = False
        self._paused_at: float | None = None
        self._thread: threading.Thread | None = None
        #: Every alarm raised, in order.
        self.alarms: list[StreamAlarm] = []

    @property
    def state(self) -> StreamState:
        """``waiting`` (no pose yet), ``ok``, ``lost``, ``frozen`` or ``ended``."""
        with self._cond:
            return self._state

    def start(self) -> ToolWatchdog:
        """Start the watchdog thread."""
        if self._thread is None:
            self._done = False
            self._thread = threading.Thread(target=self._watch, name="igikit-tool-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (idempotent)."""
        with self._cond:
            self._done = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def pause(self) -> None:
        """Stop the clock: a pulled source's poses are not due while the consumer is busy."""
        with self._cond:
            if self._paused_at is None:
                self._paused_at = self._clock()
                self._cond.notify_all()

    def resume(self) -> None:
        """Restart the clock; the paused time counts as neither silence nor stillness."""
        with self._cond:
            if self._paused_at is not None:
                dt = self._clock() - self._paused_at
                self._last_arrival += dt
                self._last_change += dt
                self._fault_since += dt
                self._paused_at = None
                self._cond.notify_all()

    def end(self) -> None:
        """The stream ended as planned (the recording or the insertion is over): no more alarms."""
        with self._cond:
            self._state = "ended"
            self._cond.notify_all()

    def __enter__(self) -> ToolWatchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pose(self, pose: np.ndarray, arrival_s: float | None = None, frame_id: int = -1) -> StreamState:
        """Note a pose that arrived at ``arrival_s`` (default now); returns the stream state after it."""
        now = self._clock() if arrival_s is None else float(arrival_s)
        restored: StreamAlarm | None = None
        with self._cond:
            if self._state == "ended":
                return "ended"
            prev = self._last_pose
            changed = prev is None or float(np.max(np.abs(pose - prev))) > SAME_POSE_TOL
            self._last_arrival = now
            self._frame_id = int(frame_id)
            if changed:
                self._last_change = now
                self._last_pose = np.array(pose, dtype=np.float64)
            if self._state == "lost" or (self._state == "frozen" and changed):
                restored = StreamAlarm("restored", now, 1e3 * (now - self._fault_since), 0.0, self._frame_id)
                self._state = "ok"
            elif self._state == "waiting":
                self._state = "ok"
            state = self._state
            self._cond.notify_all()
        if restored is not None:
            self._emit(restored)
        return state

    def _emit(self, alarm: StreamAlarm) -> None:
        self.alarms.append(alarm)
        try:
            self.on_alarm(alarm)
        except Exception:  # the watchdog must keep watching whatever a listener does
            log.exception("tool watchdog listener failed")

    def _watch(self) -> None:
        while True:
            alarm: StreamAlarm | None = None
            with self._cond:
                if self._done:
                    return
                if self._state != "ok" or self._paused_at is not None:
                    self._cond.wait()  # until a pose, a resume or stop changes the state
                    continue
                now = self._clock()
                lost_at = self._last_arrival + self.lost_after_s
                frozen_at = self._last_change + self.frozen_after_s
                if now >= lost_at:
                    self._state, self._fault_since = "lost", self._last_arrival
                    alarm = StreamAlarm(
                        "lost", now, 1e3 * (now - self._last_arrival), 1e3 * self.lost_after_s, self._frame_id
                    )
                elif now >= frozen_at:
                    self._state, self._fault_since = "frozen", self._last_change
                    alarm = StreamAlarm(
                        "frozen", now, 1e3 * (now - self._last_change), 1e3 * self.frozen_after_s, self._frame_id
                    )
                else:
                    self._cond.wait(min(lost_at, frozen_at) - now)
                    continue
            self._emit(alarm)


__all__ = ["SAME_POSE_TOL", "StreamAlarm", "StreamState", "ToolWatchdog"]
