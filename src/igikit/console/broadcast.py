"""From the session to every browser: frames encoded once, off the treatment loop, sent latest-wins.

The treatment loop's only cost is :meth:`Broadcaster.on_frame`: it puts the state in a one-item
slot and wakes the encoder thread. The encoder windows the frame to 8 bits, JPEG-encodes it,
extracts mask outlines, and serialises one JSON text that every viewer receives unchanged. Each
viewer holds only the newest frame text: a slow viewer skips frames instead of queueing them, so no
viewer can slow another or the loop. Session events (alerts, decisions, human actions) are never
skipped; they are queued per viewer (bounded) and sent before the next frame.

Navigation sessions also publish a 3D scene (rarely) and tool states (20-60 Hz): the scene is
encoded once, queued like an event and re-sent to each viewer that connects; tool states are
encoded on the same thread and sent latest-wins, like frames.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from igikit.console.scene import Scene, ToolState, encode_scene, encode_tool
from igikit.supervise.session import FrameState, HeatMap, Overlay, SessionEvent, SupervisedSession, TracePlot

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


#: Opacity of a heat map's colours over the frame.
HEAT_ALPHA = 0.8
#: Points of the heat map's colour scale sent for the page's legend.
HEAT_LEGEND_STOPS = 9


@functools.lru_cache(maxsize=1)
def _heat_lut() -> np.ndarray:
    """The heat map's colours, (256, 3) BGR: OpenCV's inferno (perceptually uniform, dark purple to yellow)."""
    import cv2

    return np.asarray(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0, :])


def blend_heatmap(grey: np.ndarray, heat: HeatMap) -> np.ndarray:
    """The 8-bit frame with ``heat`` blended over it (``HEAT_ALPHA``), as BGR ``(H, W, 3)`` uint8.

    Voxels whose value is NaN or below ``heat.transparent_below`` show the frame alone.
    """
    values = np.asarray(heat.values, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        index = np.clip((values - heat.low) * (255.0 / (heat.high - heat.low)), 0, 255)
        shown = np.isfinite(values)
        if heat.transparent_below is not None:
            shown &= values >= heat.transparent_below
    colour = _heat_lut()[np.nan_to_num(index).astype(np.uint8)].astype(np.float32)
    out = np.repeat(np.asarray(grey, dtype=np.float32)[..., None], 3, axis=2)
    out[shown] += HEAT_ALPHA * (colour[shown] - out[shown])
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def heatmap_legend(heat: HeatMap) -> dict[str, Any]:
    """The colour scale as the page draws its legend: ``stops`` are ``[value, "#rrggbb"]``."""
    lut = _heat_lut()
    stops = []
    for k in range(HEAT_LEGEND_STOPS):
        fraction = k / (HEAT_LEGEND_STOPS - 1)
        b, g, r = (int(c) for c in lut[round(255 * fraction)])
        stops.append([heat.low + fraction * (heat.high - heat.low), f"#{r:02x}{g:02x}{b:02x}"])
    return {
        "label": heat.label,
        "units": heat.units,
        "low": float(heat.low),
        "high": float(heat.high),
        "transparent_below": _number(heat.transparent_below),
        "stops": stops,
    }


def _plot_json(plot: TracePlot | None) -> dict[str, Any] | None:
    if plot is None:
        return None
    return {"title": plot.title, "units": dict(plot.units), "window_s": float(plot.window_s)}


def encode_frame(state: FrameState, window: IntensityWindow, *, safe_state: bool, quality: int = 85) -> str:
    """The JSON text of one ``frame`` message (JPEG as a data URL; PNG with a heat map, whose colours
    JPEG's halved chroma resolution would smear over small frames)."""
    import cv2

    image = window(state.frame)
    if state.heatmap is None:
        ok, data = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
        media = "image/jpeg"
    else:
        image = blend_heatmap(image, state.heatmap)
        ok, data = cv2.imencode(".png", image, [int(cv2.IMWRITE_PNG_COMPRESSION), 1])
        media = "image/png"
    if not ok:
        raise RuntimeError(f"image encoding of frame {state.frame_id} failed")
    h, w = image.shape[:2]
    return json.dumps(
        {
            "type": "frame",
            "frame_id": state.frame_id,
            "t": state.acquisition_time_s,
            "published": state.published_wall_s,
            "encoded": time.time(),
            "width": w,
            "height": h,
            "image": f"data:{media};base64," + base64.b64encode(data.tobytes()).decode("ascii"),
            "overlays": [overlay_json(o) for o in state.overlays],
            "beam_on": state.beam_on,
            "output": state.output,
            "confidence": _number(state.confidence),
            "explanation": state.explanation,
            "trace": {k: _number(v) for k, v in state.trace.items()},
            "band": None if state.trace_band is None else [float(v) for v in state.trace_band],
            "heatmap": None if state.heatmap is None else heatmap_legend(state.heatmap),
            "plot": _plot_json(state.trace_plot),
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
    tool: str | None = None


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
        self.latest_scene: str | None = None
        self.latest_tool: str | None = None
        self.tools_encoded = 0
        self._scene_slot: Scene | None = None
        self._tool_slot: ToolState | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slot: FrameState | None = None
        self._slot_lock = threading.Lock()
        self._wake = threading.Event()
        self._state_dirty = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._encode_loop, name="igikit-console-encoder", daemon=True)
        self._unsubscribe = [
            session.subscribe_frames(self.on_frame),
            session.subscribe(self.on_event),
            session.subscribe_scene(self.on_scene),
            session.subscribe_tool(self.on_tool),
        ]
        if session.latest_scene is not None:  # published before the console started
            self.on_scene(session.latest_scene)

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

    def on_scene(self, scene: Scene) -> None:
        """Called on the publisher's thread: hand the scene over to the encoder."""
        with self._slot_lock:
            self._scene_slot = scene
        self._wake.set()

    def on_tool(self, state: ToolState) -> None:
        """Called on the tracking loop: hand the state over, nothing else."""
        with self._slot_lock:
            self._tool_slot = state
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

    def _deliver_navigation(self, scene: str | None, tool: str | None) -> None:
        if scene is not None:
            self.latest_scene = scene
        if tool is not None:
            self.latest_tool = tool
        for viewer in self.viewers:
            if scene is not None:
                if len(viewer.queue) >= MAX_QUEUED:
                    viewer.overflowed = True
                viewer.queue.append(scene)  # sent before the tool states drawn in it
            if tool is not None:
                viewer.tool = tool
            viewer.wake.set()

    def _encode_navigation(self) -> None:
        with self._slot_lock:
            scene, self._scene_slot = self._scene_slot, None
            tool, self._tool_slot = self._tool_slot, None
        if scene is None and tool is None:
            return
        try:
            scene_text = None if scene is None else encode_scene(scene)
            tool_text = None if tool is None else encode_tool(tool)
        except Exception:  # a bad scene must not end the console
            log.exception("console encoder failed on a navigation scene or tool state")
            return
        if tool_text is not None:
            self.tools_encoded += 1
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed between the check and the call
                loop.call_soon_threadsafe(self._deliver_navigation, scene_text, tool_text)

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
            self._encode_navigation()
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
