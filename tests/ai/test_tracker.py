"""The AI tracker learns the target from its learning phase, causally, with uncertainty and explanations."""

from __future__ import annotations

import numpy as np

from igikit.core.masks import dice

from .conftest import LEARN, disc_sequence, tiny_config


def test_learns_target_better_than_copy(sequence, tracked) -> None:
    _, truth = sequence
    tracker, seq = tracked
    assert tracker.switch_frame == LEARN and tracker.train_time_s < 60
    held_out = range(LEARN, truth.shape[2])
    ai = np.mean([dice(seq.labels[:, :, t], truth[:, :, t]) for t in held_out])
    copy = np.mean([dice(truth[:, :, 0], truth[:, :, t]) for t in held_out])
    assert ai > 0.85 and ai > copy + 0.2, (ai, copy)
    assert all(seq.details[t]["learning"] == 0.0 for t in held_out)
    assert all(0.0 <= c <= 1.0 for c in seq.confidence)


def test_network_without_prior_learns_too(sequence) -> None:
    """The network alone (no registration prior) must find the target from the image."""
    import dataclasses

    from igikit.ai.tracker import AITracker
    from igikit.workflows.mrgrt.tracking import track_sequence

    frames, truth = sequence
    tracker = AITracker(LEARN, dataclasses.replace(tiny_config(), prior=False, steps=150), qc=False)
    seq = track_sequence(frames, truth[:, :, 0], (1.0, 1.0), tracker)
    held_out = range(LEARN, truth.shape[2])
    ai = np.mean([dice(seq.labels[:, :, t], truth[:, :, t]) for t in held_out])
    copy = np.mean([dice(truth[:, :, 0], truth[:, :, t]) for t in held_out])
    assert ai > copy + 0.2, (ai, copy)


def test_causal_and_quality_control(sequence, tracked) -> None:
    """Changing frames from t on does not change any output before t (training included); a
    corrupted frame afterwards lowers the confidence and says why."""
    from igikit.ai.tracker import AITracker
    from igikit.workflows.mrgrt.tracking import track_sequence

    frames, truth = sequence
    _, seq = tracked
    cut = LEARN + 6
    changed = frames.copy()
    changed[:, :, cut:] = disc_sequence(seed=7)[0][:, :, cut:]
    bad = cut + 3
    changed[:, :, bad] += np.random.default_rng(4).normal(0, 80, frames.shape[:2]).astype(np.float32)
    other = track_sequence(changed, truth[:, :, 0], (1.0, 1.0), AITracker(LEARN, tiny_config()))
    np.testing.assert_array_equal(other.labels[:, :, :cut], seq.labels[:, :, :cut])
    np.testing.assert_allclose(other.confidence[:cut], seq.confidence[:cut])
    clean = np.median(other.confidence[LEARN:bad])
    assert other.confidence[bad] < 0.6 * clean, (other.confidence[bad], clean)
    assert max(other.details[bad].get(k, 0.0) for k in ("qc_disagree", "qc_uncertain", "fallback")) == 1.0


def test_uncertainty_higher_on_corrupted_frame(sequence, tracked) -> None:
    frames, _ = sequence
    tracker, _ = tracked
    clean = frames[:, :, -1]
    rng = np.random.default_rng(3)
    corrupted = clean + rng.normal(0, 60, clean.shape).astype(np.float32)
    _, std_clean, agree_clean = tracker.uncertainty_map(clean)
    _, std_bad, agree_bad = tracker.uncertainty_map(corrupted)
    assert std_bad.sum() > 1.5 * std_clean.sum(), (std_bad.sum(), std_clean.sum())
    assert agree_bad < agree_clean


def test_saliency_highlights_target(sequence, tracked) -> None:
    frames, truth = sequence
    tracker, _ = tracked
    t = truth.shape[2] - 1
    sal = tracker.explain(frames[:, :, t])
    target = truth[:, :, t] > 0
    rr, cc = np.indices(target.shape)
    cr, cc0 = np.argwhere(target).mean(axis=0)
    in_window = sal.window.paste(np.ones((sal.window.size, sal.window.size)), target.shape) > 0.99
    far = (np.hypot(rr - cr, cc - cc0) > 12) & in_window
    assert far.sum() > 50
    assert sal.values.shape == target.shape and sal.png[:8] == b"\x89PNG\r\n\x1a\n"
    assert sal.values[target].mean() > 3 * sal.values[far].mean(), (sal.values[target].mean(), sal.values[far].mean())


def test_needs_a_model_before_explaining(sequence) -> None:
    import pytest

    from igikit.ai.tracker import AITracker
    from igikit.errors import InputError

    frames, truth = sequence
    tracker = AITracker(LEARN, tiny_config())
    tracker.start(frames[:, :, 0], truth[:, :, 0], (1.0, 1.0))
    with pytest.raises(InputError, match="learning phase"):
        tracker.explain(frames[:, :, 1])
