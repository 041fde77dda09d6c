"""``igikit fus run``: a plan through the command line, its outputs, and bad plans (one line, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from igikit.supervise.audit import AuditLog
from tests.conftest import assert_input_error, run_cli
from tests.workflows.fus.test_control import small_plan


def write_plan(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_fus_run_writes_report_metrics_and_audit(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, small_plan())
    out = tmp_path / "run"
    result = run_cli("fus", "run", plan, "--controller", "pid", "--out", out, "--json", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr
    assert "lesion DSC" in result.stdout and "sonication complete" in result.stdout
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert metrics["controller"] == "pid" and metrics["goal"] == "ablation"
    for key in ("overshoot_c", "steady_state_error_c", "time_to_target_s", "lesion_dsc", "max_oar_temperature_c"):
        assert isinstance(metrics[key], float), key
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<script" not in html and "http" not in html
    with AuditLog(out / "audit.db", create=False) as audit:
        records = [e.record for e in audit.records()]
        assert audit.verify().ok
    assert len(records) == 1 and "sonication complete" in records[0].explanation


def test_fus_run_hyperthermia_json_only(tmp_path: Path) -> None:
    data = small_plan(
        goal={"type": "hyperthermia", "window_c": [41.0, 43.0], "duration_min": 1.5},
        focus={"sigma_mm": [1.5, 1.5, 4.0], "trajectory_radius_mm": 2.0},
        max_power_w=0.5,
        test_sonication={"power_w": 0.05, "duration_s": 16.0, "cooling_s": 6.0},
        safety={"max_temperature_c": 46.0, "min_trusted_fraction": 0.7},
        frame_interval_s=3.0,
    )
    data["target"]["radii_mm"] = [3.0, 3.0]
    result = run_cli("fus", "run", write_plan(tmp_path, data), "--json", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["goal"] == "hyperthermia" and metrics["hyperthermia_hold_s"] >= 85.0
    assert metrics["hyperthermia_fraction"] >= 0.9
    assert not (tmp_path / "run").exists()


def test_oar_limit_below_body_temperature(tmp_path: Path) -> None:
    data = small_plan()
    data["organs_at_risk"][0]["limit_c"] = 36.5
    plan = write_plan(tmp_path, data)
    out = tmp_path / "run"
    result = run_cli("fus", "run", plan, "--out", out, "--json", tmp_path / "m.json")
    assert_input_error(result, str(plan), "organs_at_risk[0].limit_c", "body temperature")
    assert not out.exists() and not (tmp_path / "m.json").exists()


def test_missing_keys(tmp_path: Path) -> None:
    for key in ("target", "goal", "max_power_w"):
        data = small_plan()
        del data[key]
        result = run_cli("fus", "run", write_plan(tmp_path, data))
        assert_input_error(result, "plan.yaml", key, "missing")


def test_bad_power_and_missing_file(tmp_path: Path) -> None:
    result = run_cli("fus", "run", write_plan(tmp_path, small_plan(max_power_w=-1)))
    assert_input_error(result, "max_power_w", "must be > 0")
    assert_input_error(run_cli("fus", "run", tmp_path / "nope.yaml"), "nope.yaml", "not found")
    assert_input_error(run_cli("fus", "run", write_plan(tmp_path, small_plan()), "--controller", "bangbang"))
