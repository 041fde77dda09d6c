"""Decision records and human actions: the immutable facts the audit log chains together.

Every automated decision (``beam: hold``, ``power: 0 W``, ``plan: 1.78 GBq``) is a
:class:`DecisionRecord`; every thing a person does about it (approve, veto, pause, take over) is a
:class:`HumanAction` (see ``DESIGN.md``, "The decision record"). Both are frozen dataclasses that
validate their fields when built and serialise to *canonical JSON* (sorted keys, no whitespace, no
NaN or infinity), so that the same record always hashes to the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeAlias

import numpy as np

from igikit.errors import InputError

#: A value a decision can take: a state (``"hold"``), a number (``0.0`` W), or a flag.
Scalar: TypeAlias = str | int | float | bool

#: What a human can do. Workflows may only log these, so that the console and reports can rely on them.
HUMAN_ACTIONS: frozenset[str] = frozenset(
    {
        "approve",  # accept a proposed or pending decision
        "override",  # replace an automated decision with the human's value
        "veto",  # reject a pending decision within its veto window
        "pause",  # go to the safe state and stay there
        "resume",  # leave a pause
        "take_over",  # the human acts, the automation only displays
        "hand_back",  # return control to the automation
        "acknowledge",  # an alert was seen
        "set_autonomy",  # change the workflow's autonomy level (value: 0-3)
        "stop",  # end the treatment / session
        "annotate",  # a free-text note for the record
    }
)

#: Actions that only make sense about an earlier log entry, whose ``seq`` they must name.
ACTIONS_NEEDING_SEQ: frozenset[str] = frozenset({"approve", "override", "veto", "acknowledge"})

#: Autonomy levels of ``DESIGN.md``: manual, assistive, supervised, conditional autonomy.
AUTONOMY_LEVELS: tuple[int, ...] = (0, 1, 2, 3)

#: Evidence images live inside the log, so they must stay small; bigger ones go in a file (``path``).
MAX_PNG_BYTES = 256 * 1024

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------- JSON
def _plain(value: Any, where: str) -> Any:
    """``value`` as plain JSON types, refusing NaN / infinity and naming where they are."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{where} is {value}; records hold finite numbers only (no NaN or infinity)")
        return value
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), where)
    if isinstance(value, bytes | bytearray):
        raise InputError(f"{where} is raw bytes; store them as a file or as base64 text (Evidence.from_png)")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"{where} has a non-text key {key!r}; JSON object keys are text")
            out[key] = _plain(item, f"{where}.{key}")
        return out
    if isinstance(value, Sequence):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise InputError(f"{where} is a {type(value).__name__}, which cannot be stored as JSON")


