"""Live progress of a gating run: frame, beam state, confidence and latency, on stderr.

On a terminal a ``rich`` progress line is redrawn every frame; elsewhere (a log file, CI) one
plain line is printed every ``every_s`` seconds of stream time, so a long replay is never silent.
"""

from __future__ import annotations

import sys

from igikit.stream.message import Message, wall_clock
from igikit.stream.operator import OperatorSpec, Sink
from igikit.workflows.mrgrt.operators import BEAM_ON, CONFIDENCE, FRAME_AGE_MS, GATE_REASON


class GatingProgress(Sink):
    """Shows the run's progress; counts beam-on decisions for a running duty cycle.

    Parameters
    ----------
    total
        Frames the source will deliver (for the bar), or None.
    every_s
        Stream time between two plain lines when stderr is not a terminal.
    """

    def __init__(self, total: int | None, *, every_s: float = 10.0, name: str = "progress") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.total = total
        self.every_s = every_s
        self.live = sys.stderr.isatty()
        self._progress = Progress(
            TextColumn("gating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not self.live,
        )
        self._task = self._progress.add_task("gating", total=total, state="")
        self.n = 0
        self.n_on = 0
        self._next_line_s = 0.0
        super().__init__(name)

    def setup(self, spec: OperatorSpec) -> None:
        """Reads the gating results."""
        for key in (BEAM_ON, CONFIDENCE, FRAME_AGE_MS, GATE_REASON):
            spec.input(key)

    def start(self) -> None:
        """Start drawing."""
        self.n = self.n_on = 0
        self._next_line_s = 0.0
        self._progress.start()

    def state_line(self, message: Message) -> str:
        """``beam ON | conf 0.97 | 12.3 ms | inside | duty 41 %`` for this frame."""
        r = message.results
        latency_ms = (wall_clock() - message.available_wall_s) * 1e3
        beam = "ON  " if r[BEAM_ON] else "HOLD"
        conf = float(r[CONFIDENCE])
        duty = 100.0 * self.n_on / max(self.n, 1)
        return (
            f"beam {beam} | conf {conf:4.2f} | {latency_ms:5.1f} ms | {r[GATE_REASON]:<16} | "
            f"decisions on {duty:3.0f} %"
        )

    def receive(self, message: Message) -> None:
        """Update the line (terminal) or print one every ``every_s`` s of stream time."""
        self.n += 1
        self.n_on += int(bool(message.results[BEAM_ON]))
        line = self.state_line(message)
        if self.live:
            self._progress.update(self._task, completed=message.frame_id + 1, state=line)
        elif message.acquisition_time_s >= self._next_line_s:
            self._next_line_s = message.acquisition_time_s + self.every_s
            of = f"/{self.total}" if self.total else ""
            print(f"frame {message.frame_id + 1}{of} t={message.acquisition_time_s:6.1f} s | {line}", file=sys.stderr,
                  flush=True)

    def stop(self) -> None:
        """Stop drawing."""
        self._progress.stop()
