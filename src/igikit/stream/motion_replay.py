"""The replay application: a recorded cine through normalisation and rigid motion estimation."""

from __future__ import annotations

from collections.abc import Sequence

from igikit.stream.application import Application
from igikit.stream.operator import Operator
from igikit.stream.operators import (
    NORMALISED,
    RESPONSE,
    SHIFT_MM,
    CollectResults,
    NormaliseIntensity,
    PhaseCorrelationMotion,
)
from igikit.stream.recorder import Recorder
from igikit.stream.source import Source


class MotionReplay(Application):
    """Frames -> intensity normalisation -> phase-correlation shift against frame 0 -> sinks.

    The result is a breathing-like displacement trace (``shift_mm`` per frame) and the latency of
    each step; with a recorder, a session file holding every frame, shift and response.

    Parameters
    ----------
    source
        A replay or live source of 2D frames.
    pixel_spacing_mm
        ``(dx, dy)``; default: the source's ``metadata()["pixel_spacing_mm"]`` (else 1 mm).
    recorder
        Records frames and results (the normalised image is not recorded: it is derived).
    sinks
        More sinks fed with the motion results (a progress display, a network sender...).
    deadline_ms, source_timeout_s, log_drops
        See :class:`~igikit.stream.application.Application`.
    """

    def __init__(
        self,
        source: Source,
        *,
        pixel_spacing_mm: tuple[float, ...] | None = None,
        recorder: Recorder | None = None,
        sinks: Sequence[Operator] = (),
        deadline_ms: float | None = None,
        source_timeout_s: float | None = None,
        log_drops: bool = False,
    ) -> None:
        super().__init__(deadline_ms=deadline_ms, source_timeout_s=source_timeout_s, log_drops=log_drops)
        self.source = source
        spacing = pixel_spacing_mm or source.metadata().get("pixel_spacing_mm") or (1.0, 1.0)
        self.pixel_spacing_mm = tuple(float(s) for s in spacing)
        self.recorder = recorder
        self.sinks = tuple(sinks)
        self.trace = CollectResults((SHIFT_MM, RESPONSE), name="trace")

    def compose(self) -> None:
        """source -> normalise -> motion -> (recorder, trace, sinks)."""
        normalise = NormaliseIntensity(name="normalise")
        motion = PhaseCorrelationMotion(self.pixel_spacing_mm, image_key=NORMALISED, name="motion")
        self.add_flow(self.source, normalise)
        self.add_flow(normalise, motion)
        if self.recorder is not None:
            self.add_flow(motion, self.recorder)
        self.add_flow(motion, self.trace)
        for sink in self.sinks:
            self.add_flow(motion, sink)
