"""The breathing deformation is smooth and invertible, and its inverse is accurate."""

from __future__ import annotations

import numpy as np
import pytest

from igikit.errors import InputError
from igikit.sim.cine import _BACKGROUNDS
from igikit.sim.deformation import _sample_field, breathing_motion_model, invert_displacement, jacobian_determinant

GRIDS = {"magdeburg_liver": ((176, 140), (1.818, 1.818)), "eth_thorax": ((270, 270), (1.0, 1.0))}


def _model(name: str, anchor_frac: tuple[float, float], seed: int):
    (h, w), sp = GRIDS[name]
    bg = _BACKGROUNDS[name]
    anchor = (anchor_frac[1] * (w - 1) * sp[0], anchor_frac[0] * (h - 1) * sp[1])
    return breathing_motion_model(
        (h, w), sp, anchor,
        diaphragm_y_mm=bg.diaphragm_row_frac * (h - 1) * sp[1],
        spine_x_mm=bg.spine_col_frac * (w - 1) * sp[0],
        rng=np.random.default_rng(seed),
    )


def _anchors(name: str) -> list[tuple[float, float]]:
    """Corners of every target box: the most extreme places a target may sit."""
    out = []
    for _, r0, r1, c0, c1 in _BACKGROUNDS[name].target_boxes:
        out += [(r0, c0), (r0, c1), (r1, c0), (r1, c1)]
    return out


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_jacobian_positive_everywhere_at_the_largest_motion(name: str) -> None:
    # The set's extremes: 25 mm SI plus 2 mm of drift, AP half of SI, 2 degrees of rotation.
    for k, anchor in enumerate(_anchors(name)):
        for seed in range(3):
            model = _model(name, anchor, 10 * k + seed)
            for sign in (1.0, -1.0):
                u = model.displacement(27.0 * sign, 12.5 * sign, np.deg2rad(2.0) * sign)
                jac = jacobian_determinant(u, model.spacing_mm)
                assert jac.min() > 0.5, (anchor, seed, jac.min())
                assert jac.max() < 2.0, (anchor, seed, jac.max())


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_field_is_smooth(name: str) -> None:
    model = _model(name, _anchors(name)[0], 0)
    u = model.displacement(25.0, 10.0, np.deg2rad(2.0))
    dx, dy = model.spacing_mm
    # Displacement changes by well under a pixel between neighbouring pixels, and its second
    # differences are tiny: no jumps, no folds, no pixel-scale noise.
    d1 = max(np.abs(np.diff(u, axis=0)).max() / dy, np.abs(np.diff(u, axis=1)).max() / dx)
    d2 = max(np.abs(np.diff(u, 2, axis=0)).max(), np.abs(np.diff(u, 2, axis=1)).max())
    assert d1 < 0.6
    assert d2 < 0.1 * min(dx, dy)


def test_anchor_moves_by_exactly_the_commanded_displacement() -> None:
    model = _model("eth_thorax", (0.85, 0.4), 3)
    u = model.displacement(18.0, 6.0, np.deg2rad(1.5))
    ax, ay = model.anchor_mm
    ux, uy = _sample_field(u, np.array([[ax / model.spacing_mm[0]]]), np.array([[ay / model.spacing_mm[1]]]))[0, 0]
    assert ux == pytest.approx(-6.0, abs=1e-3)  # anterior = towards column 0
    assert uy == pytest.approx(18.0, abs=1e-3)  # inferior = towards the last row


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_inverse_composes_to_identity(name: str) -> None:
    model = _model(name, _anchors(name)[-1], 1)
    u = model.displacement(25.0, 12.5, np.deg2rad(2.0))
    v = invert_displacement(u, model.spacing_mm)
    h, w = model.shape_hw
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    dx, dy = model.spacing_mm
    # y + v(y) is the source point; moving it forward must land back on y (away from the border,
    # where the source point may lie outside the frame).
    back = v + _sample_field(u, cols + v[..., 0] / dx, rows + v[..., 1] / dy)
    inner = np.s_[30:-30, 30:-30]
    # The floor (~0.02 mm) is OpenCV's bilinear interpolation, which rounds positions to 1/32 px.
    assert np.abs(back[inner]).max() < 0.05


def test_zero_nonuniformity_is_a_translation() -> None:
    model = breathing_motion_model(
        (50, 60), (1.5, 1.5), (40.0, 30.0), diaphragm_y_mm=20.0, spine_x_mm=70.0, nonuniformity=0.0,
        rng=np.random.default_rng(0),
    )
    u = model.displacement(10.0, 3.0, 0.0)
    assert np.allclose(u[..., 0], -3.0, atol=1e-5)
    assert np.allclose(u[..., 1], 10.0, atol=1e-5)


def test_anchor_outside_frame_is_an_input_error() -> None:
    with pytest.raises(InputError, match="outside"):
        breathing_motion_model((50, 60), (1.0, 1.0), (100.0, 30.0), diaphragm_y_mm=20.0, spine_x_mm=50.0)
