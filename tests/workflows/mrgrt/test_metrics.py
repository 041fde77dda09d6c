import numpy as np
import pytest

from igikit.workflows.mrgrt.metrics import dose_metric, evaluate_sequence


def _moving_disc(shape=(96, 96), n=12, radius=8, step_px=1.0):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    frames = []
    for t in range(n):
        cy, cx = 48 + step_px * t * 0.5, 40 + step_px * t
        frames.append((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2)
    return np.stack(frames, axis=2).astype(np.uint8)


def test_perfect_tracking_scores_perfectly() -> None:
    truth = _moving_disc()
    m = evaluate_sequence(truth, truth, (1.5, 1.5))
    assert m["dsc"][0] is None and m["scored_frames"] == truth.shape[2] - 1
    assert m["mean_dsc"] == 1.0 and m["mean_centroid_mm"] == 0.0 and m["mean_hd95"] == 0.0
    assert m["dose_d98_decrease_pct"] == pytest.approx(0.0, abs=1e-6)


def test_copy_first_label_is_penalised_in_proportion_to_motion() -> None:
    truth = _moving_disc(step_px=1.0)
    copy = np.repeat(truth[:, :, :1], truth.shape[2], axis=2)
    m = evaluate_sequence(copy, truth, (1.0, 1.0))
    expected = [np.hypot(0.5 * t, t) for t in range(1, truth.shape[2])]
    assert m["centroid_mm"][1:] == pytest.approx(expected, abs=0.05)
    assert m["mean_dsc"] < 0.9
    faster = evaluate_sequence(np.repeat(_moving_disc(step_px=2.0)[:, :, :1], 12, axis=2),
                               _moving_disc(step_px=2.0), (1.0, 1.0))
    assert faster["dose_d98_decrease_pct"] > m["dose_d98_decrease_pct"] > 0


def test_lung_uses_wider_blur_and_empty_truth_frames_are_skipped() -> None:
    truth = _moving_disc()
    truth[:, :, 5] = 0
    m = evaluate_sequence(truth, truth, (1.0, 1.0), scanned_region="lung")
    assert m["dose_sigma_mm"] == 6.0
    assert m["dsc"][5] is None and m["scored_frames"] == truth.shape[2] - 2


def test_dose_metric_lost_target_is_worst() -> None:
    truth = np.moveaxis(_moving_disc(step_px=0.0), 2, 0)
    lost = truth.copy()
    lost[1:] = 0
    assert dose_metric(lost, truth, (1.0, 1.0)) > 50.0
