"""Navigation geometry: the liver phantom, distance maps against the analytic truth, the update's
numbers (tip, target, trajectory angle, TRE), proximity levels and their sentences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from igikit.errors import InputError
from igikit.register.points import predict_tre
from igikit.sim.liver import LABELS, liver_phantom
from igikit.workflows.surgery.navigation import (
    HYSTERESIS_MM,
    Z95,
    NavigationPlan,
    PatientRegistration,
    Structure,
    ToolCalibration,
    next_level,
    proximity_of,
)
from tests.workflows.surgery.navigation_helpers import (
    STRUCTURES,
    TOOL,
    maps,
    navigator,
    phantom,
    tracker_from_image,
)


def pose_for_tip(tip_image: np.ndarray, direction_image: np.ndarray, tool: ToolCalibration = TOOL) -> np.ndarray:
    """The tool-to-tracker pose that puts the tip at ``tip_image`` with the tool pointing along ``direction_image``."""
    d = direction_image / np.linalg.norm(direction_image)
    # rotate the tool's tip->handle axis onto -d
    r, _ = Rotation.align_vectors([-d], [tool.axis])
    rot = r.as_matrix()
    image_from_tool = np.eye(4)
    image_from_tool[:3, :3] = rot
    image_from_tool[:3, 3] = tip_image - rot @ tool.tip_offset_mm
    return tracker_from_image() @ image_from_tool


# ------------------------------------------------------------------------------- phantom
def test_phantom_structures_plan_and_fiducials() -> None:
    ph = phantom()
    arr = ph.labels.array
    assert arr.dtype == np.uint8 and ph.labels.spacing_mm == (2.0, 2.0, 2.5)
    assert set(np.unique(arr).tolist()) == {0, *LABELS.values()}
    voxel_ml = np.prod(ph.labels.spacing_mm) / 1000.0
    assert 1000 < np.count_nonzero(arr == LABELS["liver"]) * voxel_ml < 1600  # an adult liver, 1-1.6 L
    lesion_ml = np.count_nonzero(arr == LABELS["lesion"]) * voxel_ml
    assert lesion_ml == pytest.approx(4 / 3 * math.pi * 10.0**3 / 1000.0, rel=0.2)
    # the planned path passes the segmental portal branch at the stated clearance, far from the hepatic veins
    assert ph.path_clearance_mm("portal vein") == pytest.approx(4.0, abs=1e-6)
    assert ph.path_clearance_mm("hepatic vein") > 15.0
    assert ph.signed_distance_mm("lesion", ph.target_mm)[0] == pytest.approx(-10.0)
    # skin fiducials spread in 3D, outside the liver
    assert np.linalg.svd(ph.fiducials_mm - ph.fiducials_mm.mean(0), compute_uv=False)[2] > 10.0
    assert liver_phantom((4.0, 4.0, 4.0), clearance_mm=1.5).path_clearance_mm("portal vein") == pytest.approx(1.5)
    with pytest.raises(InputError, match="spacing_mm"):
        liver_phantom((0.1, 1.0, 1.0))
    with pytest.raises(InputError, match="no structure"):
        ph.signed_distance_mm("gallbladder", ph.target_mm)


def test_phantom_is_in_igikit_sim() -> None:
    import igikit.sim

    assert igikit.sim.liver_phantom is liver_phantom and "LiverPhantom" in igikit.sim.__all__


# ------------------------------------------------------------------------- distance maps
def test_distance_maps_match_the_analytic_vessels() -> None:
    ph, dm = phantom(), maps()
    rng = np.random.default_rng(0)
    for k, s in enumerate(STRUCTURES):
        # points around the vessel: inside it and up to 12 mm outside, all along its branches
        caps = ph.vessels[s.name]
        which = rng.integers(0, len(caps), 2000)
        a = np.array([caps[i].start_mm for i in which])
        b = np.array([caps[i].end_mm for i in which])
        r = np.array([caps[i].radius_mm for i in which])
        v = rng.normal(size=(2000, 3))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        pts = a + rng.uniform(0, 1, (2000, 1)) * (b - a) + v * (r + rng.uniform(-0.8, 12.0, 2000))[:, None]
        sampled = np.array([dm.sample(p)[0][k] for p in pts])
        truth = ph.signed_distance_mm(s.name, pts)
        err = sampled - truth
        # voxelisation: typically a fraction of a voxel, at worst half the voxel's diagonal; unbiased
        assert np.sqrt(np.mean(err**2)) < 0.6, (s.name, np.sqrt(np.mean(err**2)))
        assert np.abs(err).max() < 0.5 * np.linalg.norm(ph.labels.spacing_mm) + 0.1, (s.name, np.abs(err).max())
        assert abs(err.mean()) < 0.35, (s.name, err.mean())
        sure = np.abs(truth) > 2.0
        assert np.all(np.sign(sampled[sure]) == np.sign(truth[sure]))


def test_distance_maps_outside_the_grid_and_bad_labels() -> None:
    ph, dm = phantom(), maps()
    _, inside = dm.sample(ph.target_mm)
    assert inside
    values, inside = dm.sample(np.array([-500.0, 0.0, 0.0]))
    assert not inside and np.all(np.isfinite(values))
    from igikit.workflows.surgery.navigation import DistanceMaps

    with pytest.raises(InputError, match=r"label 9 .* does not occur"):
        DistanceMaps(ph.labels, (Structure("nerve", 9),))
    with pytest.raises(InputError, match="at least one"):
        DistanceMaps(ph.labels, ())


# ------------------------------------------------------------------------------ updates
def test_update_tip_target_trajectory_and_tre() -> None:
    ph = phantom()
    nav = navigator()
    d = nav.plan.direction
    assert d is not None
    # the tip 30 mm short of the target on the planned line, tool along the plan
    tip = ph.target_mm - 30.0 * d
    u = nav.update(pose_for_tip(tip, d), time_s=1.5, frame_id=7)
    np.testing.assert_allclose(u.tip_mm, tip, atol=1e-6)
    assert u.target_distance_mm == pytest.approx(30.0, abs=1e-6)
    np.testing.assert_allclose(u.target_direction, d, atol=1e-9)
    assert u.to_go_mm == pytest.approx(30.0, abs=1e-6) and u.lateral_mm == pytest.approx(0.0, abs=1e-6)
    assert u.depth_mm == pytest.approx(np.linalg.norm(ph.target_mm - ph.entry_mm) - 30.0, abs=1e-6)
    assert u.angle_deg == pytest.approx(0.0, abs=1e-4)
    np.testing.assert_allclose(u.axis, -d, atol=1e-9)  # from the tip toward the handle
    assert u.tre_mm == pytest.approx(predict_tre(ph.fiducials_mm, tip, 0.5)[0], rel=1e-12)
    assert u.inside_image and u.frame_id == 7 and u.time_s == 1.5
    # tilted by 12 degrees about the tip, 3 mm aside: the angle and the deviation follow
    tilt = Rotation.from_rotvec(np.radians(12.0) * np.cross(d, [0, 0, 1.0]) / np.linalg.norm(np.cross(d, [0, 0, 1.0])))
    side = np.cross(d, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    u = nav.update(pose_for_tip(tip + 3.0 * side, tilt.apply(d)))
    assert u.angle_deg == pytest.approx(12.0, abs=1e-6)
    assert u.lateral_mm == pytest.approx(3.0, abs=1e-6)
    # the distances are the maps' at the tip
    np.testing.assert_allclose([p.distance_mm for p in u.proximity], maps().sample(u.tip_mm)[0])
    assert set(u.results()) >= {"tip_mm", "tre_mm", "distance_portal_vein_mm", "level_hepatic_vein", "warnings"}


def test_registration_checks_and_tre_follows_the_fiducial_layout() -> None:
    ph = phantom()
    reg = PatientRegistration.from_fiducials(ph.fiducials_mm, ph.fiducials_mm + np.array([5.0, 0, 0]), 1.0)
    assert reg.fre_mm == pytest.approx(0.0, abs=1e-9)
    far = ph.fiducials_mm.mean(0) + np.array([300.0, 0, 0])
    assert reg.tre_mm(far) > 2 * reg.tre_mm(ph.fiducials_mm.mean(0))
    with pytest.raises(InputError, match="rigid"):
        PatientRegistration(np.diag([2.0, 1, 1, 1]), ph.fiducials_mm, 1.0)
    with pytest.raises(InputError, match="FLE"):
        PatientRegistration(np.eye(4), ph.fiducials_mm, -1.0)
    with pytest.raises(InputError, match="collinear"):
        PatientRegistration(np.eye(4), np.c_[np.arange(4.0), np.zeros(4), np.zeros(4)], 1.0)


# -------------------------------------------------------------------------- proximity
def test_levels_escalate_at_once_and_ease_with_hysteresis() -> None:
    s = Structure("portal vein", 2, warn_mm=5.0, critical_mm=2.0)
    seq = [8.0, 4.9, 1.9, 2.1, 2.0 + HYSTERESIS_MM + 0.01, 5.2, 5.0 + HYSTERESIS_MM + 0.01, 1.0]
    levels = []
    level = "clear"
    for d in seq:
        level = next_level(s, d, level)  # type: ignore[arg-type]
        levels.append(level)
    assert levels == ["clear", "warning", "critical", "critical", "warning", "warning", "clear", "critical"]


def test_warning_sentences_carry_numbers_and_uncertainty() -> None:
    s = Structure("portal vein", 2, warn_mm=5.0, critical_mm=2.0)
    p = proximity_of(s, 2.1, 1.3, "warning")
    # the example: the 95 % lower bound 2.1 - 1.645 * 1.3 falls inside the 2 mm margin
    assert p.explanation.startswith("tip 2.1 mm from the portal vein, TRE at tip 1.3 mm: margin not guaranteed")
    assert p.lower_bound_mm == pytest.approx(2.1 - Z95 * 1.3)
    assert p.confidence == pytest.approx(0.5 * math.erfc(-(0.1 / 1.3) / math.sqrt(2)))
    kept = proximity_of(s, 4.0, 0.5, "warning")
    assert "the 2.0 mm margin is kept" in kept.explanation and "at least 3.2 mm" in kept.explanation
    inside = proximity_of(s, -0.8, 0.4, "critical")
    assert "tip 0.8 mm inside the portal vein" in inside.explanation and inside.confidence < 0.05
    clear = proximity_of(s, 9.0, 0.4, "clear")
    assert clear.explanation.endswith("clear") and clear.confidence > 0.99


def test_navigator_levels_follow_the_tip_past_a_vessel() -> None:
    ph = phantom()
    nav = navigator()
    d = nav.plan.direction
    assert d is not None
    # walk the planned line: the portal vein passes at 4 mm (warning, never critical: margin 2 mm)
    levels = []
    for s in np.linspace(0.0, 1.0, 200):
        tip = ph.entry_mm + s * (ph.target_mm - ph.entry_mm)
        u = nav.update(pose_for_tip(tip, d))
        levels.append(nav.levels["portal vein"])
        assert nav.levels["hepatic vein"] == "clear"
    assert "warning" in levels and "critical" not in levels
    assert levels[0] == "clear" and levels[-1] == "clear"
    assert u.warnings == ()
    nav.reset()
    assert nav.levels == {"portal vein": "clear", "hepatic vein": "clear"}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "", "label": 2}, "needs a name"),
        ({"name": "v", "label": 0}, "positive integer"),
        ({"name": "v", "label": 2, "warn_mm": -1.0}, "warn_mm"),
        ({"name": "v", "label": 2, "warn_mm": 2.0, "critical_mm": 3.0}, "must not exceed"),
    ],
)
def test_structure_checks(kwargs: dict, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        Structure(**kwargs)


def test_plan_and_tool_checks() -> None:
    with pytest.raises(InputError, match="coincide"):
        NavigationPlan(np.zeros(3), np.zeros(3), STRUCTURES)
    with pytest.raises(InputError, match="unique"):
        NavigationPlan(np.zeros(3), None, (STRUCTURES[0], STRUCTURES[0]))
    with pytest.raises(InputError, match="3 finite numbers"):
        NavigationPlan(np.array([0.0, np.nan, 0.0]), None, STRUCTURES)
    with pytest.raises(InputError, match="axis is undefined"):
        ToolCalibration(np.zeros(3))
    np.testing.assert_allclose(ToolCalibration(np.array([0.0, 0.0, -100.0])).axis, [0, 0, 1.0])
