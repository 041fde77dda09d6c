"""Sources: replay at the native frame rate or as fast as possible, the synthetic source; every
message carries its acquisition time.

Release times are checked one-sidedly where a busy machine can only make them late: a frame is
never released before its acquisition time (relative to the first), and it is not much later.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from igikit.core import Image
from igikit.errors import InputError
from igikit.io.trackrad import read_case
from igikit.stream import Application, LatencyReport, Message, ReplaySource, Sink, Source, SyntheticSource

#: Lateness a loaded test machine may add to a release (s); pacing itself is exact.
LATE_S = 0.060


class Arrivals(Sink):
    """Keeps, per frame, its id, acquisition time and the wall-clock time it became available."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float]] = []
        super().__init__("arrivals")

    def receive(self, message: Message) -> None:
        self.rows.append((message.frame_id, message.acquisition_time_s, message.available_wall_s))

    def column(self, k: int) -> np.ndarray:
        return np.array([row[k] for row in self.rows])


def _run(source: Source) -> tuple[Arrivals, LatencyReport]:
    arrivals = Arrivals()

    class App(Application):
        def compose(self) -> None:
            self.add_flow(source, arrivals)

    return arrivals, App().run()


def test_native_rate_replay_follows_irregular_acquisition_times() -> None:
    times = np.array([10.0, 10.06, 10.10, 10.25, 10.30, 10.42])
    series = Image(np.arange(6 * 4 * 5, dtype=np.int16).reshape(6, 4, 5), frame_times_s=times)
    arrivals, report = _run(ReplaySource(series, realtime=True))
    assert arrivals.column(0).tolist() == list(range(6))
    np.testing.assert_array_equal(arrivals.column(1), times)  # the scanner's times, not the wall clock
    released = arrivals.column(2) - arrivals.column(2)[0]
    schedule = times - times[0]
    assert np.all(released >= schedule - 1e-4), released - schedule  # never early
    assert np.all(released <= schedule + LATE_S), released - schedule
    assert report.realtime and report.frames_dropped == 0


def test_real_cine_replays_at_its_native_rate_and_as_fast_as_possible(data_dir: Path) -> None:
    case = read_case(data_dir / "cine/magdeburg_liver")
    native = ReplaySource(case, realtime=True, max_frames=7)
    assert native.frame_rate_hz == pytest.approx(5.970149253731344) and native.n_frames == 7
    arrivals, report = _run(native)
    released = arrivals.column(2) - arrivals.column(2)[0]
    schedule = np.arange(7) * 0.1675  # 167.5 ms per frame
    np.testing.assert_allclose(arrivals.column(1), schedule, rtol=0, atol=1e-12)
    assert np.all(released >= schedule - 1e-4) and np.all(released <= schedule + LATE_S)
    assert report.duration_s >= schedule[-1]

    fast = ReplaySource(case, realtime=False, max_frames=60)  # 9.9 s of cine
    arrivals, report = _run(fast)
    assert arrivals.column(0).tolist() == list(range(60))
    np.testing.assert_allclose(arrivals.column(1), np.arange(60) * 0.1675, rtol=0, atol=1e-12)
    assert not report.realtime and report.frames_dropped == 0
    assert report.duration_s < 0.25 * 59 * 0.1675  # far faster than native


def test_replayed_frames_are_the_recording_and_read_only(data_dir: Path) -> None:
    case = read_case(data_dir / "trackrad_format_example")
    frames: list[np.ndarray] = []

    class Keep(Sink):
        def receive(self, message: Message) -> None:
            frames.append(message.frame)

    class App(Application):
        def compose(self) -> None:
            self.add_flow(ReplaySource(case, realtime=False), Keep())

    App().run()
    assert len(frames) == 10
    for k, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, case.frames[:, :, k])  # (H, W) frame k of (H, W, T)
        assert not frame.flags.writeable


def test_synthetic_source_paces_and_stamps_its_frames() -> None:
    source = SyntheticSource((32, 24), n_frames=8, rate_hz=40.0, realtime=True, seed=2)
    arrivals, _ = _run(source)
    schedule = np.arange(8) / 40.0
    np.testing.assert_allclose(arrivals.column(1), schedule, rtol=0, atol=1e-12)
    released = arrivals.column(2) - arrivals.column(2)[0]
    assert np.all(released >= schedule - 1e-4) and np.all(released <= schedule + LATE_S)


def test_replay_refuses_what_it_cannot_replay() -> None:
    with pytest.raises(InputError, match="needs a series"):
        ReplaySource(Image(np.zeros((4, 4))))
    with pytest.raises(InputError, match="max_frames must be at least 1"):
        ReplaySource(Image(np.zeros((2, 4, 4)), frame_times_s=[0.0, 0.1]), max_frames=0)
