"""The session recorder: round trip of frames and every kind of result, and crash safety."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from igikit.errors import InputError
from igikit.stream import (
    Application,
    Message,
    Operator,
    OperatorSpec,
    Recorder,
    SyntheticSource,
    read_session,
)
from tests.stream._record_child import SOURCE_ARGS, expected_results


class Results(Operator):
    """Results of every kind, with a key missing on some frames and one appearing late."""

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("score")

    def compute(self, message: Message) -> Message:
        k = message.frame_id
        out: dict[str, object] = {
            "score": float(k) / 4,
            "count": k,
            "flag": k % 2 == 0,
            "vec": np.array([k, -k, 2 * k], dtype=np.float32),
            "label": f"frame {k}",
            "info": {"k": k, "tags": ["a", "b"]},
            "big": np.zeros((32, 32)),
        }
        if k == 3:
            del out["score"]  # missing: NaN in its column
            out["late"] = "only on frame 3"  # not known at frame 0: kept as extra
            out["vec"] = np.zeros(5)  # changed shape: kept as extra
        return message.with_results(**out)


def _record(path: Path, n: int = 6) -> SyntheticSource:
    source = SyntheticSource((24, 20), n_frames=n, realtime=False, noise=0.1, seed=3)

    class Rec(Application):
        def compose(self) -> None:
            results = Results()
            self.add_flow(source, results)
            self.add_flow(results, Recorder(path, metadata=source.metadata(), exclude=("big",)))

    Rec().run()
    return source


def test_round_trip_frames_results_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    source = _record(path)
    s = read_session(path)
    assert s.closed_cleanly and s.n_frames == 6 and s.attrs["n_frames"] == 6
    assert s.frame_id.tolist() == list(range(6))
    np.testing.assert_allclose(s.acquisition_time_s, np.arange(6) / source.rate_hz)
    for k in range(6):
        np.testing.assert_array_equal(s.frames[k], source.frame(k))
    assert s.frames.dtype == np.float32
    r = s.results
    assert "big" not in r
    np.testing.assert_array_equal(r["score"], [0.0, 0.25, 0.5, np.nan, 1.0, 1.25])
    assert r["count"].tolist() == [0, 1, 2, 3, 4, 5]
    assert r["flag"].tolist() == [1, 0, 1, 0, 1, 0]
    assert r["vec"].shape == (6, 3) and r["vec"][5].tolist() == [5, -5, 10]
    assert r["vec"][3].tolist() == [0, 0, 0] or np.isnan(r["vec"][3]).all()
    assert r["label"] == [f"frame {k}" for k in range(6)]
    assert r["info"][2] == {"k": 2, "tags": ["a", "b"]}
    np.testing.assert_allclose(
        r["truth_shift_mm"][:, 1], [source.truth_shift_mm(k / source.rate_hz)[1] for k in range(6)]
    )
    assert s.extra == {3: {"late": "only on frame 3", "vec": [0.0, 0.0, 0.0, 0.0, 0.0]}}
    assert s.attrs["pixel_spacing_mm"] == [1.0, 1.0] and s.attrs["source"].startswith("synthetic")
    assert s.attrs["start_unix_s"] <= s.index["available_unix_s"][0] <= s.index["recorded_unix_s"][0]


def test_never_overwrites_and_discard_removes_only_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    path.write_bytes(b"an earlier session")
    rec = Recorder(path)
    with pytest.raises(InputError, match="already exists"):
        rec.start()
    rec.discard()
    assert path.read_bytes() == b"an earlier session"
    path.unlink()
    rec.start()
    rec.receive(Message(0, 0.0, 0.0, np.zeros((4, 4), np.uint16)))
    rec.discard()
    assert not path.exists()


def test_read_session_refuses_what_is_not_a_session(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_session(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="HDF5"):
        read_session(junk)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(InputError, match="not an igikit session"):
        read_session(other)


def test_damaged_frame_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    _record(path)
    with h5py.File(path, "r+") as f:
        f["frames"][1, 0, 0] += 1.0
    with pytest.raises(InputError, match="frame 1 fails its CRC"):
        read_session(path)


def test_kill_9_mid_session_keeps_every_written_frame(tmp_path: Path) -> None:
    """A real recording process killed with SIGKILL at random moments, ten times."""
    rng = random.Random(20240601)
    source = SyntheticSource(**SOURCE_ARGS)  # type: ignore[arg-type]
    child = Path(__file__).with_name("_record_child.py")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    counts = []
    for trial in range(10):
        path = tmp_path / f"killed_{trial}.h5"
        proc = subprocess.Popen(
            [sys.executable, str(child), str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until frame 0 is on disk
        assert first.strip() == "0", proc.stderr.read() if proc.stderr else first
        # A random moment: a few frames in, or hundreds.
        try:
            proc.wait(timeout=rng.uniform(0.0, 0.4))
        except subprocess.TimeoutExpired:
            pass
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        announced = [int(line) for line in (first + out).split()]
        last_written = announced[-1]

        s = read_session(path)
        n = s.n_frames
        counts.append(n)
        assert not s.closed_cleanly
        assert n > 0 and n >= last_written + 1, (n, last_written)
        assert s.frame_id.tolist() == list(range(n))
        for k in range(n):
            np.testing.assert_array_equal(s.frames[k], source.frame(k))
        np.testing.assert_array_equal(s.results["score"], [expected_results(k)["score"] for k in range(n)])
        assert s.results["label"] == [expected_results(k)["label"] for k in range(n)]
        assert s.results["info"] == [expected_results(k)["info"] for k in range(n)]
        assert s.results["truth_shift_mm"].shape == (n, 2)
    # The kills really landed at different moments.
    assert len(set(counts)) > 3, counts
    print("frames on disk after each kill:", counts)


def test_describe_summarises_frames_timing_and_every_result(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    _record(path)
    text = read_session(path).describe()
    assert "closed cleanly: yes" in text and "source: synthetic" in text
    assert "frames: 6 of 24 x 20 (H x W), float32" in text and "frame ids: 0 .. 5, none missing" in text
    assert "acquisition times (s): 0.0000 .. 0.5000, span 0.5000 s, 10 Hz (median interval 100 ms)" in text
    assert "score: a number (float64), on 5 of 6 frames" in text  # missing on frame 3
    assert "vec: 3 values (float32), on 5 of 6 frames" in text  # frame 3: another shape, kept as extra
    assert "label: text, on 6 of 6 frames" in text and "info: JSON, on 6 of 6 frames" in text
    assert "extra results on 1 frame: late, vec" in text
    assert "big" not in text  # excluded from the recording
    # A recorder killed before its first frame leaves a session without frames.
    empty = tmp_path / "empty.h5"
    rec = Recorder(empty, metadata={"workflow": "test"})
    rec.start()
    rec.stop()
    text = read_session(empty).describe()
    assert "frames: none complete" in text and "workflow: test" in text
