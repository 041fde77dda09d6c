"""The shipped confidence calibration of the gating tracker, and its use in the gating workflow."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from igikit.core.masks import centroid_mm
from igikit.errors import InputError
from igikit.io.trackrad import CineCase
from igikit.sim import CinePhantomSpec, make_case
from igikit.sim.cine import FrameCorruption
from igikit.stream import read_session
from igikit.supervise import AuditLog
from igikit.supervise.records import DecisionRecord
from igikit.workflows.mrgrt.confidence import (
    CALIBRATION_FILE,
    FEATURES,
    ConfidenceCalibrator,
    ConfidenceFeatures,
    ConfidenceModel,
    fit_logistic,
    shipped_model,
)
from igikit.workflows.mrgrt.operators import CONFIDENCE, RAW_CONFIDENCE
from igikit.workflows.mrgrt.tracking import track_sequence
from igikit.workflows.mrgrt.workflow import GatingRun, GatingSettings, SupervisionSettings, run_gating


def test_the_shipped_calibration_loads_with_its_card() -> None:
    model = ConfidenceModel.load(CALIBRATION_FILE)
    assert model == shipped_model()
    assert model.tracking_method == "ensemble" and model.tolerance_mm == 2.0 and model.features == FEATURES
    card = model.card
    for key in ("fitted_on", "held_out", "date", "ece_held_out_raw", "ece_held_out_calibrated", "min_confidence"):
        assert key in card, key
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", card["date"])
    assert card["ece_held_out_calibrated"] < card["ece_held_out_raw"]
    assert 0.5 <= model.min_confidence < 1


def test_the_shipped_calibration_is_monotone() -> None:
    model = shipped_model()
    raw = np.linspace(0.0, 1.0, 41)
    for held in (0.0, 0.5, 1.0):
        for motion in (0.0, 0.5, 2.0):
            x = np.array([ConfidenceFeatures(2.0).update(0.0, 0.5, (0.0, 0.0), {}) for _ in raw])
            x[:, 0] = np.log(np.clip(raw, 0.01, 0.99) / (1 - np.clip(raw, 0.01, 0.99)))
            x[:, 1], x[:, 2], x[:, 3] = held, motion, held * motion
            p = model.probability(x)
            assert np.all(np.diff(p) >= 0), (held, motion)  # more raw confidence never lowers it
            assert np.all((p >= 0) & (p <= 1))
    # a frame on which every member repeated its last position is worth less the further the target moved
    base = ConfidenceFeatures(2.0).update(0.0, 0.2, (0.0, 0.0), {"a_corrupted": 1.0})
    moved = [base.copy() for _ in range(5)]
    for row, m in zip(moved, (0.0, 0.5, 1.0, 2.0, 4.0), strict=True):
        row[2], row[3] = m, m
    assert np.all(np.diff(model.probability(np.array(moved))) < 0)


def test_features_are_causal_and_follow_the_motion() -> None:
    f = ConfidenceFeatures(2.0)
    f.first(0.0, (10.0, 10.0))
    x1 = f.update(0.5, 0.9, (12.0, 10.0), {"template_ncc": 0.8, "registration_ncc": 0.7, "spread_mm": 0.2})
    assert x1[2] == 0.0  # one known position only: no speed yet
    assert x1[4] == pytest.approx(0.7) and x1[5] == pytest.approx(0.1)
    # held frame 0.5 s later: the target moved 2 mm in the last 0.5 s, so ~1 tolerance since
    x2 = f.update(1.0, 0.1, (12.0, 10.0), {"template_corrupted": 1.0, "registration_corrupted": 1.0})
    assert x2[1] == 1.0 and x2[2] == pytest.approx(1.0) and x2[3] == pytest.approx(1.0)
    # a second held frame: the last tracked position is older, the expected motion larger
    x3 = f.update(1.5, 0.1, (12.0, 10.0), {"template_corrupted": 1.0, "registration_corrupted": 1.0})
    assert x3[2] == pytest.approx(2.0)


def test_logistic_fit_recovers_a_known_model() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    p = 1 / (1 + np.exp(-(1.5 * x[:, 0] - 2.0 * x[:, 1] + 0.5)))
    y = (rng.uniform(size=4000) < p).astype(float)
    mean, scale, coef, intercept = fit_logistic(x, y, l2=1e-6)
    assert np.allclose(coef / scale, [1.5, -2.0], atol=0.2)
    assert intercept - (coef / scale) @ mean == pytest.approx(0.5, abs=0.15)


def test_a_malformed_calibration_is_refused(tmp_path: Path) -> None:
    d = shipped_model().to_dict()
    d["logistic"]["coef"] = d["logistic"]["coef"][:-1]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(InputError, match=r"bad\.json"):
        ConfidenceModel.load(bad)
    with pytest.raises(InputError, match="not found"):
        ConfidenceModel.load(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def held_out(data_dir: Path) -> CineCase:
    """A stressed case never used for fitting (not a drawn phantom set case): 3 Hz, large motion,
    a ghosted or noise-burst frame every 5 frames."""
    corruptions = tuple(
        FrameCorruption(f, "noise_burst" if i % 2 else "ghosting", 6.0 if i % 2 else 0.6, 0.35)
        for i, f in enumerate(range(4, 45, 5))
    )
    spec = CinePhantomSpec(
        case_id="HELD", background="magdeburg_liver", duration_s=15.0, frame_rate_hz=3.0, amplitude_si_mm=18.0,
        target_radius_mm=7.0, target_contrast=0.4, snr=15.0, irregularity=0.5, corruptions=corruptions, seed=11,
    )
    return make_case(spec, data_dir)


def test_calibrated_confidence_is_closer_to_the_observed_success_rate(held_out: CineCase) -> None:
    spacing = (held_out.pixel_spacing_mm[1], held_out.pixel_spacing_mm[0])
    truth, times = held_out.labels, held_out.frame_times_s()
    assert truth is not None
    seq = track_sequence(held_out.frames, truth[:, :, 0], spacing, "ensemble")
    cal = ConfidenceCalibrator()
    cal.first(times[0], centroid_mm(truth[:, :, 0], spacing))
    raw, calibrated, ok = [], [], []
    for t in range(1, truth.shape[2]):
        c = centroid_mm(seq.labels[:, :, t], spacing)
        raw.append(seq.confidence[t])
        calibrated.append(cal.calibrate(times[t], seq.confidence[t], c, seq.details[t]))
        ok.append(float(np.linalg.norm(c - centroid_mm(truth[:, :, t], spacing)) < 2.0))
    r, p, y = np.array(raw), np.array(calibrated), np.array(ok)
    assert 0 < y.sum() < y.size  # some frames miss by 2 mm or more, most do not
    assert abs(p.mean() - y.mean()) < abs(r.mean() - y.mean())
    assert np.mean((p - y) ** 2) < np.mean((r - y) ** 2)  # Brier score
    assert p[y == 0].mean() < p[y == 1].mean()


@pytest.fixture(scope="module")
def gated(held_out: CineCase, tmp_path_factory: pytest.TempPathFactory) -> GatingRun:
    return run_gating(held_out, GatingSettings(), tmp_path_factory.mktemp("cal"), fast=True)


def test_the_gating_workflow_decides_on_the_calibrated_confidence(gated: GatingRun) -> None:
    settings, model = gated.settings, shipped_model()
    assert settings.confidence_model() == model and settings.confidence_threshold() == model.min_confidence
    assert settings.as_dict()["min_confidence"] == model.min_confidence
    frames = gated.frames
    conf = np.array([f[CONFIDENCE] for f in frames])
    raw = np.array([f[RAW_CONFIDENCE] for f in frames])
    assert conf[0] == raw[0] == 1.0  # the given first label
    assert not np.allclose(conf[1:], raw[1:])  # calibrated differs from raw ...
    records = dict(gated.decisions)
    for f, (seq, rec) in zip(frames, gated.decisions, strict=True):
        assert isinstance(rec, DecisionRecord) and records[seq] is rec
        assert rec.confidence == pytest.approx(f[CONFIDENCE])  # ... and the decision records carry it
        if rec.data["reason"] in ("inside", "outside", "resuming"):
            assert f"tracking confidence {f[CONFIDENCE]:.2f}" in rec.explanation
        if rec.data["reason"] == "low_confidence":
            assert f"tracking confidence {f[CONFIDENCE]:.2f} below {model.min_confidence:.2f}" in rec.explanation
    low = [f for f in frames if f["gate_reason"] == "low_confidence"]
    assert low and all(f[CONFIDENCE] < model.min_confidence for f in low)
    # level 3 hands over on the calibrated value, at the gate's threshold
    assert gated.supervision["handover_confidence"] == model.min_confidence
    assert gated.supervision["alerts"].get("handover", 0) >= 1
    # the raw value stays in the recorded results, the calibration's card in the session file
    assert gated.session_path is not None
    session = read_session(gated.session_path)
    assert np.allclose(session.results["raw_confidence"], raw)
    assert np.allclose(session.results["confidence"], conf)
    assert "confidence_calibration" in session.attrs
    with AuditLog(gated.audit_path, create=False) as audit:
        assert audit.verify().ok


def test_without_calibration_the_raw_confidence_is_used(held_out: CineCase, tmp_path: Path) -> None:
    settings = GatingSettings(calibrated_confidence=False)
    assert settings.confidence_model() is None and settings.confidence_threshold() == 0.5
    run = run_gating(held_out, settings, tmp_path, fast=True, max_frames=12, record=False,
                     supervision=SupervisionSettings())
    for f in run.frames:
        assert f[CONFIDENCE] == f[RAW_CONFIDENCE]
    assert run.supervision["handover_confidence"] == 0.5
