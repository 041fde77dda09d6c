"""Reading breathing traces (both formats) and cleaning their glitches, on real files and made-up ones."""

from __future__ import annotations

import numpy as np
import pytest

from igikit.errors import InputError
from igikit.io.respiration import RespirationTrace, clean_trace, read_trace

REAL = "201205101534-LAC-1-NO-130-6.csv"  # holds 3 timestamp-glitch runs (5 rows) and the 0;0;0;0;0 end row


def _trace(t_s, x) -> RespirationTrace:
    return RespirationTrace(time_s=np.asarray(t_s, float), position_mm=np.asarray(x, float))


# ------------------------------------------------------------------------------------------- reading


def test_read_real_format(data_dir) -> None:
    tr = read_trace(data_dir / "respiration" / REAL)
    assert len(tr) == 1298
    assert tr.axis == "z"  # the superior-inferior marker motion dominates
    assert tr.time_s[:3] == pytest.approx([0.0, 0.1, 0.2])
    assert tr.position_mm.shape == (1298,)
    assert tr.frame is not None and tr.frame[1] == 6
    xyz = read_trace(data_dir / "respiration" / REAL, axis=None)
    assert xyz.position_mm.shape == (1298, 3) and xyz.axis is None
    x = read_trace(data_dir / "respiration" / REAL, axis="x")
    np.testing.assert_array_equal(x.position_mm, xyz.position_mm[:, 0])
    # decimal commas: "-486,55" is read as -486.55
    assert np.any(np.isclose(xyz.position_mm[:, 0], -486.55))


def test_read_first_rows_of_real_file(data_dir) -> None:
    tr = read_trace(data_dir / "respiration" / "201205101519-LAC-1-T-222-6.csv", axis=None)
    np.testing.assert_allclose(tr.position_mm[0], [-490.7, 4.1, 64.7])
    np.testing.assert_allclose(tr.time_s[:4], [0.0, 0.117, 0.217, 0.317])


@pytest.mark.parametrize("header", ["time_ms,position_mm\n", ""])
def test_read_plain_csv(tmp_path, header) -> None:
    p = tmp_path / "trace.csv"
    p.write_text(header + "0,1.5\n100,2.5\n217,-3\n300,0.25\n")
    tr = read_trace(p)
    np.testing.assert_allclose(tr.time_s, [0.0, 0.1, 0.217, 0.3])
    np.testing.assert_allclose(tr.position_mm, [1.5, 2.5, -3.0, 0.25])
    assert tr.axis == "position" and tr.frame is None


def test_auto_axis_picks_the_moving_one(tmp_path) -> None:
    t = np.arange(100) * 100
    rows = [f"{i};{ti};{-400 + 0.1 * np.sin(i)};{2 + 0.01 * i};{60 + 8 * np.sin(ti / 600)}" for i, ti in enumerate(t)]
    p = tmp_path / "t.csv"
    p.write_text('"Frame";"Timestamp";"x";"y";"z"\n' + "\n".join(r.replace(".", ",") for r in rows) + "\n")
    assert read_trace(p).axis == "z"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "empty"),
        ("time_ms,position_mm\n", "no samples"),
        ("time_ms,position_mm\n0,1\n100,abc\n200,3\n", "line 3: non-numeric value 'abc'"),
        ("0,1\n100,2\n", "too few samples"),
        ("0,1\n100,2\n200\n", "line 3"),
        ("0,1\n100,nan\n200,3\n", "non-finite"),
    ],
)
def test_read_bad_files(tmp_path, content, fragment) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(InputError) as info:
        read_trace(p)
    assert fragment in str(info.value) and "bad.csv" in str(info.value)


def test_read_missing_file_and_bad_axis(tmp_path) -> None:
    with pytest.raises(InputError, match=r"missing\.csv: file not found"):
        read_trace(tmp_path / "missing.csv")
    p = tmp_path / "one.csv"
    p.write_text("0,1\n100,2\n200,3\n")
    with pytest.raises(InputError, match="single position column"):
        read_trace(p, axis="y")


# ------------------------------------------------------------------------------------------ cleaning


