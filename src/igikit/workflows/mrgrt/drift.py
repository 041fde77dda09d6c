"""Baseline drift of free breathing: the end-exhale level measured online, and re-centring proposals.

Free breathing drifts: the end-exhale position of an abdominal or thoracic target wanders by
millimetres over minutes (Seppenwoolde et al., IJROBP 53, 2002; Keall et al., AAPM TG-76, Med Phys 33,
2006). A gating window drawn once at the start then gates on the wrong part of the breath, or holds
the beam for long stretches. Here:

* :func:`end_exhale_cycles` finds end-exhale in every breathing cycle of a target trace (the SI
  trace's exhale extremes, each confirmed once the next inhale has begun) and the target position
  there (SI and AP, averaged over the exhale dwell);
* :class:`BaselineDriftEstimator` runs that online, causally, over a sliding history: the baseline
  is the median end-exhale position of the last ``cycles`` cycles, the drift its change from the
  first baseline measured (the breathing the gating window was drawn on);
* :class:`Recentring` turns a drift that exceeds a threshold for longer than a persistence time
  into a *proposal* to move the gating window by the measured drift, a
  :class:`~igikit.supervise.records.DecisionRecord` submitted to the supervised session, whose
  autonomy level decides when (and whether) it takes effect; only a shift the session has put into
  effect moves the window. A drift beyond a hard limit holds the beam and asks a human (a large
  drift means the anatomy has changed: re-planning, not re-centring).

The shift moves the gating window *and* the gated beam's aperture together (a baseline shift, as a
couch or MLC shift does on the machine): moving only the window would let the beam fire at a target
that is no longer where the beam is aimed.

The cycle detection is SciPy's :func:`scipy.signal.find_peaks` on the exhale-oriented trace; the
online bookkeeping around it (history, fixed reference, persistence) is written here because no
library keeps a breathing baseline causally.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import signal

from igikit.errors import InputError
from igikit.supervise.records import DecisionRecord
from igikit.supervise.session import SupervisedSession

log = logging.getLogger(__name__)

COMPONENT = "igikit.mrgrt.recentre"
VERSION = "1"
#: The decision name of a re-centring proposal (its value: the total shift, in words).
SHIFT_DECISION = "gating_shift"
#: The alert kind raised when the drift passes the hard limit.
DRIFT_ALERT = "baseline_drift"


def exhale_at_low_si(si_mm: Sequence[float] | np.ndarray) -> bool:
    """Whether end-exhale is the low-SI end of a breathing trace.

    End-exhale is the end where breathing dwells, so the median lies nearer to it (Keall et al.,
    TG-76). NaN samples are ignored.
    """
    lo, med, hi = np.nanpercentile(np.asarray(si_mm, dtype=np.float64), [5, 50, 95])
    return bool((med - lo) < (hi - med))


@dataclass(frozen=True)
class EndExhaleCycles:
    """End-exhale of each breathing cycle found in a trace.

    Attributes
    ----------
    time_s
        (k,) time of each cycle's end-exhale sample.
    level_mm
        (k, 2) target position (SI, AP) at end-exhale: the mean over the cycle's exhale dwell.
    exhale_at_low_si
        Which SI end was taken as exhale.
    amplitude_mm
        The trace's SI range (5th to 95th percentile) the detection thresholds were scaled to.
    """

    time_s: np.ndarray
    level_mm: np.ndarray
    exhale_at_low_si: bool
    amplitude_mm: float

    def __len__(self) -> int:
        return int(self.time_s.size)


def end_exhale_cycles(
    time_s: Sequence[float] | np.ndarray,
    position_mm: Sequence[Sequence[float]] | np.ndarray,
    *,
    exhale_low: bool | None = None,
    min_period_s: float = 1.0,
    prominence_frac: float = 0.3,
    dwell_frac: float = 0.15,
) -> EndExhaleCycles:
    """End-exhale of every breathing cycle of a target trace, and the target position there.

    End-exhale is an extreme of the SI trace at its exhale end (:func:`exhale_at_low_si`, or
    ``exhale_low``) that stands out from the breathing by at least ``prominence_frac`` of the SI
    range (topographic prominence, :func:`scipy.signal.find_peaks`), at least ``min_period_s``
    after the previous one. An extreme is confirmed only once the trace has moved back by that
    prominence, so on a growing trace the newest exhale appears once the next inhale is under way:
    the detection is causal. The level of a cycle is the mean position over the samples around its
    extreme that lie within ``dwell_frac`` of the range from it (the exhale dwell, at most half a
    minimum period either side), which averages out tracking noise on the plateau.

    Parameters
    ----------
    time_s
        (n,) increasing sample times (s).
    position_mm
        (n, 2) target positions (SI, AP) in mm; rows with NaN are ignored.
    exhale_low
        Exhale at the low-SI end (True) or the high one (False); None decides from the trace.
    min_period_s
        The shortest breathing cycle expected (s).
    prominence_frac, dwell_frac
        Prominence and dwell band as fractions of the SI range.

    Returns
    -------
    EndExhaleCycles
        Possibly empty (a trace shorter than a cycle, or one that does not move).

    Examples
    --------
    >>> t = np.arange(0, 20, 0.2)
    >>> si = 5 * np.cos(np.pi * t / 4) ** 4 + 0.1 * t  # 4 s cycles dwelling at exhale, drifting
    >>> cycles = end_exhale_cycles(t, np.c_[si, 0 * si])
    >>> len(cycles), cycles.exhale_at_low_si  # end-exhale at 2, 6, 10, 14, 18 s
    (5, True)
    """
    t = np.asarray(time_s, dtype=np.float64)
    p = np.asarray(position_mm, dtype=np.float64)
    if t.ndim != 1 or p.shape != (t.size, 2):
        raise InputError(f"a trace needs (n,) times and (n, 2) positions, got {t.shape} and {p.shape}")
    if not (np.isfinite(min_period_s) and min_period_s > 0):
        raise InputError(f"the minimum breathing period must be > 0 s, got {min_period_s}")
    if not (0 < prominence_frac < 1 and 0 < dwell_frac < 1):
        raise InputError(f"prominence and dwell fractions must lie in (0, 1), got {prominence_frac}, {dwell_frac}")
    keep = np.isfinite(t) & np.isfinite(p).all(axis=1)
    t, p = t[keep], p[keep]
    low = exhale_low
    if t.size < 3:
        return EndExhaleCycles(np.empty(0), np.empty((0, 2)), bool(low) if low is not None else True, 0.0)
    if np.any(np.diff(t) <= 0):
        raise InputError("trace times must increase")
    si = p[:, 0]
    if low is None:
        low = exhale_at_low_si(si)
    exhale_up = -si if low else si  # exhale is a peak of this
    lo, hi = np.percentile(si, [5, 95])
    amplitude = float(hi - lo)
    if amplitude <= 0:
        return EndExhaleCycles(np.empty(0), np.empty((0, 2)), bool(low), amplitude)
    step = float(np.median(np.diff(t)))
    peaks, _ = signal.find_peaks(
        exhale_up, prominence=prominence_frac * amplitude, distance=max(1, int(np.floor(min_period_s / step)))
    )
    levels = np.empty((peaks.size, 2))
    band = dwell_frac * amplitude
    half = 0.5 * min_period_s
    for k, i in enumerate(peaks):
        a = i
        while a > 0 and exhale_up[a - 1] >= exhale_up[i] - band and t[i] - t[a - 1] <= half:
            a -= 1
        b = i
        while b < t.size - 1 and exhale_up[b + 1] >= exhale_up[i] - band and t[b + 1] - t[i] <= half:
            b += 1
        levels[k] = p[a : b + 1].mean(axis=0)
    return EndExhaleCycles(t[peaks], levels, bool(low), amplitude)


@dataclass(frozen=True)
class BaselineEstimate:
    """The breathing baseline at one time, and how it was measured.

    Attributes
    ----------
    time_s
        Time of the newest sample the estimate used (s).
    baseline_mm
        (2,) end-exhale position (SI, AP): the median of the last ``n_cycles`` cycles' levels.
    reference_mm
        (2,) the first baseline measured: where end-exhale was when the estimator started.
    cycle_time_s, cycle_level_mm
        The end-exhale times (s) and levels (mm, (n, 2)) the baseline is the median of.
    exhale_at_low_si
        Which SI end is exhale.
    """

    time_s: float
    baseline_mm: np.ndarray
    reference_mm: np.ndarray
    cycle_time_s: np.ndarray
    cycle_level_mm: np.ndarray
    exhale_at_low_si: bool

    @property
    def drift_mm(self) -> np.ndarray:
        """(2,) baseline minus reference (SI, AP), mm."""
        return np.asarray(self.baseline_mm - self.reference_mm)

    @property
    def n_cycles(self) -> int:
        """How many breathing cycles the baseline is the median of."""
        return int(self.cycle_time_s.size)

    @property
    def spread_mm(self) -> float:
        """Range (max - min) of the cycles' SI end-exhale levels, mm: how much they disagree."""
        return float(np.ptp(self.cycle_level_mm[:, 0])) if self.n_cycles else float("nan")


