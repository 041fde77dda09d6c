"""The public `igikit track` contract, on the TrackRAD2025 example case and on bad inputs."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from tests.conftest import assert_input_error, run_cli


def _write(arr, path, spacing=(1.0, 1.0, 1.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing[: img.GetDimension()])
    sitk.WriteImage(img, str(path))
    return path


def test_track_example_case_writes_labels_and_metrics(data_dir, tmp_path) -> None:
    case = data_dir / "trackrad_format_example"
    out, metrics = tmp_path / "labels.mha", tmp_path / "m.json"
    r = run_cli("track", case / "images/Z_001_frames.mha", "--first-label", case / "targets/Z_001_first_label.mha",
                "--out", out, "--metrics", metrics, "--truth", case / "targets/Z_001_labels.mha",
                "--method", "registration", "-q")
    assert r.returncode == 0, r.stderr
    assert "p99" in r.stdout and "DSC" in r.stdout
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert labels.shape == (125, 125, 10) and labels.dtype == np.uint8
    m = json.loads(metrics.read_text())
    assert m["frames"] == 10 and m["method"] == "registration"
    assert set(m["latency_ms"]) >= {"p50", "p95", "p99", "max"}
    assert len(m["confidence"]) == 10 and all(0 <= c <= 1 for c in m["confidence"])
    assert m["dsc"][0] is None and len(m["dsc"]) == 10
    assert m["mean_dsc"] > 0.95 and m["mean_centroid_mm"] < 1.0
    assert "dose_d98_decrease_pct" in m


def test_track_bad_inputs_give_one_line_and_no_output(tmp_path) -> None:
    rng = np.random.default_rng(0)
    frames = _write(rng.random((40, 50, 6)).astype(np.float32), tmp_path / "f.mha")
    label = np.zeros((40, 50, 1), np.uint8)
    label[10:20, 10:20] = 1
    good = _write(label, tmp_path / "l.mha")
    out = tmp_path / "o.mha"
    cases = [
        (("track", frames, "--first-label", _write(label[:30], tmp_path / "small.mha"), "--out", out), "small.mha"),
        (("track", frames, "--first-label", _write(np.zeros_like(label), tmp_path / "e.mha"), "--out", out), "empty"),
        (("track", _write(rng.random((40, 50)).astype(np.float32), tmp_path / "2d.mha"), "--first-label", good,
          "--out", out), "2D"),
        (("track", tmp_path / "missing.mha", "--first-label", good, "--out", out), "missing.mha"),
        (("track", frames, "--first-label", good, "--out", tmp_path / "nodir" / "o.mha"), "nodir"),
    ]
    nan = rng.random((40, 50, 6)).astype(np.float32)
    nan[3, 4, 2] = np.nan
    cases.append((("track", _write(nan, tmp_path / "nan.mha"), "--first-label", good, "--out", out), "NaN"))
    (tmp_path / "text.mha").write_text("not an image\n")
    cases.append((("track", tmp_path / "text.mha", "--first-label", good, "--out", out), "text.mha"))
    for args, fragment in cases:
        assert_input_error(run_cli(*args), fragment)
        assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_cli_method_list_matches_the_trackers() -> None:
    from igikit.workflows.mrgrt.track_command import METHODS
    from igikit.workflows.mrgrt.tracking import TRACKERS

    assert sorted(METHODS) == sorted(TRACKERS)
