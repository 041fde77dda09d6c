"""Template matching by normalised cross-correlation, with sub-pixel peaks.

OpenCV's ``matchTemplate`` (TM_CCOEFF_NORMED, zero-mean NCC computed with FFTs / integral images)
does the search; the peak is refined to sub-pixel precision with a separable parabola fit
(Argyriou & Vlachos, "A study of sub-pixel motion estimation using phase correlation", 2006,
compare their 3-point fits). An optional motion-continuity prior (a quadratic penalty on the
distance from the expected position) keeps the match from jumping to a look-alike structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from igikit.errors import InputError


@dataclass(frozen=True)
class Match:
    """Where the template's top-left corner fits best, in image pixels (row, col), and how well."""

    row: float
    col: float
    score: float
    second_score: float


def _parabola_offset(left: float, centre: float, right: float) -> float:
    denom = left - 2.0 * centre + right
    if denom >= 0 or not np.isfinite(denom):
        return 0.0
    return float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))


def match_template(
    image: np.ndarray,
    template: np.ndarray,
    *,
    search: tuple[int, int, int, int] | None = None,
    exclusion_px: int = 3,
    expected_rc: tuple[float, float] | None = None,
    continuity: float = 0.0,
    continuity_px: float = 10.0,
) -> Match:
    """Best NCC position of ``template`` in ``image``.

    Parameters
    ----------
    image, template
        2D arrays of one dtype (uint8 or float32).
    search
        ``(row0, row1, col0, col1)``: the range of top-left positions to consider (clipped to the
        image); None searches everywhere.
    exclusion_px
        Radius around the best peak excluded when finding the second-best peak (ambiguity).
    expected_rc, continuity, continuity_px
        Motion continuity: the peak is chosen by ``NCC - continuity * (d / continuity_px)**2``,
        ``d`` the distance (pixels) of the top-left position from ``expected_rc``. The returned
        scores stay the plain NCC. ``continuity=0`` (default) or no ``expected_rc``: the plain maximum.

    Returns
    -------
    Match
        Sub-pixel top-left (row, col) of the best match, its NCC score in [-1, 1], and the best
        score outside the exclusion radius (a repeated structure makes the two close).
    """
    if image.ndim != 2 or template.ndim != 2:
        raise InputError("image and template must be 2D")
    th, tw = template.shape
    h, w = image.shape
    if th > h or tw > w:
        raise InputError(f"template {template.shape} is larger than the image {image.shape}")
    r0, r1, c0, c1 = search if search is not None else (0, h - th, 0, w - tw)
    r0, r1 = max(0, int(r0)), min(h - th, int(r1))
    c0, c1 = max(0, int(c0)), min(w - tw, int(c1))
    if r1 < r0 or c1 < c0:
        r0, r1, c0, c1 = 0, h - th, 0, w - tw
    window = image[r0 : r1 + th, c0 : c1 + tw]
    scores = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
    scores = np.nan_to_num(scores, nan=-1.0)
    if expected_rc is not None and continuity > 0:
        rr = np.arange(scores.shape[0], dtype=np.float32)[:, None] + (r0 - expected_rc[0])
        cc = np.arange(scores.shape[1], dtype=np.float32)[None, :] + (c0 - expected_rc[1])
        penalised = scores - np.float32(continuity / continuity_px**2) * (rr * rr + cc * cc)
        _, _, _, (bc, br) = cv2.minMaxLoc(penalised)
        best = float(scores[br, bc])
    else:
        _, best, _, (bc, br) = cv2.minMaxLoc(scores)
    dr = dc = 0.0
    if 0 < br < scores.shape[0] - 1:
        dr = _parabola_offset(scores[br - 1, bc], scores[br, bc], scores[br + 1, bc])
    if 0 < bc < scores.shape[1] - 1:
        dc = _parabola_offset(scores[br, bc - 1], scores[br, bc], scores[br, bc + 1])
    masked = scores.copy()
    masked[max(0, br - exclusion_px) : br + exclusion_px + 1, max(0, bc - exclusion_px) : bc + exclusion_px + 1] = -1
    second = float(masked.max()) if masked.size > 1 else -1.0
    return Match(row=r0 + br + dr, col=c0 + bc + dc, score=float(best), second_score=second)