class BaselineDriftEstimator:
    """The end-exhale baseline of a target trace, online and causal.

    Feed it every usable tracked position (:meth:`update`); once ``cycles`` breathing cycles have
    been seen it returns a :class:`BaselineEstimate` with every update. The first estimate fixes the
    reference (and which SI end is exhale), so the drift is the change of the baseline since then.

    Parameters
    ----------
    cycles
        Cycles the baseline is the median of (3: one deep or shallow breath does not move it).
    history_s
        Seconds of trace kept (enough for ``cycles`` of the slowest breathing expected).
    min_period_s, prominence_frac, dwell_frac
        See :func:`end_exhale_cycles`.
    """

    def __init__(
        self,
        *,
        cycles: int = 3,
        history_s: float = 60.0,
        min_period_s: float = 1.0,
        prominence_frac: float = 0.3,
        dwell_frac: float = 0.15,
    ) -> None:
        if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
            raise InputError(f"the baseline needs at least 1 breathing cycle, got {cycles!r}")
        if not (np.isfinite(history_s) and history_s > cycles * min_period_s):
            raise InputError(f"a {history_s} s history cannot hold {cycles} cycles of at least {min_period_s} s")
        end_exhale_cycles([0.0, 1.0, 2.0], np.zeros((3, 2)), min_period_s=min_period_s,
                          prominence_frac=prominence_frac, dwell_frac=dwell_frac)  # checks the fractions
        self.cycles = cycles
        self.history_s = float(history_s)
        self.min_period_s = float(min_period_s)
        self.prominence_frac = float(prominence_frac)
        self.dwell_frac = float(dwell_frac)
        self._time: collections.deque[float] = collections.deque()
        self._position: collections.deque[tuple[float, float]] = collections.deque()
        self.reference_mm: np.ndarray | None = None
        self.exhale_low: bool | None = None
        self.latest: BaselineEstimate | None = None

    def reset(self) -> None:
        """Forget everything (a new run)."""
        self._time.clear()
        self._position.clear()
        self.reference_mm = None
        self.exhale_low = None
        self.latest = None

    def update(self, time_s: float, position_mm: Sequence[float] | np.ndarray) -> BaselineEstimate | None:
        """Add one tracked position (SI, AP mm) at ``time_s``; the baseline now, or None before it is known.

        A sample that is not finite, or not later than the previous one, is ignored.
        """
        t = float(time_s)
        p = np.asarray(position_mm, dtype=np.float64)
        if p.shape != (2,):
            raise InputError(f"a target position is (SI, AP) mm, got shape {p.shape}")
        if not (np.isfinite(t) and np.isfinite(p).all()) or (self._time and t <= self._time[-1]):
            return self.latest
        self._time.append(t)
        self._position.append((float(p[0]), float(p[1])))
        while self._time and self._time[0] < t - self.history_s:
            self._time.popleft()
            self._position.popleft()
        found = end_exhale_cycles(
            np.fromiter(self._time, np.float64, len(self._time)), np.array(self._position),
            exhale_low=self.exhale_low, min_period_s=self.min_period_s, prominence_frac=self.prominence_frac,
            dwell_frac=self.dwell_frac,
        )
        if len(found) < self.cycles:
            self.latest = None
            return None
        times, levels = found.time_s[-self.cycles :], found.level_mm[-self.cycles :]
        baseline = np.median(levels, axis=0)
        if self.reference_mm is None:
            self.reference_mm = baseline.copy()
            self.exhale_low = found.exhale_at_low_si
        self.latest = BaselineEstimate(t, baseline, self.reference_mm.copy(), times, levels, found.exhale_at_low_si)
        return self.latest


