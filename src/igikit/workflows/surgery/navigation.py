"""Tool-to-target navigation: from one tracked tool pose to what the surgeon needs to know.

Each tracker update maps the tool's tip (pivot-calibrated offset, :mod:`igikit.register.pivot`)
through the patient registration into image coordinates and computes, there:

* the distance and direction from the tip to the target, and the tip's depth along and lateral
  deviation from the planned trajectory (entry -> target);
* the angle between the tool axis and the planned trajectory;
* the signed distance from the tip to each critical structure (negative inside), sampled
  trilinearly from distance maps computed once from the label map (SimpleITK's signed Maurer
  distance, Maurer, Qi & Raghavan, IEEE PAMI 25 (2003) 265);
* the RMS target registration error (TRE) predicted at the tip from the registration's fiducials
  and their localisation error (Fitzpatrick, West & Maurer 1998, eq. 46;
  :class:`igikit.register.points.FiducialLayout`);
* a proximity level per structure (``clear``, ``warning``, ``critical``) with a sentence that
  carries the numbers and their uncertainty.

**Uncertainty.** The registration error at the tip is a 3D vector of RMS length TRE. Its component
along any direction (toward a vessel) has a standard deviation of at most TRE, whatever the
anisotropy, so ``d - 1.645 TRE`` is a conservative one-sided 95 % lower bound of the true distance
``d`` to a structure. A warning states whether that bound still keeps the structure's critical
margin ("margin not guaranteed" when it does not); a decision's confidence is the probability,
under the same bound, that the true distance is no worse than the level says.

Everything here is plain computation on small arrays (no I/O, no threads): one update costs tens
of microseconds (``bench/surgery.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from igikit.core.image import Image
from igikit.errors import InputError
from igikit.register.points import FiducialLayout

Level = Literal["clear", "warning", "critical"]
LEVELS: tuple[Level, ...] = ("clear", "warning", "critical")

#: One-sided 95 % quantile of the standard normal: the lower bound of a distance is d - Z95 * TRE.
Z95 = 1.6448536269514722
#: A level eases (critical -> warning -> clear) only once the distance is this far beyond its
#: threshold, so tracker jitter at a threshold does not make it flicker.
HYSTERESIS_MM = 0.5


def _vector(value: npt.ArrayLike, what: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise InputError(f"{what} must be 3 finite numbers (x, y, z in mm), got {np.asarray(value).tolist()}")
    return v


def slug(name: str) -> str:
    """A structure name as an identifier (``"portal vein"`` -> ``"portal_vein"``)."""
    return "".join(c if c.isalnum() else "_" for c in name.strip().lower()).strip("_") or "structure"


# ------------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class Structure:
    """A structure the tool must keep away from: a label of the label map and its two distances.

    Parameters
    ----------
    name
        What it is (``"portal vein"``); named in warnings.
    label
        Its value in the label map.
    warn_mm
        A warning when the tip comes this close (mm).
    critical_mm
        The margin to keep (mm): closer is critical, and a warning says whether the tip's
        95 % lower bound still keeps it.
    """

    name: str
    label: int
    warn_mm: float = 5.0
    critical_mm: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError("a structure needs a name")
        if (
            isinstance(self.label, bool)
            or not isinstance(self.label, int | np.integer)
            or not 0 < int(self.label) < 2**31
        ):
            raise InputError(f"structure {self.name!r}: label must be a positive integer, got {self.label!r}")
        for what in ("warn_mm", "critical_mm"):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise InputError(f"structure {self.name!r}: {what} must be a number >= 0, got {v!r}")
        if self.critical_mm > self.warn_mm:
            raise InputError(
                f"structure {self.name!r}: critical_mm ({self.critical_mm:g}) must not exceed "
                f"warn_mm ({self.warn_mm:g})"
            )
        object.__setattr__(self, "label", int(self.label))
        object.__setattr__(self, "warn_mm", float(self.warn_mm))
        object.__setattr__(self, "critical_mm", float(self.critical_mm))

    @functools.cached_property
    def key(self) -> str:
        """:func:`slug` of the name: the structure's name in decision names and result columns."""
        return slug(self.name)


