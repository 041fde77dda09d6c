"""Sonication plans: the shipped examples load; every bad plan is one InputError naming the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from igikit.errors import InputError
from igikit.workflows.fus.plan import ellipse_mask, load_plan, plan_from_dict

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "fus"


def minimal() -> dict:
    return {
        "max_power_w": 1.0,
        "target": {"center_mm": [16.0, 16.0], "radii_mm": [3.0, 3.0]},
        "goal": {"type": "ablation", "focus_temperature_c": 57.0},
        "organs_at_risk": [{"name": "skin", "center_mm": [16.0, 24.0], "radii_mm": [5.0, 1.0]}],
    }


@pytest.mark.parametrize("name", ["ablation.yaml", "hyperthermia.yaml"])
def test_examples_load(name: str) -> None:
    plan = load_plan(EXAMPLES / name)
    assert plan.max_power_w > 0
    assert plan.target.mask(plan.shape, plan.spacing_mm).sum() > 10
    assert all(o.limit_c > plan.body_temperature_c for o in plan.organs_at_risk)


def test_defaults_from_profile() -> None:
    plan = plan_from_dict(minimal())
    assert plan.profile == "adult" and plan.body_temperature_c == 37.0
    assert plan.organs_at_risk[0].limit_c == 43.0  # adult limits.temperature_c.skin
    assert plan.safety.max_temperature_c == 90.0  # adult limits.temperature_c.target_max
    assert plan.focus_center_mm == (16.0, 16.0)
    assert plan.goal.setpoint_c == 57.0


def test_hyperthermia_setpoint_is_window_centre() -> None:
    data = minimal() | {"goal": {"type": "hyperthermia", "window_c": [41, 43], "duration_min": 10}}
    assert plan_from_dict(data).goal.setpoint_c == 42.0


def test_ellipse_mask_geometry() -> None:
    mask = ellipse_mask((21, 21), (1.0, 1.0), (10.0, 10.0), (3.0, 3.0))
    assert mask[10, 10] and mask[10, 13] and not mask[10, 14]
    assert mask.sum() == 29  # lattice points in a radius-3 disc


def test_mask_file_region(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[30:34, 30:34] = 1
    np.save(tmp_path / "target.npy", mask)
    data = minimal() | {"target": {"mask": "target.npy"}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    plan = load_plan(path)
    assert plan.target.mask(plan.shape, plan.spacing_mm).sum() == 16
    assert plan.focus_center_mm == pytest.approx((15.75, 15.75))


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda d: d["organs_at_risk"][0].update(limit_c=36.0), ["organs_at_risk[0].limit_c", "body temperature"]),
        (lambda d: d.update(max_power_w=0), ["max_power_w", "> 0"]),
        (lambda d: d.pop("target"), ["target", "missing"]),
        (lambda d: d.pop("goal"), ["goal", "missing"]),
        (lambda d: d["goal"].update(type="cooking"), ["goal.type"]),
        (lambda d: d["target"].pop("radii_mm"), ["target.radii_mm", "missing"]),
        (lambda d: d["target"].update(center_mm=[100.0, 16.0]), ["target.center_mm", "outside the grid"]),
        (lambda d: d.update(profile="martian"), ["profile"]),
        (lambda d: d.update(tissue="bone"), ["tissue", "no tissue"]),
        (lambda d: d.update(colour="red"), ["unknown key", "colour"]),
        (lambda d: d.update(goal={"type": "hyperthermia", "window_c": [43, 41]}), ["goal.window_c"]),
        (lambda d: d["goal"].update(focus_temperature_c=95.0), ["goal.focus_temperature_c"]),
        (lambda d: d.update(test_sonication={"power_w": 5.0}), ["test_sonication.power_w", "exceeds"]),
        (lambda d: d.update(frame_interval_s="fast"), ["frame_interval_s", "number"]),
    ],
)
def test_bad_plans(tmp_path: Path, change, fragments: list[str]) -> None:
    data = minimal()
    change(data)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as info:
        load_plan(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_unreadable_plans(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_plan(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: [1, 2\n")
    with pytest.raises(InputError, match="invalid YAML"):
        load_plan(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        load_plan(empty)
