"""The unit that flows through a stream graph: one frame and what operators learned from it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

#: The engine's wall clock (s): monotonic and high-resolution, so differences are true elapsed
#: time even if the system clock is adjusted. Only differences are meaningful; recorders convert
#: it to Unix time with one offset taken at session start.
wall_clock = time.perf_counter


@dataclass(frozen=True, eq=False)
class Message:
    """One frame on its way through a graph.

    Operators never modify a message: they return a new one with more results
    (:meth:`with_results`), so every operator can be tested alone and a sink sees exactly what
    each step produced.

    Parameters
    ----------
    frame_id
        Index of the frame in its source (0, 1, ...); gaps mean frames were dropped upstream.
    acquisition_time_s
        When the frame was acquired, on the stream's own clock (s): the scanner's frame time for
        a replay, the device timestamp for a live source.
    available_wall_s
        :data:`wall_clock` time at which the frame became available to igikit; end-to-end
        latency is measured from here.
    frame
        The acquired image (read-only array). Operators add derived images as results.
    results
        Read-only mapping of what operators added, by name (``"shift_mm"``, ``"response"``...).

    Examples
    --------
    >>> import numpy as np
    >>> m = Message(0, 0.0, wall_clock(), np.zeros((2, 2)))
    >>> m.with_results(shift_mm=(0.5, -1.0)).results["shift_mm"]
    (0.5, -1.0)
    """

    frame_id: int
    acquisition_time_s: float
    available_wall_s: float
    frame: np.ndarray
    results: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.results, MappingProxyType):
            object.__setattr__(self, "results", MappingProxyType(dict(self.results)))

    def with_results(self, **results: Any) -> Message:
        """A new message holding this one's results plus ``results`` (same names replace)."""
        return replace(self, results={**self.results, **results})

    def merged(self, *others: Message) -> Message:
        """This message with the results of ``others`` (branches of the same frame) added.

        Raises
        ------
        ValueError
            When a message belongs to another frame: merging would mix frames.
        """
        results = dict(self.results)
        for other in others:
            if other.frame_id != self.frame_id:
                raise ValueError(f"cannot merge frame {other.frame_id} into frame {self.frame_id}")
            results.update(other.results)
        return replace(self, results=results)
