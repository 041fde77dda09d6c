"""Stream engine overhead per frame, and the latency the session recorder adds.

What is timed (2000 frames of 256 x 256 float32 each, a synthetic phantom source):

* ``bare loop``: the baseline, in this same run: a plain Python loop that stamps the time, calls
  the same no-op operator and stamps again; no threads, no graph.
* ``engine, pulled``: a graph ``source -> no-op``, source pulled as fast as possible (``--fast``
  replays); per frame, from the frame's availability to the end of the graph. This includes the
  hand-off from the source thread to the worker.
* ``engine, 500 Hz``: the same graph with the source releasing frames on its own clock at 500 Hz
  (a live scanner; latest-frame-wins): the worker wakes from idle for every frame.
* ``engine overhead``: ``engine, pulled`` minus the no-op's own compute time, frame by frame.
* ``recorder write``: the recorder's compute time per frame in ``source -> no-op -> recorder``
  (append frame + results, SWMR flush), and ``end-to-end + recorder`` for that graph.

Usage::

    .venv/bin/python bench/stream_overhead.py [--frames 2000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from igikit.stream import (
    Application,
    Message,
    NoOp,
    Operator,
    Recorder,
    Source,
    SyntheticSource,
    wall_clock,
)
from igikit.stream.latency import LatencyReport, LatencyStats

SHAPE = (256, 256)


class Chain(Application):
    """source -> every operator in turn."""

    def __init__(self, source: Source, *ops: Operator) -> None:
        super().__init__()
        self.source, self.ops = source, ops

    def compose(self) -> None:
        upstream: Source | Operator = self.source
        for op in self.ops:
            self.add_flow(upstream, op)
            upstream = op


def bare_loop(n: int) -> np.ndarray:
    """Per-iteration latency of stamp -> no-op -> stamp, on the same frames the engine gets."""
    source = SyntheticSource(SHAPE, n_frames=1, realtime=False)
    frame = source.frame(0)
    op = NoOp()
    out = np.empty(n)
    for k in range(n):
        message = Message(k, k / 10.0, wall_clock(), frame)
        op.compute(message)
        out[k] = wall_clock() - message.available_wall_s
    return out


def run_engine(n: int, *, realtime: bool, record_to: Path | None = None) -> tuple[LatencyReport, np.ndarray]:
    """Run source -> no-op [-> recorder]; return the report and per-frame (e2e - no-op) overhead."""
    source = SyntheticSource(SHAPE, n_frames=n, rate_hz=500.0, realtime=realtime, dtype=np.float32)
    noop = _TimedNoOp()
    ops: list[Operator] = [noop]
    if record_to is not None:
        ops.append(Recorder(record_to, metadata=source.metadata(), name="recorder"))
    collect = _EndToEnd()
    app = Chain(source, *ops, collect)
    report = app.run()
    overhead = np.asarray(collect.e2e) - np.asarray(noop.durations)
    return report, overhead


class _TimedNoOp(NoOp):
    """The no-op, timing itself so its own cost can be subtracted frame by frame."""

    def __init__(self) -> None:
        super().__init__("noop")
        self.durations: list[float] = []

    def compute(self, message: Message) -> Message:
        t0 = wall_clock()
        out = super().compute(message)
        self.durations.append(wall_clock() - t0)
        return out


class _EndToEnd(NoOp):
    """Last node: the availability-to-here latency of each frame, minus nothing."""

    def __init__(self) -> None:
        super().__init__("e2e")
        self.e2e: list[float] = []

    def compute(self, message: Message) -> Message:
        self.e2e.append(wall_clock() - message.available_wall_s)
        return message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=None, help="folder for the session file (default: a temp dir)")
    args = parser.parse_args()
    n = args.frames

    run_engine(100, realtime=False)  # warm-up: imports, allocator, thread start
    rows: list[tuple[str, LatencyStats]] = []
    base = LatencyStats.from_seconds(bare_loop(n))
    rows.append(("bare loop (baseline)", base))
    pulled, overhead = run_engine(n, realtime=False)
    rows.append(("engine, pulled: end-to-end", pulled.end_to_end))
    rows.append(("engine overhead (e2e - no-op)", LatencyStats.from_seconds(overhead)))
    paced, _ = run_engine(n, realtime=True)
    rows.append(("engine, 500 Hz: end-to-end", paced.end_to_end))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "bench_session.h5"
        recorded, _ = run_engine(n, realtime=False, record_to=path)
        size_mb = path.stat().st_size / 1e6
    rows.append(("recorder write", recorded.per_operator["recorder"]))
    rows.append(("end-to-end + recorder", recorded.end_to_end))

    print(f"stream engine overhead: {n} frames of {SHAPE[0]}x{SHAPE[1]} float32")
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus, load {_load()}")
    header = f"{'measurement':<32} {'median ms':>10} {'p95 ms':>9} {'p99 ms':>9} {'max ms':>9} {'x baseline':>11}"
    print(header)
    print("-" * len(header))
    for name, s in rows:
        ratio = s.median_ms / base.median_ms
        print(
            f"{name:<32} {s.median_ms:>10.4f} {s.p95_ms:>9.4f} {s.p99_ms:>9.4f} {s.max_ms:>9.3f} {ratio:>10.0f}x"
        )
    print(
        f"500 Hz run: {paced.frames_received} received, {paced.frames_processed} processed, "
        f"{paced.frames_dropped} dropped; session file {size_mb:.0f} MB "
        f"({recorded.frames_processed} frames)"
    )
    ok_overhead = rows[2][1].median_ms < 0.1
    ok_recorder = rows[4][1].median_ms < 1.0
    print(
        f"aim: overhead median < 0.1 ms: {'met' if ok_overhead else 'NOT met'}; "
        f"recorder median < 1 ms: {'met' if ok_recorder else 'NOT met'}"
    )


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
