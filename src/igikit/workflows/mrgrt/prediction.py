"""Respiratory motion prediction for latency compensation.

An MR-linac answers a tumour position 150-700 ms after it was imaged, so the beam must be aimed at
where the target *will be*. Every predictor here is online and causal: it is fed samples one at a
time (:meth:`Predictor.update`) and asked for the position ``horizon_s`` after its newest sample
(:meth:`Predictor.predict`), using nothing newer. Sampling may be irregular (the Krilavicius traces
step 100 or 117 ms); methods that need a uniform history interpolate the past samples onto a grid
anchored at the newest sample, ``t, t - dt, t - 2 dt, ...``, which only ever uses samples <= t.

Methods
-------
``last``
    No prediction: the newest position (what an uncompensated system does).
``linear``
    Adaptive linear regression, the published baseline of Lombardo et al. (2022): a linear
    autoregressive model ``x(t + h) - x(t) = w . [x(t - j dt) - x(t)] + b`` fitted by (ridge) least
    squares on the pairs of a sliding window of recent history and refitted at every sample.
``kalman``
    Constant-velocity Kalman filter with continuous white-noise acceleration, exact for irregular
    time steps; predicts ``x + v h`` (Sharp et al. 2004).
``rls``
    The same autoregressive model learnt by exponentially weighted recursive least squares
    (Haykin 2002): an online-learning filter that never stores its history.
``knn``
    Online analogue (nearest-neighbour) forecaster: the last ``memory_s`` seconds of breathing
    patterns (amplitude-normalised) and what followed them are kept; the future of the ``k``
    nearest patterns, distance-weighted, is the prediction (Ruan & Keall 2010 style local
    regression; Kam et al. 2015). Non-linear, so it learns the shape of this person's cycle.
``online``
    Online ensemble of ``rls`` and ``knn``: each member's recent squared error (exponentially
    forgotten) sets its weight, inverse-MSE (an online expert-aggregation scheme, cf. Cesa-Bianchi
    & Lugosi 2006). Best on the real traces; ``best`` is an alias.

References
----------
E. Lombardo et al., "Offline and online LSTM networks for respiratory motion prediction in
MR-guided radiotherapy", Phys. Med. Biol. 67 (2022) 095006.
G. C. Sharp, S. B. Jiang, S. Shimizu, H. Shirato, "Prediction of respiratory tumour motion for
real-time image-guided radiotherapy", Phys. Med. Biol. 49 (2004) 425-440.
S. Haykin, Adaptive Filter Theory, 4th ed., Prentice Hall (2002), ch. 9 (RLS).
D. Ruan, P. Keall, "Online prediction of respiratory motion: multidimensional processing with
low-dimensional feature learning", Phys. Med. Biol. 55 (2010) 3011-3025.
K. M. Kam, S. Wang, S. R. Bowen, W. Chaovalitwongse, "Pattern-based variant-best-neighbors
respiratory motion prediction", AAAI (2015).
N. Cesa-Bianchi, G. Lugosi, Prediction, Learning, and Games, Cambridge (2006).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from igikit.errors import InputError

__all__ = [
    "BEST_METHOD",
    "METHODS",
    "AnalogueForecaster",
    "KalmanPredictor",
    "LastValuePredictor",
    "OnlineEnsemblePredictor",
    "PredictionMetrics",
    "Predictor",
    "RLSPredictor",
    "SlidingLinearRegression",
    "evaluate",
    "make_predictor",
    "predict_trace",
    "resolve_method",
    "run_predictor",
    "truth_at_horizon",
]

#: Method names accepted by :func:`make_predictor` / :func:`predict_trace`.
METHODS: tuple[str, ...] = ("last", "linear", "kalman", "rls", "knn", "online")
#: The method ``best`` stands for: chosen once on half of the real traces (see docs/benchmarks.md),
#: never per trace, since choosing per trace would use the future.
BEST_METHOD = "online"

#: Grid step (s) of the delay embedding: the nominal sampling of the Krilavicius traces.
DEFAULT_DT_S = 0.1
#: Embedding length: positions at t, t - dt, ..., t - (p - 1) dt (1.1 s of history, about a
#: quarter of a breathing cycle: enough to tell inhale from exhale and where in the cycle we are).
DEFAULT_LAGS = 12


class Predictor(ABC):
    """One interface for every method: feed samples in time order, ask for a future position.

    ``update(t_s, x_mm)`` must be called with strictly increasing ``t_s``; ``predict(horizon_s)``
    returns the position expected at ``t + horizon_s`` (``t`` the newest sample) from samples up to
    ``t`` only, or NaN while there is not enough history yet.
    """

    name: ClassVar[str]

    @abstractmethod
    def update(self, t_s: float, x_mm: float) -> None:
        """Take the sample ``x_mm`` measured at time ``t_s`` (s)."""

    @abstractmethod
    def predict(self, horizon_s: float) -> float:
        """Position (mm) predicted for ``horizon_s`` after the newest sample."""


class _History:
    """The recent samples, in arrays (amortised O(1) append; old samples are dropped in blocks)."""

    def __init__(self, keep_s: float, capacity: int = 4096) -> None:
        self.keep_s = keep_s
        self.t = np.empty(capacity)
        self.x = np.empty(capacity)
        self.n = 0

    def append(self, t_s: float, x_mm: float) -> None:
        if self.n and t_s <= self.t[self.n - 1]:
            raise InputError(
                f"sample times must increase strictly: {t_s:.6g} s after {self.t[self.n - 1]:.6g} s "
                "(clean the trace first)"
            )
        if self.n == self.t.shape[0]:
            # Keep what the methods may still ask for; grow only if keep_s holds that many samples.
            start = int(np.searchsorted(self.t[: self.n], self.t[self.n - 1] - self.keep_s))
            kept = self.n - start
            if kept > self.t.shape[0] // 2:
                self.t = np.concatenate([self.t, np.empty_like(self.t)])
                self.x = np.concatenate([self.x, np.empty_like(self.x)])
            else:
                self.t[:kept] = self.t[start : self.n]
                self.x[:kept] = self.x[start : self.n]
                self.n = kept
        self.t[self.n] = t_s
        self.x[self.n] = x_mm
        self.n += 1

    @property
    def last_t(self) -> float:
        return float(self.t[self.n - 1])

    @property
    def last_x(self) -> float:
        return float(self.x[self.n - 1])

    def interp(self, times: np.ndarray | float) -> np.ndarray:
        """Linear interpolation of the stored samples at ``times`` (all within the stored span)."""
        t, x = self.t[: self.n], self.x[: self.n]
        lo = max(int(np.searchsorted(t, np.min(times))) - 1, 0)  # only the tail is needed
        return np.asarray(np.interp(times, t[lo:], x[lo:]))

    def at(self, time_s: float) -> float:
        """Linear interpolation at one time within the stored span (scalar fast path)."""
        i = int(np.searchsorted(self.t[: self.n], time_s))
        if i == 0:
            return float(self.x[0])
        if i >= self.n:
            return float(self.x[self.n - 1])
        t0, t1 = float(self.t[i - 1]), float(self.t[i])
        x0, x1 = float(self.x[i - 1]), float(self.x[i])
        return x0 + (x1 - x0) * (time_s - t0) / (t1 - t0)

    def embed(self, lags: np.ndarray) -> np.ndarray | None:
        """Positions at ``newest time - lags`` (ascending lags from 0), or None if history is short."""
        if self.n == 0 or self.last_t - lags[-1] < self.t[0]:
            return None
        times = self.last_t - lags
        t, x = self.t[: self.n], self.x[: self.n]
        lo = max(int(np.searchsorted(t, times[-1])) - 1, 0)  # only the tail is needed
        return np.interp(times, t[lo:], x[lo:])


class LastValuePredictor(Predictor):
    """No prediction: the newest position, the baseline every method is compared against."""

    name = "last"

    def __init__(self) -> None:
        self._x = math.nan

    def update(self, t_s: float, x_mm: float) -> None:
        self._x = float(x_mm)

    def predict(self, horizon_s: float) -> float:
        return self._x


class KalmanPredictor(Predictor):
    """Constant-velocity Kalman filter with continuous white-noise acceleration (Sharp et al. 2004).

    State ``[x, v]``; between samples ``dt`` apart the process noise is
    ``q [[dt^3/3, dt^2/2], [dt^2/2, dt]]``, which makes irregular sampling exact. The prediction is
    the state extrapolated over the horizon, ``x + v h``.

    Parameters
    ----------
    q
        Acceleration noise spectral density (mm^2/s^3): how fast velocity may change. Breathing
        reverses direction every ~2 s, so it is large.
    r
        Measurement noise variance (mm^2); the markers are quantised to 0.1 mm.
    """

    name = "kalman"

    def __init__(self, *, q: float = 300.0, r: float = 0.05) -> None:
        if q <= 0 or r <= 0:
            raise ValueError("q and r must be positive")
        self.q, self.r = q, r
        self._s = np.zeros(2)
        self._P = np.diag([1e3, 1e3])
        self._t = math.nan

    def update(self, t_s: float, x_mm: float) -> None:
        if math.isnan(self._t):
            self._s = np.array([x_mm, 0.0])
            self._t = t_s
            return
        dt = t_s - self._t
        if dt <= 0:
            raise InputError(f"sample times must increase strictly: {t_s:.6g} s after {self._t:.6g} s")
        self._t = t_s
        F = np.array([[1.0, dt], [0.0, 1.0]])
        Q = self.q * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
        s = F @ self._s
        P = F @ self._P @ F.T + Q
        gain = P[:, 0] / (P[0, 0] + self.r)
        self._s = s + gain * (x_mm - s[0])
        P = P - np.outer(gain, P[0])
        self._P = 0.5 * (P + P.T)  # keep it symmetric against round-off

    def predict(self, horizon_s: float) -> float:
        if math.isnan(self._t):
            return math.nan
        return float(self._s[0] + self._s[1] * horizon_s)


class _AnchoredLearner(Predictor):
    """Common machinery of the learning methods: delay embedding and causal training pairs.

    At every sample time ``t_a`` (an *anchor*) the embedding ``u_a`` (positions on the grid
    ``t_a - j dt`` minus ``x(t_a)``) is stored. Once a later sample passes ``t_a + h``, the true
    displacement ``x(t_a + h) - x(t_a)`` is interpolated from the samples bracketing ``t_a + h`` and
    the pair trains the model. A model is built for one horizon, given at construction.
    """

    def __init__(self, horizon_s: float, *, dt_s: float, lags: int, keep_s: float) -> None:
        if not horizon_s > 0:
            raise InputError(f"horizon must be > 0 s, got {horizon_s}")
        if lags < 2 or dt_s <= 0:
            raise ValueError("need lags >= 2 and dt_s > 0")
        self.horizon_s = float(horizon_s)
        self.dt_s, self.lags = dt_s, lags
        self._lag_s = dt_s * np.arange(lags)
        self._hist = _History(keep_s=max(keep_s, horizon_s + dt_s * lags) + 1.0)
        self._pending: deque[tuple[float, float, np.ndarray]] = deque()
        self._u: np.ndarray | None = None

    def update(self, t_s: float, x_mm: float) -> None:
        self._hist.append(t_s, x_mm)
        self._observe(t_s, x_mm)
        while self._pending and self._pending[0][0] + self.horizon_s <= t_s:
            t_a, x_a, u_a = self._pending.popleft()
            target = self._hist.at(t_a + self.horizon_s) - x_a
            self._learn(t_a, u_a, target)
        pos = self._hist.embed(self._lag_s)
        if pos is None:
            self._u = None
            return
        self._u = pos[1:] - pos[0]
        self._pending.append((t_s, float(pos[0]), self._u))

    def predict(self, horizon_s: float) -> float:
        if not math.isclose(horizon_s, self.horizon_s, rel_tol=1e-9, abs_tol=1e-9):
            raise ValueError(f"{self.name} was built for a {self.horizon_s} s horizon, not {horizon_s} s")
        if self._u is None:
            return math.nan
        return self._hist.last_x + self._displacement(self._u)

    def _observe(self, t_s: float, x_mm: float) -> None:
        """Hook for per-sample statistics (e.g. amplitude scale)."""

    @abstractmethod
    def _learn(self, t_a: float, u: np.ndarray, target: float) -> None: ...

    @abstractmethod
    def _displacement(self, u: np.ndarray) -> float: ...


class SlidingLinearRegression(_AnchoredLearner):
    """Adaptive linear regression: least squares on a sliding window, refitted every sample.

    The online linear-regression baseline of Lombardo et al. (2022): the displacement over the
    horizon is a linear function of the recent positions (relative to the newest) plus a bias,
    fitted on the training pairs of the last ``window_s`` seconds. The normal equations are kept as
    running sums (pairs enter and leave the window), so a refit costs one small solve.

    Parameters
    ----------
    horizon_s
        The prediction horizon the model is fitted for (s).
    window_s
        Length of the training window (s).
    dt_s, lags
        Grid step and number of positions in the embedding.
    ridge
        Tikhonov weight per training pair (mm^2), so that a near-constant window stays solvable.
    """

    name = "linear"

    def __init__(
        self,
        horizon_s: float,
        *,
        window_s: float = 60.0,
        dt_s: float = DEFAULT_DT_S,
        lags: int = DEFAULT_LAGS,
        ridge: float = 1e-3,
    ) -> None:
        super().__init__(horizon_s, dt_s=dt_s, lags=lags, keep_s=dt_s * lags)
        self.window_s, self.ridge = window_s, ridge
        d = lags  # lags - 1 relative positions + bias
        self._A = np.zeros((d, d))
        self._b = np.zeros(d)
        self._pairs: deque[tuple[float, np.ndarray, float]] = deque()
        self._w: np.ndarray | None = None

    def _learn(self, t_a: float, u: np.ndarray, target: float) -> None:
        f = np.append(u, 1.0)
        self._A += np.outer(f, f)
        self._b += f * target
        self._pairs.append((t_a, f, target))
        while self._pairs and self._pairs[0][0] < t_a - self.window_s:
            _, g, y = self._pairs.popleft()
            self._A -= np.outer(g, g)
            self._b -= g * y
        self._w = None

    def _displacement(self, u: np.ndarray) -> float:
        if len(self._pairs) < 2 * self.lags:
            return 0.0  # too few pairs to fit: no prediction (last value) rather than a wild one
        if self._w is None:
            reg = self.ridge * len(self._pairs) * np.eye(self.lags)
            self._w = np.linalg.solve(self._A + reg, self._b)
        return float(np.dot(u, self._w[:-1]) + self._w[-1])


class RLSPredictor(_AnchoredLearner):
    """Exponentially weighted recursive least squares on the delay embedding (Haykin 2002, ch. 9).

    The same linear autoregressive model as :class:`SlidingLinearRegression`, learnt one pair at a
    time with forgetting factor ``lam`` (memory ~ ``dt / (1 - lam)`` seconds): O(d^2) per sample,
    nothing stored but the weights and the inverse correlation matrix.

    Parameters
    ----------
    horizon_s
        The prediction horizon the filter learns (s).
    lam
        Forgetting factor in (0, 1].
    delta
        Initial inverse-correlation scale (mm^-2): the prior towards no prediction (zero weights).
        Small = strong prior, so that the first seconds, learnt from a handful of pairs, do not
        extrapolate wildly (1 rather than 100 cut the warm-up error by a fifth on the tuning traces).
    dt_s, lags
        Grid step and number of positions in the embedding.
    """

    name = "rls"

    def __init__(
        self,
        horizon_s: float,
        *,
        lam: float = 0.998,
        delta: float = 1.0,
        dt_s: float = DEFAULT_DT_S,
        lags: int = DEFAULT_LAGS,
    ) -> None:
        super().__init__(horizon_s, dt_s=dt_s, lags=lags, keep_s=dt_s * lags)
        if not 0 < lam <= 1:
            raise ValueError("lam must be in (0, 1]")
        self.lam, self.delta = lam, delta
        self._w = np.zeros(lags)
        self._P = np.eye(lags) * delta

    def _learn(self, t_a: float, u: np.ndarray, target: float) -> None:
        f = np.append(u, 1.0)
        Pf = self._P @ f
        gain = Pf / (self.lam + f @ Pf)
        self._w += gain * (target - f @ self._w)
        P = (self._P - np.outer(gain, Pf)) / self.lam
        # Forgetting inflates P along directions the signal stops exciting (a breath-hold);
        # bounding its trace prevents the classic RLS wind-up blow-up when motion resumes.
        tr = float(np.trace(P))
        if tr > 1e3 * self.delta * self.lags:
            P *= 1e3 * self.delta * self.lags / tr
        self._P = 0.5 * (P + P.T)

    def _displacement(self, u: np.ndarray) -> float:
        return float(np.dot(u, self._w[:-1]) + self._w[-1])


class AnalogueForecaster(_AnchoredLearner):
    """Online nearest-neighbour (analogue) forecaster over a memory of recent breathing patterns.

    Each training pair is stored as the amplitude-normalised pattern ``u / s`` and its normalised
    future displacement ``y / s`` (``s`` a running, exponentially weighted standard deviation of the
    position, so that patterns match across deeper and shallower breaths). The prediction is the
    inverse-distance weighted mean of the futures of the ``k`` nearest stored patterns, times the
    current scale (local regression on the trajectory, cf. Ruan & Keall 2010; Kam et al. 2015).

    Parameters
    ----------
    horizon_s
        The prediction horizon (s).
    k
        Number of neighbours.
    memory_s
        How far back patterns are remembered (s).
    scale_tau_s
        Time constant of the running amplitude scale (s).
    dt_s, lags
        Grid step and number of positions in the embedding.
    """

    name = "knn"

    def __init__(
        self,
        horizon_s: float,
        *,
        k: int = 20,
        memory_s: float = 120.0,
        scale_tau_s: float = 20.0,
        dt_s: float = DEFAULT_DT_S,
        lags: int = DEFAULT_LAGS,
    ) -> None:
        super().__init__(horizon_s, dt_s=dt_s, lags=lags, keep_s=dt_s * lags)
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k, self.memory_s, self.scale_tau_s = k, memory_s, scale_tau_s
        cap = 256
        self._U = np.empty((cap, lags - 1))
        self._Y = np.empty(cap)
        self._T = np.empty(cap)
        self._n = 0
        self._start = 0  # first entry still within memory_s
        self._mean = math.nan
        self._var = 0.0
        self._t_prev = math.nan
        self._scales: deque[tuple[float, float]] = deque()

    @property
    def scale_mm(self) -> float:
        """Current amplitude scale (mm): the running standard deviation, floored at 0.5 mm."""
        return max(math.sqrt(self._var), 0.5)

    def _observe(self, t_s: float, x_mm: float) -> None:
        if math.isnan(self._mean):
            self._mean, self._t_prev = x_mm, t_s
        else:
            a = 1.0 - math.exp(-(t_s - self._t_prev) / self.scale_tau_s)
            d = x_mm - self._mean
            self._mean += a * d
            self._var = (1.0 - a) * (self._var + a * d * d)
            self._t_prev = t_s
        # The scale at each anchor's own time normalises its pair (remembered until it is learnt).
        self._scales.append((t_s, self.scale_mm))

    def _scale_at(self, t_a: float) -> float:
        while self._scales and self._scales[0][0] < t_a:
            self._scales.popleft()
        return self._scales[0][1] if self._scales else self.scale_mm

    def _learn(self, t_a: float, u: np.ndarray, target: float) -> None:
        s = self._scale_at(t_a)
        while self._T[self._start : self._n].size and self._T[self._start] < t_a - self.memory_s:
            self._start += 1
        if self._n == self._U.shape[0]:
            live = self._n - self._start
            if live > self._U.shape[0] // 2:
                self._U = np.concatenate([self._U, np.empty_like(self._U)])
                self._Y = np.concatenate([self._Y, np.empty_like(self._Y)])
                self._T = np.concatenate([self._T, np.empty_like(self._T)])
            else:
                self._U[:live] = self._U[self._start : self._n]
                self._Y[:live] = self._Y[self._start : self._n]
                self._T[:live] = self._T[self._start : self._n]
                self._n, self._start = live, 0
        self._U[self._n] = u / s
        self._Y[self._n] = target / s
        self._T[self._n] = t_a
        self._n += 1

    def _displacement(self, u: np.ndarray) -> float:
        m = self._n - self._start
        if m < self.k:
            return 0.0  # not enough memory yet: no prediction (last value)
        s = self.scale_mm
        diff = self._U[self._start : self._n] - u / s
        d2 = np.einsum("ij,ij->i", diff, diff)
        idx = np.argpartition(d2, self.k - 1)[: self.k]
        w = 1.0 / (d2[idx] + 1e-2)  # the floor keeps one exact match from taking all the weight
        return float(s * np.dot(w, self._Y[self._start : self._n][idx]) / w.sum())


class OnlineEnsemblePredictor(_AnchoredLearner):
    """Online ensemble of the RLS filter and the analogue forecaster, weighted by recent error.

    Both members learn from the same embedding and training pairs (computed once). Each member's
    prediction made at ``t`` is scored once ``t + h`` has been observed; the exponentially forgotten
    mean squared error (time constant ``tau_s``) of each member sets its weight, ``w_k ~ 1 / mse_k``
    (inverse-MSE expert aggregation, cf. Cesa-Bianchi & Lugosi 2006). The linear filter is precise
    on steady breathing, the analogue forecaster on the non-linear turning points and on irregular
    cycles; their errors are only partly correlated, so the blend beats both.

    Parameters
    ----------
    horizon_s
        The prediction horizon (s).
    tau_s
        Memory of the error estimates (s).
    rls, knn
        Keyword options for the members (:class:`RLSPredictor`, :class:`AnalogueForecaster`);
        ``dt_s`` and ``lags`` are shared and given here.
    dt_s, lags
        Grid step and number of positions in the embedding.
    """

    name = "online"

    def __init__(
        self,
        horizon_s: float,
        *,
        tau_s: float = 5.0,
        rls: dict[str, Any] | None = None,
        knn: dict[str, Any] | None = None,
        dt_s: float = DEFAULT_DT_S,
        lags: int = DEFAULT_LAGS,
    ) -> None:
        super().__init__(horizon_s, dt_s=dt_s, lags=lags, keep_s=dt_s * lags)
        self.tau_s = tau_s
        # The members are used as models only (their _observe/_learn/_displacement): the ensemble
        # owns the history and the training pairs, so the embedding is computed once per sample.
        self.members: tuple[_AnchoredLearner, ...] = (
            RLSPredictor(horizon_s, dt_s=dt_s, lags=lags, **(rls or {})),
            AnalogueForecaster(horizon_s, dt_s=dt_s, lags=lags, **(knn or {})),
        )
        self._mse = np.ones(len(self.members))
        self._scored_t = math.nan
        self._made: deque[tuple[float, np.ndarray]] = deque()  # member predictions per anchor
        self._current = np.zeros(len(self.members))

    def update(self, t_s: float, x_mm: float) -> None:
        super().update(t_s, x_mm)
        if self._u is not None:
            self._current = np.array([m._displacement(self._u) for m in self.members])
            self._made.append((t_s, self._current))

    def _observe(self, t_s: float, x_mm: float) -> None:
        for m in self.members:
            m._observe(t_s, x_mm)

    def _learn(self, t_a: float, u: np.ndarray, target: float) -> None:
        while self._made and self._made[0][0] < t_a:
            self._made.popleft()
        if self._made and self._made[0][0] == t_a:
            _, made = self._made.popleft()
            a = 1.0 if math.isnan(self._scored_t) else -math.expm1(-(t_a - self._scored_t) / self.tau_s)
            self._mse += a * ((made - target) ** 2 - self._mse)
            self._scored_t = t_a
        for m in self.members:
            m._learn(t_a, u, target)

    def _displacement(self, u: np.ndarray) -> float:
        w = 1.0 / np.maximum(self._mse, 1e-6)
        return float(np.dot(w, self._current) / w.sum())


_CLASSES: dict[str, type[Predictor]] = {
    "last": LastValuePredictor,
    "linear": SlidingLinearRegression,
    "kalman": KalmanPredictor,
    "rls": RLSPredictor,
    "knn": AnalogueForecaster,
    "online": OnlineEnsemblePredictor,
}


def resolve_method(method: str) -> str:
    """The canonical method name (``best`` -> :data:`BEST_METHOD`); InputError for unknown names."""
    name = BEST_METHOD if method == "best" else method
    if name not in _CLASSES:
        raise InputError(f"unknown prediction method {method!r} (choose from {', '.join((*METHODS, 'best'))})")
    return name


def make_predictor(method: str, horizon_s: float, **options: Any) -> Predictor:
    """A fresh predictor for ``method`` (a name in :data:`METHODS` or ``best``) and ``horizon_s``.

    ``options`` are passed to the method's class (e.g. ``window_s`` for ``linear``, ``lam`` for
    ``rls``, ``k`` for ``knn``, ``q`` for ``kalman``).
    """
    if not horizon_s > 0:
        raise InputError(f"horizon must be > 0 s, got {horizon_s}")
    cls = _CLASSES[resolve_method(method)]
    if cls in (LastValuePredictor, KalmanPredictor):
        return cls(**options)
    return cls(horizon_s, **options)  # type: ignore[call-arg]


def _check_trace(time_s: np.ndarray, position_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(time_s, dtype=float)
    x = np.asarray(position_mm, dtype=float)
    if t.ndim != 1 or x.shape != t.shape:
        raise InputError(f"time and position must be 1-D of the same length, got {t.shape} and {x.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(x))):
        raise InputError("time and position must be finite (no NaN/inf)")
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise InputError("sample times must increase strictly (clean the trace first)")
    return t, x


def run_predictor(
    predictor: Predictor,
    time_s: np.ndarray,
    position_mm: np.ndarray,
    horizon_s: float,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[np.ndarray, np.ndarray]:
    """Feed a trace through ``predictor`` sample by sample, as a real-time loop would.

    ``clock`` times each sample: wall time by default; ``time.thread_time`` gives the CPU time,
    which leaves out the time the process waited for a core on a loaded machine.

    Returns
    -------
    predicted_mm
        (N,) at each sample time ``t``, the position predicted for ``t + horizon_s`` (NaN while
        history is short).
    cost_s
        (N,) time of each ``update`` + ``predict`` (s) by ``clock``: the per-sample cost in the loop.
    """
    t, x = _check_trace(time_s, position_mm)
    pred = np.empty(t.size)
    cost = np.empty(t.size)
    for i in range(t.size):
        t0 = clock()
        predictor.update(float(t[i]), float(x[i]))
        pred[i] = predictor.predict(horizon_s)
        cost[i] = clock() - t0
    return pred, cost


def predict_trace(
    time_s: np.ndarray, position_mm: np.ndarray, horizon_s: float, method: str = BEST_METHOD, **options: Any
) -> np.ndarray:
    """Causal prediction over a whole trace.

    Parameters
    ----------
    time_s
        (N,) strictly increasing sample times (s).
    position_mm
        (N,) positions (mm).
    horizon_s
        How far ahead to predict (s), e.g. the system latency.
    method
        A name in :data:`METHODS`, or ``best``.
    **options
        Passed to the method (see :func:`make_predictor`).

    Returns
    -------
    numpy.ndarray
        (N,) element ``i`` is the position predicted for ``time_s[i] + horizon_s`` from samples
        ``0..i`` only; NaN where there is not yet enough history.

    Examples
    --------
    >>> t = np.arange(0, 30, 0.1)
    >>> x = 5 * np.sin(2 * np.pi * t / 4)
    >>> p = predict_trace(t, x, 0.5, "rls")
    >>> bool(abs(p[-10] - 5 * np.sin(2 * np.pi * (t[-10] + 0.5) / 4)) < 0.05)
    True
    """
    predictor = make_predictor(method, horizon_s, **options)
    return run_predictor(predictor, time_s, position_mm, horizon_s)[0]


@dataclass(frozen=True)
class PredictionMetrics:
    """Errors (mm) of a prediction against the truth at the horizon, over ``n`` scored samples."""

    rmse_mm: float
    mae_mm: float
    max_mm: float
    n: int

    def as_dict(self) -> dict[str, float]:
        """The metrics as a plain dict (for JSON reports)."""
        return asdict(self)


def truth_at_horizon(time_s: np.ndarray, position_mm: np.ndarray, horizon_s: float) -> np.ndarray:
    """(N,) the true position at ``time_s + horizon_s``, interpolated; NaN past the trace's end."""
    t, x = _check_trace(time_s, position_mm)
    truth = np.interp(t + horizon_s, t, x)
    truth[t + horizon_s > t[-1]] = np.nan
    return truth


