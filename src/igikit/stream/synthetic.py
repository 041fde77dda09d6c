"""A synthetic source: frames whose motion is known exactly, for tests, demos and benchmarks."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from igikit.errors import InputError
from igikit.stream.message import Message, wall_clock
from igikit.stream.source import Source, paced

#: Result name under which each synthetic message carries its true rigid shift ``(dx, dy)`` (mm).
TRUTH_SHIFT = "truth_shift_mm"


class SyntheticSource(Source):
    """Frames of a few Gaussian blobs translating together along y with a breathing-like motion.

    The content of frame ``k`` depends only on ``k`` (and ``seed``), so a test can regenerate any
    frame with :meth:`frame` and compare it bit for bit with what a recorder stored. The true shift
    ``(dx, dy)`` in mm, relative to frame 0, travels with each message as
    ``results["truth_shift_mm"]``: ``dy = amplitude_mm * (1 - cos(2 pi t / period_s)) / 2``
    (end-exhale at ``t = 0``), ``dx = 0``.

    Parameters
    ----------
    shape
        Frame size ``(H, W)`` in pixels.
    n_frames
        Frames to deliver; None: until stopped.
    rate_hz
        Acquisition rate: frame ``k`` is acquired at ``k / rate_hz`` s.
    realtime
        Release frames at ``rate_hz`` (True) or as fast as the graph consumes them (False).
    pixel_spacing_mm
        ``(dx, dy)`` pixel size.
    amplitude_mm, period_s
        Peak-to-peak amplitude and period of the motion.
    noise
        Standard deviation of added Gaussian noise (blob peaks are 1).
    dtype
        Pixel type of the frames.
    seed
        Seed for the blob layout and the noise.
    """

    provides = (TRUTH_SHIFT,)

    def __init__(
        self,
        shape: tuple[int, int] = (128, 128),
        *,
        n_frames: int | None = 100,
        rate_hz: float = 10.0,
        realtime: bool = True,
        pixel_spacing_mm: tuple[float, float] = (1.0, 1.0),
        amplitude_mm: float = 10.0,
        period_s: float = 4.0,
        noise: float = 0.0,
        dtype: npt.DTypeLike = np.float32,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(name, realtime=realtime)
        if len(shape) != 2 or min(shape) < 8:
            raise InputError(f"synthetic frames need a 2D shape of at least 8 x 8, got {shape}")
        if not rate_hz > 0 or not period_s > 0:
            raise InputError(f"rate_hz and period_s must be positive, got {rate_hz}, {period_s}")
        if n_frames is not None and n_frames < 1:
            raise InputError(f"n_frames must be at least 1, got {n_frames}")
        self.shape = (int(shape[0]), int(shape[1]))
        self._n = n_frames
        self.rate_hz = float(rate_hz)
        self.pixel_spacing_mm = (float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1]))
        self.amplitude_mm = float(amplitude_mm)
        self.period_s = float(period_s)
        self.noise = float(noise)
        self.dtype = np.dtype(dtype)
        self.seed = int(seed)
        rng = np.random.default_rng(seed)
        h, w = self.shape
        # Blobs well inside the frame so the motion never pushes content out of view.
        self._centres = np.column_stack([rng.uniform(0.3 * h, 0.7 * h, 6), rng.uniform(0.2 * w, 0.8 * w, 6)])
        self._sigmas = rng.uniform(0.03, 0.08, 6) * min(h, w)
        self._rows = np.arange(h, dtype=np.float64)
        self._cols = np.arange(w, dtype=np.float64)

    @property
    def n_frames(self) -> int | None:
        """Frames to deliver (None: endless)."""
        return self._n

    def truth_shift_mm(self, t_s: float) -> tuple[float, float]:
        """True rigid shift ``(dx, dy)`` (mm) of the content at time ``t_s`` relative to ``t = 0``."""
        dy = self.amplitude_mm * (1.0 - np.cos(2.0 * np.pi * t_s / self.period_s)) / 2.0
        return (0.0, float(dy))

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` exactly as :meth:`messages` delivers it."""
        _, dy_mm = self.truth_shift_mm(k / self.rate_hz)
        shift_rows = dy_mm / self.pixel_spacing_mm[1]
        img = np.zeros(self.shape, dtype=np.float64)
        # Separable Gaussians: an outer product per blob, cheap enough for kHz benchmarks.
        for (cy, cx), s in zip(self._centres, self._sigmas, strict=True):
            gy = np.exp(-0.5 * ((self._rows - cy - shift_rows) / s) ** 2)
            gx = np.exp(-0.5 * ((self._cols - cx) / s) ** 2)
            img += np.outer(gy, gx)
        if self.noise > 0:
            img += np.random.default_rng((self.seed, k)).normal(0.0, self.noise, self.shape)
        out = img.astype(self.dtype)
        out.setflags(write=False)
        return out

    def metadata(self) -> dict[str, Any]:
        """Spacing, rate and the motion model, so a recording states its ground truth."""
        return {
            "source": f"synthetic:{self.name}",
            "pixel_spacing_mm": list(self.pixel_spacing_mm),
            "frame_rate_hz": self.rate_hz,
            "amplitude_mm": self.amplitude_mm,
            "period_s": self.period_s,
            "noise": self.noise,
            "seed": self.seed,
            "realtime": self.realtime,
        }

    def warm_up_message(self) -> Message:
        """Frame 0 (synthetic anyway) as frame -1, with no shift (see :meth:`Source.warm_up_message`)."""
        return Message(-1, 0.0, wall_clock(), self.frame(0), {TRUTH_SHIFT: (0.0, 0.0)})

    def messages(self, stop: threading.Event) -> Iterator[Message]:
        """Yield frames acquired at ``k / rate_hz``, paced when :attr:`realtime`."""
        times = _acquisition_times(self._n, self.rate_hz)
        for k, t in paced(times, stop, realtime=self.realtime):
            frame = self.frame(k)
            # Stamped after rendering: the frame "arrives" once it exists.
            yield Message(k, t, wall_clock(), frame, {TRUTH_SHIFT: self.truth_shift_mm(t)})


def _acquisition_times(n: int | None, rate_hz: float) -> Iterator[float]:
    counter = range(n) if n is not None else itertools.count()
    return (k / rate_hz for k in counter)
