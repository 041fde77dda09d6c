import numpy as np
import pytest
import SimpleITK as sitk

from igikit.core import Image
from igikit.errors import GeometryError, InputError


def _oblique_direction(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q


@pytest.mark.parametrize("dim", [2, 3])
def test_index_to_physical_agrees_with_simpleitk(dim: int) -> None:
    rng = np.random.default_rng(dim)
    shape = (7, 9, 11)[:dim]
    im = Image(
        rng.normal(size=shape),
        spacing_mm=tuple(rng.uniform(0.3, 5.0, dim)),
        origin_mm=tuple(rng.uniform(-300, 300, dim)),
        direction=_oblique_direction(rng, dim),
    )
    ref = im.to_sitk()
    idx = rng.uniform(-3, 12, size=(50, dim))
    ours = im.index_to_physical(idx)
    theirs = np.array([ref.TransformContinuousIndexToPhysicalPoint(tuple(i)) for i in idx])
    assert np.max(np.abs(ours - theirs)) < 1e-9
    back = im.physical_to_index(ours)
    theirs_back = np.array([ref.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in theirs])
    assert np.max(np.abs(back - idx)) < 1e-9
    assert np.max(np.abs(back - theirs_back)) < 1e-9


def test_sitk_round_trip_keeps_geometry_and_values() -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 4000, size=(5, 6, 7)).astype(np.int16)
    im = Image(arr, (0.9, 1.1, 3.0), (-10.0, 20.0, 30.0), _oblique_direction(rng, 3), modality="CT")
    back = Image.from_sitk(im.to_sitk())
    assert back.same_grid(im)
    assert np.array_equal(back.array, arr)
    assert back.size == (7, 6, 5)


def test_series_frame_times_and_frames() -> None:
    arr = np.arange(4 * 3 * 5, dtype=np.float32).reshape(4, 3, 5)
    im = Image(arr, (1.5, 1.5), frame_times_s=[0.0, 0.2, 0.4, 0.6])
    assert im.is_series and im.n_frames == 4 and im.dim == 2 and im.size == (5, 3)
    f2 = im.frame(2)
    assert not f2.is_series
    assert f2.meta["frame_time_s"] == pytest.approx(0.4)
    assert np.array_equal(f2.array, arr[2])
    s = im.to_sitk()
    assert s.GetSize() == (5, 3, 4)
    assert s.GetSpacing()[2] == pytest.approx(0.2)
    back = Image.from_sitk(s, series=True)
    assert np.allclose(back.frame_times_s, [0.0, 0.2, 0.4, 0.6])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"array": np.zeros(5)}, "not a 2D or 3D image"),
        ({"array": np.zeros((3, 3)), "spacing_mm": (1.0, 0.0)}, "positive"),
        ({"array": np.zeros((3, 3)), "spacing_mm": (1.0, 1.0, 1.0)}, "3 values"),
        ({"array": np.zeros((3, 3)), "direction": np.zeros((2, 2))}, "singular"),
        ({"array": np.zeros((3, 3, 3)), "frame_times_s": [0, 1]}, "2 frame times for 3 frames"),
        ({"array": np.zeros((3, 3, 3)), "frame_times_s": [0, 1, 1]}, "strictly increasing"),
        ({"array": np.zeros((3, 3)), "origin_mm": (np.nan, 0.0)}, "non-finite"),
    ],
)
def test_invalid_images_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Image(**kwargs)


def test_require_same_grid_names_the_difference() -> None:
    a = Image(np.zeros((4, 4)), (1.0, 1.0))
    with pytest.raises(GeometryError, match="size"):
        a.require_same_grid(Image(np.zeros((4, 5))))
    with pytest.raises(GeometryError, match="spacing_mm"):
        a.require_same_grid(Image(np.zeros((4, 4)), (1.0, 2.0)))
    with pytest.raises(GeometryError, match="origin_mm"):
        a.require_same_grid(Image(np.zeros((4, 4)), (1.0, 1.0), (0.0, 5.0)))
    a.require_same_grid(Image(np.ones((4, 4)), (1.0, 1.0)))


def test_image_is_immutable_geometry() -> None:
    im = Image(np.zeros((2, 2)))
    with pytest.raises(AttributeError):
        im.spacing_mm = (2.0, 2.0)  # type: ignore[misc]
    with pytest.raises(ValueError):
        im.direction[0, 0] = 5.0


def test_describe_prints_geometry_and_range() -> None:
    im = Image(np.array([[0.0, 2.5], [1.0, np.nan]]), (1.818, 1.818), modality="MR")
    text = im.describe()
    assert "1.818" in text and "MR" in text and "0 .. 2.5" in text and "non-finite values: 1" in text


def test_from_sitk_reads_magdeburg_as_volume(data_dir) -> None:
    path = data_dir / "cine/magdeburg_liver/images/magdeburg_liver_frames.mha"
    im = Image.from_sitk(sitk.ReadImage(str(path)))
    assert im.array.shape == (176, 140, 498)
    assert im.spacing_mm[1] == pytest.approx(1.818)


def _sitk_index_to_point(ref: sitk.Image, idx: np.ndarray) -> np.ndarray:
    return np.array([ref.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in i)) for i in idx])


def test_non_orthonormal_direction_agrees_with_simpleitk() -> None:
    # ITK accepts any invertible direction (sheared reconstructions); so must the conversion.
    direction = np.array([[0.98, 0.31, 0.0], [0.12, 0.95, 0.22], [0.0, 0.08, 0.91]])
    im = Image(np.zeros((4, 5, 6)), (0.45, 2.2, 3.7), (-310.5, 12.25, 977.0), direction)
    ref = im.to_sitk()
    idx = np.random.default_rng(4).uniform(-2, 8, (40, 3))
    points = im.index_to_physical(idx)
    assert np.max(np.abs(points - _sitk_index_to_point(ref, idx))) < 1e-9
    theirs_back = np.array([ref.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in points])
    assert np.max(np.abs(im.physical_to_index(points) - theirs_back)) < 1e-9


def test_series_frames_share_the_spatial_geometry_of_simpleitk() -> None:
    """A series converts spatial indices only; each frame is the spatial image SimpleITK sees."""
    rng = np.random.default_rng(9)
    q, _ = np.linalg.qr(rng.normal(size=(2, 2)))
    series = Image(
        np.zeros((3, 6, 8), np.float32), (1.818, 0.7), (55.5, -120.25), q, frame_times_s=[0.0, 0.1675, 0.335]
    )
    frame = series.frame(1)
    ref = frame.to_sitk()
    assert ref.GetDimension() == 2
    idx = rng.uniform(-1, 9, (30, 2))
    assert np.max(np.abs(series.index_to_physical(idx) - _sitk_index_to_point(ref, idx))) < 1e-9
    assert np.max(np.abs(frame.index_to_physical(idx) - series.index_to_physical(idx))) == 0.0
    with pytest.raises(InputError, match="3 components, the image has 2"):
        series.index_to_physical([1.0, 2.0, 3.0])
