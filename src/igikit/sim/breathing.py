"""Breathing waveforms for phantoms, made from real recorded respiration traces.

A phantom's motion follows a real breathing trace (external chest / abdomen markers, Krilavicius et
al. 2013) rather than a sinusoid, so that it carries real cycle-to-cycle variation, exhale plateaus
and pauses. The trace can be time-scaled to another breathing rate (a child, a dog) and made more
irregular by a smooth random time warp and amplitude modulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal
from scipy.interpolate import CubicSpline

from igikit.errors import InputError

#: Breathing frequencies searched for the dominant rate (Hz): 4 to 90 breaths per minute.
_RATE_BAND_HZ = (4.0 / 60.0, 1.5)


@dataclass(frozen=True)
class BreathingWaveform:
    """A breathing signal sampled at the frame times of a phantom.

    Parameters
    ----------
    time_s
        Frame times (s), starting at 0.
    phase01
        The breathing signal scaled to [0, 1] over these frames: 0 at the deepest exhale, 1 at the
        deepest inhale of the window.
    rate_per_min
        Breathing rate of the waveform (breaths per minute) after any time scaling.
    trace_start_s
        Where in the recorded trace the window starts (s from the trace's first sample).
    trace_time_s
        Trace time sampled for each frame (s from the trace's first sample), after warping.
    """

    time_s: np.ndarray
    phase01: np.ndarray
    rate_per_min: float
    trace_start_s: float
    trace_time_s: np.ndarray


def dominant_rate_per_min(time_s: np.ndarray, position_mm: np.ndarray) -> float:
    """Dominant breathing rate of a trace (breaths per minute), from its power spectrum.

    The trace is resampled to 10 Hz, detrended, and the Welch periodogram's peak between 4 and 90
    breaths per minute is taken.

    Parameters
    ----------
    time_s, position_mm
        A cleaned trace: increasing times (s) and positions (mm).

    Returns
    -------
    float
        Breaths per minute.
    """
    t = np.asarray(time_s, dtype=np.float64)
    x = np.asarray(position_mm, dtype=np.float64)
    if t.size < 20 or t[-1] - t[0] < 10.0:
        raise InputError(f"a breathing trace needs at least 10 s of samples, got {t[-1] - t[0]:.1f} s")
    fs = 10.0
    grid = np.arange(t[0], t[-1], 1.0 / fs)
    y = signal.detrend(np.interp(grid, t, x))
    nper = min(grid.size, int(60 * fs))
    freq, power = signal.welch(y, fs=fs, nperseg=nper, nfft=max(4096, nper))
    band = (freq >= _RATE_BAND_HZ[0]) & (freq <= _RATE_BAND_HZ[1])
    return float(freq[band][np.argmax(power[band])] * 60.0)


def smooth_random_process(
    n: int, dt_s: float, correlation_s: float, rng: np.random.Generator
) -> np.ndarray:
    """A zero-mean, unit-variance Gaussian random process with a Gaussian correlation time.

    White noise filtered by a Gaussian kernel of standard deviation ``correlation_s``, rescaled by
    the kernel's known energy so the variance is 1 whatever the length of the window (normalising
    by the sample standard deviation would inflate short windows).
    """
    sigma = max(correlation_s / dt_s, 1e-6)
    pad = int(4 * sigma) + 1
    white = rng.standard_normal(n + 2 * pad)
    smooth = ndimage.gaussian_filter1d(white, sigma, mode="wrap")[pad : pad + n]
    # The sum of squared weights of a sampled Gaussian kernel is 1 / (2 sqrt(pi) sigma).
    return np.asarray(smooth * np.sqrt(2.0 * np.sqrt(np.pi) * sigma))


def breathing_waveform(
    time_s: np.ndarray,
    position_mm: np.ndarray,
    frame_times_s: np.ndarray,
    *,
    rng: np.random.Generator,
    rate_per_min: float | None = None,
    irregularity: float = 0.0,
    start_s: float | None = None,
    smoothing_s: float = 0.1,
) -> BreathingWaveform:
    """Resample a real breathing trace at phantom frame times, optionally faster and more irregular.

    Parameters
    ----------
    time_s, position_mm
        The cleaned trace (increasing times in s, positions in mm).
    frame_times_s
        Times of the phantom frames (s), increasing from 0.
    rng
        Random generator: start offset and irregularity draws come from it.
    rate_per_min
        Breathing rate wanted (breaths per minute); the trace is time-scaled from its own dominant
        rate. None keeps the recorded rate.
    irregularity
        0 keeps the recording as it is (which is already irregular, as real breathing is); 1 adds a
        smooth random time warp (breath length varying by about ±25 %) and amplitude modulation
        (about ±30 %), plus a slow baseline wander of about 15 % of the amplitude.
    start_s
        Offset into the trace (s from its first sample); None draws one at random.
    smoothing_s
        Standard deviation (s) of a Gaussian that removes the marker tracker's measurement jitter,
        which is not organ motion and would be amplified by the scaling to organ amplitude.

    Returns
    -------
    BreathingWaveform
        The signal in [0, 1], oriented so that 0 is exhale.
    """
    t = np.asarray(time_s, dtype=np.float64)
    x = np.asarray(position_mm, dtype=np.float64)
    ft = np.asarray(frame_times_s, dtype=np.float64)
    if t.ndim != 1 or t.shape != x.shape or np.any(np.diff(t) <= 0):
        raise InputError("a breathing trace needs increasing times and one position per time")
    if not 0.0 <= irregularity <= 2.0:
        raise InputError(f"irregularity must be in [0, 2], got {irregularity}")
    native = dominant_rate_per_min(t, x)
    scale = 1.0 if rate_per_min is None else float(rate_per_min) / native

    # Trace time advances at `scale` trace-seconds per phantom second, warped by a smooth random
    # rate so that breath lengths vary; the exponential keeps the warp monotonic.
    fine_dt = 0.02
    fine_t = np.arange(0.0, ft[-1] + 2 * fine_dt, fine_dt)
    speed = scale * np.exp(0.25 * irregularity * smooth_random_process(fine_t.size, fine_dt, 4.0, rng))
    warped = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * fine_dt)])
    span = float(np.interp(ft[-1], fine_t, warped))
    room = (t[-1] - t[0]) - span - 1.0
    if room < 0:
        raise InputError(
            f"the breathing trace is {t[-1] - t[0]:.0f} s long; this phantom needs {span:.0f} s of it"
        )
    if start_s is None:
        start_s = float(rng.uniform(0.0, room))
    elif not 0.0 <= start_s <= room:
        raise InputError(f"trace start {start_s:.1f} s leaves too little trace; use 0 to {room:.1f} s")
    trace_time = t[0] + start_s + np.interp(ft, fine_t, warped)

    dt = float(np.median(np.diff(t)))
    smooth = ndimage.gaussian_filter1d(x, max(smoothing_s / dt, 1e-6), mode="nearest")
    # Breathing lingers at exhale (the plateau) and peaks briefly at inhale, so its distribution
    # has a tail towards inhale: orient the trace so that tail is positive (exhale low). Judged
    # on the whole recording, after removing its slow baseline, as a short window can mislead.
    baseline = ndimage.median_filter(smooth, size=max(3, int(20.0 / dt) | 1), mode="nearest")
    sign = 1.0 if np.mean((smooth - baseline) ** 3) >= 0 else -1.0
    y = sign * CubicSpline(t, smooth)(trace_time)
    y = y - np.median(y)
    if irregularity > 0:
        amp = np.exp(0.3 * irregularity * smooth_random_process(fine_t.size, fine_dt, 6.0, rng))
        wander = 0.15 * irregularity * smooth_random_process(fine_t.size, fine_dt, 8.0, rng)
        y = y * np.interp(ft, fine_t, amp) + np.interp(ft, fine_t, wander) * np.ptp(y)
    rng_y = float(np.ptp(y))
    if rng_y <= 0:
        raise InputError("the breathing trace does not move over the chosen window")
    return BreathingWaveform(
        time_s=ft,
        phase01=(y - y.min()) / rng_y,
        rate_per_min=native * scale,
        trace_start_s=float(start_s),
        trace_time_s=trace_time - t[0],
    )