# ----------------------------------------------------------------------------- re-centring
@dataclass(frozen=True)
class RecentreConfig:
    """When the gating window is proposed to move with the breathing baseline, and how far it may.

    Parameters
    ----------
    threshold_mm
        Propose a shift when the baseline lies more than this (2D, mm) from the window's centre ...
    persist_s
        ... for longer than this (s): a drift, not one odd breath.
    cycles
        Breathing cycles the baseline is the median of.
    max_shift_mm
        Hard limit on the total shift (mm, 2D). A baseline drifted further holds the beam and asks
        a human: a clinically large drift means re-planning.
    history_s, min_period_s
        See :class:`BaselineDriftEstimator`.
    """

    threshold_mm: float = 2.0
    persist_s: float = 5.0
    cycles: int = 3
    max_shift_mm: float = 8.0
    history_s: float = 60.0
    min_period_s: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.threshold_mm) and self.threshold_mm > 0):
            raise InputError(f"--drift-threshold-mm must be > 0, got {self.threshold_mm:g}")
        if not (np.isfinite(self.persist_s) and self.persist_s >= 0):
            raise InputError(f"--drift-persist-s must be >= 0, got {self.persist_s:g}")
        if not (np.isfinite(self.max_shift_mm) and self.max_shift_mm >= self.threshold_mm):
            raise InputError(
                f"--max-shift-mm must be at least the drift threshold ({self.threshold_mm:g} mm), "
                f"got {self.max_shift_mm:g}"
            )
        self.estimator()  # checks cycles, history and period

    def estimator(self) -> BaselineDriftEstimator:
        """A fresh :class:`BaselineDriftEstimator` with these settings."""
        return BaselineDriftEstimator(cycles=self.cycles, history_s=self.history_s, min_period_s=self.min_period_s)


