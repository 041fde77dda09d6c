"""Where tool poses come from: a recording, a simulated tracker, or OpenIGTLink (PLUS, a tracker).

Every source here delivers each 4x4 tool-to-tracker pose (mm) as one stream
:class:`~igikit.stream.message.Message` whose frame is the pose, in order, none dropped: the
navigation graph pulls them (``realtime=False``) and a pose that arrives while an update runs
waits. :class:`WatchedPoseSource` wraps any of them: a thread of its own takes each pose the
moment it arrives, tells the :class:`~igikit.workflows.surgery.watchdog.ToolWatchdog`, and queues
it, so a slow step downstream (the first write of a session file) can neither lose a pose nor
look like a lost tool.

* :class:`PoseReplaySource`: a recording (``igikit igtl record`` CSV or HDF5, a pose CSV with
  ``t_s``, or a navigation session file), at its recorded pace or as fast as possible;
* :class:`SimulatedTracker`: a needle insertion along an :class:`InsertionPath` seen by a tracker
  with stated jitter, with optional occlusions (no poses) and freezes (a repeated pose);
* :class:`igikit.io.igtl_source.IGTLSource` (not here): TRANSFORMs from an OpenIGTLink server or
  client, every one queued (pyigtl's client would keep only the latest per device).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from igikit.errors import InputError
from igikit.stream.message import Message, wall_clock
from igikit.stream.source import Source, paced
from igikit.workflows.surgery.navigation import ToolCalibration
from igikit.workflows.surgery.watchdog import ToolWatchdog

#: Result a simulated pose carries besides the frame: the true tip in image coordinates (mm).
TRUE_TIP = "true_tip_mm"
#: Result a simulated pose carries: ``"frozen"`` for a pose re-sent by a stuck tracker, else ``""``.
SIM_FAULT = "simulated_fault"
#: Result every watched pose carries: the tool stream's state when it arrived.
STREAM_STATE = "stream_state"


# ---------------------------------------------------------------------------- recordings
@dataclass(frozen=True, eq=False)
class PoseRecording:
    """Poses ``(N, 4, 4)`` with their times ``(N,)`` in seconds from the first."""

    poses: np.ndarray
    times_s: np.ndarray
    source: str


def read_pose_recording(path: str | Path, *, device: str | None = None, rate_hz: float | None = None) -> PoseRecording:
    """Read recorded tool poses: CSV (``t_s``, ``device``, ``m00..m33`` or ``x,y,z,qw,qx,qy,qz``),
    ``igikit igtl record`` HDF5, or an ``igikit navigate`` session file.

    Parameters
    ----------
    path
        The recording.
    device
        Keep only this device's poses (CSV with a device column, igtl HDF5).
    rate_hz
        Pose rate for a recording without times (required then).

    Raises
    ------
    InputError
        Unknown format, no poses, times missing (and no ``rate_hz``) or not increasing.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    times: np.ndarray | None
    if suffix == ".csv":
        from igikit.workflows.surgery.files import read_poses_csv

        table = read_poses_csv(path, device=device)
        poses, times = table.poses, table.times_s
    elif suffix in (".h5", ".hdf5"):
        poses, times = _read_h5_poses(path, device)
    else:
        raise InputError(f"unknown pose recording extension {path.suffix!r}; use .csv or .h5", path)
    if times is None:
        if rate_hz is None:
            raise InputError("the recording has no t_s column: give the pose rate (--rate-hz)", path)
        times = np.arange(len(poses)) / float(rate_hz)
    times = np.asarray(times, dtype=np.float64)
    if len(times) > 1 and np.any(np.diff(times) < 0):
        k = int(np.flatnonzero(np.diff(times) < 0)[0])
        raise InputError(f"pose times go backwards at pose {k + 2} ({times[k + 1]:.6f} s after {times[k]:.6f} s)", path)
    return PoseRecording(poses, times - times[0], str(path))


