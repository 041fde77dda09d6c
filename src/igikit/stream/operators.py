"""Building-block operators: a no-op (for overhead measurements), intensity normalisation, rigid
motion by phase correlation, and a sink that keeps results in memory."""

from __future__ import annotations

from typing import Any

import numpy as np

from igikit.errors import InputError
from igikit.stream.message import Message
from igikit.stream.operator import FRAME, Operator, OperatorSpec, Sink

#: Result names the operators below add.
NORMALISED = "normalised"
SHIFT_MM = "shift_mm"
RESPONSE = "response"


class NoOp(Operator):
    """Passes every message on unchanged: the cost of the engine itself, nothing else."""

    def compute(self, message: Message) -> Message:
        """Return ``message``."""
        return message


class NormaliseIntensity(Operator):
    """Map each frame's robust intensity range to [0, 1] (float32), as ``results["normalised"]``.

    MR intensities have no absolute scale and drift with coil sensitivity, so each frame is scaled
    between its own ``low`` and ``high`` percentiles and clipped; the acquired frame is untouched.

    Parameters
    ----------
    low_percentile, high_percentile
        Intensity percentiles mapped to 0 and 1.
    """

    def __init__(self, low_percentile: float = 1.0, high_percentile: float = 99.0, name: str | None = None) -> None:
        if not 0 <= low_percentile < high_percentile <= 100:
            raise InputError(f"need 0 <= low < high <= 100, got {low_percentile}, {high_percentile}")
        self.low_percentile, self.high_percentile = low_percentile, high_percentile
        super().__init__(name)

    def setup(self, spec: OperatorSpec) -> None:
        """Reads the frame, adds ``normalised``."""
        spec.input(FRAME)
        spec.output(NORMALISED)

    def compute(self, message: Message) -> Message:
        """Add the normalised frame."""
        frame = np.asarray(message.frame, dtype=np.float32)
        lo, hi = np.percentile(frame, [self.low_percentile, self.high_percentile])
        scale = 1.0 / (hi - lo) if hi > lo else 0.0  # a constant frame maps to 0, not to NaN
        out = np.clip((frame - np.float32(lo)) * np.float32(scale), 0.0, 1.0)
        return message.with_results(**{NORMALISED: out})

    def warm_up(self, message: Message) -> Message:
        """Normalise the synthetic frame (no state to protect)."""
        return self.compute(message)


class PhaseCorrelationMotion(Operator):
    """Rigid in-plane shift of every frame relative to the first, by phase correlation.

    The first frame processed becomes the reference; each later frame's translation ``(dx, dy)``
    in mm (columns, rows; positive = content moved right / down) is added as
    ``results["shift_mm"]`` with the correlation peak height as ``results["response"]`` (near 1:
    a clean shift; near 0: no reliable match). On a sagittal cine the ``dy`` trace is the
    superior-inferior breathing motion.

    Reference: Kuglin & Hines, "The phase correlation image alignment method", Proc. IEEE Int.
    Conf. Cybernetics and Society, 1975; OpenCV ``cv2.phaseCorrelate`` (Hann-windowed,
    sub-pixel peak by weighted centroid).

    Parameters
    ----------
    pixel_spacing_mm
        ``(dx, dy)`` pixel size, to report the shift in mm.
    image_key
        Result holding the image to register (``"normalised"``), or ``"frame"``.
    """

    def __init__(
        self,
        pixel_spacing_mm: tuple[float, ...] = (1.0, 1.0),
        *,
        image_key: str = NORMALISED,
        name: str | None = None,
    ) -> None:
        if len(pixel_spacing_mm) < 2 or min(pixel_spacing_mm[:2]) <= 0:
            raise InputError(f"pixel spacing must be two positive numbers, got {pixel_spacing_mm}")
        self.spacing = (float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1]))
        self.image_key = image_key
        self._reference: np.ndarray | None = None
        self._window: np.ndarray | None = None
        super().__init__(name)

    def setup(self, spec: OperatorSpec) -> None:
        """Reads ``image_key``, adds ``shift_mm`` and ``response``."""
        spec.input(self.image_key)
        spec.output(SHIFT_MM)
        spec.output(RESPONSE)

    def start(self) -> None:
        """Forget the reference: the next run registers against its own first frame."""
        self._reference = None

    def compute(self, message: Message) -> Message:
        """Add the shift (mm) of this frame relative to the reference frame."""
        import cv2

        image = message.frame if self.image_key == FRAME else message.results[self.image_key]
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2:
            raise InputError(f"phase correlation needs 2D frames, got shape {image.shape}")
        if self._reference is None:
            self._reference = image
            self._window = cv2.createHanningWindow(image.shape[::-1], cv2.CV_32F)
            return message.with_results(**{SHIFT_MM: (0.0, 0.0), RESPONSE: 1.0})
        (dx_px, dy_px), response = cv2.phaseCorrelate(self._reference, image, self._window)
        shift = (float(dx_px) * self.spacing[0], float(dy_px) * self.spacing[1])
        return message.with_results(**{SHIFT_MM: shift, RESPONSE: float(response)})

    def warm_up(self, message: Message) -> Message:
        """Correlate the synthetic frame with a shifted copy of itself; the reference stays unset."""
        import cv2

        image = message.frame if self.image_key == FRAME else message.results[self.image_key]
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2:
            return message
        window = cv2.createHanningWindow(image.shape[::-1], cv2.CV_32F)
        (dx_px, dy_px), response = cv2.phaseCorrelate(image, np.roll(image, 2, axis=0), window)
        shift = (float(dx_px) * self.spacing[0], float(dy_px) * self.spacing[1])
        return message.with_results(**{SHIFT_MM: shift, RESPONSE: float(response)})


class CollectResults(Sink):
    """Keeps chosen results of every processed frame in memory (traces for tests and summaries).

    Parameters
    ----------
    keys
        Result names to keep; ``frame_id`` and ``acquisition_time_s`` are always kept.
    """

    def __init__(self, keys: tuple[str, ...] = (), name: str | None = None) -> None:
        self.keys = tuple(keys)
        self.rows: list[dict[str, Any]] = []
        super().__init__(name)

    def setup(self, spec: OperatorSpec) -> None:
        """Reads ``keys``."""
        for key in self.keys:
            spec.input(key)

    def start(self) -> None:
        """Start a new trace."""
        self.rows = []

    def receive(self, message: Message) -> None:
        """Keep this frame's chosen results."""
        row = {"frame_id": message.frame_id, "acquisition_time_s": message.acquisition_time_s}
        row.update((key, message.results[key]) for key in self.keys)
        self.rows.append(row)

    def column(self, key: str) -> np.ndarray:
        """One collected result (or ``frame_id`` / ``acquisition_time_s``) as an array."""
        return np.asarray([row[key] for row in self.rows])
