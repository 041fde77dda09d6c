"""``ensemble_ai`` fusion: gating of the network, robust position, shape averaging, and the tracker."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from igikit.core.masks import dice
from igikit.errors import InputError
from igikit.workflows.mrgrt.tracking import TrackResult, soft_label

from .conftest import LEARN, tiny_config

SHAPE = (60, 60)


def disc(center_rc: tuple[float, float], radius: float = 8.0) -> np.ndarray:
    rr, cc = np.indices(SHAPE)
    return soft_label(np.hypot(rr - center_rc[0], cc - center_rc[1]) <= radius)


def member(center_rc: tuple[float, float], confidence: float = 0.9, radius: float = 8.0,
           **details: float) -> TrackResult:
    soft = disc(center_rc, radius)
    mask = soft >= 0.5
    c = ndimage.center_of_mass(mask)
    return TrackResult(mask.astype(np.uint8), confidence, (float(c[0]), float(c[1])), soft, details)


def network(center_rc: tuple[float, float], **details: float) -> TrackResult:
    base = {"learning": 0.0, "fallback": 0.0, "qc_disagree": 0.0, "qc_uncertain": 0.0, "uncertainty": 0.0}
    return member(center_rc, **{**base, **details})


def test_signed_distance_follows_sub_pixel_shifts() -> None:
    from igikit.ai.fusion import _shift, signed_distance

    def crossing(column: np.ndarray) -> float:  # the last rising zero crossing, linearly interpolated
        i = int(np.flatnonzero((column[:-1] < 0) & (column[1:] >= 0))[-1])
        return float(i + column[i] / (column[i] - column[i + 1]))

    crossings = []
    for shift in (0.0, 0.25, 0.5, 0.75):
        soft = _shift(disc((30.0, 30.0)), np.array([shift, 0.0]))
        crossings.append(crossing(signed_distance(soft)[:, 30]))
        assert crossings[-1] == pytest.approx(crossing(0.5 - soft[:, 30]), abs=0.1)  # the map's own 0.5 level
    np.testing.assert_allclose(np.diff(crossings), 0.25, atol=0.05)  # sub-pixel moves, not pixel snaps
    assert signed_distance(np.zeros(SHAPE)).min() > 0 and signed_distance(np.ones(SHAPE)).max() < 0


def test_network_counts_only_when_it_answers_itself() -> None:
    from igikit.ai.fusion import MemberFusion

    fusion = MemberFusion((1.0, 1.0))
    template, registration = member((30, 30)), member((30, 31))
    for gated in ({"learning": 1.0}, {"fallback": 1.0}, {"qc_disagree": 1.0}, {"qc_uncertain": 1.0}):
        soft, _, details = fusion(template, registration, network((30, 36), **gated))
        assert details["ai_weight"] == 0.0 and details["ai_trusted"] == 0.0, gated
        assert dice(soft >= 0.5, registration.soft >= 0.5) > 0.9
    soft, _, details = fusion(template, registration, network((30, 32)))
    assert details["ai_trusted"] == 1.0 and details["ai_weight"] > 0.3


def test_uncertain_network_weighs_less() -> None:
    from igikit.ai.fusion import FusionConfig, MemberFusion

    cfg = FusionConfig(uncertainty_scale=0.05)
    sure = MemberFusion((1.0, 1.0), cfg)(member((30, 30)), member((30, 30)), network((30, 31), uncertainty=0.0))[2]
    unsure = MemberFusion((1.0, 1.0), cfg)(member((30, 30)), member((30, 30)), network((30, 31), uncertainty=0.1))[2]
    assert unsure["ai_weight"] < 0.5 * sure["ai_weight"]


def test_a_lost_member_does_not_drag_the_position() -> None:
    from igikit.ai.fusion import MemberFusion

    fusion = MemberFusion((1.0, 1.0))
    soft, confidence, details = fusion(member((10, 50)), member((30, 30)), network((30, 30.5)))
    c = ndimage.center_of_mass(soft >= 0.5)
    assert np.hypot(c[0] - 30, c[1] - 30.25) < 0.5
    assert details["template_weight"] < 0.01 and details["template_offset_mm"] > 20
    agreed = MemberFusion((1.0, 1.0))(member((30, 30)), member((30, 30)), network((30, 30.5)))[1]
    assert confidence < 0.8 * agreed  # a member far from the others lowers the confidence


def test_shape_is_the_average_of_the_deformable_members() -> None:
    from igikit.ai.fusion import FusionConfig, MemberFusion

    for how in ("soft", "logit", "sdf"):
        fusion = MemberFusion((1.0, 1.0), FusionConfig(shape=how, template_weight=0.0, uncertainty_scale=None))
        soft, _, _ = fusion(member((30, 30)), member((30, 30), radius=7.0), network((30, 30), radius=9.0))
        area = float((soft >= 0.5).sum())
        assert area == pytest.approx(np.pi * 8.0**2, rel=0.08), (how, area)


def test_config_is_checked() -> None:
    from igikit.ai.fusion import FusionConfig

    with pytest.raises(InputError, match="shape fusion"):
        FusionConfig(shape="median")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="weights"):
        FusionConfig(ai_weight=-1.0)
    with pytest.raises(InputError, match="memory"):
        FusionConfig(memory=1.0)


def test_ensemble_ai_tracks_and_shares_the_registration(sequence) -> None:
    from igikit.ai.fusion import AIEnsembleTracker
    from igikit.workflows.mrgrt.tracking import make_tracker, track_sequence

    frames, truth = sequence
    ens = make_tracker("ensemble_ai", learning_frames=LEARN, config=tiny_config())
    assert isinstance(ens, AIEnsembleTracker)
    seq = track_sequence(frames, truth[:, :, 0], (1.0, 1.0), ens)
    held_out = range(LEARN, truth.shape[2])
    fused = np.mean([dice(seq.labels[:, :, t], truth[:, :, t]) for t in held_out])
    copy = np.mean([dice(truth[:, :, 0], truth[:, :, t]) for t in held_out])
    assert fused > 0.85 and fused > copy + 0.2, (fused, copy)
    _, registration, ai = ens.last_members
    assert registration is ens.ai.last_registration and ai.details["learning"] == 0.0
    assert all(seq.details[t]["ai_trusted"] == 0.0 for t in range(1, LEARN))  # learning phase
    assert any(seq.details[t]["ai_trusted"] == 1.0 for t in held_out)
    with pytest.raises(InputError, match="qc=True"):
        AIEnsembleTracker(_no_registration())


def _no_registration():  # an AI tracker that would run no registration tracker
    import dataclasses

    from igikit.ai.tracker import AITracker

    return AITracker(LEARN, dataclasses.replace(tiny_config(), prior=False), qc=False)
