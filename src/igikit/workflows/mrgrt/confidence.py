"""Calibrated tracking confidence for the gating workflow.

A tracker's raw confidence is a score; the gate, the level-3 handover and the explanations need a
probability: among frames given confidence 0.9, about 90 % should have a centroid error below the
tolerance. This module turns what the tracker reports on a frame into that probability.

Features (all causal: frame t uses frames <= t only), from the tracker's
:class:`~igikit.workflows.mrgrt.tracking.TrackResult` and the run's recent positions:

``raw_logit``
    logit of the tracker's own confidence (clipped to [0.01, 0.99]).
``held``
    Share of the ensemble's members that judged the frame corrupted and repeated their last good
    result (``*_corrupted`` details; a single tracker's ``corrupted``).
``motion_tol``
    How far the target is expected to have moved since the last frame that was really tracked
    (not held): the speed between the last two tracked frames times the time since the last one,
    in units of the tolerance (capped at 5). A repeated position is only as good as the target
    was still.
``held_motion_tol``
    ``held`` x ``motion_tol``: motion matters most when the position is a repeat.
``ncc_min``
    The lowest similarity any member found after matching (``*_ncc``: template NCC peak,
    post-registration NCC, i.e. the flow's residual).
``spread_tol``
    The members' confidence-weighted spread about the consensus, in units of the tolerance.

Model: logistic regression on the standardised features (maximum likelihood, small L2 penalty,
Newton / IRLS), then isotonic regression (pool-adjacent-violators, Zadrozny & Elkan, KDD 2002) of
the observed success on the logistic probability, both fitted on one half of the phantom data;
see ``bench/gating_calibration.py``, which writes the shipped file :data:`CALIBRATION_FILE` with
its card (data, tolerance, date, expected calibration error on the held-out half).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igikit.ai.calibration import IsotonicCalibrator
from igikit.errors import InputError

#: The calibration shipped with igikit (fitted by ``bench/gating_calibration.py``).
CALIBRATION_FILE = Path(__file__).with_name("gating_confidence.json")
#: Feature names, in the order :meth:`ConfidenceFeatures.update` returns them.
FEATURES: tuple[str, ...] = ("raw_logit", "held", "motion_tol", "held_motion_tol", "ncc_min", "spread_tol")
_MOTION_CAP_TOL = 5.0


def _logit(p: float) -> float:
    q = min(max(p, 0.01), 0.99) if np.isfinite(p) else 0.01
    return float(np.log(q / (1.0 - q)))


def held_share(details: Mapping[str, float]) -> float:
    """Share of members (or the tracker itself) that repeated their last good result on this frame."""
    flags = [float(v) for k, v in details.items() if k.endswith("_corrupted")]
    if not flags and "corrupted" in details:
        flags = [float(details["corrupted"])]
    return float(np.clip(np.mean(flags), 0.0, 1.0)) if flags else 0.0


def lowest_similarity(details: Mapping[str, float]) -> float:
    """The lowest post-match similarity (``ncc`` / ``*_ncc``) a member reported (1 when none did)."""
    values = [float(v) for k, v in details.items() if (k == "ncc" or k.endswith("_ncc")) and np.isfinite(v)]
    return float(min(values)) if values else 1.0


class ConfidenceFeatures:
    """The calibration features of one run, frame by frame (keeps the last tracked positions).

    Parameters
    ----------
    tolerance_mm
        Centroid error counted as a success; motion and spread are measured in its units.
    """

    def __init__(self, tolerance_mm: float) -> None:
        if not (np.isfinite(tolerance_mm) and tolerance_mm > 0):
            raise InputError(f"the tolerance must be > 0 mm, got {tolerance_mm}")
        self.tolerance_mm = float(tolerance_mm)
        self.reset()

    def reset(self) -> None:
        """Forget the previous run."""
        self._good: list[tuple[float, np.ndarray]] = []

    def first(self, time_s: float, centroid_mm: Sequence[float] | np.ndarray) -> None:
        """The first frame (its label is given, not tracked): a known position."""
        self.reset()
        self._good.append((float(time_s), np.asarray(centroid_mm, dtype=np.float64)))

    def update(
        self, time_s: float, confidence: float, centroid_mm: Sequence[float] | np.ndarray, details: Mapping[str, float]
    ) -> np.ndarray:
        """The features of this frame (see the module docstring), in :data:`FEATURES` order."""
        held = held_share(details)
        motion = 0.0
        if len(self._good) >= 2:
            (t0, c0), (t1, c1) = self._good[-2], self._good[-1]
            if t1 > t0:
                speed = float(np.linalg.norm(c1 - c0)) / (t1 - t0)
                motion = speed * max(0.0, float(time_s) - t1)
        motion_tol = min(motion / self.tolerance_mm, _MOTION_CAP_TOL)
        spread = float(details.get("spread_mm", 0.0))
        c = np.asarray(centroid_mm, dtype=np.float64)
        if held < 0.5 and np.isfinite(c).all():
            self._good = [*self._good[-1:], (float(time_s), c)]
        return np.array(
            [
                _logit(float(confidence)),
                held,
                motion_tol,
                held * motion_tol,
                lowest_similarity(details),
                spread / self.tolerance_mm if np.isfinite(spread) else _MOTION_CAP_TOL,
            ]
        )


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, iterations: int = 50) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, float
]:
    """L2-penalised logistic regression by Newton's method (IRLS) on standardised features.

    Returns ``(mean, scale, coef, intercept)``: ``p = 1 / (1 + exp(-(((x - mean) / scale) . coef
    + intercept)))``. The intercept is not penalised.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.ndim != 2 or x.shape[0] != y.size or y.size == 0:
        raise InputError(f"need (n, features) and n outcomes, got {x.shape} and {y.size}")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.column_stack([(x - mean) / scale, np.ones(len(y))])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2 * len(y))
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return mean, scale, w[:-1], float(w[-1])