def canonical_json(value: Any, *, where: str = "record") -> str:
    """Serialise ``value`` to canonical JSON: sorted keys, no whitespace, UTF-8 text, finite numbers.

    The same logical content always gives the same text, which is what the audit log hashes.
    NumPy scalars and arrays become plain numbers and lists.

    Parameters
    ----------
    value
        JSON-like data (mappings with text keys, sequences, text, numbers, booleans, ``None``).
    where
        Name of ``value`` in error messages.

    Returns
    -------
    str
        The canonical JSON text.

    Raises
    ------
    InputError
        If ``value`` holds NaN or infinity (naming the key) or a type JSON cannot hold.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [0.5, "x"]})
    '{"a":[0.5,"x"],"b":1}'
    """
    return json.dumps(_plain(value, where), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# ---------------------------------------------------------------------------------- validation
def _text(value: Any, name: str, *, required: bool = True) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {type(value).__name__}")
    if required and not value.strip():
        raise InputError(f"{name} must not be empty")
    return value


def _finite(value: Any, name: str) -> float:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{name} is {value}; it must be a finite number")
    return float(value)


def _optional_finite(value: Any, name: str) -> float | None:
    return None if value is None else _finite(value, name)


def _scalar(value: Any, name: str) -> Scalar:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{name} is {value}; it must be a finite number")
        return value
    raise InputError(f"{name} must be text, a number or a boolean, got {type(value).__name__}")


def _freeze_data(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InputError(f"{name} must be a mapping of names to values, got {type(data).__name__}")
    # a canonical round trip both validates (finite, JSON-able) and detaches it from the caller's dict
    return MappingProxyType(json.loads(canonical_json(data, where=name)))


def _check_keys(data: Mapping[str, Any], allowed: Sequence[str], what: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InputError(f"{what} has unknown field(s) {', '.join(unknown)}")


# ---------------------------------------------------------------------------------- evidence
@dataclass(frozen=True)
class Evidence:
    """What a decision can show a human: a file, a URI, or a small PNG stored inline.

    Parameters
    ----------
    kind
        ``"path"`` (a file next to the session), ``"uri"`` (anything a browser or PACS can open) or
        ``"png"`` (``ref`` is the base64 text of a PNG of at most :data:`MAX_PNG_BYTES` bytes).
    ref
        The path, URI or base64 text.
    caption
        What the evidence shows, e.g. ``"frame 112: target contour and gating boundary"``.
    """

    kind: Literal["path", "uri", "png"]
    ref: str
    caption: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("path", "uri", "png"):
            raise InputError(f"evidence kind must be 'path', 'uri' or 'png', got {self.kind!r}")
        _text(self.ref, "evidence reference")
        _text(self.caption, "evidence caption", required=False)
        if self.kind == "png":
            _check_png(self.png_bytes())

    @classmethod
    def from_png(cls, data: bytes, caption: str = "") -> Evidence:
        """Evidence holding the PNG ``data`` inline (base64), e.g. an overlay of the current frame."""
        _check_png(data)
        return cls("png", base64.b64encode(data).decode("ascii"), caption)

    @classmethod
    def from_path(cls, path: str | Path, caption: str = "") -> Evidence:
        """Evidence pointing at a file (a map, a report); the file is not read."""
        return cls("path", str(path), caption)

    @classmethod
    def from_uri(cls, uri: str, caption: str = "") -> Evidence:
        """Evidence pointing at a URI (a console view, a PACS object)."""
        return cls("uri", uri, caption)

    def png_bytes(self) -> bytes:
        """The PNG bytes of inline evidence."""
        if self.kind != "png":
            raise InputError(f"evidence is a {self.kind}, not an inline PNG")
        try:
            return base64.b64decode(self.ref.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise InputError(f"inline PNG evidence is not valid base64 ({exc})") from None

    def to_dict(self) -> dict[str, str]:
        """Plain JSON form."""
        return {"kind": self.kind, "ref": self.ref, "caption": self.caption}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping):
            raise InputError("evidence must be a mapping with kind, ref and caption")
        _check_keys(data, ("kind", "ref", "caption"), "evidence")
        return cls(data.get("kind"), data.get("ref"), data.get("caption", ""))  # type: ignore[arg-type]


def _check_png(data: bytes) -> None:
    if not isinstance(data, bytes | bytearray) or not bytes(data).startswith(_PNG_SIGNATURE):
        raise InputError("inline evidence must be PNG data (it does not start with the PNG signature)")
    if len(data) > MAX_PNG_BYTES:
        raise InputError(
            f"inline PNG evidence is {len(data)} bytes, more than {MAX_PNG_BYTES}; "
            "save it as a file and use Evidence.from_path"
        )


# --------------------------------------------------------------------------------- records
@dataclass(frozen=True, kw_only=True)
class DecisionRecord:
    """One automated decision, immutable once made (``DESIGN.md``, "The decision record").

    Parameters
    ----------
    decision
        What is decided, e.g. ``"beam"``, ``"sonication_power"``, ``"plan_activity"``.
    value
        The outcome: ``"hold"``, ``0.0``, ``"1.78 GBq"``...
    explanation
        One sentence with the numbers behind it: ``"beam hold: target 4.2 mm outside the gating
        boundary (limit 3.0 mm); confidence 0.93"``.
    confidence
        Calibrated confidence in ``[0, 1]``.
    component, component_version
        What decided (``"mrgrt.gating"``) and its version, so that a decision can be traced to code.
    frame_time_s
        Acquisition time of the newest frame the decision used (s), if it came from a stream.
    wall_time_s
        When the decision was made (Unix time, s). Defaults to now.
    input_frame_ids
        Identifiers of the frames used (indices or text ids).
    evidence
        An optional image or reference a human can look at.
    workflow, session_id
        Which workflow (``"mrgrt"``, ``"fus"``, ``"theranostics"``...) and session made it.
    safety
        ``True`` for safety-interlock decisions (beam hold, sonication stop), which autonomy levels
        never downgrade.
    proposal
        ``True`` when the decision waits for a human's approval before it takes effect (autonomy
        level 1, or a treatment plan a physicist signs off).
    data
        The numbers behind the explanation, by name (``{"outside_mm": 4.2, "limit_mm": 3.0}``),
        finite JSON values only.

    Raises
    ------
    InputError
        If a field is empty, of the wrong type, non-finite, or confidence is outside ``[0, 1]``.
    """

    KIND: ClassVar[str] = "decision"

    decision: str
    value: Scalar
    explanation: str
    confidence: float
    component: str
    component_version: str
    frame_time_s: float | None = None
    wall_time_s: float = field(default_factory=time.time)
    input_frame_ids: tuple[int | str, ...] = ()
    evidence: Evidence | None = None
    workflow: str = ""
    session_id: str = ""
    safety: bool = False
    proposal: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _text(self.decision, "decision")
        object.__setattr__(self, "value", _scalar(self.value, "decision value"))
        _text(self.explanation, "explanation")
        confidence = _finite(self.confidence, "confidence")
        if not 0.0 <= confidence <= 1.0:
            raise InputError(f"confidence is {confidence}; it must lie in [0, 1]")
        object.__setattr__(self, "confidence", confidence)
        _text(self.component, "component")
        _text(self.component_version, "component_version")
        object.__setattr__(self, "frame_time_s", _optional_finite(self.frame_time_s, "frame_time_s"))
        object.__setattr__(self, "wall_time_s", _finite(self.wall_time_s, "wall_time_s"))
        ids = self.input_frame_ids
        if isinstance(ids, str | bytes) or not isinstance(ids, Sequence | np.ndarray):
            raise InputError("input_frame_ids must be a sequence of frame indices or ids")
        frozen_ids: list[int | str] = []
        for i, fid in enumerate(ids):
            fid = fid.item() if isinstance(fid, np.generic) else fid
            if isinstance(fid, bool) or not isinstance(fid, int | str):
                raise InputError(f"input_frame_ids[{i}] is {fid!r}; frame ids are integers or text")
            frozen_ids.append(fid)
        object.__setattr__(self, "input_frame_ids", tuple(frozen_ids))
        if self.evidence is not None and not isinstance(self.evidence, Evidence):
            raise InputError("evidence must be an Evidence (or None)")
        _text(self.workflow, "workflow", required=False)
        _text(self.session_id, "session_id", required=False)
        for flag in ("safety", "proposal"):
            if not isinstance(getattr(self, flag), bool):
                raise InputError(f"{flag} must be True or False")
        object.__setattr__(self, "data", _freeze_data(self.data, "data"))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (every field)."""
        return {
            "decision": self.decision,
            "value": self.value,
            "explanation": self.explanation,
            "confidence": self.confidence,
            "component": self.component,
            "component_version": self.component_version,
            "frame_time_s": self.frame_time_s,
            "wall_time_s": self.wall_time_s,
            "input_frame_ids": list(self.input_frame_ids),
            "evidence": None if self.evidence is None else self.evidence.to_dict(),
            "workflow": self.workflow,
            "session_id": self.session_id,
            "safety": self.safety,
            "proposal": self.proposal,
            "data": dict(self.data),
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace), the form the audit log stores and hashes."""
        return canonical_json(self.to_dict(), where="decision record")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecisionRecord:
        """Inverse of :meth:`to_dict`; validates like the constructor."""
        if not isinstance(data, Mapping):
            raise InputError("a decision record must be a JSON object")
        _check_keys(data, _DECISION_FIELDS, "decision record")
        required = ("decision", "value", "explanation", "confidence", "component", "component_version")
        missing = [k for k in required if k not in data]
        if missing:
            raise InputError(f"decision record lacks field(s) {', '.join(missing)}")
        kwargs = dict(data)
        kwargs["input_frame_ids"] = tuple(kwargs.get("input_frame_ids", ()))
        if kwargs.get("evidence") is not None:
            kwargs["evidence"] = Evidence.from_dict(kwargs["evidence"])
        return cls(**kwargs)


@dataclass(frozen=True, kw_only=True)
class HumanAction:
    """Something a person did, with who did it and why; a record in the audit log like a decision.

    Parameters
    ----------
    action
        One of :data:`HUMAN_ACTIONS` (approve, override, veto, pause, resume, take_over, hand_back,
        acknowledge, set_autonomy, stop, annotate).
    operator
        The person's user name.
    role
        Their role when acting (``"operator"``, ``"physicist"``, ``"observer"``...).
    responds_to_seq
        ``seq`` of the log entry acted on (required for approve, override, veto and acknowledge).
    reason
        Why, in the person's words (may be empty).
    value
        The new value where the action sets one: the override value (``"hold"``), or the autonomy
        level (0-3) for ``set_autonomy``.
    wall_time_s
        When the person acted (Unix time, s). Defaults to now.
    workflow, session_id
        Which workflow and session the action belongs to.
    refused
        ``True`` when the action was attempted but refused (e.g. an observer clicked "approve");
        refused attempts are logged too, so that the record shows them.

    Raises
    ------
    InputError
        For an unknown action, an empty operator or role, a missing ``responds_to_seq`` where one is
        needed, or an autonomy level outside 0-3.
    """

    KIND: ClassVar[str] = "human_action"

    action: str
    operator: str
    role: str
    responds_to_seq: int | None = None
    reason: str = ""
    value: Scalar | None = None
    wall_time_s: float = field(default_factory=time.time)
    workflow: str = ""
    session_id: str = ""
    refused: bool = False

    def __post_init__(self) -> None:
        if self.action not in HUMAN_ACTIONS:
            raise InputError(f"unknown human action {self.action!r}; known: {', '.join(sorted(HUMAN_ACTIONS))}")
        _text(self.operator, "operator")
        _text(self.role, "role")
        seq = self.responds_to_seq
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
            raise InputError(f"responds_to_seq is {seq!r}; it must be the seq (>= 1) of a log entry")
        if seq is None and self.action in ACTIONS_NEEDING_SEQ:
            raise InputError(f"a {self.action!r} action must name the log entry it responds to (responds_to_seq)")
        _text(self.reason, "reason", required=False)
        if self.value is not None:
            object.__setattr__(self, "value", _scalar(self.value, "action value"))
        if self.action == "set_autonomy" and (
            isinstance(self.value, bool) or not isinstance(self.value, int) or self.value not in AUTONOMY_LEVELS
        ):
            raise InputError(f"set_autonomy needs an autonomy level 0-3 as value, got {self.value!r}")
        object.__setattr__(self, "wall_time_s", _finite(self.wall_time_s, "wall_time_s"))
        _text(self.workflow, "workflow", required=False)
        _text(self.session_id, "session_id", required=False)
        if not isinstance(self.refused, bool):
            raise InputError("refused must be True or False")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (every field)."""
        return {
            "action": self.action,
            "operator": self.operator,
            "role": self.role,
            "responds_to_seq": self.responds_to_seq,
            "reason": self.reason,
            "value": self.value,
            "wall_time_s": self.wall_time_s,
            "workflow": self.workflow,
            "session_id": self.session_id,
            "refused": self.refused,
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace), the form the audit log stores and hashes."""
        return canonical_json(self.to_dict(), where="human action")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HumanAction:
        """Inverse of :meth:`to_dict`; validates like the constructor."""
        if not isinstance(data, Mapping):
            raise InputError("a human action must be a JSON object")
        _check_keys(data, _ACTION_FIELDS, "human action")
        missing = [k for k in ("action", "operator", "role") if k not in data]
        if missing:
            raise InputError(f"human action lacks field(s) {', '.join(missing)}")
        return cls(**data)


#: Anything the audit log stores.
Record: TypeAlias = DecisionRecord | HumanAction

#: Record types by the ``kind`` the audit log stores them under.
RECORD_TYPES: Mapping[str, type[DecisionRecord] | type[HumanAction]] = MappingProxyType(
    {DecisionRecord.KIND: DecisionRecord, HumanAction.KIND: HumanAction}
)

_DECISION_FIELDS = tuple(f.name for f in fields(DecisionRecord))
_ACTION_FIELDS = tuple(f.name for f in fields(HumanAction))


def record_from_json(kind: str, payload: str) -> Record:
    """Rebuild a record from the ``kind`` and JSON ``payload`` the audit log stores.

    Raises
    ------
    InputError
        For an unknown kind, invalid JSON or a payload that is not a valid record of that kind.
    """
    if kind not in RECORD_TYPES:
        raise InputError(f"unknown record kind {kind!r}; known: {', '.join(sorted(RECORD_TYPES))}")
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, TypeError) as exc:
        raise InputError(f"{kind} payload is not valid JSON ({exc})") from None
    return RECORD_TYPES[kind].from_dict(data)
