"""The gating workflow warms its operators up before the first frame, so no frame misses the deadline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from igikit.io.trackrad import CineCase
from igikit.sim import CinePhantomSpec, make_case
from igikit.stream import read_session
from igikit.supervise import AuditLog
from igikit.workflows.mrgrt.operators import CONFIDENCE, RAW_CONFIDENCE
from igikit.workflows.mrgrt.workflow import GatingRun, GatingSettings, run_gating


@pytest.fixture(scope="module")
def case(data_dir: Path) -> CineCase:
    spec = CinePhantomSpec(
        case_id="WARM", background="eth_thorax", duration_s=4.0, frame_rate_hz=6.0, amplitude_si_mm=10.0,
        target_radius_mm=8.0, target_contrast=0.5, snr=25.0, seed=4,
    )
    return make_case(spec, data_dir)


@pytest.fixture(scope="module")
def run(case: CineCase, tmp_path_factory: pytest.TempPathFactory) -> GatingRun:
    return run_gating(case, GatingSettings(), tmp_path_factory.mktemp("warm"), fast=True)


def test_a_short_gating_run_misses_no_deadline(run: GatingRun) -> None:
    lat = run.latency
    assert lat.deadline_ms == GatingSettings().max_frame_age_ms  # the graph's own deadline
    assert lat.frames_processed == run.case.n_frames == 24
    assert lat.warm_up_ms > 0  # the operators were warmed up before the source started ...
    assert lat.deadline_misses == 0  # ... so the first frame meets the deadline like the others
    assert not [e for e in run.events if e.kind == "deadline_miss"]
    assert run.supervision["alerts"].get("near_limit", 0) == 0  # no frame came near the stale deadline


def test_the_warm_up_leaves_no_trace(run: GatingRun) -> None:
    # the tracker started on the real frame 0 (its given label, confidence 1), not on the warm-up frame
    first = run.frames[0]
    assert first["frame_id"] == 0 and first[CONFIDENCE] == 1.0 == first[RAW_CONFIDENCE]
    assert np.array_equal(first["target_mask"], run.first_label)
    # one decision, one beam command per real frame; the audit log holds them and the session's
    # opening record, nothing from the warm-up
    n = run.case.n_frames
    assert len(run.decisions) == len(run.commands) == n
    assert [c.frame_id for c in run.commands] == list(range(n))
    with AuditLog(run.audit_path, create=False) as audit:
        rows = list(audit.records())
    assert len(rows) == n + 1
    assert run.session_path is not None
    session = read_session(run.session_path)
    assert list(session.frame_id) == list(range(n))
    assert np.array_equal(session.frames, np.moveaxis(run.case.frames, 2, 0))
