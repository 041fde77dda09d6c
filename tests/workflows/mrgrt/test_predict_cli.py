"""The public `igikit predict` contract: real trace, plain CSV, outputs, and bad input."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from tests.conftest import assert_input_error, run_cli

REAL = "201205111055-LAC-1-N-117-6.csv"  # 117 s, two glitched timestamps


def test_predict_real_trace_writes_json_and_csv(data_dir, tmp_path) -> None:
    out_json, out_csv = tmp_path / "r.json", tmp_path / "pred.csv"
    r = run_cli("predict", data_dir / "respiration" / REAL, "--horizon-ms", "500", "--method", "online",
                "--json", out_json, "--out", out_csv)
    assert r.returncode == 0, r.stderr
    assert "RMSE" in r.stdout and "last" in r.stdout and "reduction" in r.stdout
    rep = json.loads(out_json.read_text())
    assert rep["method"] == "online" and rep["horizon_ms"] == 500 and rep["axis"] == "z"
    assert rep["n_samples"] == 1172
    assert rep["cleaning"]["timestamps_repaired"] == 2
    m, b = rep["metrics"]["method"], rep["metrics"]["baseline"]
    assert set(m) >= {"rmse_mm", "mae_mm", "max_mm"} and m["n"] == b["n"] > 1000
    assert m["rmse_mm"] < 0.6 * b["rmse_mm"]
    assert rep["rmse_reduction_pct"] == pytest.approx(100 * (1 - m["rmse_mm"] / b["rmse_mm"]), abs=0.01)
    with out_csv.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["time_ms", "predicted_mm"]
    assert len(rows) == 1 + rep["n_samples"]
    values = np.array([[float(a), float(b)] for a, b in rows[1:]])
    assert np.all(np.diff(values[:, 0]) > 0)
    assert math.isnan(values[0, 1]) and np.isfinite(values[-1, 1])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_predict_plain_csv_and_best_method(tmp_path) -> None:
    t = np.arange(0, 60, 0.1)
    x = 6 * np.sin(2 * np.pi * t / 3.5)
    trace = tmp_path / "trace.csv"
    trace.write_text("time_ms,position_mm\n" + "".join(f"{a * 1000:.0f},{b:.3f}\n" for a, b in zip(t, x, strict=True)))
    out_json = tmp_path / "r.json"
    r = run_cli("predict", trace, "--horizon-ms", "250", "--method", "best", "--json", out_json)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out_json.read_text())
    assert rep["method"] == "online" and rep["axis"] == "position"
    assert rep["rmse_reduction_pct"] > 80


def test_predict_last_method_has_no_reduction(data_dir, tmp_path) -> None:
    out_json = tmp_path / "r.json"
    r = run_cli("predict", data_dir / "respiration" / REAL, "--horizon-ms", "250", "--method", "last",
                "--axis", "x", "--json", out_json)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out_json.read_text())
    assert rep["axis"] == "x" and rep["rmse_reduction_pct"] == 0


def test_predict_missing_file(tmp_path) -> None:
    assert_input_error(run_cli("predict", tmp_path / "none.csv", "--horizon-ms", "500"), "none.csv", "not found")


def test_predict_non_numeric_rows(tmp_path) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("time_ms,position_mm\n0,1\n100,2\n200,oops\n300,1\n")
    out = tmp_path / "pred.csv"
    assert_input_error(run_cli("predict", trace, "--horizon-ms", "500", "--out", out), "bad.csv", "non-numeric")
    assert not out.exists()


@pytest.mark.parametrize("horizon", ["0", "-100"])
def test_predict_horizon_must_be_positive(data_dir, horizon) -> None:
    r = run_cli("predict", data_dir / "respiration" / REAL, "--horizon-ms", horizon)
    assert_input_error(r, "--horizon-ms must be > 0")


def test_predict_trace_too_short_for_horizon(tmp_path) -> None:
    trace = tmp_path / "short.csv"
    trace.write_text("0,1\n100,2\n200,3\n300,2\n")
    out, out_json = tmp_path / "pred.csv", tmp_path / "r.json"
    r = run_cli("predict", trace, "--horizon-ms", "500", "--out", out, "--json", out_json)
    assert_input_error(r, "short.csv", "too short for a 500 ms horizon")
    assert not out.exists() and not out_json.exists()
    # long enough for the truth, not for the learning method's history: still one clear line
    trace.write_text("".join(f"{k * 100},{k % 3}\n" for k in range(9)))
    assert_input_error(run_cli("predict", trace, "--horizon-ms", "500", "--method", "rls"), "too short")
