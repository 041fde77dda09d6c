"""Autonomy levels and what each one does with an automated decision (``DESIGN.md``).

=====  ======================  =============================================================
level  name                    what an automated decision does
=====  ======================  =============================================================
0      manual                  nothing: igikit only displays; the human acts
1      assistive               it is a *proposal*: it takes effect only when a human approves
2      supervised              it takes effect when its *veto window* closes without a veto
                               (or at once when a human approves it)
3      conditional autonomy    it takes effect at once, unless confidence is below the
                               handover threshold or a safety limit is near: then the workflow
                               falls to its safe state and *hands over* to the human (an alert)
=====  ======================  =============================================================

Two rules hold at every level:

* safety interlocks (a decision with ``safety=True``: beam hold, sonication stop) take effect at
  once — the level never delays or downgrades them;
* a decision that moves *towards* the safe state (its value is the safe value) takes effect at
  once too: a human veto exists to stop the automation from *acting*, never from backing off.

The level itself changes only by a human action of a role allowed to (``physicist``), logged in the
audit log; see :class:`igikit.supervise.session.SupervisedSession`.

:func:`route_decision` is the whole rule as a pure function, so that it can be read and tested
without a session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from igikit.errors import InputError


class AutonomyLevel(IntEnum):
    """The four autonomy levels of ``DESIGN.md``."""

    MANUAL = 0
    ASSISTIVE = 1
    SUPERVISED = 2
    CONDITIONAL = 3

    @property
    def label(self) -> str:
        """Human-readable name, e.g. ``"supervised"``."""
        return _LABELS[self]

    @property
    def description(self) -> str:
        """One sentence saying what the automation does at this level."""
        return _DESCRIPTIONS[self]

    @classmethod
    def parse(cls, value: object) -> AutonomyLevel:
        """The level for ``0``-``3`` (int or digit text) or a name (``"supervised"``).

        Raises
        ------
        InputError
            For anything else.
        """
        if isinstance(value, AutonomyLevel):
            return value
        if isinstance(value, str):
            text = value.strip().lower()
            for level in cls:
                if text in (str(int(level)), level.label, level.name.lower()):
                    return level
        elif isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2, 3):
            return cls(value)
        raise InputError(f"autonomy level must be 0-3 (manual, assistive, supervised, conditional), got {value!r}")


_LABELS = {
    AutonomyLevel.MANUAL: "manual",
    AutonomyLevel.ASSISTIVE: "assistive",
    AutonomyLevel.SUPERVISED: "supervised",
    AutonomyLevel.CONDITIONAL: "conditional",
}
_DESCRIPTIONS = {
    AutonomyLevel.MANUAL: "igikit only displays; the human acts",
    AutonomyLevel.ASSISTIVE: "igikit proposes; a decision takes effect when a human approves it",
    AutonomyLevel.SUPERVISED: "igikit acts when the veto window closes unless a human vetoes",
    AutonomyLevel.CONDITIONAL: "igikit acts; it hands over to the human on low confidence or near a safety limit",
}

#: What happens to a submitted decision.
#: ``applied``: in effect now; ``displayed``: shown only (level 0); ``proposed``: waits for approval
#: (level 1); ``pending``: takes effect when its veto window closes (level 2); ``handed_over``: the
#: safe state holds and an alert asks for a human (level 3); ``safe_state``: refused because the
#: session is in its safe state (paused, or an alert unacknowledged).
Mode = Literal["applied", "displayed", "proposed", "pending", "handed_over", "safe_state"]


@dataclass(frozen=True)
class AutonomyPolicy:
    """The numbers behind the levels (set per workflow and site, like gating margins).

    Parameters
    ----------
    veto_window_s
        Level 2: how long a human has to veto a decision before it takes effect (s).
    handover_confidence
        Level 3: below this (calibrated) confidence the automation hands over to the human.

    Raises
    ------
    InputError
        For a non-positive veto window or a threshold outside ``[0, 1]``.
    """

    veto_window_s: float = 3.0
    handover_confidence: float = 0.6

    def __post_init__(self) -> None:
        if not (isinstance(self.veto_window_s, int | float) and math.isfinite(self.veto_window_s)) or not (
            self.veto_window_s > 0
        ):
            raise InputError(f"veto window must be a positive number of seconds, got {self.veto_window_s!r}")
        if not (isinstance(self.handover_confidence, int | float) and 0.0 <= self.handover_confidence <= 1.0):
            raise InputError(f"handover confidence must lie in [0, 1], got {self.handover_confidence!r}")


@dataclass(frozen=True)
class Route:
    """Where :func:`route_decision` sends a decision, and why (one sentence for the log)."""

    mode: Mode
    reason: str


def route_decision(
    level: AutonomyLevel | int,
    *,
    safety: bool,
    confidence: float,
    toward_safe: bool,
    near_limit: bool = False,
    policy: AutonomyPolicy | None = None,
) -> Route:
    """What an automated decision does at autonomy ``level`` (the table in the module docstring).

    Parameters
    ----------
    level
        The session's autonomy level.
    safety
        The decision is a safety interlock (``DecisionRecord.safety``).
    confidence
        Its calibrated confidence in ``[0, 1]``.
    toward_safe
        Its value is the workflow's safe value (beam hold, power 0).
    near_limit
        The workflow reports that a safety limit is near (level 3 hands over).
    policy
        Veto window and handover threshold; default :class:`AutonomyPolicy()`.

    Returns
    -------
    Route
        ``applied``, ``displayed``, ``proposed``, ``pending`` or ``handed_over`` with the reason.
        (``safe_state`` is decided by the session, which knows whether it is paused.)

    Examples
    --------
    >>> route_decision(2, safety=False, confidence=0.9, toward_safe=False).mode
    'pending'
    >>> route_decision(0, safety=True, confidence=0.2, toward_safe=True).mode
    'applied'
    """
    level = AutonomyLevel.parse(level)
    policy = policy or AutonomyPolicy()
    low = confidence < policy.handover_confidence
    if level is AutonomyLevel.CONDITIONAL and (low or near_limit):
        why = []
        if low:
            why.append(f"confidence {confidence:.2f} below the handover threshold {policy.handover_confidence:.2f}")
        if near_limit:
            why.append("a safety limit is near")
        return Route("handed_over", "level 3 hands over to the human: " + " and ".join(why))
    if safety:
        return Route("applied", "safety interlock: takes effect at every autonomy level")
    if toward_safe:
        return Route("applied", "towards the safe state: takes effect at once")
    if level is AutonomyLevel.MANUAL:
        return Route("displayed", "level 0 (manual): displayed only; the human acts")
    if level is AutonomyLevel.ASSISTIVE:
        return Route("proposed", "level 1 (assistive): waits for a human's approval")
    if level is AutonomyLevel.SUPERVISED:
        return Route("pending", f"level 2 (supervised): takes effect in {policy.veto_window_s:g} s unless vetoed")
    return Route("applied", "level 3 (conditional autonomy): takes effect at once")
