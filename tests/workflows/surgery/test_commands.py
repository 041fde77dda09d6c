"""``igikit register points`` and ``igikit calibrate pivot`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tests.conftest import assert_input_error, run_cli

PTS = np.array([[0, 0, 0], [50, 0, 0], [0, 60, 0], [0, 0, 70], [30, 30, 30.0]])


def _write(path: Path, rows, header: str | None = "x,y,z") -> Path:
    text = "" if header is None else header + "\n"
    text += "".join(",".join(str(v) for v in row) + "\n" for row in rows)
    path.write_text(text)
    return path


def test_register_points_json_and_stdout(tmp_path: Path) -> None:
    rot = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    fixed = PTS @ rot.T + [100, -50, 2000]
    fixed[3] += [0, 0, 3.0]  # one badly localised fiducial
    f = _write(tmp_path / "f.csv", fixed)
    m = _write(tmp_path / "m.csv", PTS)
    t = _write(tmp_path / "t.csv", [[10, 10, 10.0], [200, 0, 0]])
    out = tmp_path / "r.json"
    r = run_cli("register", "points", f, m, "--targets", t, "--fle-mm", "0.3", "--json", out)
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    matrix = np.array(j["matrix"])
    assert matrix.shape == (4, 4) and np.allclose(matrix[3], [0, 0, 0, 1])
    assert j["fre_mm"] == pytest.approx(np.sqrt(np.mean(np.square(j["residuals_mm"]))))
    assert len(j["residuals_mm"]) == 5
    assert j["worst_fiducial"]["index"] == 3 and j["worst_fiducial"]["name"] == "point 4"
    assert [tg["point_mm"] for tg in j["targets"]] == [[10, 10, 10], [200, 0, 0]]
    assert 0 < j["targets"][0]["tre_mm"] < j["targets"][1]["tre_mm"]
    assert "FRE" in r.stdout and "worst fiducial: point 4" in r.stdout and "TRE" in r.stdout


def test_register_points_exact_and_scale(tmp_path: Path) -> None:
    f = _write(tmp_path / "f.csv", 2 * PTS + [1, 2, 3], header=None)  # no header line
    m = _write(tmp_path / "m.csv", PTS, header="x,y,z")
    out = tmp_path / "r.json"
    r = run_cli("register", "points", f, m, "--scale", "--json", out)
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    np.testing.assert_allclose(
        np.array(j["matrix"]), [[2, 0, 0, 1], [0, 2, 0, 2], [0, 0, 2, 3], [0, 0, 0, 1]], atol=1e-9
    )
    assert j["scale"] == pytest.approx(2.0) and j["fre_mm"] < 1e-9 and j["worst_fiducial"] is None


def test_register_points_named_fiducials(tmp_path: Path) -> None:
    names = ["nasion", "tragus_l", "tragus_r", "vertex", "inion"]
    f = tmp_path / "f.csv"
    f.write_text("name,x,y,z\n" + "".join(f"{n},{p[0]},{p[1]},{p[2]}\n" for n, p in zip(names, PTS, strict=True)))
    m = _write(tmp_path / "m.csv", PTS)
    out = tmp_path / "r.json"
    assert run_cli("register", "points", f, m, "--json", out).returncode == 0
    assert json.loads(out.read_text())["fiducials"] == names


@pytest.mark.parametrize(
    ("fixed", "moving", "fragments"),
    [
        ("x,y,z\n0,0,0\n1,0,0\n", "x,y,z\n0,0,0\n1,0,0\n", ("2 points", "3 or more")),
        ("x,y,z\n0,0,0\n1,1,1\n2,2,2\n", "x,y,z\n0,0,0\n1,0,0\n0,1,0\n", ("f.csv", "collinear")),
        ("x,y,z\n0,0,0\n1,0,0\n0,1,0\n0,0,1\n", "x,y,z\n0,0,0\n1,0,0\n0,1,0\n", ("4 points", "3", "correspond")),
        ("x,y,z\n0,0,0\n1,0,zero\n0,1,0\n", "x,y,z\n0,0,0\n1,0,0\n0,1,0\n", ("f.csv", "line 3", "not a number")),
        ("x,y,z\n0,0,0\n1,0,nan\n0,1,0\n", "x,y,z\n0,0,0\n1,0,0\n0,1,0\n", ("f.csv", "line 3", "NaN")),
        ("x,y,z\n0,0,0\n1,0\n0,1,0\n", "x,y,z\n0,0,0\n1,0,0\n0,1,0\n", ("f.csv", "line 3", "2 values")),
        ("x,y,w\n0,0,0\n1,0,0\n0,1,0\n", "x,y,z\n0,0,0\n1,0,0\n0,1,0\n", ("f.csv", "unknown column header 'w'")),
    ],
)
def test_register_points_bad_input(tmp_path: Path, fixed: str, moving: str, fragments: tuple[str, ...]) -> None:
    (tmp_path / "f.csv").write_text(fixed)
    (tmp_path / "m.csv").write_text(moving)
    out = tmp_path / "r.json"
    r = run_cli("register", "points", tmp_path / "f.csv", tmp_path / "m.csv", "--json", out)
    assert_input_error(r, *fragments)
    assert not out.exists() and not list(tmp_path.glob(".r.json*"))


def test_register_points_missing_file(tmp_path: Path) -> None:
    assert_input_error(run_cli("register", "points", tmp_path / "no.csv", tmp_path / "no2.csv"), "no.csv")


def test_calibrate_pivot_on_the_real_recording(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "p.json"
    poses = data_dir / "tracking" / "pivot_poses.csv"
    r = run_cli("calibrate", "pivot", poses, "--json", out)
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    assert len(j["tip_offset_mm"]) == 3 and len(j["pivot_point_mm"]) == 3
    assert j["rms_mm"] == pytest.approx(3.184, abs=0.01) and all(j["inliers"]) and j["poses"] == 1151
    r = run_cli("calibrate", "pivot", poses, "--method", "ransac", "--json", out)
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    assert j["inlier_count"] == sum(j["inliers"]) < 1151 and j["rms_mm"] < 3.0
    assert "tip offset" in r.stdout


def _pose_rows(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rot = Rotation.from_rotvec(0.5 * rng.uniform(-1, 1, (n, 3)))
    mats = np.tile(np.eye(4), (n, 1, 1))
    mats[:, :3, :3] = rot.as_matrix()
    mats[:, :3, 3] = [10.0, 20.0, -1500.0] - rot.apply([0.0, 0.0, 120.0])
    return mats, rot.as_quat(scalar_first=True)


def test_calibrate_pivot_quaternion_and_device_formats(tmp_path: Path) -> None:
    mats, quats = _pose_rows()
    q = tmp_path / "q.csv"
    q.write_text(
        "t_s,x,y,z,qw,qx,qy,qz\n"
        + "".join(
            f"{i * 0.05},{','.join(map(str, m[:3, 3]))},{','.join(map(str, qq))}\n"
            for i, (m, qq) in enumerate(zip(mats, quats, strict=True))
        )
    )
    out = tmp_path / "p.json"
    assert run_cli("calibrate", "pivot", q, "--method", "sphere", "--json", out).returncode == 0
    np.testing.assert_allclose(json.loads(out.read_text())["tip_offset_mm"], [0, 0, 120], atol=1e-6)
    # an `igikit igtl record` file: t_s, device, m00..m33, with another device mixed in
    rec = tmp_path / "rec.csv"
    cols = ",".join(f"m{r}{c}" for r in range(4) for c in range(4))
    lines = [f"t_s,device,{cols}"]
    for i, m in enumerate(mats):
        lines.append(f"{i * 0.05},Pointer," + ",".join(map(str, m.reshape(-1))))
        lines.append(f"{i * 0.05},Reference," + ",".join(map(str, np.eye(4).reshape(-1))))
    rec.write_text("\n".join(lines) + "\n")
    r = run_cli("calibrate", "pivot", rec, "--device", "Pointer", "--json", out)
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    assert j["poses"] == 40
    np.testing.assert_allclose(j["pivot_point_mm"], [10, 20, -1500], atol=1e-6)


def test_calibrate_pivot_bad_input(tmp_path: Path) -> None:
    mats, _ = _pose_rows()
    cols = ",".join(f"m{r}{c}" for r in range(4) for c in range(4))

    def write(name: str, m: np.ndarray, header: str = cols) -> Path:
        p = tmp_path / name
        p.write_text(header + "\n" + "".join(",".join(map(str, x.reshape(-1))) + "\n" for x in m))
        return p

    bent = mats.copy()
    bent[4, 0, 0] *= 1.1
    assert_input_error(run_cli("calibrate", "pivot", write("bent.csv", bent)), "bent.csv", "line 6", "orthonormal")
    still = np.tile(mats[:1], (30, 1, 1))
    assert_input_error(run_cli("calibrate", "pivot", write("still.csv", still)), "still.csv", "too little rotation")
    assert_input_error(run_cli("calibrate", "pivot", write("two.csv", mats[:2])), "two.csv", "3 or more poses")
    assert_input_error(
        run_cli("calibrate", "pivot", write("hdr.csv", mats, cols.replace("m23", "q23"))), "unknown column header 'q23'"
    )
    text = (tmp_path / "bent.csv").read_text().splitlines()
    text[3] = text[3].replace(text[3].split(",")[5], "abc", 1)
    (tmp_path / "word.csv").write_text("\n".join(text) + "\n")
    assert_input_error(run_cli("calibrate", "pivot", tmp_path / "word.csv"), "word.csv", "line 4", "not a number")
    nan = write("nan.csv", mats)
    nan.write_text(nan.read_text().replace(str(mats[2, 1, 3]), "nan", 1))
    assert_input_error(run_cli("calibrate", "pivot", nan), "nan.csv", "line 4", "NaN")
    assert_input_error(run_cli("calibrate", "pivot", write("d.csv", mats), "--device", "X"), "no device column")
