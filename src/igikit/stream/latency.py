"""Latency statistics of a stream run and the report a person reads after it."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one stage's latencies, in milliseconds.

    Percentiles use NumPy's default (linear interpolation); with fewer than 100 samples p99 is
    close to the maximum. All values are NaN when there are no samples.
    """

    n: int
    median_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def from_seconds(cls, samples_s: Sequence[float] | np.ndarray) -> LatencyStats:
        """Summarise latencies given in seconds."""
        ms = np.asarray(samples_s, dtype=np.float64) * 1e3
        if ms.size == 0:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan)
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return cls(int(ms.size), float(p50), float(p95), float(p99), float(ms.max()), float(ms.mean()))


@dataclass(frozen=True)
class LatencyReport:
    """What a stream run achieved: latencies per operator and end to end, drops, misses, losses.

    ``frames_received == frames_processed + frames_dropped`` always holds: a frame is either
    processed or counted as dropped (latest-frame-wins), never lost silently.

    Parameters
    ----------
    per_operator
        Compute time of each operator (ordered as executed), by name.
    end_to_end
        From the frame's availability (:attr:`Message.available_wall_s`) to the completion of the
        last operator.
    frames_received, frames_processed, frames_dropped
        Frame counts.
    deadline_ms, deadline_misses
        The graph's end-to-end deadline (None: none) and how many frames exceeded it.
    source_lost_events
        How many times no frame arrived within the source timeout.
    duration_s
        Wall time of the whole run.
    realtime
        Whether the source ran on its own clock (drops possible) or was pulled as fast as possible.
    warm_up_ms
        Time the operators' warm-up took before the source started (0: none ran).
    """

    per_operator: dict[str, LatencyStats]
    end_to_end: LatencyStats
    frames_received: int
    frames_processed: int
    frames_dropped: int
    deadline_ms: float | None = None
    deadline_misses: int = 0
    source_lost_events: int = 0
    duration_s: float = 0.0
    realtime: bool = True
    warm_up_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (latencies in ms)."""
        return asdict(self)

    def _rows(self) -> list[tuple[str, LatencyStats]]:
        return [*self.per_operator.items(), ("end-to-end", self.end_to_end)]

    def summary_line(self) -> str:
        """Counts in one sentence: frames, drops, deadline misses, source losses."""
        deadline = (
            f"deadline {self.deadline_ms:g} ms missed {self.deadline_misses} times"
            if self.deadline_ms is not None
            else "no deadline set"
        )
        mode = "real time" if self.realtime else "as fast as possible"
        warm = f"; operators warmed up in {self.warm_up_ms:.0f} ms first" if self.warm_up_ms > 0 else ""
        return (
            f"{self.frames_received} frames received, {self.frames_processed} processed, "
            f"{self.frames_dropped} dropped; {deadline}; source lost {self.source_lost_events} times; "
            f"{self.duration_s:.1f} s, {mode}{warm}"
        )

    def as_table(self) -> str:
        """The latency table as plain text (one row per operator, then end-to-end)."""
        out = io.StringIO()
        width = max(len("end-to-end"), *(len(name) for name in self.per_operator)) if self.per_operator else 10
        header = f"{'stage':<{width}} {'n':>6} {'median ms':>10} {'p95 ms':>9} {'p99 ms':>9} {'max ms':>9}"
        out.write(header + "\n" + "-" * len(header) + "\n")
        for name, s in self._rows():
            out.write(
                f"{name:<{width}} {s.n:>6} {s.median_ms:>10.3f} {s.p95_ms:>9.3f} {s.p99_ms:>9.3f} {s.max_ms:>9.3f}\n"
            )
        out.write(self.summary_line() + "\n")
        return out.getvalue()

    def as_rich_table(self) -> Any:
        """The latency rows as a :class:`rich.table.Table` (print :meth:`summary_line` beside it)."""
        from rich.table import Table

        table = Table(title="stream latency")
        table.add_column("stage")
        for col in ("n", "median ms", "p95 ms", "p99 ms", "max ms"):
            table.add_column(col, justify="right")
        for name, s in self._rows():
            style = "bold" if name == "end-to-end" else None
            table.add_row(
                name,
                str(s.n),
                *(f"{v:.3f}" for v in (s.median_ms, s.p95_ms, s.p99_ms, s.max_ms)),
                style=style,
            )
        return table
