import dataclasses
import json
import math
import struct
import zlib

import numpy as np
import pytest

from igikit.errors import InputError
from igikit.supervise import DecisionRecord, Evidence, HumanAction, canonical_json, record_from_json
from igikit.supervise.records import MAX_PNG_BYTES


def _png(width: int = 2, height: int = 2) -> bytes:
    """A real, decodable greyscale PNG (signature, IHDR, IDAT, IEND)."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    raw = b"".join(b"\x00" + bytes(range(width)) for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _beam_hold(**overrides: object) -> DecisionRecord:
    fields = dict(
        decision="beam",
        value="hold",
        explanation="beam hold: target 4.2 mm outside the gating boundary (limit 3.0 mm); confidence 0.93",
        confidence=0.93,
        component="mrgrt.gating",
        component_version="0.1.0",
        frame_time_s=12.375,
        wall_time_s=1_700_000_000.25,
        input_frame_ids=(98, 99),
        workflow="mrgrt",
        session_id="S001",
        safety=True,
        data={"outside_mm": 4.2, "limit_mm": 3.0},
    )
    fields.update(overrides)
    return DecisionRecord(**fields)  # type: ignore[arg-type]


def test_canonical_json_is_sorted_compact_and_stable() -> None:
    assert canonical_json({"b": 1, "a": [0.5, "é"], "c": {"z": None, "y": True}}) == (
        '{"a":[0.5,"é"],"b":1,"c":{"y":true,"z":null}}'
    )
    # numpy scalars and arrays become plain JSON numbers and lists
    assert canonical_json({"x": np.float32(0.5), "v": np.array([1, 2])}) == '{"v":[1,2],"x":0.5}'


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_canonical_json_refuses_non_finite_numbers_naming_the_key(bad: float) -> None:
    with pytest.raises(InputError, match=r"record\.stats\.dsc\[1\]"):
        canonical_json({"stats": {"dsc": [0.9, bad]}})


def test_canonical_json_refuses_types_json_cannot_hold() -> None:
    with pytest.raises(InputError, match="set"):
        canonical_json({"a": {1, 2}})
    with pytest.raises(InputError, match="non-text key"):
        canonical_json({1: "a"})
    with pytest.raises(InputError, match="raw bytes"):
        canonical_json({"png": b"\x89PNG"})


def test_decision_record_round_trips_and_serialises_identically() -> None:
    record = _beam_hold(evidence=Evidence.from_png(_png(), "frame 99 with contour"))
    text = record.to_json()
    assert text == _beam_hold(evidence=Evidence.from_png(_png(), "frame 99 with contour")).to_json()
    back = record_from_json("decision", text)
    assert back == record
    assert back.to_json() == text
    assert json.loads(text)["data"] == {"limit_mm": 3.0, "outside_mm": 4.2}
    assert back.evidence is not None and back.evidence.png_bytes() == _png()


def test_decision_record_is_immutable_and_detached_from_the_callers_data() -> None:
    data = {"outside_mm": 4.2}
    record = _beam_hold(data=data)
    data["outside_mm"] = 0.0
    assert record.data["outside_mm"] == 4.2
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.value = "on"  # type: ignore[misc]
    with pytest.raises(TypeError):
        record.data["outside_mm"] = 1.0  # type: ignore[index]


def test_decision_record_accepts_numpy_numbers_and_boundary_confidences() -> None:
    record = _beam_hold(confidence=np.float32(1.0), frame_time_s=np.float64(0.5), input_frame_ids=np.arange(3))
    assert record.confidence == 1.0 and type(record.confidence) is float
    assert record.input_frame_ids == (0, 1, 2)
    assert _beam_hold(confidence=0, frame_time_s=None).frame_time_s is None


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"confidence": 1.2}, "confidence is 1.2"),
        ({"confidence": -0.01}, "confidence is -0.01"),
        ({"confidence": math.nan}, "confidence is nan"),
        ({"confidence": True}, "confidence must be a number"),
        ({"explanation": "  "}, "explanation must not be empty"),
        ({"decision": ""}, "decision must not be empty"),
        ({"value": math.inf}, "decision value is inf"),
        ({"value": [1, 2]}, "decision value must be"),
        ({"frame_time_s": math.nan}, "frame_time_s is nan"),
        ({"input_frame_ids": (1, 2.5)}, "input_frame_ids[1]"),
        ({"input_frame_ids": "12"}, "input_frame_ids must be a sequence"),
        ({"data": {"dose": {"d98_gy": math.nan}}}, "data.dose.d98_gy is nan"),
        ({"safety": 1}, "safety must be True or False"),
        ({"evidence": "overlay.png"}, "evidence must be an Evidence"),
    ],
)
def test_decision_record_rejects_bad_fields(overrides: dict, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        _beam_hold(**overrides)
    assert fragment in str(info.value)


def test_evidence_kinds_and_limits() -> None:
    assert Evidence.from_path("overlays/frame_099.png").to_dict()["kind"] == "path"
    assert Evidence.from_uri("http://127.0.0.1:8000/frames/99").ref.endswith("/99")
    with pytest.raises(InputError, match="PNG signature"):
        Evidence.from_png(b"GIF89a....")
    with pytest.raises(InputError, match="more than"):
        Evidence.from_png(_png() + b"\x00" * MAX_PNG_BYTES)
    with pytest.raises(InputError, match="not valid base64"):
        Evidence("png", "not base64 !!")
    with pytest.raises(InputError, match="evidence kind"):
        Evidence("jpeg", "x")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="not an inline PNG"):
        Evidence.from_path("a.png").png_bytes()


def test_human_action_round_trip_and_validation() -> None:
    action = HumanAction(
        action="set_autonomy", operator="carol", role="physicist", value=2, reason="tracking stable", wall_time_s=5.0
    )
    assert record_from_json("human_action", action.to_json()) == action
    refused = HumanAction(action="approve", operator="obs", role="observer", responds_to_seq=7, refused=True)
    assert record_from_json("human_action", refused.to_json()) == refused

    with pytest.raises(InputError, match="unknown human action 'approve_all'"):
        HumanAction(action="approve_all", operator="a", role="operator")
    with pytest.raises(InputError, match="must name the log entry"):
        HumanAction(action="veto", operator="a", role="operator")
    with pytest.raises(InputError, match="responds_to_seq is 0"):
        HumanAction(action="approve", operator="a", role="operator", responds_to_seq=0)
    with pytest.raises(InputError, match="autonomy level 0-3"):
        HumanAction(action="set_autonomy", operator="a", role="physicist", value=4)
    with pytest.raises(InputError, match="operator must not be empty"):
        HumanAction(action="pause", operator="", role="operator")


def test_record_from_json_rejects_unknown_kinds_fields_and_bad_json() -> None:
    with pytest.raises(InputError, match="unknown record kind 'alert'"):
        record_from_json("alert", "{}")
    with pytest.raises(InputError, match="not valid JSON"):
        record_from_json("decision", "{not json")
    payload = json.loads(_beam_hold().to_json())
    payload["colour"] = "red"
    with pytest.raises(InputError, match="unknown field"):
        record_from_json("decision", json.dumps(payload))
    del payload["colour"], payload["confidence"]
    with pytest.raises(InputError, match="lacks field"):
        record_from_json("decision", json.dumps(payload))
