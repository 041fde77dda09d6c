import numpy as np
import pytest

from igikit.core.masks import centroid_mm, compare_masks, dice
from igikit.errors import GeometryError


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_dice_known_values() -> None:
    a = _disc((64, 64), (32, 32), 10)
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    half = a.copy()
    half[:, 32:] = False
    assert dice(a, half) == pytest.approx(2 * half.sum() / (a.sum() + half.sum()))


def test_shifted_disc_distances_in_mm() -> None:
    spacing = (2.0, 0.5)  # rows 2 mm apart, columns 0.5 mm apart
    a = _disc((80, 200), (40, 100), 12)
    b = np.roll(a, 3, axis=0)  # 3 rows = 6 mm
    c = compare_masks(b, a, spacing)
    assert c.centroid_error_mm == pytest.approx(6.0, abs=1e-9)
    assert 3.0 <= c.hd95_mm <= 6.0 + 1e-9  # no surface point is farther than the shift
    assert 0 < c.masd_mm < c.hd95_mm
    c2 = compare_masks(np.roll(a, 3, axis=1), a, spacing)
    assert c2.centroid_error_mm == pytest.approx(1.5, abs=1e-9)


def test_hd95_uses_the_larger_direction() -> None:
    a = _disc((100, 100), (50, 50), 10)
    b = a.copy()
    b[5, 5] = True  # one far-away pixel: under 5% of the surface points, so HD95 ignores it
    c = compare_masks(b, a, (1.0, 1.0))
    assert c.hd95_mm < 50  # the blob is less than 5% of the surface
    big = a | _disc((100, 100), (15, 15), 6)
    assert compare_masks(big, a, (1.0, 1.0)).hd95_mm > 20


def test_empty_prediction_scores_like_trackrad() -> None:
    a = _disc((30, 40), (15, 20), 5)
    c = compare_masks(np.zeros_like(a), a, (1.0, 2.0))
    assert c.dsc == 0.0
    assert c.hd95_mm == pytest.approx(np.hypot(30, 80))
    assert np.all(np.isnan(centroid_mm(np.zeros_like(a), (1, 1))))


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(GeometryError):
        dice(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(GeometryError):
        compare_masks(np.ones((3, 3)), np.ones((3, 3)), (1.0,))
