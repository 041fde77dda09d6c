"""Respiratory motion traces: read them from disk and clean the glitches real recordings hold.

Two formats are read:

* the format of the public breathing-trace set of Krilavicius et al. (``../shared/data/respiration``):
  semicolon-separated, decimal comma, header ``"Frame";"Timestamp";"x";"y";"z"``, timestamps in ms,
  positions of an external chest/abdomen marker in mm;
* plain CSV ``time_ms,position_mm`` (comma-separated, decimal point, header optional).

Real recordings are not clean. In the Krilavicius files (all 27 were inspected) we find

* timestamp glitches: one or two rows whose timestamp is the true one divided by 500 (``12700`` is
  followed by ``25.6; 25.8; 13017``), after which the clock resumes;
* a terminal row ``0;0;0;0;0`` (the recorder's end marker: time and position both drop to zero);
* no NaNs and no repeated frames; no isolated position spikes besides that end row.

:func:`clean_trace` repairs these without touching the breathing itself: glitched timestamps are
re-interpolated between the good neighbours (from the frame counter when the file has one, which
makes the repair exact), a lasting reset (the clock restarts and keeps running) is re-based so time
keeps increasing, trailing rows whose time runs backwards are dropped, exact duplicates are removed,
and isolated position spikes (one sample far from both neighbours, relative to the trace's own
motion) are removed. What it changed is counted in :class:`CleaningSummary`.

References
----------
T. Krilavicius, I. Zliobaite, A. Vidugiriene, H. Simonavicius, L. Jarusevicius, "Predicting
respiratory motion for controlling radiotherapy treatment: an algorithmic approach", Technical
report, Baltic Institute of Advanced Technologies (2013); arXiv:1508.00749 (2015). Data CC BY 4.0.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from igikit.errors import InputError

__all__ = [
    "MIN_SAMPLES",
    "CleaningSummary",
    "RespirationTrace",
    "clean_trace",
    "read_trace",
]

log = logging.getLogger(__name__)

#: Fewest samples a trace must hold to be of any use (a velocity needs two, a curvature three).
MIN_SAMPLES = 3

Axis = Literal["auto", "x", "y", "z"]
_AXES = ("x", "y", "z")


@dataclass(frozen=True)
class CleaningSummary:
    """What :func:`clean_trace` changed, in counts of samples (and of resets).

    Attributes
    ----------
    n_in, n_out
        Samples before and after cleaning.
    timestamps_repaired
        Samples whose timestamp was out of line with its neighbours and was re-interpolated.
    time_resets
        Lasting clock resets (time jumps back and keeps running from there), re-based.
    trailing_dropped
        Samples at the end whose time runs backwards with nothing after to anchor a repair
        (e.g. the ``0;0;0;0;0`` end row of the Krilavicius files).
    duplicates_removed
        Repeated samples (same frame, or same time and same position).
    spikes_removed
        Isolated position spikes.
    """

    n_in: int
    n_out: int
    timestamps_repaired: int = 0
    time_resets: int = 0
    trailing_dropped: int = 0
    duplicates_removed: int = 0
    spikes_removed: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict (for JSON reports)."""
        return asdict(self)

    @property
    def changed(self) -> bool:
        """Whether cleaning changed anything at all."""
        return self.n_in != self.n_out or self.timestamps_repaired > 0 or self.time_resets > 0


@dataclass(frozen=True, eq=False)
class RespirationTrace:
    """A breathing trace: sample times and marker positions.

    Attributes
    ----------
    time_s
        (N,) sample times in seconds (strictly increasing once cleaned).
    position_mm
        (N,) positions along ``axis`` in mm, or (N, 3) x, y, z when read with ``axis=None``.
    path
        The file it was read from (None when built in memory).
    axis
        ``"x"``, ``"y"`` or ``"z"`` (the column chosen), ``"position"`` for a one-column plain CSV,
        or None for all three axes.
    frame
        (N,) the recorder's frame counter when the file has one, else None.
    cleaning
        What :func:`clean_trace` changed; None for a trace as read.
    """

    time_s: np.ndarray
    position_mm: np.ndarray
    path: Path | None = None
    axis: str | None = None
    frame: np.ndarray | None = None
    cleaning: CleaningSummary | None = None

    def __len__(self) -> int:
        return int(self.time_s.shape[0])

    @property
    def duration_s(self) -> float:
        """Time from the first to the last sample (s)."""
        return float(self.time_s[-1] - self.time_s[0]) if len(self) else 0.0


# --------------------------------------------------------------------------------------------- reading


def _parse_number(text: str) -> float:
    return float(text.strip().strip('"').replace(",", "."))


def _is_number(text: str) -> bool:
    try:
        _parse_number(text)
    except ValueError:
        return False
    return True