@dataclass(frozen=True, eq=False)
class NavigationPlan:
    """Target, planned trajectory and structures to avoid, in image coordinates (mm).

    Parameters
    ----------
    target_mm
        The point the tool tip must reach.
    entry_mm
        The planned entry point; the planned trajectory runs from it to the target. None: no
        trajectory (no angle, depth or deviation is computed).
    structures
        The structures to keep away from (names unique).
    target_name
        How the target is named in messages (``"lesion"``).
    """

    target_mm: np.ndarray
    entry_mm: np.ndarray | None
    structures: tuple[Structure, ...]
    target_name: str = "target"

    def __post_init__(self) -> None:
        target = _vector(self.target_mm, "target_mm")
        entry = None if self.entry_mm is None else _vector(self.entry_mm, "entry_mm")
        if entry is not None and float(np.linalg.norm(target - entry)) < 1e-6:
            raise InputError("entry_mm and target_mm coincide: the planned trajectory has no direction")
        structures = tuple(self.structures)
        keys = [s.key for s in structures]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise InputError(f"structure names must be unique; repeated: {', '.join(dup)}")
        object.__setattr__(self, "target_mm", target)
        object.__setattr__(self, "entry_mm", entry)
        object.__setattr__(self, "structures", structures)

    @property
    def direction(self) -> np.ndarray | None:
        """Unit vector of the planned trajectory, entry -> target (None without an entry)."""
        if self.entry_mm is None:
            return None
        d = self.target_mm - self.entry_mm
        out: np.ndarray = d / float(np.linalg.norm(d))
        return out


# ------------------------------------------------------------------------------ distance maps
class DistanceMaps:
    """Signed distance (mm, negative inside) to each structure of a label map, at any point.

    The maps are computed once (SimpleITK's signed Maurer distance, in physical units, so
    anisotropic voxels are handled) and stacked into one ``float32`` array; a query samples all
    structures at once by trilinear interpolation. Outside a structure the map is the distance to
    its border voxels, inside the depth below the background's border voxels (a second pass on the
    structure's bounding box), each less half a voxel, so that zero falls on the surface between
    inside and outside voxel centres: the voxelised surface is only known to half a voxel.

    Parameters
    ----------
    labels
        The 3D label map.
    structures
        The structures to map; each label must occur in ``labels``.
    """

    def __init__(self, labels: Image, structures: Sequence[Structure]) -> None:
        import SimpleITK as sitk

        if labels.is_series or labels.dim != 3:
            raise InputError(f"the label map must be one 3D volume, got shape {labels.array.shape}")
        array = np.asarray(labels.array)
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)):
            raise InputError(f"the label map must hold integer labels, got {array.dtype}")
        if min(array.shape) < 2:
            raise InputError(f"the label map must be at least 2 voxels along each axis, got shape {array.shape}")
        self.structures = tuple(structures)
        if not self.structures:
            raise InputError("no structures to keep away from: name at least one label")
        self.image = labels
        maps = np.empty((len(self.structures), *array.shape), dtype=np.float32)
        half = 0.5 * min(labels.spacing_mm)

        def maurer(mask: np.ndarray) -> np.ndarray:
            img = sitk.GetImageFromArray(mask.astype(np.uint8))
            img.SetSpacing(labels.spacing_mm)
            d = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
            out: np.ndarray = sitk.GetArrayFromImage(d)
            return out

        for k, s in enumerate(self.structures):
            mask = array == s.label
            if not mask.any():
                raise InputError(f"label {s.label} ({s.name}) does not occur in the label map")
            # outside: the distance to the structure's border voxels, less half a voxel
            maps[k] = maurer(mask) - half
            # inside: the depth below the background's border voxels, less half a voxel (computed
            # on the structure's bounding box only: a second full pass would double the cost)
            nz = np.nonzero(mask)
            box = tuple(slice(max(int(i.min()) - 2, 0), int(i.max()) + 3) for i in nz)
            depth = maurer(~mask[box]) - half
            inner = mask[box]
            maps[k][box][inner] = -depth[inner]
        self.maps = maps
        self._shape = np.asarray(array.shape[::-1], dtype=np.int64)  # x, y, z sizes
        # physical -> continuous index (x, y, z), once: index = (p - origin) @ m
        self._origin = np.asarray(labels.origin_mm)
        self._to_index = np.linalg.inv(labels.direction).T / np.asarray(labels.spacing_mm)[None, :]

    def index_of(self, point_mm: np.ndarray) -> np.ndarray:
        """Continuous index ``(x, y, z)`` of a physical point."""
        out: np.ndarray = (point_mm - self._origin) @ self._to_index
        return out

    def sample(self, point_mm: np.ndarray) -> tuple[np.ndarray, bool]:
        """Signed distances ``(S,)`` (mm) at ``point_mm``, and whether it lies inside the grid.

        Outside the grid the nearest grid point's values are returned (the caller says so).
        """
        idx = self.index_of(point_mm)
        hi = self._shape - 1
        x, y, z = float(idx[0]), float(idx[1]), float(idx[2])
        inside = 0.0 <= x <= hi[0] and 0.0 <= y <= hi[1] and 0.0 <= z <= hi[2]
        if not inside:
            x, y, z = (min(max(v, 0.0), float(h) - 1e-6) for v, h in zip((x, y, z), hi, strict=True))
        x0, y0, z0 = min(int(x), int(hi[0]) - 1), min(int(y), int(hi[1]) - 1), min(int(z), int(hi[2]) - 1)
        fx, fy, fz = x - x0, y - y0, z - z0
        cube = self.maps[:, z0 : z0 + 2, y0 : y0 + 2, x0 : x0 + 2]
        cx = cube[..., 0] * (1.0 - fx) + cube[..., 1] * fx
        cy = cx[..., 0] * (1.0 - fy) + cx[..., 1] * fy
        values = cy[:, 0] * (1.0 - fz) + cy[:, 1] * fz
        return values.astype(np.float64), inside