@dataclass(frozen=True)
class RecentreState:
    """What re-centring says for one frame.

    Attributes
    ----------
    shift_mm
        (SI, AP) shift of the gating window in effect (mm): only what the session let take effect.
    hold
        The drift is beyond the hard limit: the beam must hold.
    note
        One sentence on the baseline and the window (why the beam holds, when it does).
    estimate
        The baseline estimate (None until enough cycles were seen).
    """

    shift_mm: tuple[float, float]
    hold: bool
    note: str
    estimate: BaselineEstimate | None


@dataclass
class _Proposal:
    seq: int | None
    value: str
    shift_mm: tuple[float, float]
    mode: str
    time_s: float


def shift_words(shift_mm: Sequence[float] | np.ndarray) -> str:
    """A shift as the proposal's value: ``"SI +2.3 mm, AP -0.4 mm"``."""
    return f"SI {shift_mm[0]:+.1f} mm, AP {shift_mm[1]:+.1f} mm"


@dataclass
class RecentringLog:
    """What re-centring did in a run, for the report: proposals, shifts in effect, limit holds."""

    proposals: list[dict[str, Any]] = field(default_factory=list)
    shifts: list[dict[str, Any]] = field(default_factory=list)
    limit_holds: list[dict[str, Any]] = field(default_factory=list)


