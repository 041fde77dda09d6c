import numpy as np
import pytest

from igikit.errors import InputError
from igikit.workflows.mrgrt.dose import delivered_dose, dvh, planned_dose, summarise

SP = (1.5, 1.5)


@pytest.fixture()
def target():
    yy, xx = np.mgrid[0:100, 0:100]
    return ((yy - 50) ** 2 + (xx - 50) ** 2) * SP[0] ** 2 <= 12.0**2


def test_plan_is_normalised_to_d98(target) -> None:
    plan = planned_dose(target, SP)
    assert summarise(plan, target).d98 == pytest.approx(1.0)
    assert plan[0, 0] < 0.01


def test_motion_management_recovers_the_plan(target) -> None:
    plan = planned_dose(target, SP)
    t = np.linspace(0, 20, 200)
    si = 10.0 * np.sin(2 * np.pi * t / 4.0) ** 2  # 10 mm peak-to-peak, exhale at 0
    s = np.c_[si, np.zeros_like(si)]
    zero = np.zeros_like(s)
    all_on = np.ones(t.size, bool)
    none = summarise(delivered_dose(plan, s, zero, all_on, SP), target)
    gated = summarise(delivered_dose(plan, s, zero, si < 2.0, SP), target)
    tracked = summarise(delivered_dose(plan, s, s, all_on, SP), target)
    assert none.d98 < 0.8  # a 3 mm margin cannot absorb 10 mm of motion
    assert gated.d98 > 0.9 and gated.d98 > none.d98 + 0.1  # up to 2 mm residual motion in the gate
    assert tracked.d98 == pytest.approx(1.0, abs=1e-6)
    static = summarise(delivered_dose(plan, zero, zero, all_on, SP), target)
    assert static.d98 == pytest.approx(1.0, abs=1e-9) and static.d2 == pytest.approx(summarise(plan, target).d2)


def test_dvh_is_monotone_and_beam_off_gives_no_dose(target) -> None:
    plan = planned_dose(target, SP)
    _levels, frac = dvh(plan, target)
    assert frac[0] == 1.0 and np.all(np.diff(frac) <= 0)
    off = delivered_dose(plan, np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3, bool), SP)
    assert not off.any()
    with pytest.raises(InputError):
        delivered_dose(plan, np.zeros((3, 2)), np.zeros((4, 2)), np.ones(3, bool), SP)
    with pytest.raises(InputError):
        planned_dose(np.zeros((5, 5)), SP)
