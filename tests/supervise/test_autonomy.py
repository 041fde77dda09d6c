"""Autonomy levels: the routing table of DESIGN.md, and the rule that interlocks ignore the level."""

from __future__ import annotations

import pytest

from igikit.errors import InputError
from igikit.supervise import AutonomyLevel, AutonomyPolicy, route_decision


def route(level: int, *, safety: bool = False, confidence: float = 0.9, toward_safe: bool = False, **kw) -> str:
    return route_decision(level, safety=safety, confidence=confidence, toward_safe=toward_safe, **kw).mode


def test_each_level_routes_an_ordinary_decision_as_the_design_says() -> None:
    assert route(0) == "displayed"
    assert route(1) == "proposed"
    assert route(2) == "pending"
    assert route(3) == "applied"


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_safety_interlocks_and_moves_towards_the_safe_state_take_effect_at_every_level(level: int) -> None:
    assert route(level, safety=True, confidence=0.95) == "applied"
    assert route(level, toward_safe=True) == "applied"


def test_level_3_hands_over_on_low_confidence_or_near_a_limit_even_for_an_interlock() -> None:
    policy = AutonomyPolicy(handover_confidence=0.7)
    low = route_decision(3, safety=False, confidence=0.69, toward_safe=False, policy=policy)
    assert low.mode == "handed_over"
    assert "0.69" in low.reason and "0.70" in low.reason
    assert route(3, near_limit=True) == "handed_over"
    assert route(3, safety=True, confidence=0.2) == "handed_over"  # the hold applies; the human is called too
    assert route(3, confidence=0.7, policy=policy) == "applied"  # at the threshold: still autonomous
    assert route(2, confidence=0.1) == "pending"  # only level 3 hands over


def test_the_reason_names_the_veto_window() -> None:
    assert (
        "4.5 s"
        in route_decision(
            2, safety=False, confidence=0.9, toward_safe=False, policy=AutonomyPolicy(veto_window_s=4.5)
        ).reason
    )


def test_levels_parse_from_numbers_and_names_and_reject_the_rest() -> None:
    assert AutonomyLevel.parse(2) is AutonomyLevel.SUPERVISED
    assert AutonomyLevel.parse("3") is AutonomyLevel.CONDITIONAL
    assert AutonomyLevel.parse("assistive") is AutonomyLevel.ASSISTIVE
    assert AutonomyLevel.parse("Manual") is AutonomyLevel.MANUAL
    assert AutonomyLevel.SUPERVISED.label == "supervised"
    assert "veto" in AutonomyLevel.SUPERVISED.description
    for bad in (4, -1, True, "x", 2.0, None):
        with pytest.raises(InputError, match="autonomy level"):
            AutonomyLevel.parse(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"veto_window_s": 0},
        {"veto_window_s": float("nan")},
        {"handover_confidence": 1.5},
        {"handover_confidence": -0.1},
    ],
)
def test_policy_rejects_impossible_numbers(kwargs: dict) -> None:
    with pytest.raises(InputError):
        AutonomyPolicy(**kwargs)
