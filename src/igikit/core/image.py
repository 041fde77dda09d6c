"""An image is a NumPy array placed in physical space (mm), optionally a time series (s).

Geometry follows ITK / SimpleITK exactly, so that images move between igikit, SimpleITK, NIfTI /
MHA / NRRD and DICOM without losing their place in the patient:

* ``array`` is in NumPy order, the reverse of ITK's: ``(Z, Y, X)`` for a volume, ``(Y, X)`` for a
  slice; a series puts time first: ``(T, [Z,] Y, X)``.
* ``spacing_mm``, ``origin_mm`` and continuous indices are in ITK order ``(x, y[, z])``.
* ``direction`` is ITK's direction matrix: column ``k`` is the unit vector of index axis ``k`` in
  physical space, so ``point = origin + direction @ (spacing * index)``.
* ``frame_times_s`` (series only) holds the acquisition time of each frame, in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from igikit.errors import GeometryError, InputError

if TYPE_CHECKING:
    import SimpleITK as sitk

FloatArray = npt.NDArray[np.float64]

#: Geometry differences below this are treated as equal (mm, or unitless for direction cosines).
GEOMETRY_TOLERANCE = 1e-4


def _as_vector(values: Any, dim: int, name: str) -> tuple[float, ...]:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size != dim:
        raise InputError(f"{name} has {arr.size} values, the image has {dim} spatial dimensions")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains non-finite values: {arr.tolist()}")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True, eq=False)
class Image:
    """A NumPy array with spacing, origin and direction in mm; optionally a series over time.

    Parameters
    ----------
    array
        Pixel data in NumPy order, ``([T,] [Z,] Y, X)``.
    spacing_mm, origin_mm
        Per spatial axis, ITK order ``(x, y[, z])``. Defaults: 1 mm spacing, origin 0.
    direction
        ITK direction matrix (``dim x dim``, columns are the index axes). Default: identity.
    frame_times_s
        Acquisition time of each frame (s), strictly increasing; makes axis 0 the time axis.
    modality
        DICOM-style modality code (``"MR"``, ``"CT"``, ``"NM"``, ``"PT"``, ``"RTDOSE"``...), if known.
    units
        Physical units of the pixel values (``"Bq/mL"``, ``"Gy"``, ``"degC"``...), if known.
    meta
        Further read-only key/value information from the source file.

    Examples
    --------
    >>> import numpy as np
    >>> im = Image(np.zeros((4, 5)), spacing_mm=(0.5, 2.0), origin_mm=(10.0, 20.0))
    >>> im.index_to_physical([2, 1]).tolist()
    [11.0, 22.0]
    """

    array: np.ndarray
    spacing_mm: tuple[float, ...] = ()
    origin_mm: tuple[float, ...] = ()
    direction: FloatArray = field(default_factory=lambda: np.empty((0, 0)))
    frame_times_s: FloatArray | None = None
    modality: str | None = None
    units: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        is_series = self.frame_times_s is not None
        dim = array.ndim - (1 if is_series else 0)
        if dim not in (2, 3):
            kind = "a series of 2D or 3D frames" if is_series else "a 2D or 3D image"
            raise InputError(f"array of shape {array.shape} is not {kind}")
        spacing = _as_vector(self.spacing_mm or (1.0,) * dim, dim, "spacing_mm")
        if min(spacing) <= 0:
            raise InputError(f"spacing_mm must be positive, got {spacing}")
        origin = _as_vector(self.origin_mm or (0.0,) * dim, dim, "origin_mm")
        direction = np.asarray(self.direction, dtype=np.float64)
        if direction.size == 0:
            direction = np.eye(dim)
        direction = direction.reshape(dim, dim) if direction.size == dim * dim else direction
        if direction.shape != (dim, dim):
            raise InputError(f"direction must be {dim}x{dim}, got shape {direction.shape}")
        if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
            raise InputError("direction matrix is singular or non-finite")
        direction = direction.copy()
        direction.setflags(write=False)
        times = None
        if is_series:
            times = np.asarray(self.frame_times_s, dtype=np.float64).reshape(-1).copy()
            if times.size != array.shape[0]:
                raise InputError(f"{times.size} frame times for {array.shape[0]} frames")
            if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
                raise InputError("frame_times_s must be finite and strictly increasing")
            times.setflags(write=False)
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_mm", origin)
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "frame_times_s", times)
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    # ------------------------------------------------------------------ shape
    @property
    def is_series(self) -> bool:
        """True when axis 0 of ``array`` is time."""
        return self.frame_times_s is not None

    @property
    def dim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.spacing_mm)

    @property
    def n_frames(self) -> int:
        """Number of frames (1 for a single image)."""
        return int(self.array.shape[0]) if self.is_series else 1

    @property
    def size(self) -> tuple[int, ...]:
        """Spatial size in ITK order ``(nx, ny[, nz])``."""
        shape = self.array.shape[1:] if self.is_series else self.array.shape
        return tuple(int(n) for n in reversed(shape))

    def frame(self, t: int) -> Image:
        """Frame ``t`` of a series as a single image, with its time in ``meta['frame_time_s']``."""
        if not self.is_series:
            raise InputError("frame() needs a series (an image with frame_times_s)")
        assert self.frame_times_s is not None
        return replace(
            self,
            array=self.array[t],
            frame_times_s=None,
            meta={**self.meta, "frame_time_s": float(self.frame_times_s[t]), "frame_index": int(t)},
        )

    def with_array(self, array: np.ndarray, **changes: Any) -> Image:
        """A new image with the same geometry (and times) holding ``array``."""
        return replace(self, array=array, **changes)

    # --------------------------------------------------------------- geometry
    def index_to_physical(self, index: npt.ArrayLike) -> FloatArray:
        """Continuous index (ITK order, ``(..., dim)``) to physical point(s) in mm."""
        idx = np.asarray(index, dtype=np.float64)
        if idx.shape[-1] != self.dim:
            raise InputError(f"index has {idx.shape[-1]} components, the image has {self.dim}")
        scaled = idx * np.asarray(self.spacing_mm)
        return np.asarray(self.origin_mm) + scaled @ self.direction.T

    def physical_to_index(self, point: npt.ArrayLike) -> FloatArray:
        """Physical point(s) in mm (``(..., dim)``) to continuous index (ITK order)."""
        p = np.asarray(point, dtype=np.float64)
        if p.shape[-1] != self.dim:
            raise InputError(f"point has {p.shape[-1]} components, the image has {self.dim}")
        # direction is orthonormal for real scanners, but ITK allows any invertible matrix.
        inv = np.linalg.inv(self.direction)
        return ((p - np.asarray(self.origin_mm)) @ inv.T) / np.asarray(self.spacing_mm)

    def same_grid(self, other: Image, tol: float = GEOMETRY_TOLERANCE) -> bool:
        """True when both images share size, spacing, origin and direction (frames not compared)."""
        return (
            self.size == other.size
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tol)
            and np.allclose(self.origin_mm, other.origin_mm, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def require_same_grid(self, other: Image, what: str = "mask") -> None:
        """Raise :class:`GeometryError` naming the first difference when grids differ."""
        if self.size != other.size:
            raise GeometryError(f"{what} size {other.size} differs from image size {self.size}")
        for name in ("spacing_mm", "origin_mm"):
            a, b = getattr(self, name), getattr(other, name)
            if not np.allclose(a, b, atol=GEOMETRY_TOLERANCE):
                raise GeometryError(f"{what} {name} {_fmt(b)} differs from image {name} {_fmt(a)}")
        if not np.allclose(self.direction, other.direction, atol=GEOMETRY_TOLERANCE):
            raise GeometryError(f"{what} direction differs from image direction")

    # -------------------------------------------------------------- SimpleITK
    def to_sitk(self) -> sitk.Image:
        """A SimpleITK image with the same geometry.

        A series becomes an image with one more dimension whose last ITK axis is time, with the
        median frame interval as its spacing (the exact times stay in :attr:`frame_times_s`).
        """
        import SimpleITK as sitk

        arr = self.array
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=False)
        if self.is_series:
            assert self.frame_times_s is not None
            dt = float(np.median(np.diff(self.frame_times_s))) if self.n_frames > 1 else 1.0
            d = self.dim + 1
            direction = np.eye(d)
            direction[: self.dim, : self.dim] = self.direction
            img.SetSpacing((*self.spacing_mm, dt))
            img.SetOrigin((*self.origin_mm, float(self.frame_times_s[0])))
            img.SetDirection(tuple(direction.reshape(-1)))
        else:
            img.SetSpacing(self.spacing_mm)
            img.SetOrigin(self.origin_mm)
            img.SetDirection(tuple(self.direction.reshape(-1)))
        return img

    @classmethod
    def from_sitk(
        cls,
        img: sitk.Image,
        *,
        series: bool = False,
        modality: str | None = None,
        units: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Image:
        """Wrap a SimpleITK image; with ``series=True`` its last ITK axis becomes time (s)."""
        import SimpleITK as sitk

        arr = sitk.GetArrayFromImage(img)
        spacing = np.asarray(img.GetSpacing())
        origin = np.asarray(img.GetOrigin())
        d = img.GetDimension()
        direction = np.asarray(img.GetDirection()).reshape(d, d)
        if not series:
            return cls(arr, tuple(spacing), tuple(origin), direction, None, modality, units, meta or {})
        times = origin[-1] + spacing[-1] * np.arange(arr.shape[0])
        return cls(
            arr,
            tuple(spacing[:-1]),
            tuple(origin[:-1]),
            direction[:-1, :-1],
            times,
            modality,
            units,
            meta or {},
        )

    def describe(self) -> str:
        """A few lines a person reads: size, spacing, origin, direction, times, value range."""
        series = f" series of {self.n_frames} frames" if self.is_series else ""
        lines = [
            f"dimensions: {self.dim}D{series}",
            f"size (x, y{', z' if self.dim == 3 else ''}): {self.size}",
            f"spacing (mm): {_fmt(self.spacing_mm)}",
            f"origin (mm): {_fmt(self.origin_mm)}",
            f"direction: {_fmt(tuple(self.direction.reshape(-1)))}",
        ]
        if self.is_series:
            assert self.frame_times_s is not None
            t = self.frame_times_s
            interval = float(np.median(np.diff(t))) if t.size > 1 else float("nan")
            lines.append(
                f"frame times (s): {t[0]:.4g} .. {t[-1]:.4g}, interval {interval:.4g} s"
                + (f" ({1.0 / interval:.4g} Hz)" if np.isfinite(interval) and interval > 0 else "")
            )
        lines.append(f"modality: {self.modality or 'unknown'}")
        lines.append(f"pixel type: {self.array.dtype}")
        finite = self.array[np.isfinite(self.array)] if self.array.dtype.kind in "fc" else self.array
        if finite.size:
            lines.append(
                f"value range: {finite.min():.6g} .. {finite.max():.6g}"
                + (f" {self.units}" if self.units else "")
            )
        if finite.size != self.array.size:
            lines.append(f"non-finite values: {self.array.size - finite.size}")
        return "\n".join(lines)


def _fmt(values: tuple[float, ...]) -> str:
    # + 0.0 turns -0.0 (a direction cosine of an axis flip) into 0 for the reader
    return "(" + ", ".join(f"{v + 0.0:.6g}" for v in values) + ")"