def label_at(labels: Image, point_mm: np.ndarray) -> int:
    """The label map's value at the voxel nearest ``point_mm`` (0 outside the grid)."""
    array = np.asarray(labels.array)
    idx = np.round(labels.physical_to_index(point_mm)).astype(int)
    if np.all(idx >= 0) and np.all(idx < np.asarray(array.shape[::-1])):
        return int(array[idx[2], idx[1], idx[0]])
    return 0


# ------------------------------------------------------------------------- tool, registration
@dataclass(frozen=True, eq=False)
class ToolCalibration:
    """The tracked tool: its tip and its axis in tool (marker) coordinates.

    Parameters
    ----------
    tip_offset_mm
        The tip in tool coordinates (``tip_offset_mm`` of ``igikit calibrate pivot``).
    axis
        Unit direction from the tip toward the handle, tool coordinates. Default: from the tip
        toward the marker's origin (``-tip_offset``), right for a straight pointer or needle whose
        marker sits on its shaft's line.
    """

    tip_offset_mm: np.ndarray
    axis: np.ndarray | None = None

    def __post_init__(self) -> None:
        tip = _vector(self.tip_offset_mm, "tip_offset_mm")
        axis = -tip if self.axis is None else _vector(self.axis, "tool axis")
        norm = float(np.linalg.norm(axis))
        if norm < 1e-6:
            raise InputError("the tool axis is undefined: give a non-zero axis (a zero tip offset has no direction)")
        object.__setattr__(self, "tip_offset_mm", tip)
        object.__setattr__(self, "axis", axis / norm)


