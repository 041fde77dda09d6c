"""Pose smoothing (at most one frame of lag, jitter down by sqrt(3)) and the tool-stream watchdog
(a lost or frozen stream raises its alarm within 200 ms, measured here on a real clock)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from igikit.errors import InputError
from igikit.stream.message import wall_clock
from igikit.workflows.surgery.smoothing import PoseSmoother, chordal_mean
from igikit.workflows.surgery.watchdog import StreamAlarm, ToolWatchdog


def _pose(rotvec: np.ndarray, t: np.ndarray) -> np.ndarray:
    p = np.eye(4)
    p[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    p[:3, 3] = t
    return p


# ------------------------------------------------------------------------------ smoothing
def test_smoothing_lags_steady_motion_by_exactly_one_frame() -> None:
    axis = np.array([0.2, -0.5, 0.84])
    axis /= np.linalg.norm(axis)
    speed = np.array([1.5, -0.7, 2.0])  # mm per frame
    omega = np.radians(0.8)  # rad per frame, about one axis
    raw = [_pose(omega * k * axis, np.array([10.0, -2000.0, 40.0]) + k * speed) for k in range(30)]
    s = PoseSmoother()
    assert s.lag_frames == 1.0
    out = [s.update(p) for p in raw]
    for k in range(2, 30):
        np.testing.assert_allclose(out[k][:3, 3], raw[k - 1][:3, 3], atol=1e-9)
        np.testing.assert_allclose(out[k][:3, :3], raw[k - 1][:3, :3], atol=1e-9)
    # never more than one frame behind, also while filling
    np.testing.assert_allclose(out[0], raw[0])
    np.testing.assert_allclose(out[1][:3, 3], (raw[0][:3, 3] + raw[1][:3, 3]) / 2)
    s.reset()
    np.testing.assert_allclose(s.update(raw[5]), raw[5])


def test_smoothing_reduces_jitter_by_sqrt3() -> None:
    rng = np.random.default_rng(2)
    s = PoseSmoother()
    raw_err, out_err, rot_raw, rot_out = [], [], [], []
    for _ in range(3000):
        noise = rng.normal(scale=0.2, size=3)
        rot = rng.normal(scale=np.radians(0.1), size=3)
        p = _pose(rot, noise)
        q = s.update(p)
        raw_err.append(noise)
        out_err.append(q[:3, 3])
        rot_raw.append(np.linalg.norm(rot))
        rot_out.append(Rotation.from_matrix(q[:3, :3]).magnitude())
    ratio = np.std(np.array(out_err)[10:]) / np.std(np.array(raw_err)[10:])
    assert ratio == pytest.approx(1 / np.sqrt(3), rel=0.06)
    rratio = np.sqrt(np.mean(np.square(rot_out[10:]))) / np.sqrt(np.mean(np.square(rot_raw[10:])))
    assert rratio == pytest.approx(1 / np.sqrt(3), rel=0.08)


def test_chordal_mean_and_window_checks() -> None:
    r = Rotation.from_rotvec([[0, 0, 0.3], [0, 0, 0.5], [0, 0, 0.7]]).as_matrix()
    np.testing.assert_allclose(chordal_mean(r), r[1], atol=1e-12)
    assert np.linalg.det(chordal_mean(r)) == pytest.approx(1.0)
    with pytest.raises(InputError, match="2 or 3"):
        PoseSmoother(5)


# ------------------------------------------------------------------------------- watchdog
def _stream(watchdog: ToolWatchdog, poses: list[np.ndarray], rate_hz: float) -> float:
    """Feed ``poses`` at ``rate_hz`` in real time; returns the last pose's arrival time."""
    last = 0.0
    for k, p in enumerate(poses):
        last = wall_clock()
        watchdog.pose(p, last, k)
        time.sleep(1.0 / rate_hz)
    return last


def _moving(n: int) -> list[np.ndarray]:
    return [_pose(np.zeros(3), np.array([0.01 * k, 0.0, 0.0])) for k in range(n)]


def _wait(alarms: list[StreamAlarm], n: int, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(alarms) < n and time.monotonic() < deadline:
        time.sleep(0.005)


def test_lost_stream_alarm_within_200_ms_and_recovery() -> None:
    alarms: list[StreamAlarm] = []
    raised: list[float] = []

    def on_alarm(a: StreamAlarm) -> None:
        raised.append(wall_clock())
        alarms.append(a)

    delays = []
    with ToolWatchdog(on_alarm, lost_after_s=0.15, frozen_after_s=1.0) as wd:
        for trial in range(3):
            last = _stream(wd, _moving(20), 60.0)  # a 60 Hz tracker, then silence
            _wait(alarms, 2 * trial + 1)
            assert alarms[-1].kind == "lost" and wd.state == "lost"
            delays.append(raised[-1] - last)
            wd.pose(_pose(np.zeros(3), np.array([5.0, 0, trial])), frame_id=99)  # back
            assert alarms[-1].kind == "restored" and wd.state == "ok"
    # measured: the alarm comes after the 150 ms timeout and well within 200 ms of the last pose
    assert all(0.15 <= d < 0.2 for d in delays), delays
    assert all(0.15 * 1e3 <= a.silence_ms < 200 for a in alarms if a.kind == "lost")
    assert "no pose for" in alarms[0].sentence("needle") and "needle stream lost" in alarms[0].sentence("needle")


def test_frozen_stream_alarm_within_200_ms() -> None:
    alarms: list[StreamAlarm] = []
    with ToolWatchdog(alarms.append, lost_after_s=1.0, frozen_after_s=0.15) as wd:
        moving = _moving(10)
        _stream(wd, moving, 60.0)
        changed = wall_clock()
        _stream(wd, [moving[-1].copy() for _ in range(20)], 60.0)  # the tracker repeats its last pose
        _wait(alarms, 1)
        assert [a.kind for a in alarms] == ["frozen"]
        assert 150 <= alarms[0].silence_ms < 200
        assert alarms[0].wall_s - changed < 0.2 + 1 / 60.0
        assert wd.state == "frozen"
        wd.pose(moving[0])  # moves again
        assert wd.state == "ok" and alarms[-1].kind == "restored"


def test_no_alarm_on_a_steady_stream_while_paused_or_after_the_end() -> None:
    alarms: list[StreamAlarm] = []
    with ToolWatchdog(alarms.append, lost_after_s=0.1, frozen_after_s=0.1) as wd:
        assert wd.state == "waiting"
        time.sleep(0.25)  # not armed before the first pose
        _stream(wd, _moving(30), 50.0)
        wd.pause()  # a consumer busy with a pulled source: no silence counts
        time.sleep(0.3)
        wd.resume()
        wd.pose(_moving(31)[-1])
        wd.end()
        time.sleep(0.3)
        assert wd.state == "ended" and wd.pose(np.eye(4)) == "ended"
    assert alarms == []


def test_watchdog_checks_its_timeouts() -> None:
    with pytest.raises(InputError, match="lost_after_s"):
        ToolWatchdog(lambda a: None, lost_after_s=0.0)
    wd = ToolWatchdog(lambda a: None)
    wd.stop()  # never started: harmless
    t = threading.Thread(target=wd.stop)
    t.start()
    t.join()
