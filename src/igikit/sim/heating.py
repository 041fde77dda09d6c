"""Pennes bioheat simulation: conduction, perfusion and a focused-ultrasound heat source, in 2D and 3D.

Pennes (1948)::

    rho c dT/dt = div(k grad T) - w_b c_b (T - T_a) + Q

is discretised by finite volumes on the image grid: the conduction between two neighbouring voxels
uses the harmonic mean of their conductivities (so that a fat-muscle interface conserves heat
flux), perfusion and the heat source are per voxel. The grid's outer faces are held at a fixed
temperature (``"dirichlet"``, default: the arterial temperature) or insulated (``"neumann"``). The
spatial operator is one sparse matrix (SciPy), shared by

* the explicit (forward Euler) step, sub-stepped below the stability limit
  ``dt <= min_i rho_i c_i / |S_ii|`` (Gershgorin: every eigenvalue of ``C^-1 S`` lies in
  ``[-2 max |S_ii| / C_i, 0]``), which is also the limit that keeps the scheme monotone; and
* Crank-Nicolson, unconditionally stable, factorised once per time step size;
* the steady state ``S T = -(Q + boundary)``, solved by preconditioned conjugate gradients.

In 2D the grid is one plane through the focus and heat flows only within it (no conduction across
the slice): it over-estimates the temperature of a real, 3D focus and is meant for fast tests and
controllers; use 3D for quantitative work.

Tissue properties come from a patient profile (:func:`igikit.core.profile.load_profile`): adult,
pediatric or veterinary; muscle, fat, liver, brain, kidney.

References
----------
.. [1] H. H. Pennes, "Analysis of tissue and arterial blood temperatures in the resting human
   forearm," J. Appl. Physiol. 1:93-122, 1948.
.. [2] J. Crank and P. Nicolson, "A practical method for numerical evaluation of solutions of
   partial differential equations of the heat-conduction type," Proc. Camb. Phil. Soc. 43:50, 1947.
.. [3] M. N. Ozisik, *Finite Difference Methods in Heat Transfer*,
   CRC Press, 1994 (harmonic-mean interface conductivity, explicit stability).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from igikit.core.profile import Profile, TissueProperties, load_profile
from igikit.errors import InputError

Boundary = Literal["dirichlet", "neumann"]
TimeScheme = Literal["explicit", "crank-nicolson"]
#: Fraction of the explicit stability limit used as the sub-step.
STABILITY_SAFETY = 0.9


@dataclass(frozen=True, eq=False)
class TissueMaps:
    """Per-voxel thermal properties on the simulation grid (arrays of the grid's shape, SI units).

    Attributes
    ----------
    density_kg_m3, specific_heat_j_kg_k, conductivity_w_m_k
        Tissue density, specific heat and thermal conductivity.
    perfusion_w_m3_k
        Pennes' ``w_b c_b`` (W m^-3 K^-1).
    arterial_temperature_c
        Temperature of the arterial blood (°C).
    """

    density_kg_m3: np.ndarray
    specific_heat_j_kg_k: np.ndarray
    conductivity_w_m_k: np.ndarray
    perfusion_w_m3_k: np.ndarray
    arterial_temperature_c: float

    def __post_init__(self) -> None:
        shape = np.shape(self.density_kg_m3)
        for name in ("density_kg_m3", "specific_heat_j_kg_k", "conductivity_w_m_k", "perfusion_w_m3_k"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != shape:
                raise InputError(f"{name} has shape {arr.shape}, density has {shape}")
            if not np.all(np.isfinite(arr)) or np.any(arr < 0) or (name != "perfusion_w_m3_k" and np.any(arr <= 0)):
                raise InputError(f"{name} must be finite and positive (perfusion may be 0)")
            object.__setattr__(self, name, arr)
        if len(shape) not in (2, 3):
            raise InputError(f"tissue maps must be 2D or 3D, got shape {shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape in NumPy order, ``([Z,] Y, X)``."""
        return tuple(self.density_kg_m3.shape)

    @property
    def heat_capacity_j_m3_k(self) -> np.ndarray:
        """Volumetric heat capacity ``rho c`` (J m^-3 K^-1)."""
        return np.asarray(self.density_kg_m3 * self.specific_heat_j_kg_k)

    @classmethod
    def uniform(cls, tissue: TissueProperties, shape: Sequence[int]) -> TissueMaps:
        """One tissue everywhere."""
        return cls.from_labels(np.zeros(tuple(shape), dtype=np.int32), {0: tissue})

    @classmethod
    def from_labels(cls, labels: npt.ArrayLike, tissues: Mapping[int, TissueProperties]) -> TissueMaps:
        """Property maps from a label image and the tissue of each label.

        Raises
        ------
        InputError
            If a label in the image has no tissue, or the tissues disagree on the arterial temperature.
        """
        lab = np.asarray(labels)
        missing = sorted(set(np.unique(lab).tolist()) - set(tissues))
        if missing:
            raise InputError(f"labels {missing} have no tissue; tissues given for {sorted(tissues)}")
        arterial = {t.arterial_temperature_c for t in tissues.values()}
        if len(arterial) != 1:
            raise InputError(f"tissues disagree on the arterial temperature: {sorted(arterial)}")
        maps: dict[str, np.ndarray] = {}
        for name, attr in (
            ("density_kg_m3", "density_kg_m3"),
            ("specific_heat_j_kg_k", "specific_heat_j_kg_k"),
            ("conductivity_w_m_k", "conductivity_w_m_k"),
            ("perfusion_w_m3_k", "perfusion_w_m3_k"),
        ):
            arr = np.zeros(lab.shape)
            for label, tissue in tissues.items():
                arr[lab == label] = getattr(tissue, attr)
            maps[name] = arr
        return cls(arterial_temperature_c=arterial.pop(), **maps)

    @classmethod
    def from_profile(cls, profile: str | Profile, labels: npt.ArrayLike, names: Mapping[int, str]) -> TissueMaps:
        """Property maps from a patient profile (``"adult"``, ``"pediatric"``, ``"veterinary_dog"``...).

        Examples
        --------
        >>> import numpy as np
        >>> maps = TissueMaps.from_profile("adult", np.array([[0, 1]]), {0: "muscle", 1: "fat"})
        >>> maps.conductivity_w_m_k.tolist()
        [[0.49, 0.21]]
        """
        prof = load_profile(profile) if isinstance(profile, str) else profile
        return cls.from_labels(labels, {label: prof.tissue(name) for label, name in names.items()})


def gaussian_heat_source(
    shape: Sequence[int],
    spacing_mm: Sequence[float],
    center_mm: Sequence[float],
    sigma_mm: Sequence[float],
    *,
    power_w: float = 1.0,
    absorption: float = 1.0,
) -> np.ndarray:
    """Heat deposited by a focus shaped as a Gaussian ellipsoid (W/m^3).

    ``Q(r) = eta P / ((2 pi)^(3/2) sx sy sz) exp(-sum (r_i - c_i)^2 / (2 s_i^2))``: the acoustic power
    ``P`` times the absorbed fraction ``eta`` spread over a 3D Gaussian, so that ``Q`` integrates to
    ``eta P`` over space. A 2D grid is the central plane of the same 3D focus.

    Parameters
    ----------
    shape
        Grid shape in NumPy order, ``(Y, X)`` or ``(Z, Y, X)``.
    spacing_mm, center_mm
        Voxel spacing and focus centre in ITK order ``(x, y[, z])``; the centre is measured from the
        centre of voxel 0 (``center = index * spacing``).
    sigma_mm
        Standard deviations ``(sx, sy, sz)`` of the focus (mm); always three (a 2D grid uses ``sz``
        only for the normalisation).
    power_w, absorption
        Acoustic power at the focus (W) and the fraction absorbed (0-1).

    Examples
    --------
    >>> import numpy as np
    >>> q = gaussian_heat_source((41, 41, 41), (0.5,) * 3, (10.0,) * 3, (1.0, 1.0, 2.0), power_w=10.0)
    >>> round(float(q.sum() * (0.5e-3) ** 3), 3)   # integrates to absorbed power, W
    10.0
    """
    dim = len(shape)
    if dim not in (2, 3) or len(spacing_mm) != dim or len(center_mm) != dim:
        raise InputError(f"shape {tuple(shape)}, spacing {tuple(spacing_mm)} and centre {tuple(center_mm)} disagree")
    if len(sigma_mm) != 3 or min(sigma_mm) <= 0:
        raise InputError(f"sigma_mm must be three positive widths (x, y, z), got {tuple(sigma_mm)}")
    if not (0 <= absorption <= 1) or power_w < 0:
        raise InputError(f"need power >= 0 W and absorption in [0, 1], got {power_w} W, {absorption}")
    sig_m = np.asarray(sigma_mm, dtype=np.float64) * 1e-3
    peak = absorption * power_w / ((2 * math.pi) ** 1.5 * float(np.prod(sig_m)))
    exponent = np.zeros(tuple(shape))
    for itk_axis in range(dim):
        np_axis = dim - 1 - itk_axis
        coord = np.arange(shape[np_axis]) * spacing_mm[itk_axis] - center_mm[itk_axis]
        view = [1] * dim
        view[np_axis] = shape[np_axis]
        exponent = exponent + (coord.reshape(view) / sigma_mm[itk_axis]) ** 2 / 2.0
    return np.asarray(peak * np.exp(-exponent))


class PennesSolver:
    """Finite-volume Pennes bioheat solver on a regular 2D or 3D grid.

    Parameters
    ----------
    tissue
        Per-voxel properties (:class:`TissueMaps`).
    spacing_mm
        Voxel spacing in ITK order ``(x, y[, z])``.
    boundary
        ``"dirichlet"``: outer faces held at ``boundary_temperature_c`` (default: arterial);
        ``"neumann"``: insulated.
    scheme
        ``"explicit"`` (forward Euler, automatically sub-stepped below the stability limit) or
        ``"crank-nicolson"``.
    boundary_temperature_c
        Temperature of the outer faces for ``"dirichlet"``.

    Examples
    --------
    >>> import numpy as np
    >>> from igikit.core.profile import load_profile
    >>> liver = load_profile("adult").tissue("liver")
    >>> solver = PennesSolver(TissueMaps.uniform(liver, (8, 8)), (1.0, 1.0), boundary="neumann")
    >>> q = np.full((8, 8), 1e5)                       # uniform 0.1 W/cm^3
    >>> rise = solver.steady_state(q) - 37.0            # = Q / (w_b c_b)
    >>> bool(np.allclose(rise, 1e5 / liver.perfusion_w_m3_k))
    True
    """

    def __init__(
        self,
        tissue: TissueMaps,
        spacing_mm: Sequence[float],
        *,
        boundary: str = "dirichlet",
        scheme: str = "explicit",
        boundary_temperature_c: float | None = None,
    ) -> None:
        from scipy import sparse

        self.tissue = tissue
        shape = tissue.shape
        dim = len(shape)
        if len(spacing_mm) != dim or min(spacing_mm) <= 0:
            raise InputError(f"spacing_mm must be {dim} positive values, got {tuple(spacing_mm)}")
        if boundary not in ("dirichlet", "neumann"):
            raise InputError(f"boundary must be 'dirichlet' or 'neumann', got {boundary!r}")
        if scheme not in ("explicit", "crank-nicolson"):
            raise InputError(f"scheme must be 'explicit' or 'crank-nicolson', got {scheme!r}")
        self.spacing_mm = tuple(float(s) for s in spacing_mm)
        self.boundary, self.scheme = boundary, scheme
        self.arterial_c = tissue.arterial_temperature_c
        self.boundary_c = self.arterial_c if boundary_temperature_c is None else float(boundary_temperature_c)
        n = int(np.prod(shape))
        index = np.arange(n).reshape(shape)
        k = tissue.conductivity_w_m_k
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        diag = -tissue.perfusion_w_m3_k.astype(np.float64).copy()
        boundary_gain = np.zeros(shape)
        for itk_axis in range(dim):
            ax = dim - 1 - itk_axis
            h2 = (self.spacing_mm[itk_axis] * 1e-3) ** 2
            lo = [slice(None)] * dim
            hi = [slice(None)] * dim
            lo[ax], hi[ax] = slice(0, -1), slice(1, None)
            ka, kb = k[tuple(lo)], k[tuple(hi)]
            face = 2.0 * ka * kb / (ka + kb) / h2
            ia, ib = index[tuple(lo)].reshape(-1), index[tuple(hi)].reshape(-1)
            f = face.reshape(-1)
            rows += [ia, ib]
            cols += [ib, ia]
            vals += [f, f]
            np.subtract.at(diag.reshape(-1), ia, f)
            np.subtract.at(diag.reshape(-1), ib, f)
            if boundary == "dirichlet":
                # ghost voxel one spacing outside, at the boundary temperature, with the voxel's own k
                for edge in (0, -1):
                    sl = [slice(None)] * dim
                    sl[ax] = slice(edge, edge + 1) if edge == 0 else slice(-1, None)
                    gain = k[tuple(sl)] / h2
                    diag[tuple(sl)] -= gain
                    boundary_gain[tuple(sl)] += gain
        rows.append(index.reshape(-1))
        cols.append(index.reshape(-1))
        vals.append(diag.reshape(-1))
        self._operator = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )
        self._capacity = tissue.heat_capacity_j_m3_k.reshape(-1)
        # constant terms in theta = T - T_a: boundary inflow
        self._boundary_source = (boundary_gain * (self.boundary_c - self.arterial_c)).reshape(-1)
        self._diag = diag.reshape(-1)
        self._lu_cache: dict[float, Any] = {}

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape (NumPy order)."""
        return self.tissue.shape

    @property
    def stable_time_step_s(self) -> float:
        """Largest stable (and monotone) forward-Euler step ``min rho c / |S_ii|`` (s)."""
        return float(np.min(self._capacity / np.abs(self._diag)))

    def _check(self, temperature_c: npt.ArrayLike, heat_w_m3: npt.ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
        temp = np.asarray(temperature_c, dtype=np.float64)
        if temp.shape != self.shape:
            raise InputError(f"temperature of shape {temp.shape}, the grid is {self.shape}")
        q = (
            np.zeros(self.shape)
            if heat_w_m3 is None
            else np.broadcast_to(np.asarray(heat_w_m3, np.float64), self.shape)
        )
        return temp.reshape(-1), q.reshape(-1)

    def step(self, temperature_c: npt.ArrayLike, heat_w_m3: npt.ArrayLike | None, duration_s: float) -> np.ndarray:
        """Temperature after ``duration_s`` seconds with a constant heat source (W/m^3).

        The explicit scheme takes as many equal sub-steps as its stability limit needs;
        Crank-Nicolson takes one step (its factorisation is cached per step size).
        """
        if not (math.isfinite(duration_s) and duration_s >= 0):
            raise InputError(f"duration must be a non-negative number of seconds, got {duration_s!r}")
        temp, q = self._check(temperature_c, heat_w_m3)
        theta = temp - self.arterial_c
        forcing = q + self._boundary_source
        if duration_s == 0:
            return temp.reshape(self.shape).copy()
        if self.scheme == "explicit":
            n_sub = max(1, math.ceil(duration_s / (STABILITY_SAFETY * self.stable_time_step_s)))
            dt = duration_s / n_sub
            inv_c = dt / self._capacity
            for _ in range(n_sub):
                theta = theta + inv_c * (self._operator @ theta + forcing)
        else:
            theta = self._crank_nicolson(theta, forcing, duration_s)
        return (theta + self.arterial_c).reshape(self.shape)

    def _crank_nicolson(self, theta: np.ndarray, forcing: np.ndarray, dt: float) -> np.ndarray:
        from scipy import sparse
        from scipy.sparse.linalg import splu

        key = round(dt, 12)
        if key not in self._lu_cache:
            cap = sparse.diags(self._capacity)
            self._lu_cache[key] = splu((cap - 0.5 * dt * self._operator).tocsc())
        rhs = self._capacity * theta + 0.5 * dt * (self._operator @ theta) + dt * forcing
        return np.asarray(self._lu_cache[key].solve(rhs))

    def steady_state(self, heat_w_m3: npt.ArrayLike | None) -> np.ndarray:
        """Temperature (°C) where heating, conduction, perfusion and the boundary balance.

        Raises
        ------
        InputError
            With insulated boundaries and no perfusion anywhere there is no steady state.
        """
        from scipy.sparse import diags
        from scipy.sparse.linalg import cg

        if self.boundary == "neumann" and not np.any(self.tissue.perfusion_w_m3_k > 0):
            raise InputError("no steady state: insulated boundaries and no perfusion")
        _, q = self._check(np.zeros(self.shape), heat_w_m3)
        rhs = q + self._boundary_source
        if not np.any(rhs):
            return np.full(self.shape, self.arterial_c)
        # -S is symmetric positive definite: conjugate gradients with a Jacobi preconditioner
        # (a direct factorisation fills in badly on 3D grids)
        theta, info = cg(
            -self._operator,
            rhs,
            rtol=1e-11,
            atol=0.0,
            maxiter=20 * max(self.shape) ** 2,
            M=diags(1.0 / np.abs(self._diag)),
        )
        if info != 0:
            raise InputError(f"steady state did not converge (conjugate gradients, info={info})")
        return (np.asarray(theta) + self.arterial_c).reshape(self.shape)

    def simulate(
        self,
        initial_c: npt.ArrayLike | float,
        times_s: npt.ArrayLike,
        heat_w_m3: Callable[[float], npt.ArrayLike | None] | npt.ArrayLike | None,
    ) -> np.ndarray:
        """Temperatures at ``times_s`` from ``initial_c`` at ``times_s[0]``.

        Parameters
        ----------
        initial_c
            Temperature at the first time (°C), a map or one number.
        times_s
            Output times (s), non-decreasing.
        heat_w_m3
            A fixed heat map, or a function ``t -> heat map`` evaluated at the start of each interval
            (piecewise-constant power, as a sonication controller sets it per frame).

        Returns
        -------
        numpy.ndarray
            ``(len(times_s), *grid)`` temperatures (°C).
        """
        times = np.asarray(times_s, dtype=np.float64).reshape(-1)
        if times.size == 0 or np.any(np.diff(times) < 0) or not np.all(np.isfinite(times)):
            raise InputError("times_s must be a non-empty, finite, non-decreasing sequence")
        temp = np.broadcast_to(np.asarray(initial_c, dtype=np.float64), self.shape).copy()
        out = np.empty((times.size, *self.shape))
        out[0] = temp
        for i in range(1, times.size):
            q = heat_w_m3(float(times[i - 1])) if callable(heat_w_m3) else heat_w_m3
            temp = self.step(temp, q, float(times[i] - times[i - 1]))
            out[i] = temp
        return out


def gaussian_diffusion_solution(
    shape: Sequence[int],
    spacing_mm: Sequence[float],
    center_mm: Sequence[float],
    sigma0_mm: float,
    amplitude_c: float,
    diffusivity_m2_s: float,
    time_s: float,
) -> np.ndarray:
    """Analytic temperature rise of an isotropic Gaussian diffusing in free space (no perfusion).

    ``A (s0^2 / (s0^2 + 2 a t))^(d/2) exp(-r^2 / (2 (s0^2 + 2 a t)))`` in ``d`` dimensions; the
    reference solution the solver is validated against.
    """
    s2 = (sigma0_mm * 1e-3) ** 2 + 2.0 * diffusivity_m2_s * time_s
    dim = len(shape)
    r2 = np.zeros(tuple(shape))
    for itk_axis in range(dim):
        ax = dim - 1 - itk_axis
        coord = (np.arange(shape[ax]) * spacing_mm[itk_axis] - center_mm[itk_axis]) * 1e-3
        view = [1] * dim
        view[ax] = shape[ax]
        r2 = r2 + coord.reshape(view) ** 2
    return np.asarray(amplitude_c * ((sigma0_mm * 1e-3) ** 2 / s2) ** (dim / 2) * np.exp(-r2 / (2 * s2)))