@dataclass(frozen=True, eq=False)
class PatientRegistration:
    """Image-to-tracker registration from fiducials, with what the TRE prediction needs.

    Parameters
    ----------
    tracker_from_image
        4x4 rigid matrix mapping image points into tracker coordinates (``register points``'
        ``matrix`` with FIXED = tracker, MOVING = image).
    fiducials_image_mm
        The fiducials in image coordinates (their layout sets the TRE's shape).
    fle_mm
        RMS 3D fiducial localisation error (mm).
    fre_mm
        The registration's fiducial registration error (RMS, mm), for the record.
    """

    tracker_from_image: np.ndarray
    fiducials_image_mm: np.ndarray
    fle_mm: float
    fre_mm: float = float("nan")
    layout: FiducialLayout = field(init=False, repr=False)
    image_from_tracker: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from igikit.core.transform import Transform

        t = Transform(np.asarray(self.tracker_from_image, dtype=np.float64))
        if t.dim != 3 or not t.is_rigid(1e-6):
            raise InputError("the registration matrix must be a rigid 4x4 transform (rotation and translation)")
        fle = float(self.fle_mm)
        if not (math.isfinite(fle) and fle >= 0):
            raise InputError(f"FLE must be a number >= 0 mm, got {self.fle_mm}")
        object.__setattr__(self, "tracker_from_image", t.matrix)
        object.__setattr__(self, "image_from_tracker", np.linalg.inv(t.matrix))
        object.__setattr__(self, "layout", FiducialLayout.of(self.fiducials_image_mm))
        object.__setattr__(self, "fiducials_image_mm", np.asarray(self.fiducials_image_mm, dtype=np.float64))
        object.__setattr__(self, "fle_mm", fle)

    @classmethod
    def from_fiducials(
        cls, fiducials_image_mm: npt.ArrayLike, fiducials_tracker_mm: npt.ArrayLike, fle_mm: float
    ) -> PatientRegistration:
        """Register corresponding fiducials (image = MOVING, tracker = FIXED; Arun / Umeyama)."""
        from igikit.register.points import rigid_register

        reg = rigid_register(fiducials_tracker_mm, fiducials_image_mm)
        return cls(reg.matrix, np.asarray(fiducials_image_mm, dtype=np.float64), fle_mm, reg.fre_mm)

    def tre_mm(self, point_image_mm: np.ndarray) -> float:
        """Predicted RMS TRE (mm) at an image point (:meth:`FiducialLayout.tre_mm` for one point)."""
        lay = self.layout
        p = point_image_mm - lay.centroid_mm
        along = lay.axes @ p
        d2 = float(p @ p) - along * along
        tre2 = self.fle_mm**2 / lay.n * (1.0 + float(np.sum(d2 / lay.f2_mm2)) / 3.0)
        return math.sqrt(max(tre2, 0.0))


# ------------------------------------------------------------------------------- the update
@dataclass(frozen=True, eq=False)
class Proximity:
    """Where the tip stands relative to one structure at one update."""

    structure: Structure
    distance_mm: float
    lower_bound_mm: float
    level: Level
    confidence: float
    explanation: str


