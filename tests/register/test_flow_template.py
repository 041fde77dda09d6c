"""Fast 2D registration building blocks: NCC template matching with motion continuity, optical flow."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from igikit.errors import InputError
from igikit.register.flow2d import FlowRegistration2D, warp
from igikit.register.template import match_template


def _blobs(centres: list[tuple[float, float]], shape: tuple[int, int] = (96, 96)) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape, np.float32)
    for r, c in centres:
        img += np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * 4.0**2)).astype(np.float32)
    return (200 * img + 20).astype(np.uint8)


def test_continuity_keeps_the_match_on_the_expected_look_alike() -> None:
    img = _blobs([(30, 30), (30, 62)])  # two identical structures 32 px apart
    template = _blobs([(16, 16)], (32, 32))
    free = match_template(img, template)
    assert free.second_score > 0.9  # ambiguous without a prior
    near_right = match_template(img, template, expected_rc=(14.0, 45.0), continuity=0.2, continuity_px=20.0)
    near_left = match_template(img, template, expected_rc=(14.0, 15.0), continuity=0.2, continuity_px=20.0)
    assert abs(near_right.col - 46.0) < 0.5 and abs(near_left.col - 14.0) < 0.5
    assert near_right.score > 0.99  # the reported score stays the plain NCC


@pytest.mark.parametrize("algorithm", ["dis", "farneback"])
def test_flow_registration_recovers_a_known_shift(algorithm: str) -> None:
    rng = np.random.default_rng(0)
    ref = (ndimage.gaussian_filter(rng.uniform(0, 255, (80, 80)), 2.0) * 3 - 200).clip(0, 255).astype(np.uint8)
    moving = ndimage.shift(ref.astype(np.float32), (2.5, -1.5), order=1, mode="nearest").astype(np.uint8)
    reg = FlowRegistration2D(ref, algorithm=algorithm)
    flow = reg.register(moving)
    inner = flow[15:-15, 15:-15]
    assert np.allclose(np.median(inner[..., 1]), -2.5, atol=0.3)  # reference(x + flow) = moving(x)
    assert np.allclose(np.median(inner[..., 0]), 1.5, atol=0.3)
    err = np.abs(warp(ref, flow).astype(float) - moving)[15:-15, 15:-15]
    assert err.mean() < 6.0


def test_unknown_flow_algorithm_is_refused() -> None:
    with pytest.raises(InputError, match="optical flow algorithm"):
        FlowRegistration2D(np.zeros((8, 8), np.uint8), algorithm="horn")
