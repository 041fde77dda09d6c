"""Surface registration on a label-map surface with noise, outliers, partial overlap; file readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from igikit.errors import InputError
from igikit.register.surface import Surface, icp_point_to_plane, read_surface, register_surface


def organ_label_map() -> np.ndarray:
    """An organ-like blob on a 1 mm grid (z, y, x): an ellipsoid with bumps, a lobe and a notch."""
    z, y, x = np.mgrid[-50:51, -40:41, -35:36].astype(float)
    r = np.sqrt((x / 30) ** 2 + (y / 38) ** 2 + (z / 46) ** 2)
    bumps = (
        0.12 * np.exp(-((x - 20) ** 2 + (y - 10) ** 2 + (z - 25) ** 2) / 150)
        + 0.10 * np.exp(-((x + 15) ** 2 + (y + 25) ** 2 + (z + 10) ** 2) / 200)
        - 0.08 * np.exp(-((x) ** 2 + (y - 30) ** 2 + (z + 30) ** 2) / 120)
    )
    lobe = np.sqrt(((x - 18) / 16) ** 2 + ((y + 20) / 22) ** 2 + ((z - 30) / 18) ** 2)
    notch = np.sqrt(((x + 28) / 12) ** 2 + ((y - 5) / 14) ** 2 + ((z + 5) / 30) ** 2)
    return (((r < 1 + bumps) | (lobe < 1)) & (notch > 1)).astype(np.uint8)


def organ_surface() -> Surface:
    """The label map's surface by marching cubes (after the usual light smoothing), in mm."""
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    verts, faces, _, _ = marching_cubes(gaussian_filter(organ_label_map().astype(float), 1.0), 0.5)
    return Surface(verts[:, ::-1] + [-35.0, -40.0, -50.0], faces[:, ::-1].astype(np.int64))


def true_transform(angle_deg: float = 30.0) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = Rotation.from_rotvec(np.deg2rad(angle_deg) * np.array([0.6, -0.48, 0.64])).as_matrix()
    t[:3, 3] = [12.0, -8.0, 5.0]
    return t


def scan(
    surface: np.ndarray,
    moving_to_fixed: np.ndarray,
    *,
    overlap: float = 0.6,
    outliers: float = 0.3,
    noise_mm: float = 1.0,
    points: int = 7000,
    seed: int = 0,
) -> np.ndarray:
    """An intra-operative scan in its own frame: the part of ``surface`` facing one way, noise, outliers."""
    rng = np.random.default_rng(seed)
    facing = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])
    proj = surface @ facing
    seen = surface[proj > np.quantile(proj, 1.0 - overlap)]
    seen = seen[rng.choice(len(seen), min(points, len(seen)), replace=False)]
    seen = seen + rng.normal(scale=noise_mm, size=seen.shape)
    n_out = round(outliers / (1.0 - outliers) * len(seen))
    lo, hi = surface.min(axis=0) - 10.0, surface.max(axis=0) + 10.0
    cloud = np.vstack([seen, rng.uniform(lo, hi, (n_out, 3))])
    rot, t = moving_to_fixed[:3, :3], moving_to_fixed[:3, 3]
    out: np.ndarray = (cloud - t) @ rot  # the inverse of the moving-to-fixed map
    return out


def errors(estimate: np.ndarray, truth: np.ndarray, surface: np.ndarray) -> tuple[float, float]:
    """Rotation error (deg) and RMS displacement of the surface (mm) between two moving-to-fixed maps."""
    angle = np.rad2deg(Rotation.from_matrix(estimate[:3, :3] @ truth[:3, :3].T).magnitude())
    m = (surface - truth[:3, 3]) @ truth[:3, :3]
    disp = (m @ estimate[:3, :3].T + estimate[:3, 3]) - surface
    return float(angle), float(np.sqrt(np.mean(np.sum(disp**2, axis=1))))


@pytest.fixture(scope="module")
def organ() -> Surface:
    return organ_surface()


