"""Small helpers the workflows' HTML reports share: figures to PNG, runs of a flag over time."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def png_bytes(fig: Any, dpi: int = 110) -> bytes:
    """A Matplotlib figure as PNG bytes (tight bounding box); the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def true_spans(times: np.ndarray, flags: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) of each run of True in ``flags`` sampled at ``times``; a run lasts one step past its last sample."""
    f = np.asarray(flags, dtype=bool)
    if not f.any():
        return []
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    edges = np.diff(np.concatenate([[0], f.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(float(times[s]), float(times[e]) + step) for s, e in zip(starts, ends, strict=True)]
