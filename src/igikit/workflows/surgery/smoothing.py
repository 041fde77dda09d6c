"""Pose smoothing that never lags more than one tracker frame.

Optical trackers jitter by a few tenths of a millimetre and a fraction of a degree; a filter
that steadies the displayed tool must not make it trail behind the real one. :class:`PoseSmoother`
averages the last three poses: translations by their mean, rotations by their chordal L2 mean
(the rotation nearest, in the Frobenius norm, to the mean rotation matrix, Hartley, Trumpf, Dai &
Li, "Rotation averaging", IJCV 103 (2013) 267, section 5.3; for rotations about one axis it is the
middle one). For a tool moving at constant speed, or turning at constant rate, the mean of three
equally spaced poses is the middle one: the output trails the input by exactly one frame, and
white jitter shrinks by sqrt(3). The first two outputs average what has arrived (less lag).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from igikit.errors import InputError


def chordal_mean(rotations: np.ndarray) -> np.ndarray:
    """The chordal L2 mean of ``(N, 3, 3)`` rotations: the proper rotation nearest their mean matrix."""
    m = np.asarray(rotations, dtype=np.float64).mean(axis=0)
    u, _, vt = np.linalg.svd(m)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    out: np.ndarray = (u * d) @ vt
    return out


class PoseSmoother:
    """Average of the last ``window`` tool poses (mean translation, chordal mean rotation).

    Parameters
    ----------
    window
        Poses averaged (2 or 3); the lag on steady motion is ``(window - 1) / 2`` frames, so 3 is
        the most that keeps it within one frame.

    Examples
    --------
    >>> s = PoseSmoother()
    >>> ramp = [np.eye(4) for _ in range(4)]
    >>> for k, p in enumerate(ramp):
    ...     p[0, 3] = 2.0 * k
    >>> [float(s.update(p)[0, 3]) for p in ramp]  # lags the ramp by one frame (2 mm) once full
    [0.0, 1.0, 2.0, 4.0]
    """

    def __init__(self, window: int = 3) -> None:
        if window not in (2, 3):
            raise InputError(f"the smoothing window must be 2 or 3 poses (at most one frame of lag), got {window}")
        self.window = window
        self._poses: deque[np.ndarray] = deque(maxlen=window)

    @property
    def lag_frames(self) -> float:
        """Lag on steady motion, in tracker frames."""
        return (self.window - 1) / 2.0

    def reset(self) -> None:
        """Forget the history."""
        self._poses.clear()

    def update(self, pose: np.ndarray) -> np.ndarray:
        """The smoothed 4x4 pose after ``pose`` arrived."""
        self._poses.append(np.asarray(pose, dtype=np.float64))
        if len(self._poses) == 1:
            return self._poses[0].copy()
        stack = np.stack(self._poses)
        out = np.eye(4)
        out[:3, :3] = chordal_mean(stack[:, :3, :3])
        out[:3, 3] = stack[:, :3, 3].mean(axis=0)
        return out


__all__ = ["PoseSmoother", "chordal_mean"]
