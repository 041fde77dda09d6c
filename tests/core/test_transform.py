import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from igikit.core import Transform
from igikit.errors import InputError


def _random_rigid(rng: np.random.Generator) -> Transform:
    r = Rotation.random(random_state=rng).as_matrix()
    return Transform.from_rotation_translation(r, rng.uniform(-100, 100, 3))


def test_compose_apply_and_inverse() -> None:
    rng = np.random.default_rng(0)
    a, b = _random_rigid(rng), _random_rigid(rng)
    p = rng.uniform(-200, 200, (20, 3))
    assert np.allclose((a @ b).apply(p), a.apply(b.apply(p)), atol=1e-10)
    assert np.allclose(a.inverse().apply(a.apply(p)), p, atol=1e-10)
    assert (a @ a.inverse()).is_identity()
    assert a.is_rigid()


def test_affine_inverse_and_vectors() -> None:
    m = np.array([[2.0, 0.3, 0.0, 5.0], [0.0, 1.5, 0.1, -3.0], [0.2, 0.0, 0.7, 1.0], [0, 0, 0, 1]])
    t = Transform(m)
    p = np.array([[1.0, 2.0, 3.0]])
    assert not t.is_rigid()
    assert np.allclose(t.inverse().apply(t.apply(p)), p)
    assert np.allclose(t.apply_vectors([1.0, 0.0, 0.0]), m[:3, 0])


def test_names_follow_composition() -> None:
    tool_to_tracker = Transform.identity(source="tool", target="tracker")
    tracker_to_image = Transform.identity(source="tracker", target="image")
    chain = tracker_to_image @ tool_to_tracker
    assert (chain.source, chain.target) == ("tool", "image")
    assert (chain.inverse().source, chain.inverse().target) == ("image", "tool")


def test_to_and_from_simpleitk_keep_the_point_mapping() -> None:
    rng = np.random.default_rng(3)
    t = _random_rigid(rng)
    p = rng.uniform(-50, 50, (10, 3))
    s = t.to_sitk()
    assert np.allclose([s.TransformPoint(tuple(q)) for q in p], t.apply(p), atol=1e-9)
    euler = sitk.Euler3DTransform((10.0, -20.0, 5.0), 0.1, -0.2, 0.3, (1.0, 2.0, 3.0))
    back = Transform.from_sitk(euler)
    assert np.allclose([euler.TransformPoint(tuple(q)) for q in p], back.apply(p), atol=1e-9)
    sim2d = sitk.Similarity2DTransform(1.2, 0.4, (3.0, -1.0), (5.0, 5.0))
    back2 = Transform.from_sitk(sim2d)
    q = rng.uniform(-10, 10, (5, 2))
    assert np.allclose([sim2d.TransformPoint(tuple(x)) for x in q], back2.apply(q), atol=1e-9)
    shift = Transform.from_sitk(sitk.TranslationTransform(3, (1.0, 2.0, 3.0)))
    assert np.allclose(shift.apply([0, 0, 0]), [1, 2, 3])


def test_from_simpleitk_composite_applies_last_added_first() -> None:
    a = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, 0.5, (1.0, 0.0, 0.0))
    b = sitk.TranslationTransform(3, (0.0, 5.0, 0.0))
    comp = sitk.CompositeTransform([a, b])
    p = (1.0, 2.0, 3.0)
    assert np.allclose(Transform.from_sitk(comp).apply(p), comp.TransformPoint(p), atol=1e-9)