def _split_rows(text: str, path: Path) -> tuple[list[str] | None, list[tuple[int, list[str]]], str]:
    """Header (or None) and the numbered data rows, split on the file's separator."""
    lines = [(k + 1, line.strip()) for k, line in enumerate(text.splitlines())]
    lines = [(k, line) for k, line in lines if line]
    if not lines:
        raise InputError("empty file: no samples", path)
    # The Krilavicius format is the only one with semicolons; plain CSV uses commas (and decimal points).
    sep = ";" if ";" in lines[0][1] else ","
    rows = [(k, [f.strip() for f in line.split(sep)]) for k, line in lines]
    header: list[str] | None = None
    if not all(_is_number(f) for f in rows[0][1]):
        header = [f.strip('"').strip().lower() for f in rows[0][1]]
        rows = rows[1:]
    return header, rows, sep


def _columns(header: list[str] | None, ncol: int, sep: str, path: Path) -> tuple[int | None, int, list[int]]:
    """Indices of (frame, time, position columns) for the file's layout."""
    if header is not None:
        names = [h.replace(" ", "") for h in header]
        time_names = ("timestamp", "time_ms", "time", "t_ms")
        t_col = next((names.index(n) for n in time_names if n in names), None)
        if t_col is None:
            raise InputError(f"no time column in header {header} (expected Timestamp or time_ms)", path)
        f_col = names.index("frame") if "frame" in names else None
        if all(a in names for a in _AXES):
            return f_col, t_col, [names.index(a) for a in _AXES]
        pos = [k for k in range(len(names)) if k not in (t_col, f_col)]
        if len(pos) != 1:
            raise InputError(f"cannot tell the position column in header {header}", path)
        return f_col, t_col, pos
    if sep == ";" and ncol == 5:  # Frame;Timestamp;x;y;z without its header
        return 0, 1, [2, 3, 4]
    if ncol == 2:
        return None, 0, [1]
    if ncol == 4:  # time, x, y, z
        return None, 0, [1, 2, 3]
    raise InputError(
        f"expected 2 columns (time_ms,position_mm) or Frame;Timestamp;x;y;z, found {ncol}", path
    )


def _auto_axis(xyz: np.ndarray) -> int:
    """The axis that moves most: widest 5-95 % range after removing a linear drift.

    Percentiles rather than min/max or std so that a glitch row (the zero end row) cannot decide;
    the drift is fitted against the sample index because the timestamps may themselves be glitched.
    """
    idx = np.arange(xyz.shape[0], dtype=float)
    coef = np.polyfit(idx, xyz, 1)
    resid = xyz - (np.outer(idx, coef[0]) + coef[1])
    spread = np.percentile(resid, 95, axis=0) - np.percentile(resid, 5, axis=0)
    return int(np.argmax(spread))


def read_trace(path: str | Path, *, axis: Axis | None = "auto") -> RespirationTrace:
    """Read a breathing trace (Krilavicius ``Frame;Timestamp;x;y;z`` or plain ``time_ms,position_mm``).

    Parameters
    ----------
    path
        The CSV file. Timestamps are in milliseconds, positions in mm.
    axis
        Which coordinate to keep from a 3-axis file: ``"x"``, ``"y"``, ``"z"``, ``"auto"`` (the axis
        that moves most, see below) or None for all three ((N, 3) positions). A one-column plain CSV
        has a single position: ``"auto"`` and None both return it.

    Returns
    -------
    RespirationTrace
        The samples as recorded (no cleaning; see :func:`clean_trace`).

    Raises
    ------
    InputError
        The file is missing or empty, a row holds a non-numeric or non-finite value or the wrong
        number of fields, or there are fewer than :data:`MIN_SAMPLES` samples.

    Notes
    -----
    ``"auto"`` picks the axis with the widest 5-95 percentile range after a linear detrend, which is
    the superior-inferior / anterior-posterior breathing direction of the marker.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "trace.csv"
    >>> _ = p.write_text("time_ms,position_mm\\n0,1.0\\n100,2.0\\n200,1.5\\n")
    >>> read_trace(p).position_mm
    array([1. , 2. , 1.5])
    """
    path = Path(path)
    if axis not in ("auto", "x", "y", "z", None):
        raise InputError(f"axis must be x, y, z or auto, not {axis!r}")
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a folder, expected a CSV trace", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not a text file ({exc.reason})", path) from None
    header, rows, sep = _split_rows(text, path)
    if not rows:
        raise InputError("no samples after the header", path)
    ncol = len(rows[0][1])
    f_col, t_col, p_cols = _columns(header, ncol, sep, path)
    values = np.empty((len(rows), ncol), dtype=float)
    for r, (lineno, fields) in enumerate(rows):
        if len(fields) != ncol:
            raise InputError(f"line {lineno}: {len(fields)} fields, expected {ncol}", path)
        for c, field in enumerate(fields):
            try:
                values[r, c] = _parse_number(field)
            except ValueError:
                raise InputError(f"line {lineno}: non-numeric value {field!r}", path) from None
            if not math.isfinite(values[r, c]):
                raise InputError(f"line {lineno}: non-finite value {field!r}", path)
    if values.shape[0] < MIN_SAMPLES:
        raise InputError(f"too few samples: {values.shape[0]} (need at least {MIN_SAMPLES})", path)

    time_s = values[:, t_col] / 1000.0
    frame = values[:, f_col].copy() if f_col is not None else None
    pos = values[:, p_cols]
    chosen: str | None
    if pos.shape[1] == 1:
        if axis in _AXES:
            raise InputError(f"--axis {axis} given but the file has a single position column", path)
        chosen, position = "position", pos[:, 0].copy()
    elif axis is None:
        chosen, position = None, pos.copy()
    else:
        k = _auto_axis(pos) if axis == "auto" else _AXES.index(axis)
        chosen, position = _AXES[k], pos[:, k].copy()
    return RespirationTrace(time_s=time_s, position_mm=position, path=path, axis=chosen, frame=frame)