@dataclass(frozen=True, eq=False)
class NavigationUpdate:
    """The numbers of one tracker update, in image coordinates (mm, degrees).

    ``axis`` points from the tip toward the handle. ``depth_mm`` is the tip's position along the
    planned trajectory measured from the entry, ``to_go_mm`` what remains of it to the target
    (negative: past the target), ``lateral_mm`` the tip's distance from the planned line; these,
    and ``angle_deg``, are NaN without a planned entry. ``inside_image`` is False when the tip
    lies outside the label map's grid (the distances are then those at the grid's edge).
    """

    frame_id: int
    time_s: float
    tip_mm: np.ndarray
    axis: np.ndarray
    target_distance_mm: float
    target_direction: np.ndarray
    depth_mm: float
    to_go_mm: float
    lateral_mm: float
    angle_deg: float
    tre_mm: float
    inside_image: bool
    proximity: tuple[Proximity, ...]
    smoothed: bool = False

    @property
    def distances_mm(self) -> dict[str, float]:
        """Signed distance to each structure, by name."""
        return {p.structure.name: p.distance_mm for p in self.proximity}

    @property
    def warnings(self) -> tuple[str, ...]:
        """The sentences of the warnings in force (warning and critical levels)."""
        return tuple(p.explanation for p in self.proximity if p.level != "clear")

    def results(self) -> dict[str, object]:
        """The update as flat, recordable results (a session file column each)."""
        out: dict[str, object] = {
            "tip_mm": self.tip_mm,
            "axis": self.axis,
            "target_distance_mm": self.target_distance_mm,
            "target_direction": self.target_direction,
            "depth_mm": self.depth_mm,
            "to_go_mm": self.to_go_mm,
            "lateral_mm": self.lateral_mm,
            "angle_deg": self.angle_deg,
            "tre_mm": self.tre_mm,
            "inside_image": self.inside_image,
        }
        for p in self.proximity:
            out[f"distance_{p.structure.key}_mm"] = p.distance_mm
            out[f"level_{p.structure.key}"] = p.level
        out["warnings"] = " | ".join(self.warnings)
        return out


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def proximity_of(structure: Structure, distance_mm: float, tre_mm: float, level: Level) -> Proximity:
    """The :class:`Proximity` of a tip at ``distance_mm`` (with ``tre_mm``) held at ``level``.

    The confidence is the probability that the true distance is no worse than the level says:
    beyond the warning distance (clear), beyond the critical margin (warning), outside the
    structure (critical), with the error along the normal bounded by ``N(0, TRE^2)``.
    """
    sigma = max(tre_mm, 1e-6)
    bound = distance_mm - Z95 * tre_mm
    name = structure.name
    where = "inside" if distance_mm < 0 else "from"
    said = f"tip {abs(distance_mm):.1f} mm {where} the {name}"
    if level == "clear":
        confidence = _phi((distance_mm - structure.warn_mm) / sigma)
        text = f"{said} (warning at {structure.warn_mm:.1f} mm), TRE at tip {tre_mm:.1f} mm: clear"
    else:
        floor = structure.critical_mm if level == "warning" else 0.0
        confidence = _phi((distance_mm - floor) / sigma)
        if distance_mm < 0:
            text = f"{said}, TRE at tip {tre_mm:.1f} mm: the tip is in the {name}"
        elif bound >= structure.critical_mm:
            text = (
                f"{said}, TRE at tip {tre_mm:.1f} mm: at least {bound:.1f} mm at 95 % confidence, "
                f"the {structure.critical_mm:.1f} mm margin is kept"
            )
        else:
            text = (
                f"{said}, TRE at tip {tre_mm:.1f} mm: margin not guaranteed (95 % lower bound {bound:.1f} mm, "
                f"margin {structure.critical_mm:.1f} mm)"
            )
    return Proximity(structure, distance_mm, bound, level, min(max(confidence, 0.0), 1.0), text)


def next_level(structure: Structure, distance_mm: float, previous: Level) -> Level:
    """The proximity level at ``distance_mm``: escalates at once, eases with :data:`HYSTERESIS_MM`."""
    now: Level = (
        "critical"
        if distance_mm <= structure.critical_mm
        else "warning"
        if distance_mm <= structure.warn_mm
        else "clear"
    )
    if LEVELS.index(now) >= LEVELS.index(previous):
        return now
    # easing: only past the threshold of the level held, by the hysteresis
    held = structure.critical_mm if previous == "critical" else structure.warn_mm
    if distance_mm <= held + HYSTERESIS_MM:
        return previous
    return now


