"""Closed-loop control: model identification, PID and MPC on the simulator, the safety supervisor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from igikit.errors import InputError
from igikit.supervise.audit import AuditLog
from igikit.workflows.fus.control import (
    ModelPredictiveController,
    OrganLimit,
    PIDController,
    SafetyLimits,
    SafetySupervisor,
    ThermalModel,
    identify_thermal_model,
)
from igikit.workflows.fus.loop import run_sonication, sonication_metrics
from igikit.workflows.fus.plan import plan_from_dict
from igikit.workflows.fus.thermometry import ThermometryFrame


def small_plan(**changes) -> dict:
    """A fast ablation plan: 48 x 48 voxels of 0.5 mm, synthetic background."""
    plan = {
        "name": "test",
        "frame_interval_s": 2.0,
        "max_duration_s": 200.0,
        "max_power_w": 1.0,
        "target": {"center_mm": [12.0, 12.0], "radii_mm": [2.5, 2.5]},
        "organs_at_risk": [{"name": "nerve", "center_mm": [20.0, 12.0], "radii_mm": [1.0, 3.0]}],
        "goal": {"type": "ablation", "focus_temperature_c": 57.0, "lesion_coverage": 0.95},
        "safety": {"min_trusted_fraction": 0.7},
        "test_sonication": {"power_w": 0.1, "duration_s": 16.0, "cooling_s": 10.0},
        "imaging": {"grid_size": 48, "spacing_mm": 0.5, "noise_c": 0.5, "background": "synthetic"},
    }
    plan.update(changes)
    return plan


# ------------------------------------------------------------------------- identification
def test_identification_recovers_gain_and_time_constant_from_noisy_test() -> None:
    truth = ThermalModel(gain_c_per_w=28.0, time_constant_s=25.0, frame_interval_s=2.0)
    power = np.r_[np.full(8, 0.1), np.zeros(5)]
    rng = np.random.default_rng(1)
    gains, taus = [], []
    for _ in range(20):
        measured = truth.simulate(power) + rng.normal(0.0, 0.05, power.size + 1)
        model = identify_thermal_model(measured, power, 2.0)
        gains.append(model.gain_c_per_w)
        taus.append(model.time_constant_s)
    # unbiased within a few percent on average; each fit within 25 %
    assert np.mean(gains) == pytest.approx(28.0, rel=0.05)
    assert np.mean(taus) == pytest.approx(25.0, rel=0.08)
    assert np.all(np.abs(np.array(gains) / 28.0 - 1) < 0.25)


def test_identification_exact_without_noise_and_rejects_no_heating() -> None:
    truth = ThermalModel(gain_c_per_w=12.0, time_constant_s=40.0, frame_interval_s=3.0, body_temperature_c=38.0)
    power = np.r_[np.full(10, 0.3), np.zeros(4)]
    model = identify_thermal_model(truth.simulate(power), power, 3.0, body_temperature_c=38.0)
    assert model.gain_c_per_w == pytest.approx(12.0, rel=1e-6)
    assert model.time_constant_s == pytest.approx(40.0, rel=1e-6)
    with pytest.raises(InputError, match="no power"):
        identify_thermal_model(np.full(10, 37.0), np.zeros(9), 2.0)
    with pytest.raises(InputError, match=">= 4 frames"):
        identify_thermal_model([37.0, 38.0], [1.0], 2.0)


# ------------------------------------------------------------------------------ controllers
def test_pid_clamps_and_does_not_wind_up() -> None:
    pid = PIDController(1.0, 0.5, setpoint_c=57.0, max_power_w=2.0, frame_interval_s=2.0)
    for _ in range(50):  # saturated far below the set point
        assert pid.update(37.0) == 2.0
    assert pid.integral <= 2.0 + 1e-9  # the integral did not run away while saturated
    assert pid.update(60.0) < 2.0  # so the power comes down as soon as the set point is passed
    assert pid.update(80.0) == 0.0


def test_mpc_tracks_its_own_model_without_overshoot() -> None:
    model = ThermalModel(gain_c_per_w=28.0, time_constant_s=25.0, frame_interval_s=2.0)
    mpc = ModelPredictiveController(model, setpoint_c=57.0, max_power_w=1.0)
    y, ys = 37.0, []
    for _ in range(80):
        u = mpc.update(y)
        assert 0.0 <= u <= 1.0
        y = float(model.simulate([u], initial_c=y)[-1])
        ys.append(y)
    assert max(ys) < 57.0 + 0.2
    assert ys[-1] == pytest.approx(57.0, abs=0.05)


def test_mpc_is_offset_free_with_a_wrong_gain() -> None:
    truth = ThermalModel(gain_c_per_w=20.0, time_constant_s=25.0, frame_interval_s=2.0)
    wrong = ThermalModel(gain_c_per_w=30.0, time_constant_s=18.0, frame_interval_s=2.0)
    mpc = ModelPredictiveController(wrong, setpoint_c=50.0, max_power_w=2.0)
    y = 37.0
    for _ in range(150):
        y = float(truth.simulate([mpc.update(y)], initial_c=y)[-1])
    assert y == pytest.approx(50.0, abs=0.05)


@pytest.fixture(scope="module")
def closed_loop_runs() -> dict:
    plan = plan_from_dict(small_plan())
    return {c: (run := run_sonication(plan, controller=c), sonication_metrics(run)) for c in ("pid", "mpc")}


@pytest.mark.parametrize("controller", ["pid", "mpc"])
def test_closed_loop_reaches_and_holds_57(closed_loop_runs: dict, controller: str) -> None:
    run, m = closed_loop_runs[controller]
    assert run.model is not None and run.model.gain_c_per_w > 0
    assert m["overshoot_c"] < 1.5
    assert m["steady_state_error_c"] < 0.5
    assert m["time_to_target_s"] is not None and m["time_to_target_s"] < 120
    assert m["lesion_dsc"] >= 0.9
    assert m["oar_limits_respected"] and not m["safety_stops"]
    assert "sonication complete" in run.stop_reason
    assert run.power_w.max() <= 1.0 and run.power_w.min() >= 0.0


# ------------------------------------------------------------------------------ supervisor
def frame(temp: np.ndarray, trusted: np.ndarray | None = None, t: float = 10.0) -> ThermometryFrame:
    trusted = np.ones(temp.shape, bool) if trusted is None else trusted
    return ThermometryFrame(t, temp, np.full(temp.shape, 0.5), trusted, np.zeros(temp.shape), 0)


@pytest.fixture
def scene() -> dict:
    target = np.zeros((20, 20), bool)
    target[8:12, 8:12] = True
    skin = np.zeros((20, 20), bool)
    skin[16:19, 4:16] = True
    return {"target": target, "skin": skin}


@pytest.mark.parametrize(
    ("fault", "reason", "fragment"),
    [
        ("oar", "organ_at_risk", "organ at risk 'skin' reached 44.3 °C (limit 43.0 °C)"),
        ("hot", "over_temperature", "target reached 91.0 °C (maximum 90.0 °C)"),
        ("late", "late_frame", "frame 1.50 s late (limit 1.00 s)"),
        ("trust", "trust_drop", "% of the target and organ-at-risk voxels are trusted (minimum 80 %)"),
    ],
)
def test_supervisor_stops_and_logs(tmp_path: Path, scene: dict, fault: str, reason: str, fragment: str) -> None:
    with AuditLog(tmp_path / "audit.db") as audit:
        sup = SafetySupervisor(
            target_mask=scene["target"], organs=[OrganLimit("skin", scene["skin"], 43.0)], audit=audit
        )
        temp = np.full((20, 20), 37.0)
        temp[9:11, 9:11] = 57.0
        assert sup.check(frame(temp), frame_index=0) is None and sup.gate(0.8) == 0.8
        trusted = np.ones((20, 20), bool)
        delay = 0.0
        if fault == "oar":
            temp[15:20, 8:13] = 44.3  # heat reaching the skin over several voxels
        elif fault == "hot":
            temp[8:12, 8:12] = 91.0
        elif fault == "late":
            delay = 1.5
        else:
            trusted[:, :] = False
            trusted[8:12, 8:12] = True  # only the target left
        record = sup.check(frame(temp, trusted, t=12.0), delay_s=delay, frame_index=1)
        assert record is not None
        assert sup.gate(0.8) == 0.0  # power zero from this frame on
        assert record.safety and record.value == 0.0 and record.decision == "sonication_power"
        assert fragment in record.explanation and record.explanation.startswith("sonication stop: ")
        assert record.data["reasons"] == [reason]
        assert record.frame_time_s == 12.0 and record.input_frame_ids == (1,)
        # latched: later frames, even normal ones, keep the power at zero and log nothing new
        assert sup.check(frame(np.full((20, 20), 37.0), t=14.0)) is None and sup.gate(1.0) == 0.0
        entries = list(audit.records())
        assert len(entries) == 1 and entries[0].record.safety
        assert audit.verify().ok


def test_supervisor_ignores_a_single_noisy_voxel(scene: dict) -> None:
    sup = SafetySupervisor(target_mask=scene["target"], organs=[OrganLimit("skin", scene["skin"], 43.0)])
    temp = np.full((20, 20), 37.0)
    temp[17, 10] = 46.0  # one voxel: smoothed over 3 x 3 it is 38 °C
    assert sup.check(frame(temp)) is None
    sup1 = SafetySupervisor(
        target_mask=scene["target"], organs=[OrganLimit("skin", scene["skin"], 43.0)], smoothing_voxels=1
    )
    assert sup1.check(frame(temp)) is not None


def test_safety_limits_validation() -> None:
    with pytest.raises(InputError):
        SafetyLimits(min_trusted_fraction=1.5)
    with pytest.raises(InputError):
        SafetyLimits(max_frame_delay_s=0.0)


@pytest.mark.parametrize(
    ("changes", "faults", "reason"),
    [
        ({"organs_at_risk": [{"name": "nerve", "limit_c": 39.0, "center_mm": [16.0, 12.0], "radii_mm": [1.0, 3.0]}]},
         {}, "organ_at_risk"),
        ({"safety": {"max_temperature_c": 58.0, "min_trusted_fraction": 0.7}}, {}, "over_temperature"),
        ({}, {"late_frames": [25]}, "late_frame"),
        ({}, {"signal_loss_frames": [25]}, "trust_drop"),
    ],
)  # fmt: skip
def test_loop_zeroes_power_within_one_frame(tmp_path: Path, changes: dict, faults: dict, reason: str) -> None:
    plan = plan_from_dict(small_plan(max_duration_s=60.0, **changes))
    with AuditLog(tmp_path / "audit.db") as audit:
        run = run_sonication(plan, controller="mpc", audit=audit, **faults)
        safety = [e.record for e in audit.records() if e.record.safety]
    assert len(safety) == 1 and reason in safety[0].data["reasons"]
    stop_index = int(safety[0].input_frame_ids[0])
    assert stop_index >= 13  # during control, after the test sonication
    assert run.power_w[stop_index - 1] > 0  # heating up to the frame before ...
    assert np.all(run.power_w[stop_index:] == 0.0)  # ... and zero from the stopping frame on
    assert run.stop_reason.startswith("sonication stop")
