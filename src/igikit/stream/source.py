"""Sources: where frames enter a graph (a file replay here; a synthetic phantom and, later,
OpenIGTLink beside it).

A source is an iterator of :class:`~igikit.stream.message.Message` run by the engine in its own
thread. It decides *when* each frame becomes available: a real-time source (a scanner, a paced
replay) releases frames on its own clock whether or not the graph keeps up, so the engine applies
latest-frame-wins; a source with ``realtime=False`` is pulled as fast as the graph consumes, and
no frame is dropped.

A new source (OpenIGTLink, a DICOM push) subclasses :class:`Source` and implements
:meth:`Source.messages`: block until the next frame arrives, stamp it with :data:`wall_clock`,
yield it, and return when ``stop`` is set.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from igikit.core.image import Image
from igikit.errors import InputError
from igikit.io.trackrad import CineCase
from igikit.stream.message import Message, wall_clock
from igikit.stream.operator import FRAME


class Source(ABC):
    """Where frames come from.

    Parameters
    ----------
    name
        Name in the graph; default: the class name.
    realtime
        True: frames arrive on the source's own clock (the engine drops frames it cannot keep up
        with, counting them); False: the engine pulls the next frame when it is ready.
    """

    #: Result names this source provides besides ``"frame"`` (e.g. a phantom's ground truth).
    provides: tuple[str, ...] = ()

    def __init__(self, name: str | None = None, *, realtime: bool = True) -> None:
        self.name = name or type(self).__name__
        self.realtime = realtime

    @property
    def outputs(self) -> tuple[str, ...]:
        """Everything a message from this source carries: ``"frame"`` plus :attr:`provides`."""
        return (FRAME, *self.provides)

    @property
    def n_frames(self) -> int | None:
        """How many frames the source will deliver, when known (for progress bars)."""
        return None

    def metadata(self) -> dict[str, Any]:
        """Facts about the stream a recorder stores once (spacing, origin, rate, description)."""
        return {"source": self.name}

    def warm_up_message(self) -> Message | None:
        """A synthetic message shaped like this source's frames, for the operators' warm-up.

        Frame id -1, a frame of the stream's shape and dtype that is *not* one of its frames (see
        :func:`synthetic_frame`), and every result in :attr:`provides`. None (the default) when
        the source does not know its frames before the first one arrives: the graph then runs
        without a warm-up (see :meth:`igikit.stream.operator.Operator.warm_up`).
        """
        return None

    @abstractmethod
    def messages(self, stop: threading.Event) -> Iterator[Message]:
        """Yield messages as frames become available; return when done or when ``stop`` is set."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, realtime={self.realtime})"


def synthetic_frame(shape: tuple[int, ...], dtype: npt.DTypeLike, *, seed: int = 0) -> np.ndarray:
    """A frame for warm-ups: smooth blobs and a little noise, in the range an MR frame of ``dtype`` has.

    Structure matters: optical flow, template matching and thresholds take their usual paths on
    it, where a constant frame would take shortcuts.
    """
    rng = np.random.default_rng(seed)
    h, w = int(shape[0]), int(shape[1])
    rows, cols = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    img = np.zeros((h, w))
    for _ in range(8):
        cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.04, 0.15) * min(h, w)
        img += np.outer(np.exp(-0.5 * ((rows - cy) / s) ** 2), np.exp(-0.5 * ((cols - cx) / s) ** 2))
    img = img / max(float(img.max()), 1e-12) + rng.normal(0.0, 0.02, (h, w))
    kind = np.dtype(dtype)
    top = min(1000.0, float(np.iinfo(kind).max)) * 0.9 if kind.kind in "iu" else 1000.0
    out = np.clip(img * top, 0, top).astype(kind)
    return np.broadcast_to(out.reshape(h, w, *([1] * (len(shape) - 2))), tuple(shape)).copy()


