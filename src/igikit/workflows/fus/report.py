"""The self-contained HTML report of a closed-loop sonication: curves, temperature map, metrics, decisions.

One file, no external resources: the figures are PNGs (matplotlib, Agg backend) embedded as
base64. It shows what the console shows live (issue 5, "Console and report"): power, the focus and
organ-at-risk temperature-time curves, the temperature map over the magnitude image with the
thermal-dose contours, then the metrics and every decision record.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from igikit.core.figures import png_bytes
from igikit.workflows.fus.loop import SonicationRun


def _png(fig: Any) -> str:
    """The figure as base64 PNG (closed)."""
    return base64.b64encode(png_bytes(fig, dpi=90)).decode("ascii")


def _figures(run: SonicationRun) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan = run.plan
    t = run.times_s
    figs: list[tuple[str, str]] = []
    i0, i1 = run.control_start_index, run.control_end_index

    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    ax = axes[0]
    ax.step(t, run.power_w, where="post", color="tab:purple")
    ax.axhline(plan.max_power_w, color="grey", ls=":", lw=1, label="maximum")
    ax.set_ylabel("power (W)")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[1]
    label = "focal spot" if plan.goal.type == "ablation" else "target mean"
    ax.plot(t, run.controlled_measured_c, ".", ms=3, color="tab:red", label=f"{label}, measured")
    ax.plot(t, run.controlled_true_c, "-", lw=1, color="k", label=f"{label}, true")
    ax.axhline(plan.goal.setpoint_c, color="tab:green", ls="--", lw=1, label="set point")
    if plan.goal.type == "hyperthermia":
        ax.axhspan(*plan.goal.window_c, color="tab:green", alpha=0.1)
    ax.set_ylabel("temperature (°C)")
    ax.legend(loc="lower right", fontsize=8)
    ax = axes[2]
    for name, values in run.oar_max_measured_c.items():
        line = ax.plot(t, values, ".", ms=3, label=f"{name} max, measured (3x3 mean)")[0]
        ax.plot(t, run.oar_max_true_c[name], "-", lw=1, color=line.get_color(), label=f"{name} max, true")
        limit = next(o.limit_c for o in plan.organs_at_risk if o.name == name)
        ax.axhline(limit, color=line.get_color(), ls="--", lw=1)
    ax.set_ylabel("organs at risk (°C)")
    ax.set_xlabel("time (s)")
    if run.oar_max_true_c:
        ax.legend(loc="upper left", fontsize=8)
    for ax in axes:
        if i0 < len(t):
            ax.axvspan(t[0], t[i0], color="grey", alpha=0.08)
        if i1 < len(t):
            ax.axvline(t[i1 - 1] if i1 > 0 else t[0], color="grey", lw=0.8)
    axes[0].set_title("grey: test sonication; vertical line: end of controlled heating", fontsize=9)
    figs.append(("Power and temperature-time curves", _png(fig)))

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    extent = (
        -0.5 * plan.spacing_mm[0],
        (plan.shape[1] - 0.5) * plan.spacing_mm[0],
        (plan.shape[0] - 0.5) * plan.spacing_mm[1],
        -0.5 * plan.spacing_mm[1],
    )
    for ax, (title, temp) in zip(
        axes,
        (
            (f"measured temperature at {run.snapshot_time_s:.0f} s (trusted voxels)", run.snapshot_measured_c),
            ("true peak temperature", run.peak_true_c),
        ),
        strict=True,
    ):
        ax.imshow(run.magnitude, cmap="gray", extent=extent)
        shown = np.ma.masked_invalid(np.where(temp >= plan.body_temperature_c + 2.0, temp, np.nan))
        top = max(plan.goal.setpoint_c + 3.0, float(np.max(run.peak_true_c)))
        im = ax.imshow(shown, cmap="hot", vmin=plan.body_temperature_c, vmax=top,
                       alpha=0.75, extent=extent)  # fmt: skip
        yy, xx = np.mgrid[: plan.shape[0], : plan.shape[1]]
        x, y = xx * plan.spacing_mm[0], yy * plan.spacing_mm[1]
        dose = run.dose_measured_min * run.reliable_mask if "measured" in title else run.dose_true_min
        if np.any(dose >= 1.0):
            ax.contour(x, y, dose, levels=[1.0, plan.goal.cem43_threshold_min], colors=["cyan", "blue"], linewidths=1)
        ax.contour(x, y, run.target_mask.astype(float), levels=[0.5], colors=["lime"], linewidths=1, linestyles="--")
        for mask in run.organ_masks.values():
            ax.contour(x, y, mask.astype(float), levels=[0.5], colors=["yellow"], linewidths=1, linestyles=":")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
        fig.colorbar(im, ax=ax, label="°C", shrink=0.8)
    fig.suptitle(
        f"dose contours: CEM43 1 min (cyan), {plan.goal.cem43_threshold_min:g} min (blue); "
        "target (green dashed), organs at risk (yellow dotted)",
        fontsize=9,
    )
    figs.append(("Temperature map over the magnitude image, with thermal-dose contours", _png(fig)))
    return figs


def render_report(run: SonicationRun, metrics: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    plan = run.plan
    esc = html.escape
    rows = []
    for key, value in metrics.items():
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        rows.append(f"<tr><th>{esc(str(key))}</th><td>{esc(str(value))}</td></tr>")
    records = [
        f"<tr><td>{r.frame_time_s if r.frame_time_s is not None else ''}</td><td>{esc(r.component)}</td>"
        f"<td>{'yes' if r.safety else 'no'}</td><td>{esc(str(r.value))}</td><td>{esc(r.explanation)}</td></tr>"
        for r in run.records
    ]
    figures = "".join(
        f'<h2>{esc(title)}</h2><img alt="{esc(title)}" src="data:image/png;base64,{data}">'
        for title, data in _figures(run)
    )
    organs = ", ".join(f"{o.name} (limit {o.limit_c:g} °C, {o.region.description})" for o in plan.organs_at_risk)
    goal = (
        f"ablation: focal spot at {plan.goal.focus_temperature_c:g} °C until {100 * plan.goal.lesion_coverage:.0f} % "
        f"of the target has CEM43 >= {plan.goal.cem43_threshold_min:g} min"
        if plan.goal.type == "ablation"
        else f"hyperthermia: target mean in {plan.goal.window_c[0]:g}-{plan.goal.window_c[1]:g} °C "
        f"for {plan.goal.duration_min:g} min"
    )
    model = (
        "none (no test sonication completed)"
        if run.model is None
        else f"gain {run.model.gain_c_per_w:.2f} °C/W, time constant {run.model.time_constant_s:.1f} s "
        f"(fit residual {run.model.residual_c:.2f} °C), identified from the measured test sonication"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>igikit fus run: {esc(plan.name)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
th{{background:#f4f4f4}}img{{max-width:100%}}</style></head><body>
<h1>Closed-loop sonication: {esc(plan.name)}</h1>
<p>Simulated (Pennes bioheat, 2D, profile <b>{esc(plan.profile)}</b>, {esc(plan.tissue)}); controller
<b>{esc(run.controller.upper())}</b>; goal {esc(goal)}; maximum power {plan.max_power_w:g} W; frames every
{plan.frame_interval_s:g} s. Target: {esc(plan.target.description)}. Organs at risk: {esc(organs or "none")}.</p>
<p>Thermal model: {esc(model)}.</p>
<p><b>Outcome:</b> {esc(run.stop_reason or "run ended")}</p>
{figures}
<h2>Metrics</h2><table>{"".join(rows)}</table>
<h2>Decision records</h2>
<table><tr><th>frame time (s)</th><th>component</th><th>safety</th><th>power (W)</th><th>explanation</th></tr>
{"".join(records) or '<tr><td colspan="5">none</td></tr>'}</table>
</body></html>
"""


def write_report(run: SonicationRun, metrics: dict[str, Any], path: str | Path) -> Path:
    """Write the HTML report atomically; returns its path."""
    from igikit.io.atomic import atomic_path

    target = Path(path)
    text = render_report(run, metrics)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
