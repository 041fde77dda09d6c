"""From the session to every browser: frames encoded once, off the treatment loop, sent latest-wins.

The treatment loop's only cost is :meth:`Broadcaster.on_frame`: it puts the state in a one-item
slot and wakes the encoder thread. The encoder windows the frame to 8 bits, JPEG-encodes it,
extracts mask outlines, and serialises one JSON text that every viewer receives unchanged. Each
viewer holds only the newest frame text: a slow viewer skips frames instead of queueing them, so no
viewer can slow another or the loop. Session events (alerts, decisions, human actions) are never
skipped; they are queued per viewer (bounded) and sent before the next frame.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from igikit.supervise.session import FrameState, Overlay, SessionEvent, SupervisedSession

log = logging.getLogger(__name__)

#: Per-viewer queue of event / state messages; a viewer that falls this far behind is closed.
MAX_QUEUED = 2000


class IntensityWindow:
    """8-bit display window that follows the stream's intensity range slowly (no per-frame flicker)."""

    def __init__(self, *, low_pct: float = 1.0, high_pct: float = 99.5, follow: float = 0.1) -> None:
        self.low_pct, self.high_pct, self.follow = low_pct, high_pct, follow
        self.low: float | None = None
        self.high: float | None = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` as uint8 in the current window (updated with this frame)."""
        sample = np.asarray(frame[::2, ::2], dtype=np.float32)
        finite = sample[np.isfinite(sample)]
        if finite.size:
            lo, hi = (float(v) for v in np.percentile(finite, [self.low_pct, self.high_pct]))
            if self.low is None or self.high is None:
                self.low, self.high = lo, hi
            else:
                self.low += self.follow * (lo - self.low)
                self.high += self.follow * (hi - self.high)
        low = self.low if self.low is not None else 0.0
        high = self.high if self.high is not None and self.high > low else low + 1.0
        scaled = (np.nan_to_num(np.asarray(frame, dtype=np.float32), nan=low) - low) * (255.0 / (high - low))
        return np.clip(scaled, 0, 255).astype(np.uint8)


def _outline(mask: np.ndarray) -> list[list[list[float]]]:
    import cv2

    m = np.ascontiguousarray(np.asarray(mask) > 0, dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(float).tolist() for c in contours if len(c) >= 1]


def overlay_json(overlay: Overlay) -> dict[str, Any]:
    """An overlay as the page draws it: polylines (``paths``) in pixel ``[x, y]``."""
    if overlay.kind == "mask":
        assert overlay.mask is not None
        paths = _outline(overlay.mask)
        kind = "contour"
    else:
        paths = [[list(p) for p in overlay.points_xy]]
        kind = overlay.kind
    return {"kind": kind, "label": overlay.label, "style": overlay.style, "paths": paths}


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def encode_frame(state: FrameState, window: IntensityWindow, *, safe_state: bool, quality: int = 85) -> str:
    """The JSON text of one ``frame`` message (JPEG as a data URL)."""
    import cv2

    image = window(state.frame)
    ok, jpeg = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding of frame {state.frame_id} failed")
    h, w = image.shape
    return json.dumps(
        {
            "type": "frame",
            "frame_id": state.frame_id,
            "t": state.acquisition_time_s,
            "published": state.published_wall_s,
            "encoded": time.time(),
            "width": w,
            "height": h,
            "image": "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii"),
            "overlays": [overlay_json(o) for o in state.overlays],
            "beam_on": state.beam_on,
            "output": state.output,
            "confidence": _number(state.confidence),
            "explanation": state.explanation,
            "trace": {k: _number(v) for k, v in state.trace.items()},
            "band": None if state.trace_band is None else [float(v) for v in state.trace_band],
            "safe_state": safe_state,
        },
        separators=(",", ":"),
    )


@dataclass(eq=False)
class Viewer:
    """One connected browser: its newest frame and its queue of other messages."""

    name: str
    role: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    frame: str | None = None
    queue: deque[str] = field(default_factory=deque)
    overflowed: bool = False
    frames_sent: int = 0


class Broadcaster:
    """Fans a session's frames, events and state out to the connected viewers.

    Parameters
    ----------
    session
        The supervised session.
    state_interval_s
        How often the supervision state is re-sent without a change (veto-window countdowns).
    """

    def __init__(self, session: SupervisedSession, *, state_interval_s: float = 0.5) -> None:
        self.session = session
        self.state_interval_s = state_interval_s
        self.window = IntensityWindow()
        self.viewers: set[Viewer] = set()
        self.latest_frame: str | None = None
        self.frames_encoded = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slot: FrameState | None = None
        self._slot_lock = threading.Lock()
        self._wake = threading.Event()
        self._state_dirty = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._encode_loop, name="igikit-console-encoder", daemon=True)
        self._unsubscribe = [session.subscribe_frames(self.on_frame), session.subscribe(self.on_event)]

    # ------------------------------------------------------------------ threads -> loop
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start encoding; messages are delivered on ``loop`` (the server's event loop)."""
        self._loop = loop
        self._thread.start()

    def stop(self) -> None:
        """Stop encoding and unsubscribe from the session."""
        for leave in self._unsubscribe:
            leave()
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def on_frame(self, state: FrameState) -> None:
        """Called on the treatment loop: hand the state over, nothing else."""
        with self._slot_lock:
            self._slot = state
        self._wake.set()

    def on_event(self, event: SessionEvent) -> None:
        """Called on whichever thread acted: queue the event for every viewer."""
        text = json.dumps({"type": "event", "event": event.to_dict()}, separators=(",", ":"), default=str)
        self._state_dirty = True
        self._wake.set()
        self._post(text, frame=False)

    def _post(self, text: str, *, frame: bool) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._deliver, text, frame)
        except RuntimeError:  # loop closed between the check and the call (shutdown)
            pass

    def _deliver(self, text: str, frame: bool) -> None:
        if frame:
            self.latest_frame = text
        for viewer in self.viewers:
            if frame:
                viewer.frame = text
            else:
                if len(viewer.queue) >= MAX_QUEUED:
                    viewer.overflowed = True
                viewer.queue.append(text)
            viewer.wake.set()

    def state_message(self) -> str:
        """The supervision state as a ``state`` message."""
        return json.dumps({"type": "state", "state": self.session.snapshot()}, separators=(",", ":"), default=str)

    def _encode_loop(self) -> None:
        last_state = 0.0
        while not self._stop.is_set():
            self._wake.wait(timeout=self.state_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._slot_lock:
                state, self._slot = self._slot, None
            try:
                self.session.tick()  # veto windows close even when no frame arrives
                if state is not None:
                    text = encode_frame(state, self.window, safe_state=self.session.in_safe_state)
                    self.frames_encoded += 1
                    self._post(text, frame=True)
                now = time.monotonic()
                if self._state_dirty or now - last_state >= self.state_interval_s:
                    self._state_dirty = False
                    last_state = now
                    self._post(self.state_message(), frame=False)
            except Exception:  # a bad frame must not end the console
                log.exception("console encoder failed on a frame")
