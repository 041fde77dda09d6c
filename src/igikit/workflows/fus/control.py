"""Closed-loop sonication control: a personalised thermal model, PID and MPC, and the safety supervisor.

The controlled temperature (the focal spot's mean for ablation, the target's mean for
hyperthermia) is modelled as a first-order response to the acoustic power, in discrete time with
the frame interval ``dt``::

    theta[k+1] = a theta[k] + b u[k],    theta = T - T_body,   a = exp(-dt / tau),   b = K (1 - a)

``K`` (°C/W, steady-state gain) lumps the absorption and the heat sinks, ``tau`` (s) the
conduction and perfusion time constant. :func:`identify_thermal_model` estimates both from a short
low-power test sonication, from the *measured* temperatures only (the "personalised" model of
Sebeke et al. 2019): an ARX least-squares fit, refined by output-error least squares (which is not
biased by the measurement noise in the regressor).

:class:`PIDController` (clamped to ``0..max_power_w``, with anti-windup by conditional
integration; default gains by the SIMC rules from the identified model) and
:class:`ModelPredictiveController` (at every frame, the bounded least-squares power sequence over a
short horizon that follows a first-order reference trajectory to the set point; offset-free
through an input-disturbance estimate that absorbs model error) produce the power.

:class:`SafetySupervisor` sits after either controller: power goes to zero within one frame when an
organ at risk exceeds its limit, the target exceeds the maximum temperature, a frame is late, or
the trusted-voxel fraction of the watched region drops; the stop is latched (a human resumes) and
logged as a :class:`~igikit.supervise.records.DecisionRecord` with ``safety=True``.

References
----------
.. [1] L. Sebeke, J. D. Deenen, E. Maljaars, et al., "Model predictive control for MR-HIFU-mediated,
   uniform hyperthermia," Int. J. Hyperthermia 36(1):1040-1050, 2019.
.. [2] S. Skogestad, "Simple analytic rules for model reduction and PID controller tuning,"
   J. Process Control 13:291-309, 2003 (SIMC).
.. [3] G. Pannocchia and J. B. Rawlings, "Disturbance models for offset-free model-predictive
   control," AIChE J. 49(2):426-437, 2003.
.. [4] K. J. Astrom and T. Hagglund, *Advanced PID Control*, ISA, 2006 (anti-windup).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from igikit.errors import InputError

if TYPE_CHECKING:
    from igikit.supervise.audit import AuditLog
    from igikit.supervise.records import DecisionRecord
    from igikit.workflows.fus.thermometry import ThermometryFrame

COMPONENT_VERSION = "1"


# ------------------------------------------------------------------------------ thermal model
@dataclass(frozen=True)
class ThermalModel:
    """First-order discrete model of the controlled temperature's response to power.

    Attributes
    ----------
    gain_c_per_w
        Steady-state temperature rise per watt (°C/W): absorption over heat sinks.
    time_constant_s
        Time constant of the rise (s): conduction and perfusion.
    frame_interval_s
        Sampling interval the model is discretised at (s).
    body_temperature_c
        Temperature without heating (°C).
    residual_c
        RMS of the output-error fit residual (°C): noise plus model error.
    """

    gain_c_per_w: float
    time_constant_s: float
    frame_interval_s: float
    body_temperature_c: float = 37.0
    residual_c: float = 0.0

    def __post_init__(self) -> None:
        for name in ("gain_c_per_w", "time_constant_s", "frame_interval_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"thermal model {name} must be a positive number, got {value!r}")

    @property
    def a(self) -> float:
        """Pole ``exp(-dt / tau)``."""
        return math.exp(-self.frame_interval_s / self.time_constant_s)

    @property
    def b(self) -> float:
        """Input gain ``K (1 - a)`` (°C per W per frame)."""
        return self.gain_c_per_w * (1.0 - self.a)

    def simulate(self, power_w: npt.ArrayLike, initial_c: float | None = None) -> np.ndarray:
        """Temperatures (°C) at frames ``0..N`` for powers ``u[0..N-1]`` held over each interval."""
        u = np.asarray(power_w, dtype=np.float64).reshape(-1)
        theta = np.empty(u.size + 1)
        theta[0] = (self.body_temperature_c if initial_c is None else initial_c) - self.body_temperature_c
        a, b = self.a, self.b
        for k in range(u.size):
            theta[k + 1] = a * theta[k] + b * u[k]
        return theta + self.body_temperature_c


def identify_thermal_model(
    temperature_c: npt.ArrayLike,
    power_w: npt.ArrayLike,
    frame_interval_s: float,
    *,
    body_temperature_c: float = 37.0,
) -> ThermalModel:
    """Estimate gain and time constant from a test sonication's measured temperatures.

    Parameters
    ----------
    temperature_c
        Measured controlled temperature at frames ``0..N`` (°C).
    power_w
        Power held from frame ``k`` to ``k + 1`` (W), ``N`` or ``N + 1`` values (a last one is ignored).
    frame_interval_s
        Frame interval (s).
    body_temperature_c
        Unheated temperature (°C).

    Returns
    -------
    ThermalModel

    Raises
    ------
    InputError
        With fewer than 4 frames, no power, or data that show no heating (a gain or time constant
        that is not positive).

    Examples
    --------
    >>> import numpy as np
    >>> truth = ThermalModel(gain_c_per_w=20.0, time_constant_s=15.0, frame_interval_s=2.0)
    >>> u = np.r_[np.full(10, 0.5), np.zeros(6)]
    >>> m = identify_thermal_model(truth.simulate(u), u, 2.0)
    >>> round(m.gain_c_per_w, 3), round(m.time_constant_s, 3)
    (20.0, 15.0)
    """
    from scipy.optimize import least_squares

    y = np.asarray(temperature_c, dtype=np.float64).reshape(-1)
    u = np.asarray(power_w, dtype=np.float64).reshape(-1)[: max(y.size - 1, 0)]
    dt = float(frame_interval_s)
    if y.size < 4 or u.size != y.size - 1:
        raise InputError(f"model identification needs >= 4 frames and one power per interval; got {y.size}, {u.size}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(u))):
        raise InputError("model identification: temperatures and powers must be finite")
    if not np.any(u > 0):
        raise InputError("model identification: the test sonication applied no power")
    theta = y - body_temperature_c
    # ARX least squares: theta[k+1] = a theta[k] + b u[k]
    design = np.column_stack([theta[:-1], u])
    (a0, b0), *_ = np.linalg.lstsq(design, theta[1:], rcond=None)
    a0 = float(np.clip(a0, 0.05, 0.995))
    gain0 = max(float(b0) / (1.0 - a0), 1e-3)
    tau0 = -dt / math.log(a0)

    def residual(p: np.ndarray) -> np.ndarray:
        model = ThermalModel(math.exp(p[0]), math.exp(p[1]), dt, body_temperature_c)
        return model.simulate(u, initial_c=y[0]) - y

    fit = least_squares(residual, x0=np.log([gain0, tau0]), method="lm")
    gain, tau = (float(v) for v in np.exp(fit.x))
    if not (math.isfinite(gain) and math.isfinite(tau)) or tau > 1e5:
        raise InputError(
            f"model identification failed: the test sonication shows no usable heating (gain {gain:.3g} °C/W, "
            f"time constant {tau:.3g} s)"
        )
    rms = float(np.sqrt(np.mean(fit.fun**2)))
    return ThermalModel(gain, tau, dt, body_temperature_c, rms)


# --------------------------------------------------------------------------------- controllers
class Controller(Protocol):
    """Anything that turns the newest measured temperature into the power for the next interval."""

    setpoint_c: float
    max_power_w: float

    def update(self, measured_c: float) -> float:
        """Power (W) to hold until the next frame."""
        ...


def _check_limits(setpoint_c: float, max_power_w: float, frame_interval_s: float) -> None:
    if not math.isfinite(setpoint_c):
        raise InputError(f"set point must be a number of °C, got {setpoint_c!r}")
    if not (math.isfinite(max_power_w) and max_power_w > 0):
        raise InputError(f"maximum power must be > 0 W, got {max_power_w!r}")
    if not (math.isfinite(frame_interval_s) and frame_interval_s > 0):
        raise InputError(f"frame interval must be > 0 s, got {frame_interval_s!r}")


class PIDController:
    """Discrete PID on the measured temperature, clamped to ``0..max_power_w``, with anti-windup.

    ``u = kp e + ki sum(e dt) - kd d(y)/dt`` with ``e = setpoint - y``. The derivative acts on the
    measurement (no kick when the set point changes); the integral stops accumulating while the
    output is saturated in the direction the error pushes (conditional integration [4]).

    Parameters
    ----------
    kp, ki, kd
        Gains in W/°C, W/(°C s), W s/°C.
    setpoint_c, max_power_w, frame_interval_s
        Target temperature (°C), power limit (W), frame interval (s).
    """

    def __init__(
        self,
        kp: float,
        ki: float,
        kd: float = 0.0,
        *,
        setpoint_c: float,
        max_power_w: float,
        frame_interval_s: float,
    ) -> None:
        _check_limits(setpoint_c, max_power_w, frame_interval_s)
        if min(kp, ki, kd) < 0 or not all(math.isfinite(g) for g in (kp, ki, kd)):
            raise InputError(f"PID gains must be finite and >= 0, got kp={kp}, ki={ki}, kd={kd}")
        self.kp, self.ki, self.kd = float(kp), float(ki), float(kd)
        self.setpoint_c = float(setpoint_c)
        self.max_power_w = float(max_power_w)
        self.dt = float(frame_interval_s)
        self.integral = 0.0
        self._previous: float | None = None

    @classmethod
    def from_model(
        cls,
        model: ThermalModel,
        *,
        setpoint_c: float,
        max_power_w: float,
        closed_loop_time_s: float | None = None,
    ) -> PIDController:
        """PI gains by the SIMC rules [2] for the identified first-order model.

        The sampling adds an effective delay of one frame; the closed-loop time constant defaults
        to twice that (fast, with a gain margin of about 3).
        """
        delay = model.frame_interval_s
        tc = 2.0 * delay if closed_loop_time_s is None else float(closed_loop_time_s)
        kp = model.time_constant_s / (model.gain_c_per_w * (tc + delay))
        ti = min(model.time_constant_s, 4.0 * (tc + delay))
        return cls(kp, kp / ti, 0.0, setpoint_c=setpoint_c, max_power_w=max_power_w, frame_interval_s=delay)

    def update(self, measured_c: float) -> float:
        """Power (W) for the next interval from the newest measured temperature."""
        if not math.isfinite(measured_c):
            raise InputError(f"measured temperature must be a number, got {measured_c!r}")
        error = self.setpoint_c - measured_c
        derivative = 0.0 if self._previous is None else (measured_c - self._previous) / self.dt
        self._previous = measured_c
        candidate = self.integral + self.ki * error * self.dt
        raw = self.kp * error + candidate - self.kd * derivative
        saturated_high = raw > self.max_power_w and error > 0
        saturated_low = raw < 0 and error < 0
        if not (saturated_high or saturated_low):
            self.integral = candidate
        raw = self.kp * error + self.integral - self.kd * derivative
        return float(min(max(raw, 0.0), self.max_power_w))


class ModelPredictiveController:
    """Model-predictive power control on the identified first-order model [1].

    At each frame: correct the model state with the measurement (observer gain ``state_gain``) and
    update the input-disturbance estimate ``w`` (gain ``disturbance_gain``) — with it the model
    predicts ``theta[k+1] = a theta[k] + b (u[k] + w)``, which removes the steady-state offset a
    wrong gain would leave [3]. Then choose ``u[0..H-1]`` in ``[0, max_power_w]`` minimising

        sum_j (theta[k+j] - r[j])^2 + move_penalty * sum_j (u[j] - u[j-1])^2

    where ``r`` approaches the set point along ``exp(-t / reference_time_s)`` (a smooth approach
    that does not overshoot), a bounded linear least-squares problem solved exactly
    (:func:`scipy.optimize.lsq_linear`); apply ``u[0]``.

    Parameters
    ----------
    model
        The identified :class:`ThermalModel`.
    setpoint_c, max_power_w
        Target temperature (°C) and power limit (W).
    horizon
        Prediction horizon (frames).
    move_penalty
        Weight of power changes (°C^2 / W^2); damps the response to noise.
    reference_time_s
        Time constant of the reference trajectory (s); default a third of the model's time
        constant, at least one frame interval.
    state_gain, disturbance_gain
        Observer gains in ``(0, 1]``: how much of each prediction error goes into the state and
        into the disturbance estimate.
    """

    def __init__(
        self,
        model: ThermalModel,
        *,
        setpoint_c: float,
        max_power_w: float,
        horizon: int = 10,
        move_penalty: float | None = None,
        reference_time_s: float | None = None,
        state_gain: float = 0.6,
        disturbance_gain: float = 0.3,
    ) -> None:
        _check_limits(setpoint_c, max_power_w, model.frame_interval_s)
        if horizon < 1:
            raise InputError(f"MPC horizon must be >= 1 frame, got {horizon}")
        self.model = model
        self.setpoint_c = float(setpoint_c)
        self.max_power_w = float(max_power_w)
        self.horizon = int(horizon)
        # a power step of 10 % of the maximum costs as much as 1 °C of tracking error per frame
        self.move_penalty = (
            float(move_penalty) if move_penalty is not None else (1.0 / (0.1 * self.max_power_w)) ** 2 * 0.05
        )
        dt = model.frame_interval_s
        self.reference_time_s = (
            max(dt, model.time_constant_s / 3.0) if reference_time_s is None else float(reference_time_s)
        )
        self.state_gain, self.disturbance_gain = float(state_gain), float(disturbance_gain)
        self.state_c: float | None = None  # observer estimate of theta
        self.disturbance_w = 0.0
        self.last_power_w = 0.0
        a, b, h = model.a, model.b, self.horizon
        # prediction theta[j+1] = a^(j+1) theta0 + sum_{i<=j} a^(j-i) b (u_i + w)
        self._free = a ** np.arange(1, h + 1)
        self._forced = np.zeros((h, h))
        for j in range(h):
            for i in range(j + 1):
                self._forced[j, i] = a ** (j - i) * b
        self._diff = np.eye(h) - np.eye(h, k=-1)

    def observe(self, measured_c: float) -> float:
        """Fold the newest measurement into the state and disturbance estimates; returns the state (°C)."""
        if not math.isfinite(measured_c):
            raise InputError(f"measured temperature must be a number, got {measured_c!r}")
        theta = measured_c - self.model.body_temperature_c
        m = self.model
        if self.state_c is None:
            self.state_c = theta
        else:
            predicted = m.a * self.state_c + m.b * (self.last_power_w + self.disturbance_w)
            innovation = theta - predicted
            self.state_c = predicted + self.state_gain * innovation
            self.disturbance_w += self.disturbance_gain * innovation / m.b
            # the disturbance cannot cancel more than the whole power range
            self.disturbance_w = float(np.clip(self.disturbance_w, -self.max_power_w, self.max_power_w))
        return self.state_c + m.body_temperature_c

    def plan(self) -> np.ndarray:
        """The optimal power sequence over the horizon from the current estimates (W)."""
        from scipy.optimize import lsq_linear

        if self.state_c is None:
            raise InputError("MPC: observe a temperature before planning")
        m, h = self.model, self.horizon
        theta0 = self.state_c
        r_theta = self.setpoint_c - m.body_temperature_c
        steps = np.arange(1, h + 1) * m.frame_interval_s
        reference = r_theta - (r_theta - theta0) * np.exp(-steps / self.reference_time_s)
        free = self._free * theta0 + self._forced @ np.full(h, self.disturbance_w)
        lam = math.sqrt(self.move_penalty)
        design = np.vstack([self._forced, lam * self._diff])
        target = np.concatenate([reference - free, lam * np.eye(h)[0] * self.last_power_w])
        result = lsq_linear(design, target, bounds=(0.0, self.max_power_w), method="bvls")
        return np.asarray(result.x)

    def update(self, measured_c: float) -> float:
        """Power (W) for the next interval from the newest measured temperature."""
        self.observe(measured_c)
        power = float(np.clip(self.plan()[0], 0.0, self.max_power_w))
        self.last_power_w = power
        return power

    def applied(self, power_w: float) -> None:
        """Tell the observer which power was actually applied (e.g. 0 W after a safety stop)."""
        self.last_power_w = float(power_w)


# ------------------------------------------------------------------------------------ safety
@dataclass(frozen=True)
class SafetyLimits:
    """The supervisor's thresholds.

    Attributes
    ----------
    max_temperature_c
        Stop when any trusted voxel of the target (or the focal spot) exceeds this (°C).
    min_trusted_fraction
        Stop when fewer of the watched voxels (target and organs at risk) are trusted.
    max_frame_delay_s
        Stop when a frame arrives later than this after it was due (s).
    """

    max_temperature_c: float = 90.0
    min_trusted_fraction: float = 0.8
    max_frame_delay_s: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_temperature_c):
            raise InputError(f"max_temperature_c must be a number, got {self.max_temperature_c!r}")
        if not 0.0 <= self.min_trusted_fraction <= 1.0:
            raise InputError(f"min_trusted_fraction must lie in [0, 1], got {self.min_trusted_fraction!r}")
        if not (math.isfinite(self.max_frame_delay_s) and self.max_frame_delay_s > 0):
            raise InputError(f"max_frame_delay_s must be > 0, got {self.max_frame_delay_s!r}")


def _trusted_mean_filter(values: np.ndarray, trusted: np.ndarray, size: int) -> np.ndarray:
    """Mean of the trusted voxels in each ``size x size`` window (normalised convolution)."""
    if size <= 1:
        return values
    from scipy import ndimage

    weight = trusted.astype(np.float64)
    axes = tuple(range(values.ndim - 2, values.ndim))
    num = ndimage.uniform_filter(np.where(trusted, values, 0.0), size, mode="nearest", axes=axes)
    den = ndimage.uniform_filter(weight, size, mode="nearest", axes=axes)
    return np.asarray(np.where(den > 0, num / np.maximum(den, 1e-12), values))


@dataclass(frozen=True, eq=False)
class OrganLimit:
    """An organ at risk as the supervisor sees it: name, boolean mask of the map, limit (°C)."""

    name: str
    mask: np.ndarray
    limit_c: float


@dataclass
class SafetySupervisor:
    """Power to zero within one frame when a safety limit is crossed; latched; every stop logged.

    Parameters
    ----------
    target_mask
        Voxels of the target (and focal spot) checked against ``limits.max_temperature_c``.
    organs
        Organs at risk with their limits.
    limits
        :class:`SafetyLimits`.
    audit
        Where each stop's :class:`~igikit.supervise.records.DecisionRecord` is appended (optional;
        they are always kept in :attr:`records`).
    session_id
        Written into the records.
    smoothing_voxels
        Temperatures are compared with the limits after a ``n x n`` mean over trusted voxels (1: no
        smoothing): a single noisy voxel in a dark region would otherwise stop the sonication for
        nothing, while heat spreads over several voxels (the focal spot's width is a few voxels).

    Examples
    --------
    >>> import numpy as np
    >>> from igikit.workflows.fus.thermometry import ThermometryFrame
    >>> target = np.zeros((4, 4), bool); target[1, 1] = True
    >>> skin = OrganLimit("skin", np.eye(4, dtype=bool)[::-1], 43.0)
    >>> sup = SafetySupervisor(target_mask=target, organs=[skin], smoothing_voxels=1)
    >>> temp = np.full((4, 4), 37.0); temp[0, 3] = 44.3
    >>> frame = ThermometryFrame(3.0, temp, np.full((4, 4), 0.5), np.ones((4, 4), bool), np.zeros((4, 4)), 0)
    >>> print(sup.check(frame).explanation)
    sonication stop: organ at risk 'skin' reached 44.3 °C (limit 43.0 °C)
    >>> sup.gate(1.5)
    0.0
    """

    target_mask: np.ndarray
    organs: Sequence[OrganLimit] = ()
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    audit: AuditLog | None = None
    session_id: str = ""
    smoothing_voxels: int = 3
    records: list[DecisionRecord] = field(default_factory=list)
    stopped: bool = False

    COMPONENT = "fus.safety"

    def __post_init__(self) -> None:
        self.target_mask = np.asarray(self.target_mask, dtype=bool)
        if not self.target_mask.any():
            raise InputError("the safety supervisor needs a non-empty target mask")
        for organ in self.organs:
            if np.shape(organ.mask) != self.target_mask.shape:
                raise InputError(
                    f"organ at risk {organ.name!r}: mask {np.shape(organ.mask)}, target {self.target_mask.shape}"
                )
        watched = self.target_mask.copy()
        for organ in self.organs:
            watched |= np.asarray(organ.mask, dtype=bool)
        self.watched_mask = watched

    def organ_maxima(self, frame: ThermometryFrame) -> dict[str, float]:
        """Hottest trusted voxel of each organ at risk, after the smoothing the checks use (NaN: none trusted)."""
        trusted = np.asarray(frame.trusted, dtype=bool)
        smoothed = _trusted_mean_filter(np.asarray(frame.temperature_c), trusted, self.smoothing_voxels)
        out = {}
        for organ in self.organs:
            voxels = np.asarray(organ.mask, dtype=bool) & trusted
            out[organ.name] = float(smoothed[voxels].max()) if voxels.any() else math.nan
        return out

    def headroom(self, frame: ThermometryFrame) -> dict[str, tuple[float, float]]:
        """Hottest trusted temperature (smoothed as the checks do) and limit of each watched region (°C).

        Keyed by organ-at-risk name, plus ``"target"`` against the maximum temperature; NaN where no
        voxel is trusted. The margins tell how near a limit is (level-3 handover).
        """
        trusted = np.asarray(frame.trusted, dtype=bool)
        smoothed = _trusted_mean_filter(np.asarray(frame.temperature_c), trusted, self.smoothing_voxels)
        out: dict[str, tuple[float, float]] = {}
        for name, mask, limit in [(o.name, o.mask, o.limit_c) for o in self.organs] + [
            ("target", self.target_mask, self.limits.max_temperature_c)
        ]:
            voxels = np.asarray(mask, dtype=bool) & trusted
            out[name] = (float(smoothed[voxels].max()) if voxels.any() else math.nan, float(limit))
        return out

    def violations(self, frame: ThermometryFrame, *, delay_s: float = 0.0) -> list[tuple[str, str, dict[str, Any]]]:
        """Every limit this frame crosses: ``(reason, explanation, numbers)``; empty when all is well."""
        found: list[tuple[str, str, dict[str, Any]]] = []
        lim = self.limits
        if delay_s > lim.max_frame_delay_s:
            found.append(
                (
                    "late_frame",
                    f"frame {delay_s:.2f} s late (limit {lim.max_frame_delay_s:.2f} s)",
                    {"delay_s": float(delay_s), "limit_s": lim.max_frame_delay_s},
                )
            )
        trusted = np.asarray(frame.trusted, dtype=bool)
        fraction = float(trusted[self.watched_mask].mean())
        if fraction < lim.min_trusted_fraction:
            found.append(
                (
                    "trust_drop",
                    f"only {100 * fraction:.0f} % of the target and organ-at-risk voxels are trusted "
                    f"(minimum {100 * lim.min_trusted_fraction:.0f} %)",
                    {"trusted_fraction": fraction, "minimum": lim.min_trusted_fraction},
                )
            )
        temp = np.asarray(frame.temperature_c)
        smoothed = _trusted_mean_filter(temp, trusted, self.smoothing_voxels)
        for organ in self.organs:
            voxels = np.asarray(organ.mask, dtype=bool) & trusted
            if not voxels.any():
                continue
            hottest = float(smoothed[voxels].max())
            if hottest > organ.limit_c:
                found.append(
                    (
                        "organ_at_risk",
                        f"organ at risk '{organ.name}' reached {hottest:.1f} °C (limit {organ.limit_c:.1f} °C)",
                        {"organ": organ.name, "temperature_c": hottest, "limit_c": organ.limit_c},
                    )
                )
        voxels = self.target_mask & trusted
        if voxels.any():
            hottest = float(smoothed[voxels].max())
            if hottest > lim.max_temperature_c:
                found.append(
                    (
                        "over_temperature",
                        f"target reached {hottest:.1f} °C (maximum {lim.max_temperature_c:.1f} °C)",
                        {"temperature_c": hottest, "limit_c": lim.max_temperature_c},
                    )
                )
        return found

    def check(
        self, frame: ThermometryFrame, *, delay_s: float = 0.0, frame_index: int | None = None
    ) -> DecisionRecord | None:
        """Check one frame; on the first crossing latch the stop and return (and log) its record."""
        from igikit import __version__
        from igikit.supervise.records import DecisionRecord

        if self.stopped:
            return None
        found = self.violations(frame, delay_s=delay_s)
        if not found:
            return None
        self.stopped = True
        data: dict[str, Any] = {"reasons": [reason for reason, _, _ in found]}
        for reason, _, numbers in found:
            data[reason] = numbers
        record = DecisionRecord(
            decision="sonication_power",
            value=0.0,
            explanation="sonication stop: " + "; ".join(text for _, text, _ in found),
            confidence=1.0,
            component=self.COMPONENT,
            component_version=f"{__version__}+{COMPONENT_VERSION}",
            frame_time_s=float(frame.frame_time_s),
            input_frame_ids=() if frame_index is None else (int(frame_index),),
            workflow="fus",
            session_id=self.session_id,
            safety=True,
            data=data,
        )
        self.records.append(record)
        if self.audit is not None:
            self.audit.append(record)
        return record

    def gate(self, power_w: float) -> float:
        """The power allowed through: ``power_w``, or 0 W once stopped."""
        return 0.0 if self.stopped else float(power_w)
