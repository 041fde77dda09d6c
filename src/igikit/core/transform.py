"""Rigid, similarity and affine transforms between coordinate frames (mm).

A :class:`Transform` is a homogeneous ``(d+1) x (d+1)`` matrix that maps points of a *source*
frame into a *target* frame: ``p_target = A @ p_source + t``. Names follow the convention
``moving_to_fixed`` / ``tool_to_tracker``: read ``T_b_from_a`` as "maps a-points into b".

Conversion to SimpleITK keeps the point mapping: ``Transform.to_sitk().TransformPoint(p)`` equals
``Transform.apply(p)``. Note that SimpleITK's resampler uses a transform that maps *output*
(fixed) points to *input* (moving) points: to resample a moving image onto a fixed grid with a
``moving_to_fixed`` transform, pass its :meth:`inverse`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from igikit.errors import InputError

if TYPE_CHECKING:
    import SimpleITK as sitk

#: Deviation from orthonormality that is only floating-point round-off (unitless).
_ROUND_OFF = 1e-12


@dataclass(frozen=True, eq=False)
class Transform:
    """A 2D or 3D affine transform held as a homogeneous matrix.

    Parameters
    ----------
    matrix
        ``(d+1, d+1)`` homogeneous matrix, last row ``[0, ..., 0, 1]``.
    source, target
        Optional names of the coordinate frames it maps from and to (``"image"``, ``"tracker"``).

    Examples
    --------
    >>> t = Transform.from_rotation_translation(np.eye(3), [1.0, 2.0, 3.0])
    >>> t.apply([[0.0, 0.0, 0.0]]).tolist()
    [[1.0, 2.0, 3.0]]
    >>> t.compose(t.inverse()).is_identity()
    True
    """

    matrix: np.ndarray
    source: str = ""
    target: str = ""
    _inv: list[np.ndarray] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = np.array(self.matrix, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] not in (3, 4):
            raise InputError(f"transform matrix must be 3x3 (2D) or 4x4 (3D), got shape {m.shape}")
        if not np.all(np.isfinite(m)):
            raise InputError("transform matrix contains non-finite values")
        bottom = np.zeros(m.shape[0])
        bottom[-1] = 1.0
        if not np.allclose(m[-1], bottom, atol=1e-12):
            raise InputError(
                f"last row of a homogeneous matrix must be {bottom.tolist()}, got {m[-1].tolist()}"
            )
        if abs(np.linalg.det(m[:-1, :-1])) < 1e-12:
            raise InputError("transform is singular (cannot be inverted)")
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)

    # ----------------------------------------------------------- constructors
    @classmethod
    def identity(cls, dim: int = 3, *, source: str = "", target: str = "") -> Transform:
        """The identity in ``dim`` dimensions."""
        return cls(np.eye(dim + 1), source=source, target=target)

    @classmethod
    def from_rotation_translation(
        cls, rotation: npt.ArrayLike, translation_mm: npt.ArrayLike, *, source: str = "", target: str = ""
    ) -> Transform:
        """From a ``d x d`` linear part (rotation, or any affine) and a translation (mm)."""
        r = np.asarray(rotation, dtype=np.float64)
        t = np.asarray(translation_mm, dtype=np.float64).reshape(-1)
        if r.ndim != 2 or r.shape != (t.size, t.size):
            raise InputError(f"linear part {r.shape} does not match translation of length {t.size}")
        m = np.eye(t.size + 1)
        m[:-1, :-1] = r
        m[:-1, -1] = t
        return cls(m, source=source, target=target)

    # -------------------------------------------------------------- accessors
    @property
    def dim(self) -> int:
        """Spatial dimension (2 or 3)."""
        return int(self.matrix.shape[0] - 1)

    @property
    def linear(self) -> np.ndarray:
        """The ``d x d`` linear part."""
        return self.matrix[:-1, :-1]

    @property
    def translation_mm(self) -> np.ndarray:
        """The translation (mm)."""
        return self.matrix[:-1, -1]

    def is_rigid(self, tol: float = 1e-6) -> bool:
        """True when the linear part is a proper rotation (orthonormal, determinant +1)."""
        r = self.linear
        return bool(np.allclose(r.T @ r, np.eye(self.dim), atol=tol) and np.linalg.det(r) > 0)

    def is_identity(self, tol: float = 1e-9) -> bool:
        """True when the transform maps every point to itself (within ``tol``)."""
        return bool(np.allclose(self.matrix, np.eye(self.dim + 1), atol=tol))

    # ------------------------------------------------------------- operations
    def compose(self, other: Transform) -> Transform:
        """``self`` after ``other``: ``self.compose(other).apply(p) == self.apply(other.apply(p))``."""
        if other.dim != self.dim:
            raise InputError(f"cannot compose a {self.dim}D with a {other.dim}D transform")
        return Transform(self.matrix @ other.matrix, source=other.source, target=self.target)

    def __matmul__(self, other: Transform) -> Transform:
        return self.compose(other)

    def inverse(self) -> Transform:
        """The inverse transform (target to source)."""
        if not self._inv:
            if self.is_rigid(tol=_ROUND_OFF):
                # exact for rotations, and avoids accumulating round-off in long chains. Only for
                # matrices orthonormal to round-off: a tracker's pose rounded to float32 is "rigid"
                # to 1e-7, and its transpose would miss the true inverse by 1e-7 x |t| (0.3 um at 2 m).
                r = self.linear.T
                m = np.eye(self.dim + 1)
                m[:-1, :-1] = r
                m[:-1, -1] = -r @ self.translation_mm
            else:
                m = np.linalg.inv(self.matrix)
            self._inv.append(m)
        return Transform(self._inv[0], source=self.target, target=self.source)

    def apply(self, points: npt.ArrayLike) -> np.ndarray:
        """Map points ``(..., d)`` (mm)."""
        p = np.asarray(points, dtype=np.float64)
        if p.shape[-1] != self.dim:
            raise InputError(f"points have {p.shape[-1]} coordinates, the transform is {self.dim}D")
        out: np.ndarray = p @ self.linear.T + self.translation_mm
        return out

    def apply_vectors(self, vectors: npt.ArrayLike) -> np.ndarray:
        """Map direction vectors ``(..., d)`` (linear part only, no translation)."""
        v = np.asarray(vectors, dtype=np.float64)
        out: np.ndarray = v @ self.linear.T
        return out

    # -------------------------------------------------------------- SimpleITK
    def to_sitk(self) -> sitk.AffineTransform:
        """A SimpleITK ``AffineTransform`` mapping points exactly as :meth:`apply`."""
        import SimpleITK as sitk

        t = sitk.AffineTransform(self.dim)
        t.SetMatrix(tuple(self.linear.reshape(-1)))
        t.SetTranslation(tuple(self.translation_mm))
        t.SetCenter((0.0,) * self.dim)
        return t

    @classmethod
    def from_sitk(cls, transform: Any, *, source: str = "", target: str = "") -> Transform:
        """From any SimpleITK matrix-offset transform (Euler, Versor, Similarity, Affine, Translation).

        The centre of rotation is folded into the translation, so the point mapping is kept.
        A composite transform is accepted when all its parts are matrix-offset transforms.
        """
        import SimpleITK as sitk

        if isinstance(transform, sitk.CompositeTransform):
            result: Transform | None = None
            # ITK applies the last-added transform first
            for i in range(transform.GetNumberOfTransforms()):
                part = cls.from_sitk(transform.GetNthTransform(i))
                result = part if result is None else result.compose(part)
            if result is None:
                raise InputError("empty SimpleITK composite transform")
            return Transform(result.matrix, source=source, target=target)
        dim = transform.GetDimension()
        # Downcast a generic sitk.Transform to its concrete class so GetMatrix is available.
        try:
            concrete = transform.Downcast()
        except AttributeError:
            concrete = transform
        if isinstance(concrete, sitk.TranslationTransform):
            offset = concrete.GetOffset()
            return cls.from_rotation_translation(np.eye(dim), offset, source=source, target=target)
        if not hasattr(concrete, "GetMatrix"):
            raise InputError(f"SimpleITK {concrete.GetName()} is not an affine (matrix-offset) transform")
        a = np.asarray(concrete.GetMatrix(), dtype=np.float64).reshape(dim, dim)
        c = np.asarray(concrete.GetCenter(), dtype=np.float64)
        t = np.asarray(concrete.GetTranslation(), dtype=np.float64)
        # ITK: T(p) = A (p - c) + c + t
        return cls.from_rotation_translation(a, t + c - a @ c, source=source, target=target)

    def __repr__(self) -> str:
        names = f" {self.source or '?'}->{self.target or '?'}" if (self.source or self.target) else ""
        return f"Transform{names}({np.array2string(self.matrix, precision=6, suppress_small=True)})"
