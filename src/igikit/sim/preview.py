"""A montage PNG of a cine case with its truth contour, for a person to look at."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from igikit.errors import InputError
from igikit.io.atomic import atomic_path
from igikit.io.trackrad import CineCase

_CONTOUR_BGR = (0, 220, 255)
_TEXT_BGR = (80, 255, 80)


def preview_frames(case: CineCase) -> list[tuple[int, str]]:
    """The frames worth showing: first, middle, farthest from the first, and hardest.

    "Farthest" is the frame whose truth centroid is farthest from frame 0's; "hardest" is a
    corrupted frame when the case has one (``meta["derived"]["corrupted_frames"]``), otherwise the
    frame with the smallest target.
    """
    if case.labels is None:
        raise InputError(f"case {case.case_id} has no every-frame labels to preview")
    t = case.n_frames
    areas = case.labels.reshape(-1, t).sum(axis=0)
    grid = np.indices(case.labels.shape[:2])
    rows, cols = grid[0], grid[1]
    safe = np.maximum(areas, 1)
    cy = (rows[..., None] * case.labels).sum(axis=(0, 1)) / safe
    cx = (cols[..., None] * case.labels).sum(axis=(0, 1)) / safe
    dx, dy = case.pixel_spacing_mm
    dist = np.hypot((cx - cx[0]) * dx, (cy - cy[0]) * dy)
    corrupted = case.meta.get("derived", {}).get("corrupted_frames", [])
    hardest = (int(corrupted[0]), "corrupted") if corrupted else (int(np.argmin(areas)), "smallest")
    return [(0, "first"), (t // 2, "middle"), (int(np.argmax(dist)), "farthest"), hardest]


def render_preview(case: CineCase, *, zoom: int | None = None) -> np.ndarray:
    """Montage (BGR uint8) of :func:`preview_frames`, truth contour drawn, frame labels written."""
    if case.labels is None:
        raise InputError(f"case {case.case_id} has no every-frame labels to preview")
    h, w, _ = case.frames.shape
    zoom = zoom or max(1, round(360 / h))
    # One display window for all tiles (robust 0.5-99.5 percentiles) so brightness is comparable.
    lo, hi = np.percentile(case.frames[:, :, :: max(1, case.n_frames // 10)], [0.5, 99.5])
    tiles = []
    for k, why in preview_frames(case):
        g = np.clip((case.frames[:, :, k].astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255)
        g = cv2.resize(g.astype(np.uint8), (w * zoom, h * zoom), interpolation=cv2.INTER_CUBIC)
        tile = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
        mask = cv2.resize(case.labels[:, :, k], (w * zoom, h * zoom), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(tile, contours, -1, _CONTOUR_BGR, 1)
        time_s = k / case.frame_rate_hz if case.frame_rate_hz else float(k)
        cv2.putText(tile, f"{why} #{k} {time_s:.1f}s", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _TEXT_BGR, 1)
        tiles.append(tile)
    montage = np.hstack(tiles)
    cv2.putText(montage, case.case_id, (4, montage.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _TEXT_BGR, 1)
    return montage


def write_preview(case: CineCase, path: str | Path) -> Path:
    """Write :func:`render_preview` as a PNG (atomically); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), render_preview(case)):
            raise InputError("could not write the preview PNG", path)
    return path