def fit_isotonic(score: np.ndarray, success: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotone map score -> success rate (isotonic regression), as (x, y) knots for interpolation.

    Isotonic regression is a step function; each step is kept as its first and last score, so
    interpolating between the knots reproduces it (linear between steps) from a small file.
    """
    s = np.asarray(score, dtype=np.float64).ravel()
    y = np.asarray(success, dtype=np.float64).ravel()
    if s.size == 0 or s.shape != y.shape:
        raise InputError(f"need as many scores as outcomes, got {s.size} and {y.size}")
    iso = IsotonicCalibrator().fit(s, y)
    x, fitted = iso.x, iso.y
    edge = np.flatnonzero(np.diff(fitted) != 0)
    keep = np.unique(np.concatenate([[0, x.size - 1], edge, edge + 1]))
    return x[keep], fitted[keep]


@dataclass(frozen=True)
class ConfidenceModel:
    """A fitted calibration: features -> probability that the centroid error is below the tolerance.

    Attributes
    ----------
    tracking_method
        The tracking method it was fitted for (its raw confidence and details are what it reads).
    tolerance_mm
        The success criterion: centroid error below this.
    features
        Feature names (:data:`FEATURES`).
    mean, scale, coef, intercept
        The logistic model on standardised features.
    iso_x, iso_y
        Isotonic map of the logistic probability to the observed success rate (empty: none).
    min_confidence
        The gate's threshold on this confidence (the beam holds below it), chosen on the fit data
        as the lowest at which no failure and no repeated (held) frame passed.
    card
        What it was fitted on, when, and how well it did on held-out data.
    """

    tracking_method: str
    tolerance_mm: float
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    iso_x: tuple[float, ...] = ()
    iso_y: tuple[float, ...] = ()
    min_confidence: float = 0.5
    card: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        if not (len(self.mean) == len(self.scale) == len(self.coef) == n) or n == 0:
            raise InputError("a confidence model needs one mean, scale and coefficient per feature")
        if tuple(self.features) != FEATURES:
            raise InputError(f"confidence model features {list(self.features)} differ from {list(FEATURES)}")
        if len(self.iso_x) != len(self.iso_y) or np.any(np.diff(self.iso_x) < 0) or np.any(np.diff(self.iso_y) < 0):
            raise InputError("the isotonic map must have as many x as y values, both non-decreasing")
        if not self.tolerance_mm > 0:
            raise InputError(f"the tolerance must be > 0 mm, got {self.tolerance_mm}")
        if not 0 <= self.min_confidence <= 1:
            raise InputError(f"the minimum confidence must be in [0, 1], got {self.min_confidence}")

    def logistic(self, x: np.ndarray) -> np.ndarray:
        """The logistic model's probability for features ``x`` ((features,) or (n, features))."""
        z = (np.asarray(x, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z @ np.asarray(self.coef) + self.intercept, -30, 30))))

    def probability(self, x: np.ndarray) -> np.ndarray:
        """The calibrated confidence for features ``x`` ((features,) or (n, features))."""
        p = self.logistic(x)
        if self.iso_x:
            p = np.interp(p, self.iso_x, self.iso_y)
        return np.asarray(np.clip(p, 0.0, 1.0))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "format": "igikit-confidence-calibration",
            "version": 1,
            "tracking_method": self.tracking_method,
            "tolerance_mm": self.tolerance_mm,
            "features": list(self.features),
            "logistic": {"mean": list(self.mean), "scale": list(self.scale), "coef": list(self.coef),
                         "intercept": self.intercept},
            "isotonic": {"x": list(self.iso_x), "y": list(self.iso_y)},
            "min_confidence": self.min_confidence,
            "card": dict(self.card),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConfidenceModel:
        """Inverse of :meth:`to_dict`."""
        try:
            if d.get("format") != "igikit-confidence-calibration":
                raise InputError("not an igikit confidence calibration")
            lg, iso = d["logistic"], d.get("isotonic", {})
            return cls(
                tracking_method=str(d["tracking_method"]),
                tolerance_mm=float(d["tolerance_mm"]),
                features=tuple(str(f) for f in d["features"]),
                mean=tuple(float(v) for v in lg["mean"]),
                scale=tuple(float(v) for v in lg["scale"]),
                coef=tuple(float(v) for v in lg["coef"]),
                intercept=float(lg["intercept"]),
                iso_x=tuple(float(v) for v in iso.get("x", ())),
                iso_y=tuple(float(v) for v in iso.get("y", ())),
                min_confidence=float(d.get("min_confidence", 0.5)),
                card=dict(d.get("card", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed confidence calibration: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ConfidenceModel:
        """Read a model written by :meth:`save`."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InputError("confidence calibration not found", path) from exc
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the confidence calibration: {exc}", path) from exc
        try:
            return cls.from_dict(d)
        except InputError as exc:
            raise InputError(str(exc), path) from exc


@functools.lru_cache(maxsize=1)
def shipped_model() -> ConfidenceModel:
    """The calibration shipped with igikit (:data:`CALIBRATION_FILE`)."""
    return ConfidenceModel.load(CALIBRATION_FILE)


class ConfidenceCalibrator:
    """Calibrates one run's tracking confidence, frame by frame.

    Parameters
    ----------
    model
        The fitted calibration (default: :func:`shipped_model`).

    Examples
    --------
    >>> cal = ConfidenceCalibrator()
    >>> cal.first(0.0, (50.0, 60.0))
    >>> p = cal.calibrate(0.2, 0.97, (50.5, 60.0), {"spread_mm": 0.1})
    >>> 0.0 <= p <= 1.0
    True
    """

    def __init__(self, model: ConfidenceModel | None = None) -> None:
        self.model = model if model is not None else shipped_model()
        self.features = ConfidenceFeatures(self.model.tolerance_mm)

    def first(self, time_s: float, centroid_mm: Sequence[float] | np.ndarray) -> None:
        """Start a run with the first frame's (given) target position."""
        self.features.first(time_s, centroid_mm)

    def calibrate(
        self, time_s: float, confidence: float, centroid_mm: Sequence[float] | np.ndarray, details: Mapping[str, float]
    ) -> float:
        """The calibrated confidence of this frame (NaN stays NaN: an untracked frame)."""
        if not np.isfinite(confidence):
            return float("nan")
        x = self.features.update(time_s, confidence, centroid_mm, details)
        return float(self.model.probability(x))
