"""Events the engine emits while a stream runs (a lost source, a missed deadline, a dropped frame).

Later workflows subscribe to them: a ``source_lost`` event is what holds the beam or stops a
sonication when images stop arriving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EventKind = Literal["source_lost", "source_restored", "deadline_miss", "frame_dropped"]


@dataclass(frozen=True)
class StreamEvent:
    """Something a supervisor must know about the stream itself (not about the anatomy).

    Parameters
    ----------
    kind
        ``"source_lost"``: no frame arrived within the graph's source timeout;
        ``"source_restored"``: frames arrive again after a loss; ``"deadline_miss"``: a frame's
        end-to-end latency exceeded the graph's deadline; ``"frame_dropped"``: a newer frame
        replaced one that was never processed (latest-frame-wins).
    wall_time_s
        :data:`igikit.stream.message.wall_clock` time at which the engine noticed.
    frame_id
        The frame concerned; for ``source_lost``, the last frame that did arrive (-1: none yet).
    detail
        One sentence with the numbers behind the event.
    """

    kind: EventKind
    wall_time_s: float
    frame_id: int
    detail: str