def test_resampling_with_the_inverse_moves_the_image_as_documented() -> None:
    # a bright voxel moved by moving_to_fixed (+4 mm in x) must land 4 voxels further in x
    arr = np.zeros((1, 1, 16), np.float32)
    arr[0, 0, 5] = 1.0
    img = sitk.GetImageFromArray(arr)
    moving_to_fixed = Transform.from_rotation_translation(np.eye(3), [4.0, 0.0, 0.0])
    out = sitk.Resample(img, img, moving_to_fixed.inverse().to_sitk(), sitk.sitkNearestNeighbor)
    assert int(np.argmax(sitk.GetArrayFromImage(out)[0, 0])) == 9


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.eye(5), "3x3"),
        (np.zeros((4, 4)), "last row"),
        (np.diag([1.0, 1.0, 0.0, 1.0]), "singular"),
        (np.full((4, 4), np.nan), "non-finite"),
    ],
)
def test_invalid_matrices_are_refused(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Transform(matrix)


def _points_through(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    return np.array([transform.TransformPoint(tuple(float(v) for v in p)) for p in points])


@pytest.mark.parametrize("dim", [2, 3])
def test_compose_and_inverse_agree_with_simpleitk(dim: int) -> None:
    """SimpleITK's own composite and inverse map points as compose() and inverse() do (1e-9 mm)."""
    rng = np.random.default_rng(11 + dim)
    affine = Transform.from_rotation_translation(
        np.eye(dim) + rng.uniform(-0.3, 0.3, (dim, dim)), rng.uniform(-80, 80, dim)
    )
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    rigid = Transform.from_rotation_translation(q * np.sign(np.linalg.det(q)), rng.uniform(-80, 80, dim))
    p = rng.uniform(-300, 300, (25, dim))
    for a, b in ((affine, rigid), (rigid, affine), (rigid, rigid)):
        # ITK applies the last-added transform first: [a, b] maps p to a(b(p)).
        composite = sitk.CompositeTransform([a.to_sitk(), b.to_sitk()])
        np.testing.assert_allclose((a @ b).apply(p), _points_through(composite, p), atol=1e-9, rtol=0)
        inv = a.to_sitk().GetInverse()
        np.testing.assert_allclose(a.inverse().apply(p), _points_through(inv, p), atol=1e-9, rtol=0)
        back = Transform.from_sitk(composite)
        np.testing.assert_allclose(back.matrix, (a @ b).matrix, atol=1e-12, rtol=0)


def test_from_simpleitk_affine_with_a_centre_keeps_the_point_mapping() -> None:
    rng = np.random.default_rng(5)
    s = sitk.AffineTransform(3)
    s.SetMatrix(tuple((np.eye(3) + rng.uniform(-0.2, 0.2, (3, 3))).ravel()))
    s.SetTranslation((4.0, -7.0, 2.5))
    s.SetCenter((120.0, -40.0, 310.0))
    p = rng.uniform(-200, 200, (20, 3))
    np.testing.assert_allclose(Transform.from_sitk(s).apply(p), _points_through(s, p), atol=1e-9, rtol=0)


def test_inverse_of_real_tracker_poses_is_exact(data_dir) -> None:
    """Poses of a real optical tracker (float32-rounded rotations, 2 m from the camera).

    Their rotations are orthonormal only to about 1e-7, so a transpose is not their inverse: the
    inverse must undo the pose to round-off, here 1e-9 mm at 2 m.
    """
    rows = np.loadtxt(data_dir / "tracking/pivot_poses.csv", delimiter=",", skiprows=1)
    tip_mm = np.array([[0.0, 0.0, 0.0], [12.5, -3.0, 160.0], [-40.0, 25.0, -10.0]])
    worst_mm = 0.0
    for row in rows[::10]:
        pose = Transform(row[1:].reshape(4, 4), source="tool", target="tracker")
        assert pose.is_rigid()  # orthonormal to the tolerance a tracker's output has
        in_tracker = pose.apply(tip_mm)
        worst_mm = max(worst_mm, float(np.abs(pose.inverse().apply(in_tracker) - tip_mm).max()))
        theirs = _points_through(pose.to_sitk().GetInverse(), in_tracker)
        np.testing.assert_allclose(pose.inverse().apply(in_tracker), theirs, atol=1e-9, rtol=0)
    assert worst_mm < 1e-9, worst_mm