def test_label_map_surface_noise_outliers_partial_overlap(organ: Surface) -> None:
    truth = true_transform(30.0)
    moving = scan(organ.points_mm, truth)
    res = register_surface(organ, moving)
    angle, disp = errors(res.matrix, truth, organ.points_mm)
    assert angle < 0.5 and disp < 0.5, (angle, disp)
    assert np.linalg.norm(res.matrix[:3, 3] - truth[:3, 3]) < 0.5
    assert res.warnings == []
    # 70 % of the points are on the surface; a few outliers fall within the inlier band
    assert 0.68 < res.inlier_fraction < 0.8
    assert 0.8 < res.rms_mm < 1.3  # 1 mm noise along the normal, trimmed at 3 sigma
    assert res.inliers.shape == (len(moving),) and res.transform.source == "moving"


def test_sphere_is_ambiguous() -> None:
    rng = np.random.default_rng(5)
    v = rng.normal(size=(6000, 3))
    sphere = 40.0 * v / np.linalg.norm(v, axis=1, keepdims=True)
    truth = true_transform(30.0)
    moving = scan(sphere, truth, overlap=0.7, outliers=0.0, noise_mm=0.5, points=3000, seed=6)
    res = register_surface(sphere, moving)
    assert any("ambiguous" in w for w in res.warnings), res.warnings
    # the translation (the centre) is still found; only the rotation is not determined
    centre = res.transform.apply(-truth[:3, :3].T @ truth[:3, 3])
    assert np.linalg.norm(centre) < 1.0


def test_icp_exact_far_from_origin() -> None:
    rng = np.random.default_rng(7)
    u, w = rng.uniform(-40, 40, (2, 3000))
    # a saddle in tracker space, far from the origin
    fixed = np.c_[u, w, 0.002 * u**2 - 0.003 * w**2 + 0.01 * u * w] + [500.0, -300.0, 1800.0]
    normals = np.c_[-(0.004 * u + 0.01 * w), -(-0.006 * w + 0.01 * u), np.ones_like(u)]
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    truth = np.eye(4)
    truth[:3, :3] = Rotation.from_rotvec([0.01, -0.02, 0.015]).as_matrix()
    truth[:3, 3] = [1.0, -0.5, 0.8]
    moving = (fixed[::2] - truth[:3, 3]) @ truth[:3, :3]
    est = icp_point_to_plane(moving, fixed, normals, np.eye(4), max_distance_mm=10.0, tukey_mm=10.0, iterations=100)
    np.testing.assert_allclose(est, truth, atol=1e-6)


@pytest.mark.parametrize("ext", [".ply", ".stl", ".vtk"])
def test_read_mesh_formats(tmp_path: Path, ext: str) -> None:
    import meshio

    pts = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10.0]])
    tris = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    path = tmp_path / f"tet{ext}"
    meshio.write(path, meshio.Mesh(pts, [("triangle", tris)]), binary=ext == ".stl")
    s = read_surface(path)
    assert s.triangles is not None and len(s.triangles) == 4
    # STL repeats vertices per triangle; every corner must be there
    assert {tuple(p) for p in np.round(s.points_mm, 6)} == {tuple(p) for p in pts}


def test_read_csv_and_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "cloud.csv"
    good.write_text("x,y,z\n0,0,0\n1,0,0\n0,1,0\n0,0,1\n")
    assert read_surface(good).points_mm.shape == (4, 3) and read_surface(good).triangles is None
    with pytest.raises(InputError, match=r"unknown surface file extension '\.obj'"):
        read_surface(tmp_path / "a.obj")
    two = tmp_path / "two.csv"
    two.write_text("0,0,0\n1,0,0\n")
    with pytest.raises(InputError, match="3 or more points"):
        read_surface(two)
    nan = tmp_path / "nan.csv"
    nan.write_text("0,0,0\n1,0,0\nnan,1,0\n")
    with pytest.raises(InputError, match="NaN"):
        read_surface(nan)
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"not a ply file\n")
    with pytest.raises(InputError, match="cannot read it as PLY"):
        read_surface(junk)


def test_collinear_and_bad_init() -> None:
    line = np.c_[np.arange(10.0), np.zeros(10), np.zeros(10)]
    plane = np.random.default_rng(0).uniform(0, 10, (50, 3))
    with pytest.raises(InputError, match="moving points are collinear"):
        register_surface(plane, line)
    with pytest.raises(InputError, match="last row"):
        register_surface(plane, plane, init=np.ones((4, 4)))
