"""``igikit sim cine`` writes readable TrackRAD case folders, previews and cases.json."""

from __future__ import annotations

import json

import numpy as np

from igikit.io.trackrad import read_case
from tests.conftest import DATA, assert_input_error, run_cli


def test_sim_cine_writes_two_cases(tmp_path) -> None:
    out = tmp_path / "set"
    result = run_cli("sim", "cine", "--out", out, "--cases", "2", "--seed", "3", "--data", DATA, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 cases written" in result.stdout
    index = json.loads((out / "cases.json").read_text())
    assert index["seed"] == 3 and index["n_cases"] == 2
    for entry in index["cases"]:
        folder = out / entry["folder"]
        case = read_case(folder)
        assert case.case_id == entry["case_id"]
        assert case.labels is not None and case.first_label is not None
        assert np.array_equal(case.first_label, case.labels[:, :, 0])
        assert case.labels.reshape(-1, case.n_frames).sum(axis=0).min() > 0  # never an empty truth
        assert list(case.frames.shape) == entry["derived"]["shape_numpy_HWT"]
        assert case.frame_rate_hz == entry["spec"]["frame_rate_hz"]
        assert entry["spec"]["target_center_mm"] is not None and entry["spec"]["trace_start_s"] is not None
        assert (folder / "preview.png").stat().st_size > 10_000


def test_unknown_profile_is_one_line_exit_2(tmp_path) -> None:
    result = run_cli("sim", "cine", "--out", tmp_path / "x", "--cases", "1", "--profile", "unicorn")
    assert_input_error(result, "unicorn")
    assert not (tmp_path / "x" / "cases.json").exists()