def paced(times_s: Iterable[float], stop: threading.Event, *, realtime: bool) -> Iterator[tuple[int, float]]:
    """Yield ``(k, t_k)`` with frame ``k`` released at ``start + (t_k - t_0)`` when ``realtime``.

    The schedule is anchored at the first release, not at the previous one, so a late release
    (a busy machine) does not shift every later frame. Returns early when ``stop`` is set.
    """
    start = wall_clock()
    t0: float | None = None
    for k, t in enumerate(times_s):
        if stop.is_set():
            return
        t0 = float(t) if t0 is None else t0
        if realtime:
            delay = start + (float(t) - t0) - wall_clock()
            if delay > 0 and stop.wait(delay):
                return
        yield k, float(t)


class ReplaySource(Source):
    """Replay a recorded series (an :class:`Image` series or a TrackRAD :class:`CineCase`).

    Frame ``k`` is released at ``start + t_k`` (its acquisition time relative to the first frame),
    so the graph sees the scanner's real rhythm; with ``realtime=False`` frames are released as
    fast as the graph consumes them.

    Parameters
    ----------
    series
        The recording; an :class:`Image` must be a series (``frame_times_s`` set).
    realtime
        Release at the native frame rate (True) or as fast as possible (False).
    max_frames
        Replay only the first ``max_frames`` frames.
    name
        Name in the graph.
    """

    def __init__(
        self,
        series: Image | CineCase,
        *,
        realtime: bool = True,
        max_frames: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name, realtime=realtime)
        if isinstance(series, CineCase):
            frames = np.moveaxis(series.frames, 2, 0)
            times = series.frame_times_s()
            spacing: tuple[float, ...] = tuple(series.pixel_spacing_mm)
            origin: tuple[float, ...] = (0.0,) * len(spacing)
            self._meta: dict[str, Any] = {"case_id": series.case_id}
            rate_known = series.frame_rate_hz is not None
        elif isinstance(series, Image):
            if not series.is_series or series.frame_times_s is None:
                raise InputError("replay needs a series (frames over time), got a single image")
            frames, times = series.array, series.frame_times_s
            rate_known = True
            spacing, origin = series.spacing_mm, series.origin_mm
            self._meta = {k: v for k, v in series.meta.items() if isinstance(v, str | int | float)}
        else:
            raise InputError(f"cannot replay a {type(series).__name__}; give an Image series or CineCase")
        if max_frames is not None:
            if max_frames < 1:
                raise InputError(f"max_frames must be at least 1, got {max_frames}")
            frames, times = frames[:max_frames], times[:max_frames]
        # One contiguous read-only copy up front: no per-frame copy in the real-time loop, and no
        # operator can change the recording in place.
        self._frames = np.ascontiguousarray(frames)
        self._frames.setflags(write=False)
        self._times = np.asarray(times, dtype=np.float64)
        self.pixel_spacing_mm = spacing
        self.origin_mm = origin
        self._rate_known = rate_known

    @property
    def n_frames(self) -> int:
        """Number of frames this replay delivers."""
        return int(self._frames.shape[0])

    @property
    def frame_rate_hz(self) -> float | None:
        """Native frame rate (median interval); None for a single frame or when the source did not say."""
        if self._times.size < 2 or not self._rate_known:
            return None
        return float(1.0 / np.median(np.diff(self._times)))

    def metadata(self) -> dict[str, Any]:
        """Spacing (mm), origin (mm), frame rate (Hz), frame count and the source description."""
        return {
            **self._meta,
            "source": f"replay:{self.name}",
            "pixel_spacing_mm": list(self.pixel_spacing_mm),
            "origin_mm": list(self.origin_mm),
            "frame_rate_hz": self.frame_rate_hz or float("nan"),
            "n_frames": self.n_frames,
            "realtime": self.realtime,
        }

    def warm_up_message(self) -> Message:
        """A synthetic frame of the replay's shape and dtype (see :meth:`Source.warm_up_message`)."""
        return Message(-1, 0.0, wall_clock(), synthetic_frame(self._frames.shape[1:], self._frames.dtype))

    def messages(self, stop: threading.Event) -> Iterator[Message]:
        """Yield the frames on their schedule (see :func:`paced`)."""
        for k, t in paced(self._times, stop, realtime=self.realtime):
            yield Message(k, t, wall_clock(), self._frames[k])
