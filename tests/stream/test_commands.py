"""``igikit replay`` through the command line, on the real magdeburg cine (``igikit demo``: tests/workflows/mrgrt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from igikit.cli import main
from igikit.stream import Message, Sink, read_session
from igikit.stream.commands import load_cine, replay
from tests.conftest import assert_input_error, run_cli


@pytest.fixture(scope="module")
def liver(data_dir: Path) -> Path:
    return data_dir / "cine" / "magdeburg_liver"


def test_replay_fast_records_a_short_slice(liver: Path, tmp_path: Path) -> None:
    session = tmp_path / "s.h5"
    r = run_cli("replay", liver, "--fast", "--max-frames", "40", "--record", session, "--deadline-ms", "250")
    assert r.returncode == 0, r.stderr
    for text in (
        "normalise",
        "motion",
        "recorder",
        "end-to-end",
        "median ms",
        "p99 ms",
        "40 processed",
        "0 dropped",
        "deadline 250 ms missed",
        "peak-to-peak",
    ):
        assert text in r.stdout, (text, r.stdout)
    s = read_session(session)
    assert s.closed_cleanly and s.n_frames == 40
    assert s.frames.shape == (40, 176, 140) and s.frames.dtype == np.uint16
    assert s.attrs["pixel_spacing_mm"] == [1.818, 1.818] and s.attrs["case_id"] == "magdeburg_liver"
    dy = s.results["shift_mm"][:, 1]
    assert s.results["shift_mm"].shape == (40, 2) and dy[0] == 0.0
    # Real breathing: several mm of superior-inferior motion within 40 frames (~6.7 s).
    assert 5.0 < np.ptp(dy) < 40.0
    assert "normalised" not in s.results


def _main(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """``igikit ARGS`` in this process (each subprocess start costs seconds on a busy machine)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_replay_bare_frames_file_at_native_rate(liver: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = next((liver / "images").glob("*_frames.mha"))
    # ~0.5 s at 6 Hz; the frame rate comes from the case folder around the file.
    code, out, err = _main(capsys, "replay", frames, "--max-frames", "4")
    assert code == 0, err
    assert "4 processed" in out and "real time" in out and "0 dropped" in out


def test_replay_of_a_2d_file_is_one_line_and_leaves_no_session(tmp_path: Path) -> None:
    flat = tmp_path / "slice.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 30), np.uint16)), str(flat))
    session = tmp_path / "s.h5"
    r = run_cli("replay", flat, "--fast", "--record", session)
    assert_input_error(r, str(flat), "2D", "3D")
    assert not session.exists()


def test_replay_input_errors(tmp_path: Path, liver: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _main(capsys, "replay", tmp_path / "nope.mha", "--fast")
    _assert_one_line_error(code, err, "nope.mha", "not found")
    existing = tmp_path / "old.h5"
    existing.write_bytes(b"keep me")
    code, _, err = _main(capsys, "replay", liver, "--fast", "--max-frames", "3", "--record", existing)
    _assert_one_line_error(code, err, "old.h5", "already exists")
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", str(liver), "--max-frames", "0"])
    assert exit_info.value.code == 2
    _assert_one_line_error(2, capsys.readouterr().err, "--max-frames", "positive")


class _FailAt(Sink):
    def receive(self, message: Message) -> None:
        if message.frame_id == 5:
            raise RuntimeError("display crashed")


def test_failed_replay_leaves_no_partial_session(liver: Path, tmp_path: Path) -> None:
    session = tmp_path / "s.h5"
    with pytest.raises(RuntimeError, match="display crashed"):
        replay(load_cine(liver), fast=True, record=session, max_frames=20, sinks=[_FailAt()])
    assert not session.exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_frame_rate_needs_rate_or_fast(liver: Path) -> None:
    from igikit.errors import InputError
    from igikit.io.trackrad import read_frames
    from igikit.stream.commands import CineCase

    frames, spacing = read_frames(next((liver / "images").glob("*_frames.mha")))
    case = CineCase("no_rate", frames[:, :, :3], spacing)
    with pytest.raises(InputError, match="frame rate unknown"):
        replay(case)
    report, _ = replay(case, fast=True)
    assert report.frames_processed == 3
    report, _ = replay(load_cine(liver, rate_hz=50.0), max_frames=3)
    assert report.frames_processed == 3 and report.realtime
