"""Explanations: which parts of the image the network's target decision depends on.

Occlusion sensitivity (Zeiler & Fergus, "Visualizing and understanding convolutional networks",
ECCV 2014): a patch of the window is replaced by the window's mean intensity, the network is run
again, and the drop of its target score (mean probability over the predicted target) is credited
to the pixels of that patch. Model-agnostic: it needs only the ONNX model, so it explains exactly
the network that tracks. A map, normalised to [0, 1], comes back with a PNG overlay the console
can show next to the frame.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igikit.ai.personalize import Window
from igikit.errors import InputError


@dataclass(frozen=True, eq=False)
class SaliencyMap:
    """A saliency map on the frame's grid, [0, 1] (0 outside the analysed window), and its overlay PNG."""

    values: np.ndarray
    window: Window
    method: str
    target_score: float
    png: bytes = field(repr=False)

    def save_png(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.png)
        return path


def overlay_png(frame: np.ndarray, values: np.ndarray, *, alpha: float = 0.6) -> bytes:
    """The frame in grey with ``values`` ([0, 1]) as a red-to-yellow heat overlay, as PNG bytes."""
    from PIL import Image as PILImage

    lo, hi = np.percentile(frame, [1.0, 99.5])
    grey = np.clip((frame - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    v = np.clip(values, 0, 1)[..., None]
    heat = np.concatenate([np.ones_like(v), v, np.zeros_like(v)], axis=2)  # red -> yellow
    a = alpha * v
    out = (rgb * (1 - a) + heat * a) * 255
    buf = io.BytesIO()
    PILImage.fromarray(out.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def occlusion_sensitivity(
    model: Any,
    frame: np.ndarray,
    window: Window | None = None,
    *,
    extra_channels: np.ndarray | None = None,
    patch_px: int = 8,
    stride_px: int = 4,
    batch: int = 64,
) -> SaliencyMap:
    """Occlusion sensitivity of the target score of ``model`` on a frame.

    Parameters
    ----------
    model
        An :class:`~igikit.ai.runtime.OnnxModel` whose card normalises its input and whose output
        is logits (N, K, H, W).
    frame
        The raw 2D frame.
    window
        The part of the frame the model sees (:class:`~igikit.ai.personalize.Window`); by default
        the whole frame, which must then have the model's input size.
    extra_channels
        Further inputs on the window grid (C - 1, H, W), e.g. a prior mask; never occluded.
    patch_px, stride_px
        Occluding patch side and step, in window pixels.

    Returns
    -------
    SaliencyMap
        Mean score drop per pixel, scaled to [0, 1], on the frame's grid.
    """
    frame = np.asarray(frame, dtype=np.float32)
    if frame.ndim != 2 or patch_px < 1 or stride_px < 1:
        raise InputError("occlusion needs a 2D frame and positive patch and stride sizes")
    if window is None:
        if frame.shape[0] != frame.shape[1]:
            raise InputError(f"without a window the frame must be square (the model's input), got {frame.shape}")
        window = Window(((frame.shape[0] - 1) / 2.0, (frame.shape[1] - 1) / 2.0), frame.shape[0], 1.0)
    x = model.card.normalise(window.extract(frame))
    h, w = x.shape

    extra = None if extra_channels is None else np.asarray(extra_channels, np.float32).reshape((-1, h, w))

    def probs(batch_x: np.ndarray) -> np.ndarray:
        inputs = batch_x[:, None]
        if extra is not None:
            inputs = np.concatenate([inputs, np.repeat(extra[None], len(batch_x), axis=0)], axis=1)
        logits = model.run(inputs.astype(np.float32))
        return np.asarray((1.0 / (1.0 + np.exp(-logits))).mean(axis=1))

    p0 = probs(x[None])[0]
    target = (p0 >= 0.5).astype(np.float32)
    if not target.any():
        target = (p0 >= 0.5 * float(p0.max())).astype(np.float32)
    area = max(float(target.sum()), 1.0)
    base = float((p0 * target).sum() / area)
    fill = float(x.mean())
    positions = [(r, c) for r in range(0, max(h - patch_px, 0) + 1, stride_px)
                 for c in range(0, max(w - patch_px, 0) + 1, stride_px)]
    total = np.zeros((h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    for i in range(0, len(positions), batch):
        chunk = positions[i : i + batch]
        occluded = np.repeat(x[None], len(chunk), axis=0)
        for j, (r, c) in enumerate(chunk):
            occluded[j, r : r + patch_px, c : c + patch_px] = fill
        drops = base - (probs(occluded) * target).sum(axis=(1, 2)) / area
        for (r, c), d in zip(chunk, drops, strict=True):
            total[r : r + patch_px, c : c + patch_px] += max(float(d), 0.0)
            count[r : r + patch_px, c : c + patch_px] += 1
    sal = total / np.maximum(count, 1)
    if sal.max() > 0:
        sal /= sal.max()
    values = window.paste(sal.astype(np.float32), frame.shape)
    return SaliencyMap(values, window, "occlusion", base, overlay_png(frame, values))