def _read_h5_poses(path: Path, device: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    import h5py

    from igikit.register.pivot import ORTHONORMAL_TOL, rotation_errors

    if not path.is_file():
        raise InputError("no such file", path)
    try:
        f = h5py.File(path, "r", libver="latest", swmr=True)
    except OSError as exc:
        raise InputError(f"cannot be opened as HDF5 ({exc})", path) from None
    with f:
        kind = f.attrs.get("format")
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "igikit-poses":
            poses = np.asarray(f["matrix"][:], dtype=np.float64).reshape(-1, 4, 4)
            times = np.asarray(f["t_s"][:], dtype=np.float64)
            if device is not None:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["device"][:]]
                keep = np.array([n == device for n in names], dtype=bool)
                poses, times = poses[keep], times[keep]
        elif kind == "igikit-session":
            from igikit.stream.recorder import read_session

            s = read_session(path)
            if s.frames.ndim != 3 or s.frames.shape[1:] != (4, 4):
                raise InputError(f"the session's frames are {s.frames.shape[1:]}, not 4x4 poses", path)
            poses, times = np.asarray(s.frames, dtype=np.float64), s.acquisition_time_s
        else:
            raise InputError(f"not a pose recording (format {kind!r}; expected igikit-poses or igikit-session)", path)
    if len(poses) == 0:
        raise InputError("the recording holds no poses" + (f" of device {device!r}" if device else ""), path)
    if not np.all(np.isfinite(poses)):
        raise InputError("a pose holds NaN or infinity", path)
    err = rotation_errors(poses)
    bad = np.flatnonzero(err > ORTHONORMAL_TOL)
    if bad.size:
        raise InputError(f"pose {bad[0] + 1}: the rotation is not orthonormal", path)
    return poses, times


class PoseReplaySource(Source):
    """Replay recorded poses at their recorded pace (``pace=True``) or as fast as pulled.

    Parameters
    ----------
    recording
        The poses and their times.
    pace
        Release pose ``k`` at ``start + t_k`` (a live tracker's rhythm) instead of at once.
    """

    def __init__(self, recording: PoseRecording, *, pace: bool = True, name: str = "poses") -> None:
        super().__init__(name, realtime=False)
        self.recording = recording
        self.pace = pace

    @property
    def n_frames(self) -> int:
        """Number of poses."""
        return len(self.recording.poses)

    def metadata(self) -> dict[str, Any]:
        """Where the poses come from."""
        return {"source": f"replay:{self.recording.source}", "n_frames": self.n_frames, "paced": self.pace}

    def messages(self, stop: threading.Event) -> Iterator[Message]:
        """The poses, on their schedule."""
        poses = self.recording.poses
        for k, t in paced(self.recording.times_s, stop, realtime=self.pace):
            yield Message(k, t, wall_clock(), poses[k])


