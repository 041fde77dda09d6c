"""``igikit replay``: a recorded cine through the stream engine, timed.

(``igikit demo`` lives with the MR-linac workflow it demonstrates: :mod:`igikit.workflows.mrgrt.commands`.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from igikit.core.paths import data_dir
from igikit.errors import InputError
from igikit.io.trackrad import CineCase, read_case, read_frames
from igikit.stream.latency import LatencyReport
from igikit.stream.message import Message
from igikit.stream.motion_replay import MotionReplay
from igikit.stream.operator import Operator, Sink
from igikit.stream.operators import RESPONSE, SHIFT_MM
from igikit.stream.recorder import Recorder
from igikit.stream.source import ReplaySource


def find_data_dir() -> Path:
    """The real-data folder; see :func:`igikit.core.paths.data_dir` (a missing folder is an InputError)."""
    return data_dir()

def load_cine(path: str | Path, *, rate_hz: float | None = None) -> CineCase:
    """A TrackRAD case folder, or a bare (H, W, T) frames ``.mha``, as a :class:`CineCase`.

    For a bare file the frame rate comes from ``frame-rate.json`` in its case folder (the file's
    folder or the one above, TrackRAD layout) unless ``rate_hz`` is given.
    """
    path = Path(path)
    if path.is_dir():
        case = read_case(path)
    else:
        frames, spacing = read_frames(path)
        rate = None
        for folder in (path.parent, path.parent.parent):
            rate_file = folder / "frame-rate.json"
            if rate_file.is_file():
                try:
                    rate = float(json.loads(rate_file.read_text()))
                except (ValueError, TypeError):
                    raise InputError("does not hold a frame rate (a number in Hz)", rate_file) from None
                break
        case = CineCase(
            case_id=path.name.removesuffix(".mha"), frames=frames, pixel_spacing_mm=spacing, frame_rate_hz=rate
        )
    if rate_hz is not None:
        if not rate_hz > 0:
            raise InputError(f"--rate-hz must be positive, got {rate_hz}")
        case = dataclasses.replace(case, frame_rate_hz=rate_hz)
    return case


class _Progress(Sink):
    """Shows replay progress (frames reached) on stderr; drawn only on a terminal."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.total = total
        self._progress = Progress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[motion]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not sys.stderr.isatty(),
        )
        self._task = self._progress.add_task("replay", total=total, motion="")
        super().__init__("progress")

    def start(self) -> None:
        self._progress.start()

    def receive(self, message: Message) -> None:
        shift = message.results.get(SHIFT_MM)
        motion = f"dy {shift[1]:+6.2f} mm" if shift is not None else ""
        self._progress.update(self._task, completed=message.frame_id + 1, motion=motion)

    def stop(self) -> None:
        self._progress.stop()


def replay(
    case: CineCase,
    *,
    fast: bool = False,
    record: Path | None = None,
    deadline_ms: float | None = 100.0,
    max_frames: int | None = None,
    source_timeout_s: float | None = 1.0,
    sinks: Sequence[Operator] = (),
) -> tuple[LatencyReport, MotionReplay]:
    """Replay ``case`` through :class:`MotionReplay`, printing progress on a terminal.

    A failed run leaves no session file; ``sinks`` are fed the motion results besides the
    progress display. Returns the latency report and the application (its ``trace`` holds the
    displacement of every processed frame).
    """
    if case.frame_rate_hz is None and not fast:
        raise InputError(f"{case.case_id}: frame rate unknown (no frame-rate.json); give --rate-hz or use --fast")
    source = ReplaySource(case, realtime=not fast, max_frames=max_frames)
    recorder = None
    if record is not None:
        recorder = Recorder(record, metadata=source.metadata(), exclude=("normalised",), name="recorder")
    app = MotionReplay(
        source,
        recorder=recorder,
        sinks=[*sinks, _Progress(source.n_frames)],
        deadline_ms=deadline_ms,
        source_timeout_s=None if fast else source_timeout_s,
    )
    try:
        report = app.run()
    except BaseException:
        if recorder is not None:
            recorder.discard()  # removes only a file this recorder created
        raise
    return report, app


def _print_report(report: LatencyReport, app: MotionReplay, record: Path | None) -> None:
    from rich.console import Console

    console = Console()
    console.print(report.as_rich_table())
    console.print(report.summary_line())
    shifts = app.trace.column(SHIFT_MM)
    if shifts.size:
        dy = shifts[:, 1]
        response = app.trace.column(RESPONSE)
        console.print(
            f"motion (rows, superior-inferior on a sagittal cine): dy {dy.min():+.2f} .. {dy.max():+.2f} mm, "
            f"peak-to-peak {np.ptp(dy):.2f} mm; dx peak-to-peak {np.ptp(shifts[:, 0]):.2f} mm; "
            f"median response {np.median(response):.2f}"
        )
    if record is not None and app.recorder is not None:
        console.print(f"session: {record} ({app.recorder.n_frames} frames)")


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _cmd_replay(args: argparse.Namespace) -> int:
    case = load_cine(args.input, rate_hz=args.rate_hz)
    report, app = replay(
        case, fast=args.fast, record=args.record, deadline_ms=args.deadline_ms, max_frames=args.max_frames
    )
    _print_report(report, app, args.record)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``replay``."""
    p = sub.add_parser(
        "replay",
        help="replay a cine series through the stream engine and print its latency",
        description="Replay a TrackRAD case folder or an (H, W, T) frames .mha at its native frame "
        "rate (or --fast) through intensity normalisation and phase-correlation motion estimation; "
        "print per-operator and end-to-end latency, deadline misses and dropped frames.",
    )
    p.add_argument("input", metavar="CASE_DIR|FRAMES.mha", help="case folder or frames file")
    _add_common(p)
    p.add_argument("--record", metavar="SESSION.h5", type=Path, help="record frames and results to this new file")
    p.add_argument("--rate-hz", type=_positive(float), help="frame rate when the input does not state it")
    p.set_defaults(func=_cmd_replay)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", action="store_true", help="as fast as possible instead of the native frame rate")
    p.add_argument("--deadline-ms", type=_positive(float), default=100.0, help="end-to-end deadline (default 100)")
    p.add_argument("--max-frames", type=_positive(int), metavar="N", help="replay only the first N frames")