class Recentring:
    """Re-centring of the gating window on a drifting baseline, under supervision.

    Each frame, :meth:`step` takes the newest :class:`BaselineEstimate` and:

    1. reads which shift is in effect: the value the session puts into effect for
       :data:`SHIFT_DECISION` (a level-3 session applies a proposal at once, level 2 when its veto
       window closes, level 1 when a human approves it, level 0 never; a refused, vetoed or
       cancelled proposal never takes effect); without a session every proposal applies at once;
    2. holds the beam when the total drift exceeds ``max_shift_mm`` and raises an alert (once per
       episode) asking a human: the hold lasts while the drift stays beyond the limit;
    3. otherwise, when the baseline has stayed more than ``threshold_mm`` from the window's centre
       for ``persist_s``, submits a proposal to move the window by the measured drift, with its
       evidence (the end-exhale times and levels, how many cycles, their spread) in the record's
       data. Its confidence is the share of those cycles whose own level moved by more than half
       the threshold in the direction of the drift. While a proposal waits for a human, no other
       is made unless the drift moves more than the threshold away from it (it is then superseded);
       after one that did not take effect, the drift must persist again before the next.

    Parameters
    ----------
    config
        Threshold, persistence, cycles and hard limit.
    session
        The supervised session (None: proposals apply at once, unsupervised).
    session_id, workflow
        Stamped on the records.
    """

    def __init__(
        self, config: RecentreConfig, *, session: SupervisedSession | None = None, session_id: str = "",
        workflow: str = "mrgrt",
    ) -> None:
        self.config = config
        self.session = session
        self.session_id = session.session_id if session is not None else session_id
        self.workflow = workflow
        self.log = RecentringLog()
        self._shift: tuple[float, float] = (0.0, 0.0)
        self._values: dict[str, tuple[float, float]] = {}
        self._outstanding: _Proposal | None = None
        self._exceeded_since: float | None = None
        self._limit_since: float | None = None

    @property
    def shift_mm(self) -> tuple[float, float]:
        """The shift in effect (SI, AP mm)."""
        return self._shift

    # ------------------------------------------------------------------ the shift in effect
    def _in_effect(self, time_s: float) -> tuple[float, float]:
        if self.session is not None:
            value = self.session.effective_value(SHIFT_DECISION)
            shift = self._values.get(str(value), self._shift) if value is not None else (0.0, 0.0)
        else:
            shift = self._shift
        if shift != self._shift:
            log.info("gating window re-centred at %.2f s: %s from the planned position", time_s, shift_words(shift))
            self.log.shifts.append({"time_s": round(time_s, 3), "shift_si_mm": shift[0], "shift_ap_mm": shift[1]})
            self._shift = shift
        return shift

    def _settle_outstanding(self, time_s: float) -> None:
        p = self._outstanding
        if p is None:
            return
        if self._shift == p.shift_mm:
            self._outstanding = None  # it took effect
            return
        waiting = self.session is not None and p.seq is not None and any(
            d.seq == p.seq for d in self.session.pending()
        )
        if not waiting:  # vetoed, cancelled (safe state, autonomy change) or superseded
            self._outstanding = None
            self._exceeded_since = time_s  # the drift must persist again before the next proposal

    # ------------------------------------------------------------------ each frame
    def step(self, time_s: float, estimate: BaselineEstimate | None, *, frame_id: int) -> RecentreState:
        """Update from the newest baseline estimate at frame ``frame_id`` (time ``time_s``)."""
        cfg = self.config
        shift = self._in_effect(time_s)
        self._settle_outstanding(time_s)
        if estimate is None:
            self._exceeded_since = None
            return RecentreState(shift, False, "baseline not yet measured", None)
        drift = estimate.drift_mm
        size = float(np.hypot(*drift))
        cycles = f"{estimate.n_cycles} cycles, spread {estimate.spread_mm:.1f} mm"
        if size > cfg.max_shift_mm:
            note = (
                f"baseline drifted {shift_words(drift)} ({size:.1f} mm; {cycles}), beyond the "
                f"{cfg.max_shift_mm:g} mm re-centring limit: a drift this large may need re-planning; a human decides"
            )
            if self._limit_since is None:
                self._limit_since = time_s
                self.log.limit_holds.append({"start_s": round(time_s, 3), "drift_mm": round(size, 2)})
                log.warning("beam hold at %.2f s: %s", time_s, note)
            if self.session is not None:
                self.session.raise_alert(DRIFT_ALERT, note, severity="critical", frame_id=frame_id)
            self.log.limit_holds[-1]["end_s"] = round(time_s, 3)
            self._exceeded_since = None
            return RecentreState(shift, True, note, estimate)
        self._limit_since = None
        residual = drift - np.asarray(shift)
        off = float(np.hypot(*residual))
        if off <= cfg.threshold_mm:
            self._exceeded_since = None
            return RecentreState(shift, False, f"baseline {off:.1f} mm from the window's centre ({cycles})", estimate)
        if self._exceeded_since is None:
            self._exceeded_since = time_s
        lasted = time_s - self._exceeded_since
        note = f"baseline {off:.1f} mm from the window's centre for {lasted:.1f} s ({cycles})"
        target = (round(float(drift[0]), 1), round(float(drift[1]), 1))
        p = self._outstanding
        stale = p is not None and float(np.hypot(*(np.asarray(p.shift_mm) - drift))) > cfg.threshold_mm
        if lasted >= cfg.persist_s and (p is None or stale):
            self._propose(time_s, estimate, target, residual, lasted, frame_id)
            shift = self._in_effect(time_s)
            self._settle_outstanding(time_s)
        return RecentreState(shift, False, note, estimate)

    def _propose(
        self, time_s: float, estimate: BaselineEstimate, target: tuple[float, float], residual: np.ndarray,
        lasted_s: float, frame_id: int,
    ) -> None:
        cfg = self.config
        value = shift_words(target)
        self._values[value] = target
        direction = residual / max(float(np.hypot(*residual)), 1e-9)
        moved = (estimate.cycle_level_mm - estimate.reference_mm - np.asarray(self._shift)) @ direction
        agree = int(np.sum(moved > 0.5 * cfg.threshold_mm))
        confidence = agree / estimate.n_cycles
        drift = estimate.drift_mm
        explanation = (
            f"re-centre the gating window by {value}: the end-exhale baseline moved {shift_words(drift)} from "
            f"where the window was drawn ({float(np.hypot(*residual)):.1f} mm from the window's centre for "
            f"{lasted_s:.1f} s, more than {cfg.threshold_mm:g} mm for {cfg.persist_s:g} s); median of "
            f"{estimate.n_cycles} cycles, spread {estimate.spread_mm:.1f} mm, {agree} of {estimate.n_cycles} "
            f"cycles moved more than {0.5 * cfg.threshold_mm:g} mm that way; window and beam aperture move together"
        )
        record = DecisionRecord(
            decision=SHIFT_DECISION,
            value=value,
            explanation=explanation,
            confidence=float(confidence),
            component=COMPONENT,
            component_version=VERSION,
            frame_time_s=float(time_s),
            input_frame_ids=(int(frame_id),),
            workflow=self.workflow,
            session_id=self.session_id,
            proposal=True,
            data={
                "shift_si_mm": target[0],
                "shift_ap_mm": target[1],
                "previous_shift_si_mm": self._shift[0],
                "previous_shift_ap_mm": self._shift[1],
                "baseline_si_mm": round(float(estimate.baseline_mm[0]), 3),
                "baseline_ap_mm": round(float(estimate.baseline_mm[1]), 3),
                "reference_si_mm": round(float(estimate.reference_mm[0]), 3),
                "reference_ap_mm": round(float(estimate.reference_mm[1]), 3),
                "cycles": estimate.n_cycles,
                "cycles_agreeing": agree,
                "spread_mm": round(estimate.spread_mm, 3),
                "end_exhale_time_s": [round(float(x), 3) for x in estimate.cycle_time_s],
                "end_exhale_si_mm": [round(float(x), 3) for x in estimate.cycle_level_mm[:, 0]],
                "end_exhale_ap_mm": [round(float(x), 3) for x in estimate.cycle_level_mm[:, 1]],
                "exhale_at_low_si": estimate.exhale_at_low_si,
                "threshold_mm": cfg.threshold_mm,
                "persist_s": cfg.persist_s,
                "exceeded_for_s": round(lasted_s, 3),
                "max_shift_mm": cfg.max_shift_mm,
            },
        )
        if self.session is None:
            seq, mode = None, "unsupervised"
            self._shift = target
            self.log.shifts.append({"time_s": round(time_s, 3), "shift_si_mm": target[0], "shift_ap_mm": target[1]})
        else:
            disposition = self.session.submit(record)
            seq, mode = disposition.seq, disposition.mode
        log.info("re-centring proposal at %.2f s (%s): %s", time_s, mode, explanation)
        self._outstanding = _Proposal(seq, value, target, mode, time_s)
        self.log.proposals.append({
            "time_s": round(time_s, 3), "frame_id": int(frame_id), "seq": seq, "value": value,
            "shift_si_mm": target[0], "shift_ap_mm": target[1], "mode": mode, "confidence": round(confidence, 3),
            "cycles": estimate.n_cycles, "spread_mm": round(estimate.spread_mm, 3),
        })

    def summary(self) -> dict[str, Any]:
        """Plain JSON: the settings, every proposal, every shift that took effect, every limit hold."""
        return {
            "config": dataclasses.asdict(self.config),
            "proposals": list(self.log.proposals),
            "shifts": list(self.log.shifts),
            "limit_holds": list(self.log.limit_holds),
            "final_shift_mm": list(self._shift),
        }