# --------------------------------------------------------------------------- simulation
@dataclass(frozen=True, eq=False)
class InsertionPath:
    """A needle insertion: the tip's position (image coordinates, mm) over time, and the pivot.

    The needle turns about ``pivot_mm`` (the skin entry): its direction is from the pivot to the
    tip once the tip is past it, the planned direction before.

    Attributes
    ----------
    times_s
        ``(K,)`` increasing sample times.
    tips_mm
        ``(K, 3)`` tip positions at those times (linear in between).
    pivot_mm
        The entry point the needle turns about.
    planned_direction
        Unit vector of the planned trajectory.
    """

    times_s: np.ndarray
    tips_mm: np.ndarray
    pivot_mm: np.ndarray
    planned_direction: np.ndarray

    @property
    def duration_s(self) -> float:
        """Time from the first to the last sample."""
        return float(self.times_s[-1] - self.times_s[0])

    def at(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Tip position and needle direction (handle -> tip, unit) at ``t_s``."""
        tip = np.array([np.interp(t_s, self.times_s, self.tips_mm[:, k]) for k in range(3)])
        rel = tip - self.pivot_mm
        depth = float(rel @ self.planned_direction)
        if depth < 5.0:  # not yet (well) in the skin: the planned direction
            return tip, self.planned_direction.copy()
        return tip, rel / float(np.linalg.norm(rel))


def needle_insertion(
    entry_mm: npt.ArrayLike,
    target_mm: npt.ArrayLike,
    *,
    speed_mm_s: float = 8.0,
    approach_mm: float = 10.0,
    dwell_s: float = 1.5,
    deviation_mm: npt.ArrayLike | None = None,
    deviation_at: float = 0.7,
    deviation_width: float = 0.12,
    step_s: float = 0.02,
) -> InsertionPath:
    """A steady insertion from ``approach_mm`` outside the entry to the target, then a dwell.

    Parameters
    ----------
    entry_mm, target_mm
        The planned trajectory (image coordinates).
    speed_mm_s
        Insertion speed.
    approach_mm
        The tip starts this far outside the entry, on the planned line.
    dwell_s
        Time the tip rests at the target at the end.
    deviation_mm
        A lateral offset (3-vector, mm) the hand drifts to and back from: a Gaussian bump
        centred ``deviation_at`` of the way from entry to target, ``deviation_width`` wide
        (fractions of the path), zero at both ends.
    step_s
        Sampling of the path.
    """
    entry = np.asarray(entry_mm, dtype=np.float64)
    target = np.asarray(target_mm, dtype=np.float64)
    d = target - entry
    length = float(np.linalg.norm(d))
    if length < 1e-6:
        raise InputError("entry and target coincide: no insertion path")
    if not speed_mm_s > 0:
        raise InputError(f"the insertion speed must be > 0 mm/s, got {speed_mm_s}")
    d /= length
    travel = length + approach_mm
    move_s = travel / speed_mm_s
    times = np.arange(0.0, move_s + dwell_s + step_s / 2, step_s)
    s = np.minimum(times * speed_mm_s, travel) - approach_mm  # depth past the entry
    tips = entry + s[:, None] * d
    if deviation_mm is not None:
        dev = np.asarray(deviation_mm, dtype=np.float64)
        dev = dev - (dev @ d) * d  # lateral only
        u = np.clip(s / length, 0.0, 1.0)
        bump = np.exp(-0.5 * ((u - deviation_at) / deviation_width) ** 2)
        bump *= np.clip(u / 0.1, 0, 1) * np.clip((1.0 - u) / 0.1, 0, 1)  # zero at entry and target
        tips = tips + bump[:, None] * dev
    return InsertionPath(times, tips, entry, d)


def _frame_along(v: np.ndarray) -> np.ndarray:
    """An orthonormal frame (columns) whose first axis is ``v`` (unit), its roll fixed by a helper axis."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(v[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(v, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(v, e1)
    return np.column_stack([v, e1, e2])


def _small_rotation(rotvec: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-15:
        return np.eye(3)
    k = rotvec / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * (kx @ kx)


class SimulatedTracker(Source):
    """A tracked needle following an :class:`InsertionPath`, as a tracker with jitter reports it.

    Each pose is the needle's true pose mapped into tracker coordinates by the *true* patient
    registration (``tracker_from_image``), then perturbed: a rotation of ``jitter_deg`` RMS and a
    translation of ``jitter_mm`` RMS (3D) at the marker, independently per pose (optical
    trackers: about 0.1-0.3 mm). The navigation, which only knows the *estimated* registration
    (fiducials with FLE), therefore sees the tip with the registration's error plus the jitter;
    the truth rides along as the ``true_tip_mm`` result.

    Parameters
    ----------
    path
        The tip's course in image coordinates.
    tracker_from_image
        The true image-to-tracker transform.
    tool
        The needle's tip offset and axis in tool coordinates.
    rate_hz
        Poses per second.
    jitter_mm, jitter_deg
        RMS 3D translation and rotation noise per pose.
    occlusions_s
        ``(start, end)`` windows (s) in which no pose is sent (the marker out of view).
    freezes_s
        ``(start, end)`` windows in which the last pose is re-sent unchanged (a stuck tracker).
    pace
        Release poses at their times (True) or as fast as pulled; occlusions and freezes always
        take their real duration, so a watchdog sees them.
    seed
        Of the jitter.
    """

    provides = (TRUE_TIP, SIM_FAULT)

    def __init__(
        self,
        path: InsertionPath,
        tracker_from_image: np.ndarray,
        tool: ToolCalibration,
        *,
        rate_hz: float = 40.0,
        jitter_mm: float = 0.2,
        jitter_deg: float = 0.05,
        occlusions_s: Sequence[tuple[float, float]] = (),
        freezes_s: Sequence[tuple[float, float]] = (),
        pace: bool = True,
        seed: int = 0,
        name: str = "simulated-tracker",
    ) -> None:
        super().__init__(name, realtime=False)
        if not (math.isfinite(rate_hz) and 0 < rate_hz <= 1000):
            raise InputError(f"the tracker rate must be in (0, 1000] Hz, got {rate_hz}")
        for what, v in (("jitter_mm", jitter_mm), ("jitter_deg", jitter_deg)):
            if not (math.isfinite(v) and v >= 0):
                raise InputError(f"{what} must be >= 0, got {v}")
        self.path = path
        self.tracker_from_image = np.asarray(tracker_from_image, dtype=np.float64)
        self.tool = tool
        self.rate_hz = float(rate_hz)
        self.jitter_mm = float(jitter_mm)
        self.jitter_deg = float(jitter_deg)
        self.occlusions_s = tuple((float(a), float(b)) for a, b in occlusions_s)
        self.freezes_s = tuple((float(a), float(b)) for a, b in freezes_s)
        self.pace = pace
        self.seed = seed
        self.times_s = np.arange(0.0, path.duration_s + 1e-9, 1.0 / self.rate_hz)

    @property
    def n_frames(self) -> int:
        """Poses sent (occluded ones excluded)."""
        return int(sum(1 for t in self.times_s if not self._in(t, self.occlusions_s)))

    def metadata(self) -> dict[str, Any]:
        """The simulation's settings."""
        return {
            "source": "simulated-tracker",
            "rate_hz": self.rate_hz,
            "jitter_mm": self.jitter_mm,
            "jitter_deg": self.jitter_deg,
            "occlusions_s": [list(w) for w in self.occlusions_s],
            "freezes_s": [list(w) for w in self.freezes_s],
            "seed": self.seed,
        }

    @staticmethod
    def _in(t: float, windows: Sequence[tuple[float, float]]) -> bool:
        return any(a <= t < b for a, b in windows)

    def true_pose(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """The needle's true tool-to-tracker pose at ``t_s`` and its true tip (image coordinates)."""
        tip, direction = self.path.at(t_s)
        # tool axis (tip -> handle) onto -direction, roll fixed
        r = _frame_along(-direction) @ _frame_along(self.tool.axis).T  # type: ignore[arg-type]
        image_from_tool = np.eye(4)
        image_from_tool[:3, :3] = r
        image_from_tool[:3, 3] = tip - r @ self.tool.tip_offset_mm
        return self.tracker_from_image @ image_from_tool, tip

    def messages(self, stop: threading.Event) -> Iterator[Message]:
        """The poses: paced, with the occlusions' silences and the freezes' repeats in real time."""
        rng = np.random.default_rng(self.seed)
        start = released = wall_clock()
        last: np.ndarray | None = None
        sent = 0
        period = 1.0 / self.rate_hz
        for t in self.times_s:
            if stop.is_set():
                return
            faulty = self._in(t, self.occlusions_s) or self._in(t, self.freezes_s)
            # paced: on the schedule; fast: at once, but a fault's samples one period apart
            due = start + t if self.pace else (released + period if faulty else None)
            if due is not None and due > wall_clock() and stop.wait(due - wall_clock()):
                return
            released = wall_clock()
            if self._in(t, self.occlusions_s):
                continue
            pose, tip = self.true_pose(float(t))
            frozen = self._in(t, self.freezes_s) and last is not None
            if frozen and last is not None:
                pose = last
            else:
                noisy = pose.copy()
                noisy[:3, :3] = (
                    _small_rotation(rng.normal(scale=math.radians(self.jitter_deg) / math.sqrt(3), size=3))
                    @ pose[:3, :3]
                )
                noisy[:3, 3] += rng.normal(scale=self.jitter_mm / math.sqrt(3), size=3)
                pose = noisy
            last = pose
            pose.setflags(write=False)
            yield Message(sent, float(t), wall_clock(), pose, {TRUE_TIP: tip, SIM_FAULT: "frozen" if frozen else ""})
            sent += 1


# ------------------------------------------------------------------------------ watching
class WatchedPoseSource(Source):
    """Any pose source, watched: a :class:`~igikit.workflows.surgery.watchdog.ToolWatchdog` learns
    of each pose the moment it arrives.

    A *live* source (a tracker, OpenIGTLink, a paced replay or simulation) is read on a thread of
    its own and its poses are queued without bound (a navigation update is far faster than a
    tracker: the queue only absorbs a slow moment, such as the first write of a session file),
    so a busy consumer can neither lose a pose nor look like a lost tool. A source pulled as fast
    as possible (``live=False``) is read on demand, and the watchdog's clock stops while the
    consumer is busy (:meth:`~igikit.workflows.surgery.watchdog.ToolWatchdog.pause`).

    Each pose carries the :data:`STREAM_STATE` the watchdog was in after it (``ok``, ``frozen``).
    When the inner source ends, the watchdog is told (:meth:`ToolWatchdog.end`): the end of a
    recording is no lost tool.

    Parameters
    ----------
    inner
        The pose source (iterated directly; its own ``realtime`` flag plays no part).
    watchdog
        The started watchdog.
    live
        Whether poses arrive on their own clock.
    """

    def __init__(self, inner: Source, watchdog: ToolWatchdog, *, live: bool = True) -> None:
        super().__init__(inner.name, realtime=False)
        self.inner = inner
        self.watchdog = watchdog
        self.live = live
        self.provides = (*inner.provides, STREAM_STATE)

    @property
    def n_frames(self) -> int | None:
        """As the inner source."""
        return self.inner.n_frames

    def metadata(self) -> dict[str, Any]:
        """As the inner source."""
        return self.inner.metadata()

    def _watched(self, m: Message) -> Message:
        pose = np.asarray(m.frame, dtype=np.float64)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise InputError(f"pose {m.frame_id} is not a finite 4x4 matrix (shape {pose.shape})")
        state = self.watchdog.pose(pose, m.available_wall_s, m.frame_id)
        return m.with_results(**{STREAM_STATE: state})

    def messages(self, stop: threading.Event) -> Iterator[Message]:
        """The inner source's poses, in order, each noted by the watchdog on arrival."""
        if self.live:
            yield from self._threaded(stop)
            return
        try:
            for m in self.inner.messages(stop):
                watched = self._watched(m)
                self.watchdog.pause()
                yield watched
                self.watchdog.resume()
            self.watchdog.end()
        finally:
            self.watchdog.resume()

    def _threaded(self, stop: threading.Event) -> Iterator[Message]:
        box: queue.SimpleQueue[Message | BaseException | None] = queue.SimpleQueue()

        def produce() -> None:
            try:
                for m in self.inner.messages(stop):
                    box.put(self._watched(m))
                self.watchdog.end()
            except BaseException as exc:  # re-raised on the engine's source thread
                box.put(exc)
            finally:
                box.put(None)

        thread = threading.Thread(target=produce, name="igikit-pose-reader", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    item = box.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():
                        return
                    continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            thread.join(timeout=2.0)


__all__ = [
    "SIM_FAULT",
    "STREAM_STATE",
    "TRUE_TIP",
    "InsertionPath",
    "PoseRecording",
    "PoseReplaySource",
    "SimulatedTracker",
    "WatchedPoseSource",
    "needle_insertion",
    "read_pose_recording",
]
