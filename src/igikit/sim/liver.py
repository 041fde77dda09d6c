"""A liver phantom for navigated needle insertion: vessels to avoid, a lesion to reach, fiducials.

The liver is two smooth lobes (ellipsoids with gentle bumps); the portal vein is a trunk entering
at the hilum that branches into a right and a left branch, the right one giving off a segmental
branch; two hepatic veins drain toward the vena cava; a spherical lesion sits in the right lobe.
Vessels are unions of *capsules* (tubes with round ends around a line segment), so their exact
signed distance is known everywhere (the distance to the nearest segment minus its radius), the
truth a navigation system's distance maps are checked against.

The planned needle path runs from a skin entry point on the patient's right flank to the lesion
centre and passes the segmental portal branch at a stated clearance (``clearance_mm``, default
4 mm: inside a 5 mm warning distance, outside a 2 mm critical one), the situation in which a
navigation system must warn, and say how far its own numbers can be trusted.

Coordinates are image (patient) coordinates in mm, ITK / DICOM LPS: ``+x`` to the patient's
left, ``+y`` posterior, ``+z`` superior. The label map is an :class:`~igikit.core.image.Image`
(array ``(Z, Y, X)``, spacing and origin in ``(x, y, z)``); its default 1 x 1 x 2 mm voxels are
those of a routine contrast CT.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from igikit.core.image import Image
from igikit.errors import InputError

#: Label value of each structure in :attr:`LiverPhantom.labels`.
LABELS: dict[str, int] = {"liver": 1, "portal vein": 2, "hepatic vein": 3, "lesion": 4}

#: The region the label map covers, mm (x, y, z): the liver, the flank and the needle path.
EXTENT_MM: tuple[tuple[float, float], ...] = ((-160.0, 100.0), (-80.0, 80.0), (-76.0, 76.0))

#: Lesion centre (mm) and radius (mm).
LESION_CENTRE_MM = (-55.0, -5.0, 10.0)
LESION_RADIUS_MM = 10.0
#: Planned skin entry on the right flank (mm).
ENTRY_MM = (-150.0, -30.0, 25.0)
#: Where along the path (fraction from entry to lesion) it passes the segmental portal branch.
PASS_FRACTION = 0.7


@dataclass(frozen=True)
class Capsule:
    """A tube of ``radius_mm`` around the segment ``start_mm`` -> ``end_mm`` (round ends)."""

    start_mm: tuple[float, float, float]
    end_mm: tuple[float, float, float]
    radius_mm: float


@dataclass(frozen=True, eq=False)
class LiverPhantom:
    """The phantom: label map, the analytic shapes behind it, plan and fiducials.

    Attributes
    ----------
    labels
        ``uint8`` label map (values in :data:`LABELS`).
    vessels
        The capsules of each vessel, by structure name (``"portal vein"``, ``"hepatic vein"``).
    lesion_centre_mm, lesion_radius_mm
        The lesion (the needle's target is its centre).
    entry_mm
        Planned skin entry point.
    fiducials_mm
        ``(N, 3)`` skin fiducials in image coordinates.
    clearance_mm
        Planned clearance between the straight path and the nearest vessel wall.
    """

    labels: Image
    vessels: dict[str, tuple[Capsule, ...]]
    lesion_centre_mm: np.ndarray
    lesion_radius_mm: float
    entry_mm: np.ndarray
    fiducials_mm: np.ndarray
    clearance_mm: float

    @property
    def target_mm(self) -> np.ndarray:
        """The needle's target: the lesion centre."""
        return self.lesion_centre_mm

    def structure_names(self) -> dict[int, str]:
        """Label value -> structure name."""
        return {v: k for k, v in LABELS.items()}

    def signed_distance_mm(self, structure: str, points_mm: npt.ArrayLike) -> np.ndarray:
        """Exact signed distance (mm, negative inside) from ``points_mm`` ``(N, 3)`` to a vessel or the lesion.

        For a vessel this is the distance to the union of its capsules (exact outside it; inside,
        the depth below the nearest capsule's wall).
        """
        p = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
        if structure == "lesion":
            out: np.ndarray = np.linalg.norm(p - self.lesion_centre_mm, axis=1) - self.lesion_radius_mm
            return out
        if structure not in self.vessels:
            raise InputError(f"no structure {structure!r}; the phantom has {', '.join(['lesion', *self.vessels])}")
        return capsules_distance_mm(self.vessels[structure], p)

    def path_clearance_mm(self, structure: str, *, samples: int = 2001) -> float:
        """Smallest signed distance from the straight entry-to-target path to ``structure`` (mm)."""
        t = np.linspace(0.0, 1.0, samples)[:, None]
        path = self.entry_mm + t * (self.target_mm - self.entry_mm)
        return float(self.signed_distance_mm(structure, path).min())


def capsules_distance_mm(capsules: Sequence[Capsule], points_mm: np.ndarray) -> np.ndarray:
    """Signed distance (mm) from ``points_mm`` ``(N, 3)`` to the union of ``capsules``."""
    best = np.full(len(points_mm), np.inf)
    for c in capsules:
        a, b = np.asarray(c.start_mm), np.asarray(c.end_mm)
        ab = b - a
        t = np.clip((points_mm - a) @ ab / float(ab @ ab), 0.0, 1.0)
        d = np.linalg.norm(points_mm - (a + t[:, None] * ab), axis=1) - c.radius_mm
        best = np.minimum(best, d)
    return best


def _unit(v: npt.ArrayLike) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / float(np.linalg.norm(a))


def _vessels(clearance_mm: float) -> dict[str, tuple[Capsule, ...]]:
    """The portal and hepatic veins; the segmental portal branch passes the planned path at ``clearance_mm``."""
    entry, lesion = np.asarray(ENTRY_MM), np.asarray(LESION_CENTRE_MM)
    d = _unit(lesion - entry)
    passing = entry + PASS_FRACTION * (lesion - entry)
    # the branch runs perpendicular to the path, on its posterior side
    n = _unit(np.array([0.0, 1.0, 0.0]) - d[1] * d)
    u = _unit(np.cross(d, n))
    seg_radius = 3.0
    centre = passing + n * (seg_radius + clearance_mm)
    seg_a, seg_b = centre - 22.0 * u, centre + 22.0 * u
    hilum = np.array([0.0, 22.0, -14.0])

    def cap(a: npt.ArrayLike, b: npt.ArrayLike, r: float) -> Capsule:
        a3, b3 = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        return Capsule((float(a3[0]), float(a3[1]), float(a3[2])), (float(b3[0]), float(b3[1]), float(b3[2])), r)

    right_end = np.array([-52.0, 30.0, -8.0])
    portal = (
        cap([12.0, 45.0, -62.0], hilum, 6.5),  # trunk, from below the liver to the hilum
        cap(hilum, right_end, 5.0),  # right portal vein
        cap(right_end, seg_a, 3.5),  # toward the anterior segments
        cap(seg_a, seg_b, seg_radius),  # the segmental branch the needle passes
        cap(hilum, [42.0, 8.0, -2.0], 4.5),  # left portal vein
        cap([42.0, 8.0, -2.0], [70.0, -12.0, 12.0], 3.0),
    )
    cava = np.array([8.0, 38.0, 58.0])
    hepatic = (
        cap(cava, [-62.0, 28.0, 38.0], 5.0),  # right hepatic vein
        cap([-62.0, 28.0, 38.0], [-95.0, 20.0, 18.0], 3.5),
        cap(cava, [45.0, 6.0, 42.0], 4.0),  # left / middle hepatic vein
    )
    return {"portal vein": portal, "hepatic vein": hepatic}


def _liver_field(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """< 1 inside the liver: two lobes with gentle bumps (a smooth, organ-like surface)."""
    right = np.sqrt(((x + 32) / 78) ** 2 + ((y - 2) / 62) ** 2 + ((z - 2) / 56) ** 2)
    left = np.sqrt(((x - 42) / 48) ** 2 + ((y + 10) / 36) ** 2 + ((z - 14) / 36) ** 2)
    bumps = 0.05 * np.sin(x / 17.0) * np.cos(y / 23.0) + 0.04 * np.sin(z / 13.0 + 1.0)
    field: np.ndarray = np.minimum(right, left) - bumps
    return field


def _inside_capsule(capsule: Capsule, points_mm: np.ndarray) -> np.ndarray:
    out: np.ndarray = capsules_distance_mm((capsule,), points_mm) < 0.0
    return out


def _paint(
    labels: np.ndarray,
    axes_mm: tuple[np.ndarray, np.ndarray, np.ndarray],
    lo_mm: np.ndarray,
    hi_mm: np.ndarray,
    inside: Callable[[np.ndarray], np.ndarray],
    value: int,
) -> None:
    """Set ``labels`` to ``value`` at the voxel centres within the box ``lo_mm..hi_mm`` where ``inside``."""
    sel = [np.flatnonzero((ax >= lo_mm[k]) & (ax <= hi_mm[k])) for k, ax in enumerate(axes_mm)]
    if any(s.size == 0 for s in sel):
        return
    z, y, x = np.meshgrid(axes_mm[2][sel[2]], axes_mm[1][sel[1]], axes_mm[0][sel[0]], indexing="ij")
    hit = inside(np.column_stack([x.ravel(), y.ravel(), z.ravel()])).reshape(x.shape)
    box = labels[sel[2][0] : sel[2][-1] + 1, sel[1][0] : sel[1][-1] + 1, sel[0][0] : sel[0][-1] + 1]
    box[hit] = value


def liver_phantom(
    spacing_mm: Sequence[float] = (1.0, 1.0, 2.0),
    *,
    clearance_mm: float = 4.0,
) -> LiverPhantom:
    """Build the liver phantom's label map on a grid of ``spacing_mm`` (x, y, z).

    Parameters
    ----------
    spacing_mm
        Voxel size, ITK order ``(x, y, z)``, mm (each 0.25-5).
    clearance_mm
        Clearance between the straight planned path and the segmental portal branch's wall (mm, >= 0).

    Returns
    -------
    LiverPhantom
        Label map, analytic vessels and lesion, plan (entry, target) and 7 skin fiducials.

    Examples
    --------
    >>> ph = liver_phantom((4.0, 4.0, 4.0))
    >>> round(ph.path_clearance_mm("portal vein"), 3)
    4.0
    >>> sorted(set(np.unique(ph.labels.array).tolist()))
    [0, 1, 2, 3, 4]
    """
    sp = np.asarray(spacing_mm, dtype=np.float64).reshape(-1)
    if sp.size != 3 or not np.all(np.isfinite(sp)) or sp.min() < 0.25 or sp.max() > 5.0:
        raise InputError(f"spacing_mm must be 3 values between 0.25 and 5 mm, got {np.asarray(spacing_mm).tolist()}")
    if not (math.isfinite(clearance_mm) and clearance_mm >= 0):
        raise InputError(f"clearance_mm must be >= 0, got {clearance_mm}")
    vessels = _vessels(float(clearance_mm))
    lo = np.array([e[0] for e in EXTENT_MM])
    n = np.floor((np.array([e[1] for e in EXTENT_MM]) - lo) / sp).astype(int) + 1
    xs, ys, zs = (lo[k] + sp[k] * np.arange(n[k]) for k in range(3))
    labels = np.where(_liver_field(xs[None, None, :], ys[None, :, None], zs[:, None, None]) < 1.0, LABELS["liver"], 0)
    labels = labels.astype(np.uint8)
    for name in ("portal vein", "hepatic vein"):
        for c in vessels[name]:
            ends = np.array([c.start_mm, c.end_mm])
            _paint(
                labels,
                (xs, ys, zs),
                ends.min(axis=0) - c.radius_mm,
                ends.max(axis=0) + c.radius_mm,
                functools.partial(_inside_capsule, c),
                LABELS[name],
            )
    centre = np.asarray(LESION_CENTRE_MM)
    _paint(
        labels,
        (xs, ys, zs),
        centre - LESION_RADIUS_MM,
        centre + LESION_RADIUS_MM,
        lambda p: np.linalg.norm(p - centre, axis=1) < LESION_RADIUS_MM,
        LABELS["lesion"],
    )
    image = Image(labels, spacing_mm=tuple(float(v) for v in sp), origin_mm=tuple(float(v) for v in lo))
    # skin markers around the right upper abdomen, spread in 3D (not coplanar)
    fiducials = np.array(
        [
            [-150.0, -45.0, 60.0],
            [-155.0, -20.0, -55.0],
            [-90.0, -78.0, 65.0],
            [-10.0, -80.0, 55.0],
            [30.0, -78.0, -40.0],
            [-95.0, -75.0, -60.0],
            [-140.0, 40.0, 10.0],
        ]
    )
    return LiverPhantom(
        labels=image,
        vessels=vessels,
        lesion_centre_mm=centre.copy(),
        lesion_radius_mm=LESION_RADIUS_MM,
        entry_mm=np.asarray(ENTRY_MM, dtype=np.float64),
        fiducials_mm=fiducials,
        clearance_mm=float(clearance_mm),
    )


__all__ = ["LABELS", "Capsule", "LiverPhantom", "capsules_distance_mm", "liver_phantom"]