class Navigator:
    """Turns tool poses into :class:`NavigationUpdate` s (keeps the proximity levels between calls).

    Parameters
    ----------
    plan
        Target, trajectory, structures.
    maps
        Distance maps of ``plan.structures`` (same order).
    registration
        Image-to-tracker registration with its fiducials and FLE.
    tool
        Tip offset and axis in tool coordinates.
    smoother
        Optional :class:`~igikit.workflows.surgery.smoothing.PoseSmoother` applied to the poses.
    """

    def __init__(
        self,
        plan: NavigationPlan,
        maps: DistanceMaps,
        registration: PatientRegistration,
        tool: ToolCalibration,
        *,
        smoother: PoseSmootherLike | None = None,
    ) -> None:
        if tuple(s.key for s in maps.structures) != tuple(s.key for s in plan.structures):
            raise InputError("the distance maps were made for other structures than the plan's")
        self.plan = plan
        self.maps = maps
        self.registration = registration
        self.tool = tool
        self.smoother = smoother
        self._levels: list[Level] = ["clear"] * len(plan.structures)
        self._image_from_tracker = registration.image_from_tracker
        self._tip_h = np.append(tool.tip_offset_mm, 1.0)
        self._axis_tool = np.asarray(tool.axis)
        self._direction = plan.direction

    def reset(self) -> None:
        """Forget the proximity levels and the smoother's history (a new insertion)."""
        self._levels = ["clear"] * len(self.plan.structures)
        if self.smoother is not None:
            self.smoother.reset()

    @property
    def levels(self) -> dict[str, Level]:
        """The proximity level held for each structure, by name."""
        return {s.name: lv for s, lv in zip(self.plan.structures, self._levels, strict=True)}

    def update(self, pose: np.ndarray, time_s: float = 0.0, frame_id: int = 0) -> NavigationUpdate:
        """Compute the update for one tool-to-tracker pose (4x4, mm)."""
        smoothed = False
        if self.smoother is not None:
            pose = self.smoother.update(pose)
            smoothed = True
        image_from_tool = self._image_from_tracker @ pose
        tip = image_from_tool[:3] @ self._tip_h
        axis = image_from_tool[:3, :3] @ self._axis_tool
        to_target = self.plan.target_mm - tip
        dist = float(math.sqrt(float(to_target @ to_target)))
        direction = to_target / dist if dist > 0 else np.zeros(3)
        nan = float("nan")
        depth = to_go = lateral = angle = nan
        if self._direction is not None:
            assert self.plan.entry_mm is not None
            rel = tip - self.plan.entry_mm
            depth = float(rel @ self._direction)
            to_go = float(to_target @ self._direction)
            off = rel - depth * self._direction
            lateral = float(math.sqrt(float(off @ off)))
            # the tool points from its handle to its tip: -axis; compare with entry -> target
            c = float(-axis @ self._direction)
            angle = math.degrees(math.acos(min(1.0, max(-1.0, c))))
        tre = self.registration.tre_mm(tip)
        values, inside = self.maps.sample(tip)
        prox = []
        for k, s in enumerate(self.plan.structures):
            d = float(values[k])
            level = next_level(s, d, self._levels[k])
            self._levels[k] = level
            prox.append(proximity_of(s, d, tre, level))
        return NavigationUpdate(
            frame_id=int(frame_id),
            time_s=float(time_s),
            tip_mm=tip,
            axis=axis,
            target_distance_mm=dist,
            target_direction=direction,
            depth_mm=depth,
            to_go_mm=to_go,
            lateral_mm=lateral,
            angle_deg=angle,
            tre_mm=tre,
            inside_image=inside,
            proximity=tuple(prox),
            smoothed=smoothed,
        )


class PoseSmootherLike(Protocol):
    """What :class:`Navigator` needs of a smoother (see :mod:`igikit.workflows.surgery.smoothing`)."""

    def update(self, pose: np.ndarray) -> np.ndarray:
        """The smoothed pose for the newest raw pose."""

    def reset(self) -> None:
        """Forget the history."""


def structures_from_mapping(items: Sequence[Mapping[str, object]], where: str = "plan") -> tuple[Structure, ...]:
    """Structures from plain mappings ``{name, label, warn_mm, critical_mm}`` (a plan file's list)."""
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InputError(f"{where}: structure {i + 1} must be a mapping with name and label")
        extra = set(item) - {"name", "label", "warn_mm", "critical_mm"}
        if extra:
            raise InputError(f"{where}: structure {i + 1} has unknown key {sorted(extra)[0]!r}")
        if "name" not in item or "label" not in item:
            raise InputError(f"{where}: structure {i + 1} needs a name and a label")
        kwargs = {k: item[k] for k in ("warn_mm", "critical_mm") if k in item}
        out.append(Structure(str(item["name"]), item["label"], **kwargs))  # type: ignore[arg-type]
    return tuple(out)


__all__ = [
    "HYSTERESIS_MM",
    "LEVELS",
    "Z95",
    "DistanceMaps",
    "NavigationPlan",
    "NavigationUpdate",
    "Navigator",
    "PatientRegistration",
    "Proximity",
    "Structure",
    "ToolCalibration",
    "label_at",
    "next_level",
    "proximity_of",
    "slug",
    "structures_from_mapping",
]
