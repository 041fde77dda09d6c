"""Shared pieces of the navigation tests: a coarse liver phantom, its plan files, a navigator."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import yaml

from igikit.sim.liver import LABELS, LiverPhantom, liver_phantom
from igikit.workflows.surgery.navigation import (
    DistanceMaps,
    NavigationPlan,
    Navigator,
    PatientRegistration,
    Structure,
    ToolCalibration,
)

#: Coarse, anisotropic voxels: fast distance maps, and spacing handling exercised.
SPACING = (2.0, 2.0, 2.5)
STRUCTURES = (
    Structure("portal vein", LABELS["portal vein"], warn_mm=5.0, critical_mm=2.0),
    Structure("hepatic vein", LABELS["hepatic vein"], warn_mm=5.0, critical_mm=2.0),
)


@functools.cache
def phantom() -> LiverPhantom:
    return liver_phantom(SPACING)


@functools.cache
def maps() -> DistanceMaps:
    return DistanceMaps(phantom().labels, STRUCTURES)


def tracker_from_image() -> np.ndarray:
    """A patient 2 m in front of the tracker, turned: far from the origin, as in real use."""
    c, s = math.cos(math.radians(25.0)), math.sin(math.radians(25.0))
    return np.array([[c, -s, 0.0, 150.0], [0.0, 0.0, -1.0, -60.0], [s, c, 0.0, -2050.0], [0.0, 0.0, 0.0, 1.0]])


def plan() -> NavigationPlan:
    ph = phantom()
    return NavigationPlan(ph.target_mm, ph.entry_mm, STRUCTURES, target_name="lesion")


def exact_registration(fle_mm: float = 0.5) -> PatientRegistration:
    ph = phantom()
    t = tracker_from_image()
    return PatientRegistration.from_fiducials(ph.fiducials_mm, ph.fiducials_mm @ t[:3, :3].T + t[:3, 3], fle_mm)


TOOL = ToolCalibration(np.array([-15.0, 390.0, -7.0]))  # about the real pointer's (calibrate pivot)


def navigator(**kw: object) -> Navigator:
    return Navigator(plan(), maps(), exact_registration(), TOOL, **kw)  # type: ignore[arg-type]


def write_inputs(folder: Path, *, fle_mm: float = 0.5) -> dict[str, Path]:
    """The phantom as a user gives it to ``igikit navigate``: plan, labels, fiducials, pivot JSON."""
    import json

    from igikit.io.image import write_image

    ph = phantom()
    write_image(ph.labels, folder / "labels.nii.gz")
    rows = "".join(f"F{k + 1},{p[0]},{p[1]},{p[2]}\n" for k, p in enumerate(ph.fiducials_mm))
    (folder / "fid_image.csv").write_text("name,x,y,z\n" + rows)
    t = tracker_from_image()
    rng = np.random.default_rng(5)
    tracked = ph.fiducials_mm @ t[:3, :3].T + t[:3, 3] + rng.normal(scale=fle_mm / math.sqrt(3), size=(7, 3))
    (folder / "fid_tracker.csv").write_text("x,y,z\n" + "".join(f"{p[0]},{p[1]},{p[2]}\n" for p in tracked))
    (folder / "pivot.json").write_text(json.dumps({"tip_offset_mm": TOOL.tip_offset_mm.tolist()}))
    plan_data = {
        "labels": "labels.nii.gz",
        "target_name": "lesion",
        "target_mm": ph.target_mm.tolist(),
        "entry_mm": ph.entry_mm.tolist(),
        "structures": [
            {"name": s.name, "label": s.label, "warn_mm": s.warn_mm, "critical_mm": s.critical_mm} for s in STRUCTURES
        ],
        "fiducials": "fid_image.csv",
    }
    (folder / "plan.yaml").write_text(yaml.safe_dump(plan_data, sort_keys=False))
    return {
        k: folder / v
        for k, v in (
            ("plan", "plan.yaml"),
            ("labels", "labels.nii.gz"),
            ("tracker", "fid_tracker.csv"),
            ("pivot", "pivot.json"),
        )
    }
