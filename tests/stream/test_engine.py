"""The runtime: latency measurement, latest-frame-wins, deadlines, source loss, failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from igikit.stream import (
    Application,
    CollectResults,
    LatencyStats,
    Message,
    Operator,
    Source,
    StreamEvent,
    SyntheticSource,
    wall_clock,
)


class Sleep(Operator):
    """Sleeps ``seconds(frame_id)``: a stand-in for work of known duration."""

    def __init__(self, seconds: float | dict[int, float], name: str = "sleep") -> None:
        self.seconds = seconds
        super().__init__(name)

    def compute(self, message: Message) -> Message:
        s = self.seconds if isinstance(self.seconds, float) else self.seconds.get(message.frame_id, 0.0)
        if s:
            time.sleep(s)
        return message


def _app(source: Source, *ops: Operator, **kw: float) -> Application:
    class App(Application):
        def compose(self) -> None:
            upstream: Source | Operator = source
            for op in ops:
                self.add_flow(upstream, op)
                upstream = op

    return App(**kw)


def test_latency_stats_are_exact_percentiles() -> None:
    samples_s = np.arange(1, 101) / 1e3  # 1..100 ms
    s = LatencyStats.from_seconds(samples_s)
    assert s.n == 100
    assert s.median_ms == pytest.approx(50.5)
    assert s.p95_ms == pytest.approx(95.05)
    assert s.p99_ms == pytest.approx(99.01)
    assert s.max_ms == pytest.approx(100.0)
    empty = LatencyStats.from_seconds([])
    assert empty.n == 0 and np.isnan(empty.median_ms)


def test_latency_measures_known_sleeps() -> None:
    source = SyntheticSource((32, 32), n_frames=8, realtime=False)
    report = _app(source, Sleep(0.020, "a"), Sleep(0.010, "b")).run()
    a, b, e2e = report.per_operator["a"], report.per_operator["b"], report.end_to_end
    assert a.n == b.n == e2e.n == 8
    # Sleeps never end early; a busy machine may make them late, hence the one-sided margin.
    assert 20.0 <= a.median_ms < 32.0
    assert 10.0 <= b.median_ms < 22.0
    assert e2e.median_ms >= a.median_ms + b.median_ms
    assert e2e.median_ms < a.median_ms + b.median_ms + 10.0
    assert e2e.max_ms >= e2e.p99_ms >= e2e.p95_ms >= e2e.median_ms
    assert report.frames_dropped == 0 and not report.realtime
    d = report.as_dict()
    assert d["per_operator"]["a"]["n"] == 8 and d["frames_processed"] == 8
    table = report.as_table()
    assert "end-to-end" in table and "a " in table and "0 dropped" in table


def test_latest_frame_wins_when_processing_falls_behind() -> None:
    # 200 frames/s into an operator that needs 25 ms: most frames must be dropped, and counted.
    source = SyntheticSource((32, 32), n_frames=60, rate_hz=200.0, realtime=True)
    trace = CollectResults()
    drops: list[StreamEvent] = []
    app = _app(source, Sleep(0.025), trace)
    app.subscribe(lambda e: drops.append(e) if e.kind == "frame_dropped" else None)
    report = app.run()
    assert report.frames_received == 60
    assert report.frames_processed + report.frames_dropped == 60
    assert report.frames_dropped >= 30
    assert len(drops) == report.frames_dropped
    ids = trace.column("frame_id")
    assert len(ids) == report.frames_processed
    assert np.all(np.diff(ids) > 0)  # always the newest, never an older frame after a newer
    assert ids[-1] == 59  # the last frame is processed, not dropped
    dropped_ids = sorted(e.frame_id for e in drops)
    assert sorted(set(range(60)) - set(ids.tolist())) == dropped_ids


def test_fast_replay_drops_nothing() -> None:
    source = SyntheticSource((32, 32), n_frames=30, realtime=False)
    report = _app(source, Sleep(0.002)).run()
    assert (report.frames_received, report.frames_processed, report.frames_dropped) == (30, 30, 0)


def test_deadline_misses_are_counted() -> None:
    slow = {k: 0.080 for k in (1, 4, 5, 8)}
    source = SyntheticSource((32, 32), n_frames=10, realtime=False)
    misses: list[int] = []
    app = _app(source, Sleep(slow), deadline_ms=40.0)
    app.subscribe(lambda e: misses.append(e.frame_id) if e.kind == "deadline_miss" else None)
    report = app.run()
    assert report.deadline_ms == 40.0
    assert report.deadline_misses == 4
    assert sorted(misses) == [1, 4, 5, 8]
    assert "missed 4 times" in report.as_table()


class StallingSource(Source):
    """Frames at 50 Hz with a stall of ``stall_s`` after frame ``stall_after`` (-1: before any)."""

    def __init__(self, n: int, stall_after: int, stall_s: float) -> None:
        super().__init__("stalling", realtime=True)
        self.n, self.stall_after, self.stall_s = n, stall_after, stall_s

    def messages(self, stop: threading.Event) -> Iterator[Message]:
        if self.stall_after < 0 and stop.wait(self.stall_s):
            return
        for k in range(self.n):
            yield Message(k, k * 0.02, wall_clock(), np.zeros((8, 8), np.float32))
            if stop.wait(self.stall_s if k == self.stall_after else 0.02):
                return


def _run_collecting(source: Source, *ops: Operator, timeout_s: float) -> tuple[list[StreamEvent], object]:
    events: list[StreamEvent] = []
    app = _app(source, *ops, source_timeout_s=timeout_s)
    app.subscribe(lambda e: events.append(e) if e.kind.startswith("source_") else None)
    report = app.run()
    return events, report


def test_source_lost_is_signalled_once_and_restored() -> None:
    t0 = wall_clock()
    events, report = _run_collecting(StallingSource(6, stall_after=2, stall_s=0.5), CollectResults(), timeout_s=0.1)
    assert [e.kind for e in events] == ["source_lost", "source_restored"]
    lost, restored = events
    assert lost.frame_id == 2 and restored.frame_id == 3
    # Frame 2 arrives ~40 ms after start; the loss is due 100 ms later, long before the 0.5 s stall ends.
    assert 0.12 <= lost.wall_time_s - t0 < 0.40
    assert restored.wall_time_s - lost.wall_time_s > 0.2
    assert report.source_lost_events == 1  # type: ignore[attr-defined]


def test_source_lost_before_the_first_frame() -> None:
    events, _ = _run_collecting(StallingSource(2, stall_after=-1, stall_s=0.3), CollectResults(), timeout_s=0.1)
    assert [e.kind for e in events] == ["source_lost", "source_restored"]
    assert events[0].frame_id == -1


def test_source_lost_while_an_operator_is_busy() -> None:
    # The watchdog is its own thread: a hung operator cannot delay the beam-hold signal.
    t0 = wall_clock()
    events, _ = _run_collecting(StallingSource(2, stall_after=0, stall_s=0.6), Sleep({0: 0.5}), timeout_s=0.1)
    assert events and events[0].kind == "source_lost"
    assert events[0].wall_time_s - t0 < 0.45  # before the operator finished frame 0


def test_no_source_lost_on_a_steady_stream_or_at_its_end() -> None:
    events, report = _run_collecting(
        SyntheticSource((16, 16), n_frames=10, rate_hz=50.0), Sleep({9: 0.3}), timeout_s=0.1
    )
    assert events == []
    assert report.source_lost_events == 0  # type: ignore[attr-defined]


class Explode(Operator):
    def __init__(self) -> None:
        self.stopped = False
        super().__init__("explode")

    def compute(self, message: Message) -> Message:
        if message.frame_id == 3:
            raise RuntimeError("operator failed on frame 3")
        return message

    def stop(self) -> None:
        self.stopped = True


def test_operator_failure_stops_everything_and_propagates() -> None:
    op = Explode()
    source = SyntheticSource((16, 16), n_frames=None, rate_hz=100.0)  # endless: must be stopped
    with pytest.raises(RuntimeError, match="frame 3"):
        _app(source, op).run()
    assert op.stopped
    assert not any(t.name.startswith("igikit-stream") for t in threading.enumerate())


def test_source_failure_propagates() -> None:
    class Broken(Source):
        def messages(self, stop: threading.Event) -> Iterator[Message]:
            yield Message(0, 0.0, wall_clock(), np.zeros((4, 4)))
            raise OSError("scanner connection reset")

    with pytest.raises(OSError, match="connection reset"):
        _app(Broken(), CollectResults()).run()


def test_a_pulled_source_is_not_lost_while_the_graph_is_busy() -> None:
    # A fast replay only produces when asked: a slow operator is not a lost source.
    source = SyntheticSource((16, 16), n_frames=3, realtime=False)
    events, report = _run_collecting(source, Sleep({0: 0.3}), timeout_s=0.1)
    assert events == []
    assert report.frames_processed == 3  # type: ignore[attr-defined]