# -------------------------------------------------------------------------------------------- cleaning

#: A run of out-of-line timestamps this long or shorter is a glitch (repaired); longer is a reset.
_MAX_GLITCH_RUN = 5
#: A spike stands out from its neighbours by this many robust standard deviations of the
#: neighbour residual...
_SPIKE_SIGMAS = 12.0
#: ...and by at least this fraction of the trace's 5-95 % range, and at least _SPIKE_MIN_MM.
#: Breathing itself (coughs, sighs, talking) moves fast but over several samples, and a cough can
#: put a 2 mm one-sample dip into a marker trace (seen in the Krilavicius set); a one-sample
#: excursion as large as the whole breathing range is not anatomy.
_SPIKE_RANGE_FRACTION = 1.0
_SPIKE_MIN_MM = 2.0


def _repair_time(
    t: np.ndarray, pos: np.ndarray, frame: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Make time strictly increasing: repair glitch runs, re-base resets, drop repeats and the tail."""
    t = t.copy()
    n = t.shape[0]
    keep = np.ones(n, dtype=bool)
    counts = dict(timestamps_repaired=0, time_resets=0, trailing_dropped=0, duplicates_removed=0)
    steps = np.diff(t)
    good_steps = steps[steps > 0]
    dt_nom = float(np.median(good_steps)) if good_steps.size else 1.0

    def fill(last: int, j: int) -> None:
        """Re-interpolate t[last+1 .. j-1] between the good samples ``last`` and ``j``."""
        k = np.arange(last + 1, j)
        if frame is not None and np.all(np.diff(frame[last : j + 1]) > 0):
            # The frame counter ticks at a fixed rate, so it places the glitched samples exactly.
            w = (frame[k] - frame[last]) / (frame[j] - frame[last])
        else:
            w = (k - last) / (j - last)
        t[k] = t[last] + w * (t[j] - t[last])
        counts["timestamps_repaired"] += int(k.size)

    def same_sample(i: int, last: int) -> bool:
        if frame is not None and frame[i] == frame[last]:
            return True
        return bool(t[i] == t[last] and np.array_equal(pos[i], pos[last]))

    last, i = 0, 1
    while i < n:
        if same_sample(i, last):
            keep[i] = False
            counts["duplicates_removed"] += 1
            i += 1
            continue
        if t[i] > t[last]:
            # A lone timestamp far ahead whose successor falls back in line is a glitch too.
            if (
                t[i] - t[last] > 10 * dt_nom
                and i + 1 < n
                and t[last] < t[i + 1] < t[i]
                and t[i + 1] - t[last] <= 3 * dt_nom
            ):
                fill(last, i + 1)
                last, i = i + 1, i + 2
                continue
            last, i = i, i + 1
            continue
        # Time ran backwards (or stood still): find where it comes back in line with t[last].
        j = next(
            (
                j
                for j in range(i + 1, min(n, i + _MAX_GLITCH_RUN + 1))
                if t[last] < t[j] <= t[last] + 2.0 * (j - last) * dt_nom
            ),
            None,
        )
        if j is not None:
            fill(last, j)
            last, i = j, j + 1
        elif n - i <= _MAX_GLITCH_RUN:
            keep[i:] = False
            counts["trailing_dropped"] += n - i
            break
        else:
            t[i:] += t[last] + dt_nom - t[i]
            counts["time_resets"] += 1
            last, i = i, i + 1
    return t, keep, counts


def _spike_mask(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """True at isolated one-sample spikes of the 1-D signal ``x`` (sampled at strictly increasing ``t``)."""
    n = x.shape[0]
    spikes = np.zeros(n, dtype=bool)
    if n < 5:
        return spikes
    # Residual from the straight line through the two neighbours (time-weighted: sampling is irregular).
    w = (t[1:-1] - t[:-2]) / (t[2:] - t[:-2])
    resid = x[1:-1] - (x[:-2] + w * (x[2:] - x[:-2]))
    mad = float(np.median(np.abs(resid - np.median(resid))))
    sigma = max(1.4826 * mad, 0.05)
    spread = float(np.percentile(x, 95) - np.percentile(x, 5))
    thresh = max(_SPIKE_SIGMAS * sigma, _SPIKE_RANGE_FRACTION * spread, _SPIKE_MIN_MM)
    left = x[1:-1] - x[:-2]
    right = x[1:-1] - x[2:]
    # Both flanks must jump the same way: a step (level change) is motion, an excursion-and-return is not.
    spikes[1:-1] = (np.abs(resid) > thresh) & (np.sign(left) == np.sign(right)) & (
        np.minimum(np.abs(left), np.abs(right)) > thresh
    )
    # End samples have one neighbour: compare with the line through the next two, with a wider margin.
    for end, a, b in ((0, 1, 2), (n - 1, n - 2, n - 3)):
        expected = x[a] + (x[a] - x[b]) * (t[end] - t[a]) / (t[a] - t[b])
        if abs(x[end] - expected) > 1.5 * thresh and abs(x[end] - x[a]) > 1.5 * thresh:
            spikes[end] = True
    return spikes


def clean_trace(trace: RespirationTrace) -> RespirationTrace:
    """Remove recording glitches so that time increases strictly and the position is physical.

    Steps, in this order (time first, because spikes are judged against time-interpolated neighbours):

    1. Repeated samples (the same frame counter, or the same time and position) are removed.
    2. A short run (<= 5 samples) of timestamps out of line with its neighbours, after which the
       clock resumes, is re-interpolated between the good neighbours (by the frame counter when
       there is one). A lone timestamp far ahead of both neighbours is repaired the same way.
    3. A lasting reset (time jumps back and keeps running) is re-based to continue one nominal
       sampling interval after the last good sample.
    4. Trailing samples whose time runs backwards with nothing after them are dropped.
    5. Isolated one-sample position spikes are removed: a sample that departs from the line through
       its two neighbours, on both sides in the same direction, by more than
       max(12 robust sigma, the trace's 5-95 % range, 2 mm). With 3-axis positions a spike on
       any axis removes the sample.

    Parameters
    ----------
    trace
        A trace as returned by :func:`read_trace`.

    Returns
    -------
    RespirationTrace
        A new trace with strictly increasing ``time_s``; its ``cleaning`` field holds the
        :class:`CleaningSummary` (also logged at INFO level when anything changed).

    Raises
    ------
    InputError
        Fewer than :data:`MIN_SAMPLES` samples remain.
    """
    t0 = np.asarray(trace.time_s, dtype=float)
    pos0 = np.asarray(trace.position_mm, dtype=float)
    n_in = t0.shape[0]
    if n_in < MIN_SAMPLES:
        raise InputError(f"too few samples: {n_in} (need at least {MIN_SAMPLES})", trace.path)
    t, keep, counts = _repair_time(t0, pos0, trace.frame)
    t, pos = t[keep], pos0[keep]
    frame = trace.frame[keep] if trace.frame is not None else None
    # Guard: anything still not strictly increasing (cannot happen after _repair_time, but a
    # predictor downstream divides by time steps) is treated as a duplicate.
    order_ok = np.concatenate([[True], np.diff(t) > 0])
    while not order_ok.all():
        counts["duplicates_removed"] += int((~order_ok).sum())
        t, pos = t[order_ok], pos[order_ok]
        frame = frame[order_ok] if frame is not None else None
        order_ok = np.concatenate([[True], np.diff(t) > 0])

    cols = pos.reshape(pos.shape[0], -1)
    spikes = np.zeros(t.shape[0], dtype=bool)
    for c in range(cols.shape[1]):
        spikes |= _spike_mask(t, cols[:, c])
    if spikes.any():
        t, pos = t[~spikes], pos[~spikes]
        frame = frame[~spikes] if frame is not None else None

    summary = CleaningSummary(n_in=n_in, n_out=int(t.shape[0]), spikes_removed=int(spikes.sum()), **counts)
    if summary.n_out < MIN_SAMPLES:
        raise InputError(
            f"too few samples after cleaning: {summary.n_out} (need at least {MIN_SAMPLES})", trace.path
        )
    if summary.changed:
        log.info("%s: cleaned trace: %s", trace.path or "trace", summary.as_dict())
    return replace(trace, time_s=t, position_mm=pos, frame=frame, cleaning=summary)
