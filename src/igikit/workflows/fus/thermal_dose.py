"""Thermal dose in cumulative equivalent minutes at 43 °C (CEM43), integrated exactly.

Sapareto & Dewey (1984) express any time-temperature history as the time at 43 °C that would cause
the same damage::

    CEM43 = integral R ** (43 - T(t)) dt,   R = 0.5 for T >= 43 °C, 0.25 below.

Thermometry samples ``T`` at frame times only. Between two frames igikit takes the temperature to
change linearly, and integrates that linear history in closed form instead of with a rectangle
rule: for ``T(s) = T0 + (T1 - T0) s / dt`` on one side of 43 °C,

    integral = dt * R ** (43 - T0) * (exp(u) - 1) / u,   u = ln(1 / R) * (T1 - T0),

and an interval that crosses 43 °C is split where the line crosses it, each part with its own
``R``. The result is exact for piecewise-linear temperature; a rectangle rule on 3 s frames is off by
tens of percent during a fast rise (bench/fus_thermometry.py).

References
----------
.. [1] S. A. Sapareto and W. C. Dewey, "Thermal dose determination in cancer therapy," Int. J.
   Radiat. Oncol. Biol. Phys., 10(6):787-800, 1984.
.. [2] G. C. van Rhoon et al., "CEM43 °C thermal dose thresholds: a potential guide for magnetic
   resonance radiofrequency exposure levels?" Eur. Radiol., 23:2215-2227, 2013.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from igikit.errors import InputError

#: Breakpoint temperature of the Sapareto-Dewey model (°C).
BREAKPOINT_C = 43.0
#: ``R`` at and above the breakpoint, and below it.
R_ABOVE = 0.5
R_BELOW = 0.25
#: Lethal thermal dose used for ablation (minutes at 43 °C); profiles may set their own.
LESION_THRESHOLD_MIN = 240.0

_LN_ABOVE = float(np.log(1.0 / R_ABOVE))
_LN_BELOW = float(np.log(1.0 / R_BELOW))


def _segment(t0: np.ndarray, t1: np.ndarray, dt_min: np.ndarray | float, ln_inv_r: np.ndarray | float) -> np.ndarray:
    """Exact integral (min) of ``R ** (43 - T)`` over a linear segment on one side of 43 °C."""
    u = ln_inv_r * (t1 - t0)
    small = np.abs(u) < 1e-8
    # expm1(u)/u -> 1 + u/2 near 0; the series avoids 0/0 for constant temperature.
    ratio = np.where(small, 1.0 + 0.5 * u, np.expm1(u) / np.where(small, 1.0, u))
    return np.asarray(dt_min * np.exp(ln_inv_r * (t0 - BREAKPOINT_C)) * ratio)


def cem43_increment(
    temperature_start_c: npt.ArrayLike, temperature_end_c: npt.ArrayLike, duration_s: float | npt.ArrayLike
) -> np.ndarray:
    """Thermal dose (CEM43, minutes) of one interval with linearly changing temperature.

    Parameters
    ----------
    temperature_start_c, temperature_end_c
        Temperature (°C) at the start and end of the interval; arrays broadcast.
    duration_s
        Length of the interval (s), >= 0.

    Returns
    -------
    numpy.ndarray
        ``integral R ** (43 - T(t)) dt`` in minutes, exact for a linear ``T(t)``, with ``R = 0.5``
        at and above 43 °C and ``0.25`` below; intervals crossing 43 °C are split at the crossing.

    References
    ----------
    Sapareto & Dewey, Int. J. Radiat. Oncol. Biol. Phys. 10:787, 1984.

    Examples
    --------
    >>> float(cem43_increment(44.0, 44.0, 60.0))  # one minute at 44 °C = two minutes at 43 °C
    2.0
    >>> round(float(cem43_increment(43.0, 45.0, 120.0)), 4)  # 2 min ramp: 2 * (4 - 1) / (2 ln 2)
    4.3281
    """
    a = np.asarray(temperature_start_c, dtype=np.float64)
    b = np.asarray(temperature_end_c, dtype=np.float64)
    dt_min = np.asarray(duration_s, dtype=np.float64) / 60.0
    if np.any(dt_min < 0):
        raise InputError("interval duration must not be negative")
    a, b, dt_min = np.broadcast_arrays(a, b, dt_min)
    with np.errstate(over="ignore", invalid="ignore"):
        a_hot = a >= BREAKPOINT_C
        # one side of 43 °C: one exponential per voxel, R chosen per voxel
        out = _segment(a, b, dt_min, np.where(a_hot, _LN_ABOVE, _LN_BELOW))
        crossing = a_hot != (b >= BREAKPOINT_C)
        if np.any(crossing):
            # split where the line reaches 43 °C, each part with its own R (few voxels: index them)
            ca, cb, cdt, hot = a[crossing], b[crossing], dt_min[crossing], a_hot[crossing]
            frac = (BREAKPOINT_C - ca) / (cb - ca)
            edge = np.full_like(ca, BREAKPOINT_C)
            first = _segment(ca, edge, cdt * frac, np.where(hot, _LN_ABOVE, _LN_BELOW))
            second = _segment(edge, cb, cdt * (1.0 - frac), np.where(hot, _LN_BELOW, _LN_ABOVE))
            out = np.array(out, dtype=np.float64, copy=True)
            out[crossing] = first + second
    return np.asarray(out)


def cem43(temperature_c: npt.ArrayLike, times_s: npt.ArrayLike, *, cumulative: bool = False) -> np.ndarray:
    """Thermal dose (CEM43, minutes) of a temperature series, exact for piecewise-linear temperature.

    Parameters
    ----------
    temperature_c
        Absolute temperature (°C), time first: ``(T, ...)``.
    times_s
        The ``T`` sample times (s), non-decreasing.
    cumulative
        If True return the dose after every frame, ``(T, ...)`` (zero at the first frame);
        otherwise only the final dose, ``(...)``.

    Returns
    -------
    numpy.ndarray
        CEM43 in minutes (float64).

    Raises
    ------
    InputError
        If the number of times does not match the frames or the times go backwards.

    References
    ----------
    Sapareto & Dewey, Int. J. Radiat. Oncol. Biol. Phys. 10:787, 1984.

    Examples
    --------
    >>> import numpy as np
    >>> float(cem43(np.full(11, 45.0), np.arange(11) * 6.0))  # 1 min at 45 °C
    4.0
    """
    temps = np.asarray(temperature_c, dtype=np.float64)
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)
    if temps.ndim == 0 or temps.shape[0] != times.size:
        raise InputError(f"{times.size} times for temperature of shape {temps.shape}; time must be axis 0")
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
        raise InputError("times_s must be finite and non-decreasing")
    if times.size < 2:
        zero = np.zeros(temps.shape[1:])
        return zero[None] if cumulative else zero
    dt = np.diff(times).reshape((-1,) + (1,) * (temps.ndim - 1))
    increments = cem43_increment(temps[:-1], temps[1:], dt)
    if cumulative:
        return np.concatenate([np.zeros((1, *temps.shape[1:])), np.cumsum(increments, axis=0)])
    return np.asarray(increments.sum(axis=0))


def lesion_mask(cem43_min: npt.ArrayLike, *, threshold_min: float = LESION_THRESHOLD_MIN) -> np.ndarray:
    """Voxels whose thermal dose reached the lethal threshold (default CEM43 >= 240 min), as uint8."""
    return (np.asarray(cem43_min) >= threshold_min).astype(np.uint8)


#: The real-time dose clips temperatures to this range (°C): below it the dose is nil, above it lethal
#: many times over (2^107 minutes per second at 150 °C), and the rates stay finite in float32.
DOSE_TEMPERATURE_RANGE_C = (-50.0, 150.0)


class DoseAccumulator:
    """CEM43 updated frame by frame, for real-time use (the same exact integral as :func:`cem43`).

    Each voxel's dose rate ``r = R ** (43 - T)`` at the last frame is kept, so a frame costs one
    exponential per voxel, and every step is a whole-array operation (no masks, which cost more than
    the arithmetic on random voxels). With ``c = ln(1 / R)`` and ``u = c (T1 - T0)``:

    * on one side of 43 °C the exact integral of a linear segment is ``dt (r1 - r0) / u``, or its
      series ``dt r0 (1 + u/2 + u^2/6 + u^3/24 + u^4/120)`` where ``|u|`` is small and the difference
      would cancel;
    * across 43 °C, where the rate is 1 on both sides, the two exact parts of :func:`cem43_increment`
      add up to ``dt ((r1 - 1) / c1 - (r0 - 1) / c0) / (T1 - T0)``.

    Temperatures are clipped to :data:`DOSE_TEMPERATURE_RANGE_C`; the dose itself is summed in float64.

    Parameters
    ----------
    shape
        Shape of one temperature map.
    dtype
        Working precision of the rates: float64 (default, exact to ~1e-12) or float32, for the
        real-time thermometry of float32 temperature maps (NumPy's float32 exponential is
        vectorised, several times faster than float64's on AVX2). float32 rates carry a relative error
        of about 4e-6 on heating curves and up to 5e-5 for noise jumping around 100 °C (against the
        float64 :func:`cem43`), the dose of a temperature error below 1e-4 °C: the float32
        temperature's own rounding is of that order, and the thermometry noise three orders larger.

    Examples
    --------
    >>> import numpy as np
    >>> acc = DoseAccumulator((2,))
    >>> _ = acc.update(np.array([44.0, 37.0]), 0.0)
    >>> acc.update(np.array([44.0, 37.0]), 60.0).tolist()[0]
    2.0
    """

    def __init__(self, shape: tuple[int, ...], *, dtype: npt.DTypeLike = np.float64) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise InputError(f"dose rates are float32 or float64, not {self.dtype}")
        self.dose_min = np.zeros(shape)
        self._scalar: type[np.floating[Any]] = np.float32 if self.dtype == np.float32 else np.float64
        one = self._scalar
        # below this |u| the series (truncation u^5 / 720) replaces the difference (rounding eps / u)
        self._small_u = one(1e-4 if self.dtype == np.float64 else 2e-2)
        self._ln_below, self._ln_step = one(_LN_BELOW), one(_LN_ABOVE - _LN_BELOW)
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # T, hot, rate, q
        self._last_time_s: float | None = None

    def _difference_quotient(self, numerator: np.ndarray, x: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
        """``numerator / x``, where ``numerator = scale * expm1(x)``, accurate also for small ``|x|``.

        Where ``|x|`` is small the difference in ``numerator`` has cancelled: there the series
        ``scale * (1 + x/2 + x^2/6 + x^3/24 + x^4/120)`` replaces it. Blended arithmetically, no masks.
        """
        one = self._scalar
        small = (np.abs(x) < self._small_u).astype(self.dtype)
        numerator /= x + small  # x + 1 where small: never 0, and replaced below
        series = x * one(1 / 120)
        for c in (1 / 24, 1 / 6, 1 / 2):
            series += one(c)
            series *= x
        series += one(1.0)
        if scale is not None:
            series *= scale
        series -= numerator
        series *= small
        numerator += series
        return numerator

    def update(self, temperature_c: npt.ArrayLike, time_s: float) -> np.ndarray:
        """Add the dose since the previous frame and return the running CEM43 (minutes)."""
        one = self._scalar
        temperature = np.asarray(temperature_c)
        if temperature.shape != self.dose_min.shape:
            raise InputError(f"temperature map of shape {temperature.shape}, expected {self.dose_min.shape}")
        if self._last_time_s is not None and float(time_s) < self._last_time_s:
            raise InputError(f"frame time {time_s} s is before the previous frame ({self._last_time_s} s)")
        low, high = DOSE_TEMPERATURE_RANGE_C
        temp = np.clip(temperature, one(low), one(high), dtype=self.dtype)  # a copy: the caller may reuse its map
        hot = (temp >= one(BREAKPOINT_C)).astype(self.dtype)
        ln_inv_r = hot * self._ln_step
        ln_inv_r += self._ln_below
        above = temp - one(BREAKPOINT_C)
        exponent = above * ln_inv_r
        rate = np.exp(exponent)
        # q = (rate - 1) / c = (T - 43) expm1(x) / x: the dose from 43 °C to T (NumPy's expm1 is not vectorised)
        q = self._difference_quotient(rate - one(1.0), exponent, None)
        q *= above
        if self._last is not None and self._last_time_s is not None:
            last_temp, last_hot, last_rate, last_q = self._last
            change = temp - last_temp
            # one side of 43 °C: (r1 - r0) / u = r0 expm1(u) / u
            increment = self._difference_quotient(rate - last_rate, ln_inv_r * change, last_rate)
            crossing = np.abs(hot - last_hot)
            if crossing.any():
                across = q - last_q
                change *= crossing
                change += one(1.0) - crossing  # T1 - T0 where crossing (never 0 there), 1 elsewhere
                across /= change
                across -= increment
                across *= crossing
                increment += across
            self.dose_min += increment * ((float(time_s) - self._last_time_s) / 60.0)
        self._last = (temp, hot, rate, q)
        self._last_time_s = float(time_s)
        return self.dose_min
