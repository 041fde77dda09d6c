"""Choose the gating reference at end-exhale from a short setup phase before the beam.

Clinically the gating window is drawn on a reference image at end-exhale, the most reproducible
and longest-dwelling phase of free breathing (Keall et al., AAPM TG-76, Med Phys 33, 2006). A cine
that starts mid-breath therefore needs a setup phase: track the target through the first seconds,
find end-exhale, and start the beam-on replay from that frame with the target tracked there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from igikit.errors import InputError
from igikit.workflows.mrgrt.drift import exhale_at_low_si
from igikit.workflows.mrgrt.tracking import track_sequence


@dataclass(frozen=True)
class ExhaleReference:
    """The frame chosen as gating reference and the target on it."""

    frame: int
    label: np.ndarray
    si_mm: np.ndarray
    exhale_at_low_si: bool


def exhale_reference(
    frames_hwt: np.ndarray,
    label0: np.ndarray,
    spacing_rc: tuple[float, float],
    *,
    setup_frames: int,
    method: str = "registration",
) -> ExhaleReference:
    """Track the first ``setup_frames`` frames and return the end-exhale frame and its target.

    End-exhale is the end of the SI excursion where the trace dwells (the median lies nearer that
    end, :func:`~igikit.workflows.mrgrt.drift.exhale_at_low_si`); the reference is the setup frame
    closest to the trace's 5th (or 95th) percentile there, so a single outlying frame is not chosen.
    The baseline may drift after it: see :mod:`igikit.workflows.mrgrt.drift` (``--recentre``).
    """
    n = min(int(setup_frames), frames_hwt.shape[2])
    if n < 3:
        raise InputError(f"the setup phase needs at least 3 frames, got {n}")
    tracked = track_sequence(frames_hwt[:, :, :n], label0, spacing_rc, method)
    si = np.array([
        np.mean(np.nonzero(tracked.labels[:, :, t])[0]) * spacing_rc[0] if tracked.labels[:, :, t].any() else np.nan
        for t in range(n)
    ])
    if np.isnan(si).all():
        raise InputError("the target was lost during the setup phase")
    low = exhale_at_low_si(si)
    lo, hi = np.nanpercentile(si, [5, 95])
    goal = lo if low else hi
    frame = int(np.nanargmin(np.abs(si - goal)))
    return ExhaleReference(frame, tracked.labels[:, :, frame].copy(), si, bool(low))
