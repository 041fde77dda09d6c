"""Confidence calibration: isotonic regression and the expected calibration error.

A confidence is calibrated when, among the frames given confidence p, a fraction p is right.
Isotonic regression (pool-adjacent-violators, Barlow et al. 1972; used for calibration by
Zadrozny & Elkan, KDD 2002) fits the monotone map from raw confidence to observed success rate;
the expected calibration error (Naeini et al., AAAI 2015; Guo et al., ICML 2017) is the
frame-weighted mean gap between confidence and success rate over equal-width bins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from igikit.errors import InputError


def _pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing least-squares fit to ``y`` with weights ``w``."""
    values: list[float] = []
    weights: list[float] = []
    counts: list[int] = []
    for yi, wi in zip(y, w, strict=True):
        values.append(float(yi))
        weights.append(float(wi))
        counts.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            v2, w2, c2 = values.pop(), weights.pop(), counts.pop()
            total = weights[-1] + w2
            values[-1] = (values[-1] * weights[-1] + v2 * w2) / total if total > 0 else v2
            weights[-1] = total
            counts[-1] += c2
    return np.repeat(values, counts)


@dataclass
class IsotonicCalibrator:
    """Monotone map from a raw confidence to a calibrated one, fitted by isotonic regression."""

    x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, confidence: np.ndarray, success: np.ndarray) -> IsotonicCalibrator:
        c = np.asarray(confidence, float).ravel()
        s = np.asarray(success, float).ravel()
        if c.size == 0 or c.shape != s.shape:
            raise InputError(f"calibration needs as many confidences as outcomes (got {c.size} and {s.size})")
        order = np.argsort(c, kind="stable")
        c, s = c[order], s[order]
        # Equal confidences share one fitted value: fit on the unique values with counts as weights.
        ux, inverse, counts = np.unique(c, return_inverse=True, return_counts=True)
        means = np.bincount(inverse, weights=s) / counts
        self.x, self.y = ux, _pav(means, counts.astype(float))
        return self

    def predict(self, confidence: np.ndarray | float) -> np.ndarray:
        if self.x.size == 0:
            raise InputError("the calibrator is not fitted")
        return np.asarray(np.interp(np.asarray(confidence, float), self.x, self.y))

    def __call__(self, confidence: float) -> float:
        return float(self.predict(confidence))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({"method": "isotonic", "x": self.x.tolist(), "y": self.y.tolist()}))
        return path

    @classmethod
    def load(cls, path: str | Path) -> IsotonicCalibrator:
        d = json.loads(Path(path).read_text())
        return cls(np.asarray(d["x"], float), np.asarray(d["y"], float))


def expected_calibration_error(confidence: np.ndarray, success: np.ndarray, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width confidence bins: sum of |success rate - mean confidence| x bin share."""
    c = np.asarray(confidence, float).ravel()
    s = np.asarray(success, float).ravel()
    if c.size == 0 or c.shape != s.shape:
        raise InputError("ECE needs as many confidences as outcomes, at least one")
    idx = np.minimum((np.clip(c, 0, 1) * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(s[sel].mean() - c[sel].mean())
    return float(ece)