def evaluate(
    time_s: np.ndarray,
    position_mm: np.ndarray,
    predicted_mm: np.ndarray,
    horizon_s: float,
    *,
    mask: np.ndarray | None = None,
) -> PredictionMetrics:
    """Compare predictions with the truth at ``t + horizon_s`` (interpolated from the trace).

    Only samples where the truth exists (``t + horizon_s`` within the trace), the prediction is
    finite and ``mask`` (if given) is True are scored.

    Returns
    -------
    PredictionMetrics
        RMSE, MAE and maximum absolute error (mm), and the number of samples scored (NaN metrics
        when none is).
    """
    truth = truth_at_horizon(time_s, position_mm, horizon_s)
    pred = np.asarray(predicted_mm, dtype=float)
    if pred.shape != truth.shape:
        raise InputError(f"predictions {pred.shape} do not match the trace {truth.shape}")
    ok = np.isfinite(truth) & np.isfinite(pred)
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    if not ok.any():
        return PredictionMetrics(math.nan, math.nan, math.nan, 0)
    err = pred[ok] - truth[ok]
    return PredictionMetrics(
        rmse_mm=float(np.sqrt(np.mean(err**2))),
        mae_mm=float(np.mean(np.abs(err))),
        max_mm=float(np.max(np.abs(err))),
        n=int(ok.sum()),
    )
