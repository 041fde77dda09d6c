"""The closed sonication loop on the simulator: Pennes -> MR frames -> thermometry -> controller -> power.

Every frame interval::

    true temperature (Pennes, igikit.sim.heating)
      -> complex MR frame on the real background, PRF phase, drift, noise (igikit.sim.thermometry)
      -> RealtimeThermometry: measured temperature, uncertainty, trusted voxels, CEM43
      -> SafetySupervisor (may latch a stop) and the controller (PID or MPC)
      -> power held until the next frame -> Pennes step

The run begins with the test sonication (low power, then cooling) from which the thermal model is
identified on the measured data; then the controller takes over until the goal is met (ablation:
the measured lethal dose covers the planned fraction of the target; hyperthermia: the window has
been held for its duration), the time limit, or a safety stop; cooling frames follow so that the
dose is complete. The controller never sees the simulator's truth; the truth is recorded beside the
measurements for the metrics.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from igikit.errors import InputError
from igikit.workflows.fus.control import (
    Controller,
    ModelPredictiveController,
    OrganLimit,
    PIDController,
    SafetySupervisor,
    ThermalModel,
    identify_thermal_model,
)
from igikit.workflows.fus.plan import SonicationPlan, ellipse_mask

if TYPE_CHECKING:
    from igikit.supervise.audit import AuditLog
    from igikit.supervise.records import DecisionRecord
    from igikit.workflows.fus.supervision import SonicationSupervision

log = logging.getLogger(__name__)

CONTROLLERS: tuple[str, ...] = ("pid", "mpc")
#: Cooling ends when the hottest measured target voxel is below body temperature + this (°C) ...
COOLED_RISE_C = 5.0
#: ... or after this long (s).
MAX_COOLING_S = 120.0
#: The controlled temperature counts as "at target" within this of the set point (°C): the time to
#: target, and the start of a hyperthermia hold.
REACHED_TOLERANCE_C = 0.5


@dataclass(frozen=True, eq=False)
class SonicationRun:
    """Everything one closed-loop run recorded, per frame, plus the final maps.

    Per-frame arrays share the index of :attr:`times_s`; ``power_w[k]`` is held from frame ``k``
    to frame ``k + 1``. ``phase`` names each frame's part of the run: ``"test"`` (test sonication
    and its cooling), ``"control"``, ``"cooling"``.
    """

    plan: SonicationPlan
    controller: str
    model: ThermalModel | None
    times_s: np.ndarray
    phase: np.ndarray
    power_w: np.ndarray
    controlled_measured_c: np.ndarray
    controlled_true_c: np.ndarray
    target_max_true_c: np.ndarray
    target_in_window: np.ndarray
    trusted_fraction: np.ndarray
    oar_max_measured_c: dict[str, np.ndarray]
    oar_max_true_c: dict[str, np.ndarray]
    target_mask: np.ndarray
    controlled_mask: np.ndarray
    organ_masks: dict[str, np.ndarray]
    magnitude: np.ndarray
    dose_true_min: np.ndarray
    dose_measured_min: np.ndarray
    reliable_mask: np.ndarray
    peak_true_c: np.ndarray
    snapshot_measured_c: np.ndarray
    snapshot_time_s: float
    records: tuple[DecisionRecord, ...]
    stop_reason: str
    hold_start_s: float | None
    wall_ms_per_frame: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def control_start_index(self) -> int:
        """Index of the first controlled frame."""
        idx = np.nonzero(self.phase == "control")[0]
        return int(idx[0]) if idx.size else len(self.phase)

    @property
    def control_end_index(self) -> int:
        """One past the last controlled frame."""
        idx = np.nonzero(self.phase == "control")[0]
        return int(idx[-1]) + 1 if idx.size else len(self.phase)


def _background(plan: SonicationPlan) -> np.ndarray:
    """The complex background of the grid: the real GRE image centred on its tissue, or a synthetic one."""
    n = plan.imaging.grid_size
    if plan.imaging.background == "synthetic":
        yy, xx = np.mgrid[:n, :n] / n
        return np.asarray(1000.0 * np.exp(1j * (0.8 * xx - 0.5 * yy + 0.6 * xx * yy)))
    from scipy import ndimage

    from igikit.sim.thermometry import NATIVE_SIZE, load_complex_background

    if n > NATIVE_SIZE:
        raise InputError(
            f"imaging.grid_size {n} exceeds the real background's {NATIVE_SIZE} voxels; use background: synthetic",
            plan.source,
        )
    bg = load_complex_background()
    smooth = ndimage.uniform_filter(np.abs(bg), 16)
    cy, cx = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    y0 = int(np.clip(cy - n // 2, 0, bg.shape[0] - n))
    x0 = int(np.clip(cx - n // 2, 0, bg.shape[1] - n))
    return np.asarray(bg[y0 : y0 + n, x0 : x0 + n])


def heat_per_watt(plan: SonicationPlan) -> np.ndarray:
    """Heat deposited per watt of acoustic power (W/m^3 per W) on the plan's grid.

    A fixed focus is one Gaussian; with ``trajectory_radius_mm`` the focus is steered around a circle
    (eight points, as volumetric MR-HIFU sonication cells are) faster than heat diffuses, so the time
    average is the mean of the eight Gaussians.
    """
    from igikit.sim.heating import gaussian_heat_source

    cx, cy = plan.focus_center_mm
    radius = plan.trajectory_radius_mm
    angles = np.linspace(0.0, 2.0 * np.pi, 8, endpoint=False) if radius > 0 else np.zeros(1)
    heat = np.zeros(plan.shape)
    for angle in angles:
        centre = (cx + radius * math.cos(angle), cy + radius * math.sin(angle))
        heat += gaussian_heat_source(plan.shape, plan.spacing_mm, centre, plan.focus_sigma_mm, power_w=1.0)
    return heat / angles.size


def _make_controller(plan: SonicationPlan, kind: str, model: ThermalModel) -> Controller:
    setpoint, pmax = plan.goal.setpoint_c, plan.max_power_w
    if kind == "pid":
        if plan.pid_gains is not None:
            g = plan.pid_gains
            return PIDController(
                g["kp"], g["ki"], g["kd"], setpoint_c=setpoint, max_power_w=pmax, frame_interval_s=plan.frame_interval_s
            )
        return PIDController.from_model(model, setpoint_c=setpoint, max_power_w=pmax)
    opts = plan.mpc_options
    return ModelPredictiveController(
        model,
        setpoint_c=setpoint,
        max_power_w=pmax,
        horizon=int(opts.get("horizon", 10)),
        move_penalty=opts.get("move_penalty"),
        reference_time_s=opts.get("reference_time_s"),
    )


def run_sonication(
    plan: SonicationPlan,
    *,
    controller: str = "mpc",
    audit: AuditLog | None = None,
    session_id: str = "",
    late_frames: Collection[int] = (),
    signal_loss_frames: Collection[int] = (),
    progress: Callable[[int, float], None] | None = None,
    supervision: SonicationSupervision | None = None,
) -> SonicationRun:
    """Run the closed loop of ``plan`` on the simulator.

    Parameters
    ----------
    plan
        The validated :class:`~igikit.workflows.fus.plan.SonicationPlan`.
    controller
        ``"pid"`` or ``"mpc"``.
    audit
        Audit log for the decision records (safety stops, goal reached).
    session_id
        Written into the decision records.
    late_frames, signal_loss_frames
        Fault injection for tests and drills: frame indices that arrive late (by twice the allowed
        delay), or whose signal is lost (the frame is noise only).
    progress
        Called as ``progress(frame_index, frame_time_s)`` after each frame.
    supervision
        A supervised session (the console): the sonication decision of every frame is submitted
        to it and the power gated by what it lets through (pause, alerts, autonomy level, level-3
        handover near a limit), safety stops and the goal are logged through it (not to ``audit``),
        and every frame is published to it (:mod:`igikit.workflows.fus.supervision`).

    Returns
    -------
    SonicationRun
    """
    from igikit.core.profile import load_profile
    from igikit.sim.heating import PennesSolver, TissueMaps
    from igikit.sim.thermometry import synthesize_frames
    from igikit.supervise.records import DecisionRecord
    from igikit.workflows.fus.thermal_dose import DoseAccumulator
    from igikit.workflows.fus.thermometry import RealtimeThermometry, temperature_uncertainty

    if controller not in CONTROLLERS:
        raise InputError(f"controller must be one of {', '.join(CONTROLLERS)}, got {controller!r}")
    im = plan.imaging
    shape, spacing = plan.shape, plan.spacing_mm
    dt = plan.frame_interval_s
    body = plan.body_temperature_c
    profile = load_profile(plan.profile)
    tissue = TissueMaps.uniform(profile.tissue(plan.tissue), shape)
    solver = PennesSolver(tissue, spacing, boundary="dirichlet", boundary_temperature_c=body)
    unit_heat = heat_per_watt(plan)

    target = plan.target.mask(shape, spacing)
    focus = ellipse_mask(
        shape, spacing, plan.focus_center_mm, [s + plan.trajectory_radius_mm for s in plan.focus_sigma_mm[:2]]
    )
    if not focus.any():  # a focus narrower than a voxel: its nearest voxel
        iy = round(plan.focus_center_mm[1] / spacing[1])
        ix = round(plan.focus_center_mm[0] / spacing[0])
        focus[iy, ix] = True
    controlled = focus if plan.goal.type == "ablation" else target
    organs = [OrganLimit(o.name, o.region.mask(shape, spacing), o.limit_c) for o in plan.organs_at_risk]
    if supervision is not None:
        audit = None  # the session logs every record
    supervisor = SafetySupervisor(
        target_mask=target | focus, organs=organs, limits=plan.safety, audit=audit, session_id=session_id
    )

    bg = _background(plan)
    magnitude = np.abs(bg)
    n_base = im.baseline_frames
    unit = temperature_uncertainty(
        magnitude, 1.0, te_s=im.te_s, b0_t=im.b0_t, baseline_magnitude=magnitude, n_baseline=n_base
    )
    # noise per channel giving the plan's temperature standard deviation (RMS over the target)
    sigma = im.noise_c / float(np.sqrt(np.mean(unit[target] ** 2)))
    reference = None
    drift_order = None
    if im.drift_rad_per_s != 0:
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        r = np.hypot(xx * spacing[0] - plan.focus_center_mm[0], yy * spacing[1] - plan.focus_center_mm[1])
        reference = r > 0.3 * shape[0] * spacing[0]
        drift_order = 1
    thermo = RealtimeThermometry(
        te_s=im.te_s,
        b0_t=im.b0_t,
        body_temperature_c=body,
        noise_sigma=max(sigma, 1e-9 * float(magnitude.mean())),
        drift_order=drift_order,
        reference_mask=reference,
        max_uncertainty_c=im.max_uncertainty_c,
    )
    rng_base = 1_000_003 * plan.seed

    def acquire(temperature: np.ndarray, t: float, index: int) -> np.ndarray:
        frame = synthesize_frames(
            temperature[None],
            [t],
            bg,
            te_s=im.te_s,
            b0_t=im.b0_t,
            body_temperature_c=body,
            spacing_mm=spacing,
            noise_sigma=sigma,
            drift_rad_per_s=im.drift_rad_per_s,
            seed=rng_base + index + 1000,
        ).frames[0]
        if index in signal_loss_frames:
            rng = np.random.default_rng(rng_base + index)
            frame = (sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))).astype(np.complex64)
        return np.asarray(frame)

    unheated = np.full(shape, body)
    thermo.set_baseline(np.stack([acquire(unheated, -dt * (n_base - i), -1 - i) for i in range(n_base)]))

    n_test = max(1, round(plan.test_sonication.duration_s / dt))
    n_test_cool = round(plan.test_sonication.cooling_s / dt)
    max_frames = n_test + n_test_cool + math.ceil((plan.max_duration_s + MAX_COOLING_S) / dt) + 1

    temp = unheated.copy()
    true_dose = DoseAccumulator(shape)
    peak = unheated.copy()
    times: list[float] = []
    phases: list[str] = []
    powers: list[float] = []
    cv_meas: list[float] = []
    cv_true: list[float] = []
    tmax_true: list[float] = []
    in_window: list[float] = []
    trusted_frac: list[float] = []
    oar_meas: dict[str, list[float]] = {o.name: [] for o in organs}
    oar_true: dict[str, list[float]] = {o.name: [] for o in organs}
    ctrl: Controller | None = None
    model: ThermalModel | None = None
    phase = "test"
    control_start_s = 0.0
    cooling_start_s = 0.0
    hold_start: float | None = None
    stop_reason = ""
    snapshot = np.full(shape, np.nan)
    snapshot_t = 0.0
    snapshot_value = -math.inf
    low, high = plan.goal.window_c
    records: list[DecisionRecord] = []
    wall = 0.0
    trusted_count = np.zeros(shape, dtype=np.int64)
    safety_stop = ""

    for k in range(max_frames):
        t = k * dt
        tick = time.perf_counter()
        frame = acquire(temp, t, k)
        measured = thermo.update(frame, t)
        true_dose.update(temp, t)
        delay = 2.0 * plan.safety.max_frame_delay_s if k in late_frames else 0.0
        stop = supervisor.check(measured, delay_s=delay, frame_index=k)
        if stop is not None:
            records.append(stop)
            log.warning("%s", stop.explanation)
            if not stop_reason:
                stop_reason = stop.explanation
            if supervision is not None:
                supervision.log_stop(stop, k)
            safety_stop = stop.explanation
        usable = controlled & measured.trusted
        y = float(measured.temperature_c[usable].mean()) if usable.any() else math.nan

        power = 0.0
        if phase == "test" and supervisor.stopped:
            # a safety stop during the test sonication: no model, nothing to control
            phase, cooling_start_s = "cooling", t
        if phase == "test":
            power = plan.test_sonication.power_w if k < n_test else 0.0
            if k >= n_test + n_test_cool:
                model = identify_thermal_model(
                    np.asarray([*cv_meas, y]), np.asarray(powers), dt, body_temperature_c=body
                )
                log.info(
                    "identified model: gain %.2f °C/W, time constant %.1f s (residual %.2f °C)",
                    model.gain_c_per_w,
                    model.time_constant_s,
                    model.residual_c,
                )
                ctrl = _make_controller(plan, controller, model)
                phase, control_start_s = "control", t
        if phase == "control":
            assert ctrl is not None
            done = ""
            if plan.goal.type == "ablation":
                # an untrusted voxel's temperature is noise and its dose meaningless: count the trusted ones
                seen = target & measured.trusted
                dose_target = measured.cem43_min[seen if seen.any() else target]
                coverage = float(np.mean(dose_target >= plan.goal.cem43_threshold_min))
                if coverage >= plan.goal.lesion_coverage:
                    done = (
                        f"sonication complete: {100 * coverage:.0f} % of the target reached CEM43 >= "
                        f"{plan.goal.cem43_threshold_min:g} min (goal {100 * plan.goal.lesion_coverage:.0f} %)"
                    )
            else:
                if hold_start is None and math.isfinite(y) and y >= plan.goal.setpoint_c - REACHED_TOLERANCE_C:
                    hold_start = t
                if hold_start is not None and t - hold_start >= 60.0 * plan.goal.duration_min:
                    done = (
                        f"hyperthermia complete: {low:g}-{high:g} °C window held for "
                        f"{(t - hold_start) / 60:.1f} min (goal {plan.goal.duration_min:g} min)"
                    )
            if not done and t - control_start_s >= plan.max_duration_s:
                done = f"time limit: {plan.max_duration_s:g} s of controlled heating without reaching the goal"
            if supervisor.stopped:
                phase, cooling_start_s = "cooling", t
            elif done:
                record = DecisionRecord(
                    decision="sonication_power",
                    value=0.0,
                    explanation=done,
                    confidence=1.0,
                    component=f"fus.control.{controller}",
                    component_version="1",
                    frame_time_s=t,
                    input_frame_ids=(k,),
                    workflow="fus",
                    session_id=session_id,
                )
                records.append(record)
                if audit is not None:
                    audit.append(record)
                if supervision is not None:
                    supervision.log_done(record)
                stop_reason = stop_reason or done
                phase, cooling_start_s = "cooling", t
            elif math.isfinite(y):
                power = ctrl.update(y)
            # no trusted voxel to measure: the supervisor's trust check stops; hold 0 W meanwhile
        if supervision is not None and supervision.stop_requested and phase != "cooling":
            stop_reason = stop_reason or "sonication stopped: the console was closed"
            phase, cooling_start_s = "cooling", t
        if phase == "cooling":
            power = 0.0
        power = supervisor.gate(power)
        if supervision is not None:
            headroom = supervisor.headroom(measured)
            power = supervision.authorise(
                power,
                frame_index=k,
                time_s=t,
                phase=phase,
                controlled_c=y,
                headroom=headroom,
                trusted_fraction=float(measured.trusted[supervisor.watched_mask].mean()),
            )
        if isinstance(ctrl, ModelPredictiveController):
            ctrl.applied(power)
        wall += time.perf_counter() - tick

        times.append(t)
        phases.append(phase)
        powers.append(power)
        cv_meas.append(y)
        cv_true.append(float(temp[controlled].mean()))
        tmax_true.append(float(temp[target].max()))
        in_window.append(float(np.mean((temp[target] >= low) & (temp[target] <= high))))
        trusted_frac.append(float(measured.trusted[supervisor.watched_mask].mean()))
        trusted_count += measured.trusted
        maxima = supervisor.organ_maxima(measured)
        for o in organs:
            oar_meas[o.name].append(maxima[o.name])
            oar_true[o.name].append(float(temp[o.mask].max()))
        if math.isfinite(y) and y > snapshot_value and phase != "test":
            snapshot = np.where(measured.trusted, measured.temperature_c, np.nan)
            snapshot_t, snapshot_value = t, y
        dose_measured = measured.cem43_min
        if supervision is not None:
            from igikit.workflows.fus.supervision import SonicationFrame

            supervision.publish(
                SonicationFrame(
                    index=k,
                    time_s=t,
                    phase=phase,
                    magnitude=np.abs(frame),
                    temperature_c=measured.temperature_c,
                    trusted=measured.trusted,
                    cem43_min=dose_measured,
                    power_w=power,
                    controlled_c=y,
                    oar_max_c=maxima,
                    trusted_fraction=trusted_frac[-1],
                    stop_reason=safety_stop,
                )
            )
        if progress is not None:
            progress(k, t)
        if phase == "cooling" and t > cooling_start_s:
            hot = measured.temperature_c[target & measured.trusted]
            if hot.size == 0 or float(hot.max()) < body + COOLED_RISE_C or t - cooling_start_s >= MAX_COOLING_S:
                break
        temp = solver.step(temp, unit_heat * power, dt)
        np.maximum(peak, temp, out=peak)
    n = len(times)
    return SonicationRun(
        plan=plan,
        controller=controller,
        model=model,
        times_s=np.asarray(times),
        phase=np.asarray(phases),
        power_w=np.asarray(powers),
        controlled_measured_c=np.asarray(cv_meas),
        controlled_true_c=np.asarray(cv_true),
        target_max_true_c=np.asarray(tmax_true),
        target_in_window=np.asarray(in_window),
        trusted_fraction=np.asarray(trusted_frac),
        oar_max_measured_c={k: np.asarray(v) for k, v in oar_meas.items()},
        oar_max_true_c={k: np.asarray(v) for k, v in oar_true.items()},
        target_mask=target,
        controlled_mask=controlled,
        organ_masks={o.name: o.mask for o in organs},
        magnitude=magnitude,
        dose_true_min=true_dose.dose_min.copy(),
        dose_measured_min=np.asarray(dose_measured).copy(),
        reliable_mask=trusted_count >= 0.9 * n,
        peak_true_c=peak,
        snapshot_measured_c=snapshot,
        snapshot_time_s=snapshot_t,
        records=tuple(records),
        stop_reason=stop_reason,
        hold_start_s=hold_start,
        wall_ms_per_frame=1000.0 * wall / max(n, 1),
    )


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice similarity coefficient of two masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def sonication_metrics(run: SonicationRun) -> dict[str, Any]:
    """The run's control, dose and safety metrics (plain JSON values).

    Control metrics are on the *true* controlled temperature (the simulator's truth, what the
    tissue feels) over the controlled phase; ``*_measured`` repeat them on what thermometry saw.

    * ``overshoot_c``: peak above the set point (0 if never above);
    * ``time_to_target_s``: from the start of control until within 0.5 °C of the set point;
    * ``steady_state_error_c``: ``|mean - set point|`` over the second half of the time between
      reaching the set point and the end of control; ``tracking_rms_c`` the RMS error there;
    * ``lesion_dsc``: Dice of the true lethal-dose region (CEM43 >= threshold) with the target;
    * ``max_oar_temperature_c``: per organ, the true maximum over the run, with the voxels that
      ever exceeded the limit;
    * ``hyperthermia_fraction``: mean over the hold of the fraction of target voxels in the window.
    """
    plan = run.plan
    goal = plan.goal
    setpoint = goal.setpoint_c
    i0, i1 = run.control_start_index, run.control_end_index
    t = run.times_s
    true = run.controlled_true_c
    meas = run.controlled_measured_c
    out: dict[str, Any] = {
        "plan": plan.name,
        "controller": run.controller,
        "goal": goal.type,
        "setpoint_c": setpoint,
        "controlled": "focal spot mean" if goal.type == "ablation" else "target mean",
        "frame_interval_s": plan.frame_interval_s,
        "frames": int(t.size),
        "duration_s": _round(float(t[-1]) if t.size else 0.0, 1),
        "model": None
        if run.model is None
        else {
            "gain_c_per_w": _round(run.model.gain_c_per_w),
            "time_constant_s": _round(run.model.time_constant_s),
            "residual_c": _round(run.model.residual_c),
        },
        "stop_reason": run.stop_reason,
        "safety_stops": [r.explanation for r in run.records if r.safety],
        "energy_j": _round(float(np.sum(run.power_w) * plan.frame_interval_s), 2),
        "max_power_w": _round(float(run.power_w.max()) if run.power_w.size else 0.0),
        "wall_ms_per_frame": _round(run.wall_ms_per_frame, 2),
    }
    for suffix, series in (("", true), ("_measured", meas)):
        ctl = series[i0:i1]
        tt = t[i0:i1]
        if ctl.size == 0:
            out.update({f"overshoot_c{suffix}": None, f"time_to_target_s{suffix}": None})
            out.update({f"steady_state_error_c{suffix}": None, f"tracking_rms_c{suffix}": None})
            continue
        out[f"overshoot_c{suffix}"] = _round(max(0.0, float(np.nanmax(ctl)) - setpoint))
        reached = np.nonzero(ctl >= setpoint - REACHED_TOLERANCE_C)[0]
        if reached.size:
            out[f"time_to_target_s{suffix}"] = _round(float(tt[reached[0]] - t[i0]), 1)
            start = reached[0] + (ctl.size - reached[0]) // 2
            window = ctl[start:]
            out[f"steady_state_error_c{suffix}"] = _round(abs(float(np.nanmean(window)) - setpoint))
            out[f"tracking_rms_c{suffix}"] = _round(float(np.sqrt(np.nanmean((window - setpoint) ** 2))))
            out[f"steady_state_window_s{suffix}"] = [_round(float(tt[start]), 1), _round(float(tt[-1]), 1)]
        else:
            out[f"time_to_target_s{suffix}"] = None
            out[f"steady_state_error_c{suffix}"] = _round(
                abs(float(np.nanmean(ctl[-max(1, ctl.size // 4) :])) - setpoint)
            )
            out[f"tracking_rms_c{suffix}"] = None
    voxel_mm2 = plan.spacing_mm[0] * plan.spacing_mm[1]
    lesion = run.dose_true_min >= goal.cem43_threshold_min
    # measured dose only where thermometry was trusted (>= 90 % of frames): elsewhere it is noise
    lesion_measured = (run.dose_measured_min >= goal.cem43_threshold_min) & run.reliable_mask
    out["lesion_dsc"] = _round(dice(lesion, run.target_mask))
    out["lesion_dsc_measured"] = _round(dice(lesion_measured, run.target_mask))
    out["lesion_area_mm2"] = _round(float(lesion.sum()) * voxel_mm2, 2)
    out["target_area_mm2"] = _round(float(run.target_mask.sum()) * voxel_mm2, 2)
    out["target_max_temperature_c"] = _round(float(run.target_max_true_c.max()), 2)
    oars: dict[str, Any] = {}
    for organ in plan.organs_at_risk:
        mask = run.organ_masks[organ.name]
        measured = run.oar_max_measured_c[organ.name]
        oars[organ.name] = {
            "limit_c": organ.limit_c,
            "max_temperature_c": _round(float(run.oar_max_true_c[organ.name].max()), 2),
            "max_measured_c": _round(float(np.nanmax(measured)) if np.isfinite(measured).any() else None, 2),
            "voxels_above_limit": int(np.sum(run.peak_true_c[mask] > organ.limit_c)),
            "max_cem43_min": _round(float(run.dose_true_min[mask].max()), 3),
        }
    out["organs_at_risk"] = oars
    out["max_oar_temperature_c"] = _round(max((v["max_temperature_c"] for v in oars.values()), default=None), 2)
    out["oar_limits_respected"] = all(v["voxels_above_limit"] == 0 for v in oars.values())
    if goal.type == "hyperthermia":
        hold = np.zeros(t.size, bool)
        if run.hold_start_s is not None:
            hold = (t >= run.hold_start_s) & (np.arange(t.size) < i1)
        frac = run.target_in_window[hold]
        out["hyperthermia_window_c"] = list(goal.window_c)
        out["hyperthermia_hold_s"] = _round(float(t[hold][-1] - t[hold][0]) if hold.any() else 0.0, 1)
        out["hyperthermia_fraction"] = _round(float(frac.mean()) if frac.size else 0.0)
        out["hyperthermia_min_fraction"] = _round(float(frac.min()) if frac.size else 0.0)
        out["hyperthermia_time_at_90pct"] = _round(float(np.mean(frac >= 0.9)) if frac.size else 0.0)
    return out