def test_clean_real_file_repairs_glitches_exactly(data_dir) -> None:
    tr = clean_trace(read_trace(data_dir / "respiration" / REAL))
    s = tr.cleaning
    assert s is not None
    assert (s.timestamps_repaired, s.trailing_dropped, s.time_resets) == (5, 1, 0)
    assert (s.n_in, s.n_out, s.spikes_removed, s.duplicates_removed) == (1298, 1297, 0, 0)
    assert np.all(np.diff(tr.time_s) > 0)
    # The recorder's frame counter ticks at 60 Hz: the repaired times sit exactly on it.
    assert tr.frame is not None
    np.testing.assert_allclose(tr.time_s, tr.frame / 60.0, atol=1e-3)
    # sampling is back to 100 / 117 ms everywhere
    assert np.diff(tr.time_s).max() < 0.12 and np.diff(tr.time_s).min() > 0.09


def test_clean_every_real_file_gives_increasing_time(data_dir) -> None:
    for path in sorted((data_dir / "respiration").glob("*.csv")):
        tr = clean_trace(read_trace(path, axis=None))
        assert np.all(np.diff(tr.time_s) > 0.09), path.name
        assert tr.cleaning is not None and tr.cleaning.spikes_removed == 0, path.name
        assert not np.any(np.all(tr.position_mm == 0, axis=1)), path.name  # end row gone


def _sine(n=200, dt=0.1):
    t = np.arange(n) * dt
    return t, 10 * np.sin(2 * np.pi * t / 4)


def test_clean_leaves_a_clean_trace_alone() -> None:
    t, x = _sine()
    tr = clean_trace(_trace(t, x))
    assert tr.cleaning is not None and not tr.cleaning.changed
    np.testing.assert_array_equal(tr.time_s, t)
    np.testing.assert_array_equal(tr.position_mm, x)


def test_clean_glitch_run_is_interpolated() -> None:
    t, x = _sine()
    bad = t.copy()
    bad[50:52] = t[50:52] / 500  # the Krilavicius glitch: two timestamps divided by 500
    tr = clean_trace(_trace(bad, x))
    assert tr.cleaning is not None and tr.cleaning.timestamps_repaired == 2
    np.testing.assert_allclose(tr.time_s, t, atol=1e-9)


def test_clean_lasting_reset_is_rebased() -> None:
    t, x = _sine()
    bad = t.copy()
    bad[120:] -= bad[120]  # the clock restarts at 0 and keeps running
    tr = clean_trace(_trace(bad, x))
    assert tr.cleaning is not None and tr.cleaning.time_resets == 1
    assert len(tr) == len(t)
    np.testing.assert_allclose(tr.time_s, t, atol=1e-9)


def test_clean_duplicates_spike_trailing_and_forward_glitch() -> None:
    t, x = _sine()
    t2 = np.concatenate([t[:30], t[29:30], t[30:], [0.0]])  # sample 29 repeated; an end row at t=0
    x2 = np.concatenate([x[:30], x[29:30], x[30:], [0.0]])
    x2[80] += 40.0  # a one-sample spike, four times the breathing range
    t2[140] += 50.0  # one timestamp far in the future
    tr = clean_trace(_trace(t2, x2))
    s = tr.cleaning
    assert s is not None
    assert (s.duplicates_removed, s.spikes_removed, s.trailing_dropped, s.timestamps_repaired) == (1, 1, 1, 1)
    assert len(tr) == len(t) - 1  # only the spike is lost
    assert np.all(np.diff(tr.time_s) > 0)
    assert np.max(np.abs(tr.position_mm)) <= 10.0


def test_clean_keeps_fast_real_motion() -> None:
    # A cough: a fast excursion over several samples is anatomy, not a glitch.
    t, x = _sine()
    x = x.copy()
    x[100:104] += np.array([6.0, 12.0, 12.0, 6.0])
    tr = clean_trace(_trace(t, x))
    assert tr.cleaning is not None and tr.cleaning.spikes_removed == 0


def test_clean_three_axis_spike_removes_the_sample() -> None:
    t, x = _sine()
    xyz = np.stack([x, 0.1 * x, 0.5 * x], axis=1)
    xyz[60, 1] = 30.0
    tr = clean_trace(_trace(t, xyz))
    assert tr.cleaning is not None and tr.cleaning.spikes_removed == 1
    assert tr.position_mm.shape == (len(t) - 1, 3)


def test_clean_too_few_left() -> None:
    with pytest.raises(InputError, match="too few samples"):
        clean_trace(_trace([0.0, 0.1], [1.0, 2.0]))
