"""The operators' warm-up: once per run, before the source starts, on a synthetic frame, leaving no trace."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from igikit.io.trackrad import CineCase
from igikit.stream import (
    Application,
    CollectResults,
    Message,
    NormaliseIntensity,
    Operator,
    OperatorSpec,
    PhaseCorrelationMotion,
    Recorder,
    ReplaySource,
    Source,
    SyntheticSource,
    read_session,
)
from igikit.stream.source import synthetic_frame


class Journal(Operator):
    """Notes the order of start / warm_up / compute calls and what the warm-up saw."""

    def __init__(self, name: str, calls: list[str], *, adds: str | None = None, warms: bool = True) -> None:
        self.calls, self.adds, self.warms = calls, adds, warms
        self.seen: list[Message] = []
        super().__init__(name)

    def setup(self, spec: OperatorSpec) -> None:
        if self.adds:
            spec.output(self.adds)

    def start(self) -> None:
        self.calls.append(f"{self.name}.start")

    def warm_up(self, message: Message) -> Message:
        self.calls.append(f"{self.name}.warm_up")
        self.seen.append(message)
        if not self.warms:
            return message
        return message.with_results(**{self.adds: "warm"}) if self.adds else message

    def compute(self, message: Message) -> Message:
        self.calls.append(f"{self.name}.compute{message.frame_id}")
        return message.with_results(**{self.adds: "real"}) if self.adds else message


class Chain(Application):
    def __init__(self, source: Source, *ops: Operator) -> None:
        super().__init__()
        self.source, self.ops = source, ops

    def compose(self) -> None:
        upstream: Source | Operator = self.source
        for op in self.ops:
            self.add_flow(upstream, op)
            upstream = op


def test_warm_up_runs_once_after_start_and_before_the_first_frame() -> None:
    calls: list[str] = []
    a = Journal("a", calls, adds="x")
    b = Journal("b", calls)
    source = SyntheticSource((24, 32), n_frames=2, realtime=False, dtype=np.uint16)
    report = Chain(source, a, b).run()
    assert calls == ["a.start", "b.start", "a.warm_up", "b.warm_up", "a.compute0", "b.compute0",
                     "a.compute1", "b.compute1"]
    warm = b.seen[0]
    assert warm.frame_id == -1 and warm.frame.shape == (24, 32) and warm.frame.dtype == np.uint16
    assert warm.results["x"] == "warm"  # the upstream operator's warm-up result travels on
    assert report.frames_processed == 2 and report.warm_up_ms > 0
    assert "warmed up" in report.summary_line()


def test_an_operator_downstream_of_one_without_a_warm_up_is_skipped() -> None:
    # ``a`` declares a result its warm-up does not add: ``b`` would see a message its real
    # frames never look like, so the engine does not warm it up.
    calls: list[str] = []
    a = Journal("a", calls, adds="x", warms=False)
    b = Journal("b", calls)
    Chain(SyntheticSource((16, 16), n_frames=1, realtime=False), a, b).run()
    assert "a.warm_up" in calls and "b.warm_up" not in calls


def test_no_warm_up_when_the_source_cannot_give_a_frame() -> None:
    class Silent(Source):
        def messages(self, stop: threading.Event) -> Iterator[Message]:
            yield Message(0, 0.0, 0.0, np.zeros((8, 8)))

    calls: list[str] = []
    report = Chain(Silent(realtime=False), Journal("a", calls)).run()
    assert calls == ["a.start", "a.compute0"] and report.warm_up_ms == 0


def test_building_blocks_warm_up_without_keeping_a_reference() -> None:
    source = SyntheticSource((64, 64), n_frames=4, realtime=False, amplitude_mm=6.0, period_s=0.8)
    motion = PhaseCorrelationMotion()
    trace = CollectResults(("shift_mm",))
    Chain(source, NormaliseIntensity(), motion, trace).run()
    shifts = trace.column("shift_mm")
    # frame 0 is the reference (the warm-up frame never became one): no shift, then the true motion
    assert tuple(shifts[0]) == (0.0, 0.0)
    truth = [source.truth_shift_mm(k / source.rate_hz)[1] for k in range(4)]
    assert np.allclose(shifts[1:, 1], truth[1:], atol=0.5)


def test_recorder_makes_its_datasets_at_the_warm_up_and_records_only_real_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 800, size=(40, 48, 5)).astype(np.int16)
    case = CineCase("REC", frames, (1.5, 1.5), frame_rate_hz=5.0)
    source = ReplaySource(case, realtime=False)
    warm = source.warm_up_message()
    assert warm.frame.shape == (40, 48) and warm.frame.dtype == np.int16
    assert not any(np.array_equal(warm.frame, frames[:, :, k]) for k in range(5))  # synthetic, not a frame
    path = tmp_path / "s.h5"
    recorder = Recorder(path, metadata=source.metadata())
    created: list[bool] = []

    class Spy(Operator):
        def setup(self, spec: OperatorSpec) -> None:
            spec.output("level")

        def compute(self, message: Message) -> Message:
            created.append(recorder._datasets_ready)  # before the recorder sees the first real frame
            return message.with_results(level=float(message.frame.mean()))

        def warm_up(self, message: Message) -> Message:
            return self.compute(message)

    Chain(source, Spy(), recorder).run()
    assert created[0] is False and created[1] is True  # the warm-up happened between the two
    session = read_session(path)
    assert session.n_frames == 5 and list(session.frame_id) == [0, 1, 2, 3, 4]
    assert np.array_equal(session.frames, np.moveaxis(frames, 2, 0))
    assert np.allclose(session.results["level"], frames.mean(axis=(0, 1)))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_synthetic_frame_has_structure_in_range(dtype: type) -> None:
    f = synthetic_frame((30, 20), dtype)
    assert f.shape == (30, 20) and f.dtype == dtype
    assert float(f.std()) > 0.05 * float(f.max()) > 0
