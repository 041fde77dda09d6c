"""Small helpers the workflows' HTML reports share: figures to PNG, inline images, numbers as text, runs of a
flag over time."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

#: The page, heading, table and note styles the workflows' HTML reports share (each adds its own classes).
REPORT_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em auto; max-width: 1180px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { background: #fff6e0; border-left: 4px solid #E69F00; padding: 0.5em 0.8em; }
"""


def png_bytes(fig: Any, dpi: int = 110) -> bytes:
    """A Matplotlib figure as PNG bytes (tight bounding box); the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def img_tag(png: bytes, alt: str) -> str:
    """An HTML ``<img>`` holding ``png`` inline (a data URL), with ``alt`` escaped."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def format_value(v: Any, digits: int = 2, unit: str = "") -> str:
    """``v`` for a report table: "–" when missing or not finite, floats with ``digits`` decimals, then ``unit``."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def true_spans(times: np.ndarray, flags: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) of each run of True in ``flags`` sampled at ``times``; a run lasts one step past its last sample."""
    f = np.asarray(flags, dtype=bool)
    if not f.any():
        return []
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    edges = np.diff(np.concatenate([[0], f.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(float(times[s]), float(times[e]) + step) for s, e in zip(starts, ends, strict=True)]
