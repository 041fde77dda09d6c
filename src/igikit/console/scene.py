"""The 3D navigation scene the console shows: structures, target, planned trajectory and the tool.

A navigation workflow publishes one :class:`Scene` when the plan is known (and again when it
changes, e.g. after a re-registration) and one :class:`ToolState` per tracker update, through
:meth:`~igikit.supervise.session.SupervisedSession.publish_scene` and
:meth:`~igikit.supervise.session.SupervisedSession.publish_tool`. Everything is in image (patient)
coordinates, in mm, ITK's LPS convention (``+x`` left, ``+y`` posterior, ``+z`` superior). The
console only draws these: the numbers (distances, angle, TRE, warnings) are the workflow's.

:func:`meshes_from_labels` turns a label map into :class:`SceneMesh` es (marching cubes,
Lorensen & Cline 1987, as implemented by scikit-image) coarse enough that a whole scene stays a
small WebSocket message; :func:`encode_scene` and :func:`encode_tool` are the console's messages.

Example
-------
>>> import numpy as np
>>> labels = np.zeros((20, 20, 20), np.uint8)
>>> labels[5:15, 5:15, 5:15] = 1
>>> (cube,) = meshes_from_labels(labels, {1: "cube"}, spacing_mm=(0.5, 0.5, 2.0))
>>> cube.name, cube.vertices_mm.shape[1], cube.faces.shape[1]
('cube', 3, 3)
>>> scene = Scene(meshes=(cube,), target_mm=np.array([5.0, 5.0, 20.0]), entry_mm=np.array([5.0, -60.0, 20.0]))
>>> tool = ToolState(tip_mm=np.array([5.0, -20.0, 20.0]), axis=np.array([0.0, -1.0, 0.0]),
...                  target_distance_mm=25.0, angle_to_trajectory_deg=0.0, distances_mm={"cube": 17.6},
...                  tre_mm=1.2, warnings=(), time_s=0.0)
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from igikit.errors import InputError

if TYPE_CHECKING:
    from igikit.core.image import Image

log = logging.getLogger(__name__)

#: Colours given to structures in label order when none is named (CSS hex).
PALETTE: tuple[str, ...] = ("#e5534b", "#58a6ff", "#d2a8ff", "#7ee787", "#f0883e", "#db61a2", "#56d4dd", "#e3b341")

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def _point(value: npt.ArrayLike, what: str) -> np.ndarray:
    p = np.asarray(value, dtype=np.float64)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise InputError(f"{what} must be 3 finite numbers (x, y, z in mm), got {np.asarray(value).tolist()}")
    return p


def _optional(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"{what} must be a finite number or None, got {value}")
    return v


def _read_only(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array.setflags(write=False)
    return array


# ------------------------------------------------------------------------------- data objects
@dataclass(frozen=True, eq=False)
class SceneMesh:
    """A triangle surface drawn in the scene (a structure to avoid, an organ, the lesion).

    Parameters
    ----------
    name
        What it is, e.g. ``"portal vein"``; the key of :attr:`ToolState.distances_mm`.
    vertices_mm
        ``(N, 3)`` points in image coordinates (mm); stored as a read-only float64 copy.
    faces
        ``(M, 3)`` vertex indices of each triangle (counter-clockwise seen from outside); stored
        as a read-only int64 copy.
    color
        CSS hex colour ``"#rrggbb"``.
    opacity
        In ``(0, 1]``; structures are usually drawn semi-transparent so the tool stays visible.
    """

    name: str
    vertices_mm: np.ndarray
    faces: np.ndarray
    color: str = PALETTE[0]
    opacity: float = 0.35

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError("a scene mesh needs a name")
        vertices = np.asarray(self.vertices_mm, dtype=np.float64)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 3:
            raise InputError(f"mesh {self.name!r}: vertices_mm must be (N >= 3, 3), got {vertices.shape}")
        if not np.all(np.isfinite(vertices)):
            raise InputError(f"mesh {self.name!r}: vertices_mm contains non-finite values")
        faces = np.asarray(self.faces)
        if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise InputError(f"mesh {self.name!r}: faces must be (M >= 1, 3), got {faces.shape}")
        if not np.issubdtype(faces.dtype, np.integer):
            raise InputError(f"mesh {self.name!r}: faces must be integer vertex indices, got {faces.dtype}")
        if faces.min() < 0 or faces.max() >= len(vertices):
            raise InputError(
                f"mesh {self.name!r}: face indices must be in [0, {len(vertices) - 1}], "
                f"got [{faces.min()}, {faces.max()}]"
            )
        if not isinstance(self.color, str) or not _HEX.match(self.color):
            raise InputError(f"mesh {self.name!r}: color must be a CSS hex colour like '#e5534b', got {self.color!r}")
        if not 0.0 < float(self.opacity) <= 1.0:
            raise InputError(f"mesh {self.name!r}: opacity must be in (0, 1], got {self.opacity}")
        object.__setattr__(self, "vertices_mm", _read_only(vertices))
        object.__setattr__(self, "faces", _read_only(faces.astype(np.int64)))
        object.__setattr__(self, "opacity", float(self.opacity))


@dataclass(frozen=True, eq=False)
class Scene:
    """What a navigation session shows around the tool: structures, target and planned trajectory.

    Parameters
    ----------
    meshes
        The structures (:class:`SceneMesh`), names unique.
    target_mm
        The target point (mm), drawn as a sphere.
    entry_mm
        The planned entry point (mm); the planned trajectory is the line from it to the target.
        None when there is no plan.
    tool_length_mm
        Length of the tool drawn from its tip toward the handle (mm).
    title
        A short caption, e.g. ``"liver phantom: needle to lesion"``.
    target_radius_mm
        Radius of the target sphere (mm).
    """

    meshes: tuple[SceneMesh, ...]
    target_mm: np.ndarray
    entry_mm: np.ndarray | None = None
    tool_length_mm: float = 150.0
    title: str = ""
    target_radius_mm: float = 2.5

    def __post_init__(self) -> None:
        meshes = tuple(self.meshes)
        for m in meshes:
            if not isinstance(m, SceneMesh):
                raise InputError(f"scene meshes must be SceneMesh objects, got {type(m).__name__}")
        names = [m.name for m in meshes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InputError(f"scene mesh names must be unique; repeated: {', '.join(duplicates)}")
        target = _read_only(_point(self.target_mm, "target_mm"))
        entry = None if self.entry_mm is None else _read_only(_point(self.entry_mm, "entry_mm"))
        if entry is not None and float(np.linalg.norm(entry - target)) < 1e-6:
            raise InputError("entry_mm and target_mm are the same point: the trajectory has no direction")
        for what in ("tool_length_mm", "target_radius_mm"):
            value = float(getattr(self, what))
            if not math.isfinite(value) or value <= 0:
                raise InputError(f"{what} must be a positive number of mm, got {getattr(self, what)}")
            object.__setattr__(self, what, value)
        object.__setattr__(self, "meshes", meshes)
        object.__setattr__(self, "target_mm", target)
        object.__setattr__(self, "entry_mm", entry)


@dataclass(frozen=True, eq=False)
class ToolState:
    """The tracked tool at one tracker update, with the numbers the workflow computed for it.

    Parameters
    ----------
    tip_mm
        Tool tip in image coordinates (mm).
    axis
        Direction from the tip toward the handle; normalised here (it must not be zero).
    target_distance_mm
        Distance from the tip to the target (mm).
    angle_to_trajectory_deg
        Angle between the tool axis and the planned trajectory (degrees); None without a plan.
    distances_mm
        Signed distance from the tip to each structure, by :attr:`SceneMesh.name` (mm; negative
        inside).
    tre_mm
        Predicted target registration error at the tip (mm, RMS), if known.
    warnings
        Sentences of the warnings in force, with their numbers ("tip 2.1 mm from the portal vein,
        TRE at tip 1.3 mm: margin not guaranteed").
    time_s
        Tracker time of the pose (s).
    published_wall_s
        Unix time when the state was published; set by
        :meth:`~igikit.supervise.session.SupervisedSession.publish_tool` when left at 0.
    """

    tip_mm: np.ndarray
    axis: np.ndarray
    target_distance_mm: float
    angle_to_trajectory_deg: float | None
    distances_mm: Mapping[str, float]
    tre_mm: float | None
    warnings: tuple[str, ...]
    time_s: float
    published_wall_s: float = 0.0

    def __post_init__(self) -> None:
        tip = _point(self.tip_mm, "tip_mm")
        axis = _point(self.axis, "axis")
        norm = float(np.linalg.norm(axis))
        if norm < 1e-9:
            raise InputError("axis must be a non-zero vector from the tip toward the handle")
        distance = float(self.target_distance_mm)
        if not math.isfinite(distance):
            raise InputError(f"target_distance_mm must be finite, got {self.target_distance_mm}")
        for name, value in self.distances_mm.items():
            if not math.isfinite(float(value)):
                raise InputError(f"distances_mm[{name!r}] must be finite, got {value}")
        object.__setattr__(self, "tip_mm", tip)
        object.__setattr__(self, "axis", axis / norm)
        object.__setattr__(self, "target_distance_mm", distance)
        object.__setattr__(
            self, "angle_to_trajectory_deg", _optional(self.angle_to_trajectory_deg, "angle_to_trajectory_deg")
        )
        object.__setattr__(self, "tre_mm", _optional(self.tre_mm, "tre_mm"))
        object.__setattr__(self, "warnings", tuple(str(w) for w in self.warnings))
        object.__setattr__(self, "time_s", float(self.time_s))


# ------------------------------------------------------------------------------ label maps
def meshes_from_labels(
    labels: Image | np.ndarray,
    structures: Mapping[int, str] | None = None,
    *,
    spacing_mm: Sequence[float] | None = None,
    origin_mm: Sequence[float] | None = None,
    colors: Mapping[int, str] | None = None,
    opacity: float | Mapping[int, float] = 0.35,
    max_triangles: int = 3000,
    smoothing_voxels: float = 0.8,
) -> tuple[SceneMesh, ...]:
    """One surface per label of a 3D label map, in physical coordinates (mm), small enough to send.

    Each label is cropped to its bounding box, blurred a little (so the surface is not a voxel
    staircase) and meshed with marching cubes at the 0.5 level. When the surface would have more
    than ``max_triangles`` triangles, marching cubes runs again on a coarser grid (every
    ``step``-th voxel, the blur widened to match) until it fits: a few thousand triangles per
    structure keep a scene message in the hundreds of kilobytes.

    Parameters
    ----------
    labels
        An :class:`~igikit.core.image.Image` (its spacing, origin and direction place the meshes)
        or a ``(Z, Y, X)`` integer array.
    structures
        Name of each label value to mesh, e.g. ``{2: "portal vein", 3: "lesion"}``. Default: every
        non-zero label, named ``"label N"``.
    spacing_mm, origin_mm
        For an array: voxel spacing and origin in ITK order ``(x, y, z)`` (defaults 1 mm, 0).
        Not allowed with an Image (it carries its own).
    colors
        CSS hex colour per label (default: :data:`PALETTE` in label order).
    opacity
        One opacity for all meshes, or one per label.
    max_triangles
        Upper bound on the triangles of each mesh.
    smoothing_voxels
        Gaussian sigma (voxels) applied to each label's mask before meshing; 0 for none. A
        structure thinner than the blur keeps its unblurred surface.

    Returns
    -------
    tuple of SceneMesh
        In the order of ``structures`` (or of the label values).

    Raises
    ------
    InputError
        Not a 3D label map, a named label that is absent, a label too small to mesh.

    References
    ----------
    W. E. Lorensen and H. E. Cline, "Marching cubes: a high resolution 3D surface construction
    algorithm", SIGGRAPH 1987. T. Lewiner et al., "Efficient implementation of marching cubes'
    cases with topological guarantees", J. Graphics Tools 8(2), 2003 (scikit-image's variant).
    """
    from igikit.core.image import Image

    if isinstance(labels, Image):
        if spacing_mm is not None or origin_mm is not None:
            raise InputError("spacing_mm and origin_mm come from the Image; pass them only with an array")
        image = labels
    else:
        image = Image(np.asarray(labels), spacing_mm=tuple(spacing_mm or ()), origin_mm=tuple(origin_mm or ()))
    if image.is_series or image.dim != 3:
        raise InputError(f"a label map for a 3D scene must be one 3D volume, got shape {image.array.shape}")
    array = np.asarray(image.array)
    if not np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.bool_):
        raise InputError(f"a label map must hold integer labels, got {array.dtype}")
    if max_triangles < 12:
        raise InputError(f"max_triangles must be at least 12, got {max_triangles}")
    if structures is None:
        values = [int(v) for v in np.unique(array) if v != 0]
        structures = {v: f"label {v}" for v in values}
    meshes = []
    for k, (value, name) in enumerate(structures.items()):
        mask = array == value
        if not mask.any():
            raise InputError(f"label {value} ({name}) is not in the label map")
        verts_index, faces = _surface(mask, max_triangles=max_triangles, sigma=smoothing_voxels, name=name)
        vertices = image.index_to_physical(verts_index)
        if _signed_volume(vertices, faces) < 0:  # outward normals: counter-clockwise from outside
            faces = faces[:, ::-1]
        color = (colors or {}).get(value, PALETTE[k % len(PALETTE)])
        alpha = opacity.get(value, 0.35) if isinstance(opacity, Mapping) else opacity
        meshes.append(SceneMesh(name, vertices, faces, color=color, opacity=alpha))
    return tuple(meshes)


def _surface(mask: np.ndarray, *, max_triangles: int, sigma: float, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Marching-cubes surface of ``mask`` with at most ``max_triangles`` faces; vertices as ITK indices.

    Coarsening averages ``step``-voxel blocks (so the surface stays where the structure is, without
    aliasing) before blurring and meshing; a structure that averaging would erase (thinner than a
    block) is meshed on a finer grid instead, even if that exceeds ``max_triangles``.
    """
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    box = [np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    first = np.array([int(b[0]) for b in box])
    last = np.array([int(b[-1]) for b in box])
    # a marching-cubes surface has about two triangles per boundary face of the voxel surface
    inside = mask[tuple(slice(f, l + 1) for f, l in zip(first, last, strict=True))]
    boundary = sum(int(np.count_nonzero(np.diff(inside, axis=a))) for a in range(3))
    step = max(1, math.ceil(math.sqrt(2.0 * boundary / max_triangles)))
    refined = False  # went back to a finer grid: take that one whatever its size
    while True:
        margin = step * (math.ceil(3 * sigma) + 2)
        lo = first - margin
        n_blocks = -(-(last - first + 1 + 2 * margin) // step)
        field_ = np.zeros(tuple(int(v) for v in n_blocks * step), dtype=np.float32)
        src_lo, src_hi = np.maximum(lo, 0), np.minimum(lo + n_blocks * step, mask.shape)
        dst = tuple(slice(int(a - b), int(c - b)) for a, b, c in zip(src_lo, lo, src_hi, strict=True))
        field_[dst] = mask[tuple(slice(int(a), int(c)) for a, c in zip(src_lo, src_hi, strict=True))]
        if step > 1:
            z, y, x = (int(v) for v in n_blocks)
            field_ = field_.reshape(z, step, y, step, x, step).mean(axis=(1, 3, 5))
        smooth = gaussian_filter(field_, sigma) if sigma > 0 else field_
        if smooth.max() < 0.6:  # thinner than the blur: mesh without it
            smooth = field_
        if smooth.max() <= 0.5:  # erased by block averaging: back to a finer grid
            if step == 1:
                raise InputError(f"structure {name!r} is too small to mesh ({int(mask.sum())} voxels)")
            step, refined = step - 1, True
            continue
        verts, faces, _, _ = marching_cubes(smooth, 0.5, allow_degenerate=False)
        if len(faces) <= max_triangles or refined or min(smooth.shape) < 8:
            break
        step += 1
    log.debug("mesh %s: %d triangles (voxel blocks of %d)", name, len(faces), step)
    # block centres in (z, y, x) array order -> ITK index order (x, y, z), in the full volume
    index = verts * step + (step - 1) / 2.0 + lo
    return index[:, ::-1].astype(np.float64), faces.astype(np.int64)


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


# --------------------------------------------------------------------------- console messages
def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def scene_message(scene: Scene) -> dict[str, Any]:
    """A scene as the page reads it: mesh arrays as base64 little-endian float32 / uint32."""
    return {
        "type": "scene",
        "title": scene.title,
        "target": scene.target_mm.tolist(),
        "target_radius": scene.target_radius_mm,
        "entry": None if scene.entry_mm is None else scene.entry_mm.tolist(),
        "tool_length": scene.tool_length_mm,
        "meshes": [
            {
                "name": m.name,
                "color": m.color,
                "opacity": m.opacity,
                "n_vertices": len(m.vertices_mm),
                "n_faces": len(m.faces),
                "vertices": _b64(m.vertices_mm, "<f4"),
                "faces": _b64(m.faces, "<u4"),
            }
            for m in scene.meshes
        ],
        "encoded": time.time(),
    }


def encode_scene(scene: Scene) -> str:
    """The JSON text of one ``scene`` message."""
    return json.dumps(scene_message(scene), separators=(",", ":"))


def encode_tool(state: ToolState) -> str:
    """The JSON text of one ``tool`` message."""
    return json.dumps(
        {
            "type": "tool",
            "tip": state.tip_mm.tolist(),
            "axis": state.axis.tolist(),
            "target_distance": state.target_distance_mm,
            "angle": state.angle_to_trajectory_deg,
            "distances": {str(k): float(v) for k, v in state.distances_mm.items()},
            "tre": state.tre_mm,
            "warnings": list(state.warnings),
            "t": state.time_s,
            "published": state.published_wall_s,
            "encoded": time.time(),
        },
        separators=(",", ":"),
    )


__all__ = [
    "PALETTE",
    "Scene",
    "SceneMesh",
    "ToolState",
    "encode_scene",
    "encode_tool",
    "meshes_from_labels",
    "scene_message",
]
