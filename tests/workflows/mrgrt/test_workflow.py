"""The gating workflow on phantom cases with known truth: geometry, dose, interlocks, records."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from igikit.io.trackrad import CineCase
from igikit.sim import CinePhantomSpec, make_case
from igikit.stream import Message, Sink, Source, read_session, wall_clock
from igikit.stream.events import StreamEvent
from igikit.supervise import AuditLog
from igikit.workflows.mrgrt.gating import GatingConfig
from igikit.workflows.mrgrt.operators import GateBeam
from igikit.workflows.mrgrt.workflow import GatingRun, GatingSettings, evaluate, run_gating

LATENCY_MS = 300.0


def _case(data_dir: Path, **spec: object) -> CineCase:
    base = {
        "case_id": "GATE",
        "background": "magdeburg_liver",
        "duration_s": 12.0,
        "frame_rate_hz": 6.0,
        "amplitude_si_mm": 16.0,
        "target_radius_mm": 8.0,
        "target_contrast": 0.6,
        "snr": 25.0,
        "seed": 2,  # frame 0 (which defines the gating window) falls at end-exhale, as in practice
    }
    base.update(spec)
    return make_case(CinePhantomSpec(**base), data_dir)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def moving(data_dir: Path) -> CineCase:
    return _case(data_dir)


@pytest.fixture(scope="module")
def gated(moving: CineCase, tmp_path_factory: pytest.TempPathFactory) -> GatingRun:
    out = tmp_path_factory.mktemp("gated")
    return run_gating(moving, GatingSettings(latency_ms=LATENCY_MS), out, fast=True)


def test_gating_holds_when_the_true_target_leaves_and_saves_the_dose(gated: GatingRun, moving: CineCase) -> None:
    o = evaluate(gated)
    assert o.reference_kind == "truth"
    outside_share = 100.0 * o.grid_outside.mean()
    assert outside_share > 40  # the true target spends much of the breathing cycle outside the window
    # Gating keeps the beam off for most of that time: far less beam-on time outside than without it.
    assert 5 < o.duty_cycle_pct < 80
    assert o.beam_on_outside_pct < 0.5 * outside_share
    # ... and never while the target is far out (it moves 16 mm; the boundary is 3 mm).
    assert o.beam_on_excursion_mm["p95"] < 4.0 and o.beam_on_excursion_mm["max"] < 6.0
    # Every exit the beam was on for was stopped within the latency plus one frame interval.
    bo = o.beam_off
    assert bo.n_exits >= 2 and bo.n_missed == 0
    assert all(lat <= LATENCY_MS + 1e3 / 6.0 + 40 for lat in bo.latency_ms)
    d = o.dose
    assert d["plan"].d98 == pytest.approx(1.0)
    assert d["gating"].d98 > d["no motion management"].d98 + 0.15
    assert d["tracking"].d98 > d["no motion management"].d98 + 0.15
    assert o.tracking_error_mm < 1.5
    m = o.metrics()
    assert set(m["dose"]) == {"plan", "no motion management", "gating", "tracking"}


def test_every_decision_is_one_verified_audit_record(gated: GatingRun) -> None:
    n = len(gated.frames)
    assert n == gated.case.n_frames == len(gated.decisions) == len(gated.commands)
    with AuditLog(gated.audit_path, create=False) as audit:
        # the session's opening record (its autonomy level), then one row per decision: the session
        # writes the log, nothing writes a decision twice
        assert audit.verify(expected_head=gated.audit_head, expected_rows=n + 1).ok
        entries = list(audit.records())
    assert [e.seq for e in entries] == list(range(1, n + 2))
    assert entries[0].record.decision == "autonomy" and entries[0].record.value == 3  # type: ignore[union-attr]
    assert [seq for seq, _ in gated.decisions] == list(range(2, n + 2))
    for entry, frame in zip(entries[1:], gated.frames, strict=True):
        rec = entry.record
        assert rec.decision == "beam" and rec.value == ("on" if frame["beam_on"] else "hold")
        assert rec.input_frame_ids == (frame["frame_id"],) and rec.session_id == gated.session_id
        assert rec.explanation.startswith(f"beam {rec.value}:") and "%" in rec.explanation
        assert rec.data["reason"] == frame["gate_reason"]
        assert rec.data["supervision"]["level"] == 3 and rec.data["supervision"]["mode"] == "applied"
    reasons = {f["gate_reason"] for f in gated.frames}
    assert {"outside", "prediction_warmup"} <= reasons and reasons & {"inside", "resuming"}
    # headless at level 3 with a confident tracker: the beam obeys the gate
    assert [c.beam_on for c in gated.commands] == [f["beam_on"] for f in gated.frames]
    assert gated.supervision["headless"] and gated.supervision["modes"] == {"applied": n}


def test_the_session_file_holds_every_frame_state(gated: GatingRun) -> None:
    assert gated.session_path is not None
    s = read_session(gated.session_path)
    n = gated.case.n_frames
    assert s.closed_cleanly and s.n_frames == n and s.attrs["workflow"] == "mrgrt"
    assert s.attrs["session_id"] == gated.session_id and s.attrs["audit_log"] == "audit.db"
    r = s.results
    h, w = gated.case.frames.shape[:2]
    assert r["target_mask"].shape == (n, h, w) and r["predicted_mask"].shape == (n, h, w)
    for key in ("centroid_mm", "predicted_centroid_mm", "predicted_next_centroid_mm"):
        assert r[key].shape == (n, 2) and np.isfinite(r[key]).all()
    assert np.isfinite(r["confidence"]).all()
    assert r["beam"] == ["on" if f["beam_on"] else "hold" for f in gated.frames]
    assert all(text.startswith("beam ") for text in r["explanation"])
    assert list(r["audit_seq"]) == list(range(2, n + 2))
    assert r["supervision"] == ["applied"] * n and list(r["beam_command_on"]) == list(r["beam_on"])
    for key in ("tracked_si_mm", "tracked_ap_mm"):
        assert np.isfinite(r[key]).all() and abs(r[key][0]) < 1e-6  # displacement from the planned target
    assert '"level": 3' in s.attrs["supervision"] and '"headless": true' in s.attrs["supervision"]
    assert np.all(r["beam_effect_time_s"] >= s.acquisition_time_s + LATENCY_MS / 1e3 - 1e-9)
    overlay = r["overlay"][n // 2]
    assert overlay["boundary"] and overlay["target"] and overlay["predicted"]
    assert not s.extra  # every frame fitted the columns made at frame 0
    assert "decision" not in r and "predicted_next_mask" not in r


def test_a_nan_frame_holds_the_beam_as_a_safety_decision(moving: CineCase, tmp_path: Path) -> None:
    frames = moving.frames[:, :, :30].astype(np.float32)
    frames[40:60, 30:90, 20] = np.nan
    case = dataclasses.replace(moving, frames=frames, labels=moving.labels[:, :, :30])  # type: ignore[index]
    run = run_gating(case, GatingSettings(), tmp_path, fast=True, record=False)
    bad = run.frames[20]
    assert bad["frame_id"] == 20 and not bad["frame_valid"] and not bad["beam_on"]
    assert bad["gate_reason"] == "invalid_input" and bad["safety"]
    _, rec = run.decisions[20]
    assert rec.safety and rec.value == "hold" and "frame 20 has 1200 NaN or infinite pixels" in rec.explanation
    # Tracking goes on after the bad frame.
    assert all(f["frame_valid"] for f in run.frames[21:])


def test_a_stale_frame_holds_the_beam(moving: CineCase, tmp_path: Path) -> None:
    case = dataclasses.replace(moving, frames=moving.frames[:, :, :12], labels=None)
    settings = GatingSettings(max_frame_age_ms=0.001, source_timeout_ms=5000.0)
    run = run_gating(case, settings, tmp_path, fast=True, record=False)
    assert all(f["gate_reason"] == "stale_frame" and f["safety"] and not f["beam_on"] for f in run.frames)
    assert "old (deadline 0 ms)" in run.decisions[0][1].explanation


class _StallingSource(Source):
    """Releases frames on its own clock, falls silent for ``stall_s`` after ``stall_after`` frames."""

    def __init__(self, case: CineCase, *, stall_after: int, stall_s: float, n: int, pace_s: float = 0.04) -> None:
        super().__init__("stalling", realtime=True)
        self.frames = np.moveaxis(case.frames[:, :, :n], 2, 0)
        self.times = case.frame_times_s()[:n]
        self.stall_after, self.stall_s, self.pace_s = stall_after, stall_s, pace_s
        self.rate = case.frame_rate_hz

    def metadata(self) -> dict[str, object]:
        return {"source": self.name, "frame_rate_hz": self.rate}

    def messages(self, stop: threading.Event) -> Iterator[Message]:
        for k in range(len(self.frames)):
            pause = self.stall_s if k == self.stall_after else self.pace_s  # stall_after -1: never
            if k and stop.wait(pause):
                return
            yield Message(k, float(self.times[k]), wall_clock(), self.frames[k])


def test_a_source_that_stops_holds_the_beam_within_the_timeout(data_dir: Path, tmp_path: Path) -> None:
    still = _case(data_dir, amplitude_si_mm=0.0, duration_s=4.0, rotation_deg=0.0)
    timeout_ms = 250.0
    settings = GatingSettings(source_timeout_ms=timeout_ms, max_frame_age_ms=500.0)
    source = _StallingSource(still, stall_after=16, stall_s=1.0, n=20)
    events: list[StreamEvent] = []
    run = run_gating(still, settings, tmp_path, source=source, record=False, on_event=events.append)
    kinds = [e.kind for e in events]
    assert "source_lost" in kinds and "source_restored" in kinds
    lost = [(seq, rec) for seq, rec in run.decisions if rec.data.get("reason") == "source_lost"]
    assert len(lost) == 1
    seq, rec = lost[0]
    assert rec.safety and rec.value == "hold" and "image source lost" in rec.explanation
    assert rec.input_frame_ids == (15,)  # the last frame that arrived
    # Decided within the stated deadline (the source timeout) plus scheduling slack.
    assert timeout_ms <= rec.data["silence_ms"] <= timeout_ms + 200
    # The beam was on before the source stopped; the hold is logged between the frames around it.
    before = [c for c in run.commands if c.frame_id == 15]
    assert before[0].beam_on
    order = [r.input_frame_ids for _, r in run.decisions]
    at = [s for s, _ in run.decisions].index(seq)
    assert order.index((15,)) < at < order.index((16,))
    hold = next(c for c in run.commands if c.reason == "source_lost")
    assert not hold.beam_on and hold.safety
    with AuditLog(run.audit_path, create=False) as audit:
        assert audit.verify().ok
        records = [e.record for e in audit.records()]
    beam = [r for r in records if getattr(r, "decision", "") == "beam"]
    assert len(beam) == len(run.decisions) == 21  # 20 frames and the hold, each logged once
    # the session heard of the loss too: an alert (the beam held), acknowledged by the headless
    # policy once frames came back, so the beam could resume
    (alert,) = [r for r in records if getattr(r, "decision", "") == "alert"]
    assert alert.value == "source_lost" and alert.safety  # type: ignore[union-attr]
    (ack,) = [r for r in records if getattr(r, "action", "") == "acknowledge"]
    assert ack.operator == "igikit-headless" and "headless run" in ack.reason  # type: ignore[union-attr]
    assert run.supervision["alerts"] == {"source_lost": 1} and run.supervision["acknowledged_automatically"] == 1
    assert any(c.beam_on for c in run.commands if c.frame_id > 16)


class _StallOnce(Sink):
    """A display that hangs once: the worker stalls, so no frame is decided for a while."""

    def __init__(self, at: int, stall_s: float) -> None:
        self.at, self.stall_s = at, stall_s
        super().__init__("stall")

    def receive(self, message: Message) -> None:
        if message.frame_id == self.at:
            time.sleep(self.stall_s)


def test_a_stalled_worker_holds_the_beam_within_the_stale_deadline(data_dir: Path, tmp_path: Path) -> None:
    still = _case(data_dir, amplitude_si_mm=0.0, duration_s=4.0, rotation_deg=0.0)
    settings = GatingSettings(max_frame_age_ms=300.0, source_timeout_ms=2000.0)
    source = _StallingSource(still, stall_after=-1, stall_s=0.0, n=24)
    run = run_gating(still, settings, tmp_path, source=source, record=False, sinks=[_StallOnce(15, 1.0)])
    held = [rec for _, rec in run.decisions if rec.input_frame_ids == (15,) and rec.data["reason"] == "stale_frame"]
    assert len(held) == 1 and held[0].safety and "no frame decided since frame 15" in held[0].explanation
    assert 300 <= held[0].data["silence_ms"] <= 300 + 200
    # Frames that arrived during the stall were dropped (latest frame wins), none was decided late.
    assert run.latency.frames_dropped > 0
    # And the linac's heartbeat: frame 15's "on" lapses 300 ms after it took effect.
    (on,) = [c for c in run.commands if c.frame_id == 15 and c.reason != "stale_frame"]
    assert on.beam_on and on.expires_s == pytest.approx(on.effect_time_s + 0.3)
    assert not on.on_at(on.effect_time_s + 0.31)


def test_gate_event_before_any_frame_is_a_hold_without_frame_ids() -> None:
    label = np.zeros((40, 40), np.uint8)
    label[15:25, 15:25] = 1
    gate = GateBeam(label, (1.0, 1.0), GatingConfig(), latency_s=0.3)
    got = []
    gate.listeners.append(got.append)
    gate.start()
    gate.handle_event(StreamEvent("source_lost", wall_clock(), -1, "no frame for 500 ms (timeout 500 ms)"))
    gate.handle_event(StreamEvent("source_lost", wall_clock(), -1, "again"))  # one hold per loss
    (rec,) = got
    assert rec.safety and rec.value == "hold" and rec.input_frame_ids == () and rec.frame_time_s is None
    assert "no frame for 500 ms" in rec.explanation


def test_settings_from_the_profile_and_their_checks() -> None:
    s = GatingSettings.from_profile("veterinary_cat", latency_ms=200.0, margin_mm=None)
    assert s.margin_mm == 2.0 and s.latency_ms == 200.0 and s.profile == "veterinary_cat"
    assert s.source_timeout_s == pytest.approx(0.5)
    from igikit.errors import InputError

    for bad in ({"margin_mm": -1.0}, {"threshold_pct": 101.0}, {"latency_ms": 0.0}, {"min_confidence": 2.0}):
        with pytest.raises(InputError):
            GatingSettings(**bad)  # type: ignore[arg-type]
    assert GatingSettings(threshold_pct=1.0).gating_config().hysteresis_pct == 1.0
