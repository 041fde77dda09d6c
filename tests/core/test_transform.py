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
