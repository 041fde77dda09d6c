"""A small synthetic navigation case for the console's 3D scene: a label map (organ, vessel, lesion),
its scene, and tool states along the planned trajectory with the numbers computed from distance maps."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import distance_transform_edt

from igikit.console.scene import Scene, ToolState, meshes_from_labels
from igikit.core.image import Image

SPACING_MM = (1.5, 1.5, 2.0)  # x, y, z
SHAPE = (60, 80, 80)  # z, y, x
LABELS = {1: "liver", 2: "portal vein", 3: "lesion"}
COLORS = {1: "#d08a6e", 2: "#4f8ff7", 3: "#d2a8ff"}
OPACITY = {1: 0.28, 2: 0.7, 3: 0.45}
TARGET_MM = np.array([70.0, 55.0, 72.0])
ENTRY_MM = np.array([118.0, 8.0, 100.0])
WARN_MM = 10.0


def label_map() -> Image:
    """Liver-like ellipsoid with a vessel along x below the lesion and a lesion (the target) inside."""
    z, y, x = np.indices(SHAPE, dtype=np.float64)
    px, py, pz = x * SPACING_MM[0], y * SPACING_MM[1], z * SPACING_MM[2]
    labels = np.zeros(SHAPE, np.uint8)
    labels[((px - 60) / 45) ** 2 + ((py - 60) / 38) ** 2 + ((pz - 62) / 36) ** 2 <= 1] = 1
    labels[((py - 58) ** 2 + (pz - 64) ** 2 <= 3.5**2) & (px > 20) & (px < 105)] = 2
    labels[(px - TARGET_MM[0]) ** 2 + (py - TARGET_MM[1]) ** 2 + (pz - TARGET_MM[2]) ** 2 <= 7**2] = 3
    return Image(labels, spacing_mm=SPACING_MM)


def scene(image: Image | None = None) -> Scene:
    image = image if image is not None else label_map()
    meshes = meshes_from_labels(image, LABELS, colors=COLORS, opacity=OPACITY, max_triangles=2500)
    return Scene(meshes, TARGET_MM, ENTRY_MM, tool_length_mm=90.0, title="synthetic liver: needle to lesion")


@dataclass
class DistanceMaps:
    """Signed distance (mm, negative inside) from each voxel to each structure."""

    image: Image
    maps: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, image: Image) -> DistanceMaps:
        sampling = SPACING_MM[::-1]
        maps = {}
        for value, name in LABELS.items():
            inside = np.isin(image.array, (1, 3)) if name == "liver" else image.array == value  # lesion is in the liver
            maps[name] = distance_transform_edt(~inside, sampling=sampling) - distance_transform_edt(
                inside, sampling=sampling
            )
        return cls(image, maps)

    def at(self, point_mm: np.ndarray) -> dict[str, float]:
        index = np.round(self.image.physical_to_index(point_mm)).astype(int)[::-1]
        index = np.clip(index, 0, np.array(SHAPE) - 1)
        return {name: float(m[tuple(index)]) for name, m in self.maps.items()}


def tool_state(maps: DistanceMaps, fraction: float, time_s: float) -> ToolState:
    """The tool ``fraction`` of the way from the entry to the target, its axis wobbling by a few degrees."""
    path = TARGET_MM - ENTRY_MM
    tip = ENTRY_MM + fraction * path
    wobble = np.array([math.sin(3 * time_s), math.cos(2 * time_s), 0.0]) * 0.06
    axis = -path / np.linalg.norm(path) + wobble
    axis /= np.linalg.norm(axis)
    angle = math.degrees(math.acos(float(np.clip(-axis @ path / np.linalg.norm(path), -1, 1))))
    distances = maps.at(tip)
    tre = 1.3 + 0.2 * fraction
    warnings = tuple(
        f"tip {d:.1f} mm from the {name} (warning at {WARN_MM:.1f} mm), TRE at tip {tre:.1f} mm: margin not guaranteed"
        for name, d in distances.items()
        if name == "portal vein" and d < WARN_MM
    )
    return ToolState(
        tip_mm=tip,
        axis=axis,
        target_distance_mm=float(np.linalg.norm(TARGET_MM - tip)),
        angle_to_trajectory_deg=angle,
        distances_mm=distances,
        tre_mm=tre,
        warnings=warnings,
        time_s=time_s,
    )


class ToolFeed:
    """Publishes tool states at ``rate_hz`` from a thread: the tip advances toward the target in
    ``insertion_s`` seconds, then stays there (``loop=False``) or starts again."""

    def __init__(self, session, maps: DistanceMaps, *, rate_hz: float = 30.0, insertion_s: float = 8.0) -> None:  # type: ignore[no-untyped-def]
        self.session, self.maps, self.rate_hz, self.insertion_s = session, maps, rate_hz, insertion_s
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tool-feed", daemon=True)

    def start(self) -> ToolFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        start = time.monotonic()
        period = 1.0 / self.rate_hz
        k = 0
        while not self._stop.is_set():
            t = time.monotonic() - start
            fraction = min(0.98, (t % (self.insertion_s + 2.0)) / self.insertion_s)
            self.session.publish_tool(tool_state(self.maps, fraction, t))
            self.published += 1
            k += 1
            self._stop.wait(max(0.0, start + k * period - time.monotonic()))
