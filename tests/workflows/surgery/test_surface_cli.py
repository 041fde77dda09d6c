"""``igikit register surface`` and ``igikit calibrate hand-eye`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_input_error, run_cli
from tests.register.test_handeye import _poses
from tests.register.test_surface import errors, organ_surface, scan, true_transform

HEADER = ",".join(f"m{r}{c}" for r in range(4) for c in range(4))


def _write_points(path: Path, points: np.ndarray, header: str = "x,y,z") -> Path:
    path.write_text(header + "\n" + "".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in points))
    return path


def test_register_surface_mesh_to_scan_with_init(tmp_path: Path) -> None:
    import meshio

    organ = organ_surface()
    fixed = tmp_path / "organ.ply"
    meshio.write(fixed, meshio.Mesh(organ.points_mm, [("triangle", organ.triangles)]))
    truth = true_transform(30.0)
    moving = _write_points(tmp_path / "scan.csv", scan(organ.points_mm, truth, points=2500))
    init = tmp_path / "fiducials.json"
    rough = truth.copy()
    rough[:3, 3] += [3.0, -2.0, 2.0]  # fiducials localised a few mm off
    init.write_text(json.dumps({"matrix": rough.tolist()}))
    out = tmp_path / "surface.json"
    r = run_cli("register", "surface", fixed, moving, "--init", init, "--json", out)
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    assert set(j) >= {"matrix", "rms_mm", "inlier_fraction", "warnings"}
    angle, disp = errors(np.array(j["matrix"]), truth, organ.points_mm)
    assert angle < 1.0 and disp < 1.0, (angle, disp)
    assert 0.6 < j["inlier_fraction"] < 0.8 and 0.5 < j["rms_mm"] < 1.5 and j["warnings"] == []
    assert "RMS" in r.stdout and "inlier fraction" in r.stdout


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("two.csv", "x,y,z\n0,0,0\n1,0,0\n", "3 or more points"),
        ("nan.csv", "x,y,z\n0,0,0\n1,0,0\n0,nan,1\n0,1,1\n", "NaN"),
        ("cloud.obj", "v 0 0 0\n", "unknown surface file extension"),
        ("line.csv", "x,y,z\n0,0,0\n1,0,0\n2,0,0\n3,0,0\n", "collinear"),
    ],
)
def test_register_surface_bad_inputs(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    good = _write_points(tmp_path / "good.csv", np.random.default_rng(0).uniform(0, 50, (200, 3)))
    bad = tmp_path / name
    bad.write_text(text)
    assert_input_error(run_cli("register", "surface", good, bad), name, fragment)


def test_register_surface_bad_init(tmp_path: Path) -> None:
    good = _write_points(tmp_path / "good.csv", np.random.default_rng(0).uniform(0, 50, (200, 3)))
    init = tmp_path / "init.json"
    init.write_text('{"matrix": [[1, 0, 0]]}')
    assert_input_error(run_cli("register", "surface", good, good, "--init", init), "init.json", "4x4")


def _write_poses(path: Path, poses: np.ndarray) -> Path:
    path.write_text(HEADER + "\n" + "".join(",".join(repr(float(v)) for v in p.reshape(-1)) + "\n" for p in poses))
    return path


def test_calibrate_hand_eye(tmp_path: Path) -> None:
    hand, camera, x = _poses()
    robot = _write_poses(tmp_path / "robot.csv", hand)
    cam = _write_poses(tmp_path / "camera.csv", camera)
    out = tmp_path / "he.json"
    r = run_cli("calibrate", "hand-eye", robot, cam, "--method", "park", "--json", out)
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    np.testing.assert_allclose(np.array(j["matrix"]), x, atol=1e-9)
    assert j["method"] == "park" and j["refined"] and j["translation_rms_mm"] < 1e-9
    assert len(j["rotation_residuals_deg"]) == j["pairs"] == 105
    assert "camera to hand" in r.stdout and "residuals" in r.stdout


def test_calibrate_hand_eye_bad_inputs(tmp_path: Path) -> None:
    hand, camera, _ = _poses()
    robot = _write_poses(tmp_path / "robot.csv", hand)
    short = _write_poses(tmp_path / "camera.csv", camera[:-1])
    assert_input_error(run_cli("calibrate", "hand-eye", robot, short), "robot.csv", "one to one")
    flat, flat_cam, _ = _poses(axes=np.array([[0.0, 1.0, 0.0]]))
    r = run_cli(
        "calibrate", "hand-eye", _write_poses(tmp_path / "r1.csv", flat), _write_poses(tmp_path / "c1.csv", flat_cam)
    )
    assert_input_error(r, "one axis")
