"""The gating report: one self-contained HTML file (plots embedded as PNG) and a JSON summary.

Plots: the target trajectory (SI and AP against time: measured, predicted, reference) with the
beam-on time shaded; the target DVH of the three strategies; tracking confidence with holds
marked; a montage of frames with the target contour, the gating boundary (where it stood on that
frame) and the predicted target; with re-centring on, the end-exhale baseline estimate over time
with the window's shift. Tables: the delivery metrics, the decisions by reason with an example
explanation each, the re-centring proposals and what supervision did with them, per-stage latency,
and the audit-log check.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from igikit.core.figures import REPORT_CSS, format_value, img_tag, png_bytes, true_spans
from igikit.io.atomic import atomic_path
from igikit.supervise.audit import AuditLog
from igikit.workflows.mrgrt.delivery import STRATEGIES, DeliveryOutcome, decisions_by_reason
from igikit.workflows.mrgrt.operators import contours_px
from igikit.workflows.mrgrt.workflow import GatingRun, GatingSettings

#: Colours shared by every plot (colour-blind safe, Okabe-Ito).
COLOURS = {
    "measured": "#0072B2",
    "predicted": "#D55E00",
    "reference": "#000000",
    "beam": "#009E73",
    "hold": "#CC79A7",
    "boundary": "#F0E442",
    "plan": "#999999",
    "no motion management": "#E69F00",
    "gating": "#009E73",
    "tracking": "#56B4E9",
}

#: Data sources to cite when a report is made on the shared real data.
CITATIONS = {
    "magdeburg_liver": "Cine-MRI: OvGU Magdeburg open data (3 T Siemens Skyra, sagittal liver navigator), "
    "via the public repository pohl-michel/2D-MR-image-prediction (BSD-3).",
}


def summary(run: GatingRun, outcome: DeliveryOutcome) -> dict[str, Any]:
    """Everything the report states, as plain JSON values (the ``--json`` output)."""
    records = [rec for _, rec in run.decisions]
    reasons = [str(rec.data.get("reason", rec.value)) for rec in records]
    with AuditLog(run.audit_path, create=False) as audit:
        check = audit.verify(expected_head=run.audit_head or None)
    return {
        "case": run.case.case_id,
        "session_id": run.session_id,
        "frames_replayed": run.n_frames,
        "frame_rate_hz": run.case.frame_rate_hz,
        "realtime": run.realtime,
        "settings": run.settings.as_dict(),
        "metrics": outcome.metrics(),
        "decisions": {
            "total": len(records),
            "beam_on": sum(1 for r in records if r.value == "on"),
            "hold": sum(1 for r in records if r.value == "hold"),
            "safety": sum(1 for r in records if r.safety),
            "by_reason": decisions_by_reason(reasons),
        },
        "audit_log": {
            "path": str(run.audit_path),
            "rows": check.n_rows,
            "verified": check.ok,
            "head_hash": check.head_hash,
        },
        "supervision": dict(run.supervision),
        "recentring": dict(run.recentring),
        "session_file": None if run.session_path is None else str(run.session_path),
        "latency": {
            "end_to_end_ms": _stats(run.latency.end_to_end),
            "per_operator_ms": {k: _stats(v) for k, v in run.latency.per_operator.items()},
            "frames_received": run.latency.frames_received,
            "frames_processed": run.latency.frames_processed,
            "frames_dropped": run.latency.frames_dropped,
            "deadline_ms": run.latency.deadline_ms,
            "deadline_misses": run.latency.deadline_misses,
            "source_lost_events": run.latency.source_lost_events,
        },
    }


def _stats(s: Any) -> dict[str, float | None]:
    def v(x: float) -> float | None:
        return round(float(x), 3) if np.isfinite(x) else None

    return {"median": v(s.median_ms), "p95": v(s.p95_ms), "p99": v(s.p99_ms), "max": v(s.max_ms)}


# ------------------------------------------------------------------------------------ plots
def _column(frames: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.asarray([f[key] for f in frames])


def trajectory_figure(run: GatingRun, outcome: DeliveryOutcome) -> bytes:
    """SI and AP displacement against time: measured, predicted (at t + latency), reference; beam-on shaded."""
    import matplotlib.pyplot as plt

    frames = run.frames
    t = _column(frames, "acquisition_time_s")
    planned = _planned_centroid(run)
    measured = _column(frames, "centroid_mm") - planned
    predicted = _column(frames, "predicted_centroid_mm") - planned
    ready = _column(frames, "prediction_ready").astype(bool)
    ref = outcome.grid_centroid_mm - planned
    fig, axes = plt.subplots(2, 1, figsize=(11, 5.6), sharex=True)
    ref_label = "truth" if outcome.reference_kind == "truth" else "reference (tracked)"
    for a, (ax, name) in enumerate(zip(axes, ("SI (mm, + inferior)", "AP (mm, + posterior)"), strict=True)):
        for s, e in true_spans(outcome.grid_time_s, outcome.grid_beam_on):
            ax.axvspan(s, e, color=COLOURS["beam"], alpha=0.18, lw=0)
        for s, e in true_spans(outcome.grid_time_s, outcome.grid_outside):
            ax.axvspan(s, e, ymin=0.0, ymax=0.04, color=COLOURS["hold"], alpha=0.9, lw=0)
        if outcome.reference_kind == "truth":
            ax.plot(outcome.grid_time_s, ref[:, a], color=COLOURS["reference"], lw=1.2, label=ref_label)
        ax.plot(t, measured[:, a], ".-", color=COLOURS["measured"], lw=0.8, ms=3, label="tracked (at acquisition)")
        ax.plot(
            t[ready] + run.settings.latency_s, predicted[ready, a], "-", color=COLOURS["predicted"], lw=1.1,
            label=f"predicted (for acquisition + {run.settings.latency_ms:g} ms)",
        )
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    handles, labels = axes[0].get_legend_handles_labels()
    from matplotlib.patches import Patch

    handles += [Patch(color=COLOURS["beam"], alpha=0.3), Patch(color=COLOURS["hold"])]
    labels += ["beam on (gating, as delivered)", "reference target outside the window"]
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8.5, frameon=False)
    fig.subplots_adjust(top=0.86, hspace=0.08)
    return png_bytes(fig)


def _planned_centroid(run: GatingRun) -> np.ndarray:
    from igikit.core.masks import centroid_mm

    return centroid_mm(run.first_label, run.spacing_mm)


def dvh_figure(outcome: DeliveryOutcome) -> bytes:
    """Cumulative target DVH: plan and the three strategies."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 3.7))
    for name in ("plan", *STRATEGIES):
        levels, fraction = outcome.dvh[name]
        s = outcome.dose[name]
        style = "--" if name == "plan" else "-"
        ax.plot(levels, 100 * fraction, style, color=COLOURS[name], lw=1.6, label=f"{name} (D98 {s.d98:.2f})")
    ax.axvline(1.0, color="k", lw=0.6, alpha=0.5)
    ax.set_xlabel("dose / prescription")
    ax.set_ylabel("target volume (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8.5, loc="lower left")
    return png_bytes(fig)


def confidence_figure(run: GatingRun) -> bytes:
    """Tracking confidence per frame, the minimum confidence, and the hold decisions marked."""
    import matplotlib.pyplot as plt

    frames = run.frames
    t = _column(frames, "acquisition_time_s")
    conf = _column(frames, "confidence").astype(float)
    on = _column(frames, "beam_on").astype(bool)
    safety = _column(frames, "safety").astype(bool)
    fig, ax = plt.subplots(figsize=(11, 2.8))
    ax.plot(t, np.nan_to_num(conf, nan=0.0), "-", color=COLOURS["measured"], lw=1, label="tracking confidence")
    threshold = run.settings.confidence_threshold()
    ax.axhline(threshold, color="k", ls=":", lw=1, label=f"minimum {threshold:g}")
    geo = ~on & ~safety
    ax.plot(t[geo], np.full(geo.sum(), 1.04), "|", color=COLOURS["hold"], ms=7, label="hold: target outside")
    ax.plot(t[safety], np.full(safety.sum(), 1.1), "x", color="#D55E00", ms=6, label="hold: safety interlock")
    last_t = float(t[-1]) if t.size else 0.0
    for _, rec in run.decisions:
        if rec.safety and rec.data.get("reason") == "source_lost":
            when = float(rec.frame_time_s or last_t) + float(rec.data.get("silence_ms", 0.0)) / 1e3
            ax.axvline(when, color="#D55E00", lw=1.2, ls="--", label="source lost")
    ax.set_ylim(-0.02, 1.16)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("confidence")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, 1.2), frameon=False)
    return png_bytes(fig)


def baseline_figure(run: GatingRun) -> bytes:
    """The end-exhale baseline's drift over time (SI, AP), the window shift in effect, the threshold
    band around it, the hard limit and the proposals (re-centring runs only)."""
    import matplotlib.pyplot as plt

    frames = run.frames
    t = _column(frames, "acquisition_time_s")
    drift = np.stack([np.asarray(f["baseline_drift_mm"], dtype=float) for f in frames]) if frames else np.empty((0, 2))
    shift = np.stack([np.asarray(f["boundary_shift_mm"], dtype=float) for f in frames]) if frames else np.empty((0, 2))
    hold = _column(frames, "drift_hold").astype(bool) if frames else np.empty(0, bool)
    cfg = run.settings.recentre_config()
    fig, axes = plt.subplots(2, 1, figsize=(11, 4.6), sharex=True)
    for a, (ax, name) in enumerate(zip(axes, ("SI drift (mm, + inferior)", "AP drift (mm, + posterior)"),
                                       strict=True)):
        ax.fill_between(t, shift[:, a] - cfg.threshold_mm, shift[:, a] + cfg.threshold_mm, step="post",
                        color=COLOURS["boundary"], alpha=0.35, lw=0, label=f"window shift ± {cfg.threshold_mm:g} mm")
        ax.step(t, shift[:, a], where="post", color="#8a7a00", lw=1.4, label="window shift in effect")
        ax.plot(t, drift[:, a], "-", color=COLOURS["measured"], lw=1.6, label="end-exhale baseline drift (estimate)")
        for limit in (-cfg.max_shift_mm, cfg.max_shift_mm):
            ax.axhline(limit, color="#D55E00", ls=":", lw=1)
        for s, e in true_spans(t, hold):
            ax.axvspan(s, e, color="#D55E00", alpha=0.15, lw=0)
        for p in run.recentring.get("proposals", []):
            ax.axvline(p["time_s"], color="k", lw=0.8, ls="--")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].plot([], [], ":", color="#D55E00", label=f"hard limit ± {cfg.max_shift_mm:g} mm (beam held beyond)")
    axes[0].plot([], [], "--", color="k", lw=0.8, label="proposal")
    axes[-1].set_xlabel("time (s)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8.5, frameon=False)
    fig.subplots_adjust(top=0.84, hspace=0.08)
    return png_bytes(fig)


def montage_frames(run: GatingRun, n: int = 8) -> list[int]:
    """Row indices of ``run.frames`` to show: spread over the run, with some holds among them."""
    total = len(run.frames)
    if total == 0:
        return []
    picks = set(np.linspace(0, total - 1, min(n, total)).round().astype(int).tolist())
    holds = [i for i, f in enumerate(run.frames) if not f["beam_on"]]
    safety = [i for i, f in enumerate(run.frames) if f["safety"] and i > 0]
    for group in (safety[:1], holds[len(holds) // 2 : len(holds) // 2 + 1]):
        for i in group:
            if len(picks) < n + 2:
                picks.add(i)
    return sorted(picks)[: n + 2]


def montage_figure(run: GatingRun, rows: Sequence[int] | None = None) -> bytes:
    """Frames with the tracked target, the predicted target, the gating boundary (and the truth)."""
    import matplotlib.pyplot as plt

    rows = montage_frames(run) if rows is None else list(rows)
    case = run.case
    from igikit.workflows.mrgrt.gating import Gate

    gate = Gate(run.first_label, run.spacing_mm, run.settings.gating_config())
    boundary = gate.boundary
    br = np.flatnonzero(boundary.any(axis=1))
    bc = np.flatnonzero(boundary.any(axis=0))
    pad_r = int(np.ceil(25.0 / run.spacing_mm[0]))
    pad_c = int(np.ceil(25.0 / run.spacing_mm[1]))
    h, w = boundary.shape
    r0, r1 = max(0, br[0] - pad_r), min(h, br[-1] + pad_r + 1)
    c0, c1 = max(0, bc[0] - pad_c), min(w, bc[-1] + pad_c + 1)
    ncols = min(5, max(1, len(rows)))
    nrows = int(np.ceil(len(rows) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.9 * nrows), squeeze=False)
    extent = (c0 - 0.5, c1 - 0.5, r1 - 0.5, r0 - 0.5)

    def draw(ax: Any, mask: np.ndarray, colour: str, style: str = "-", lw: float = 1.3) -> None:
        for poly in contours_px(mask):
            p = np.asarray(poly + poly[:1])
            ax.plot(p[:, 1], p[:, 0], style, color=colour, lw=lw)

    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), rows, strict=False):
        f = run.frames[i]
        k = int(f["frame_id"])
        image = case.frames[:, :, k].astype(np.float32)
        finite = image[np.isfinite(image)]
        lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
        ax.imshow(np.nan_to_num(image[r0:r1, c0:c1], nan=hi), cmap="gray", vmin=lo, vmax=hi, extent=extent)
        gate.recentre(np.asarray(f.get("boundary_shift_mm", (0.0, 0.0)), dtype=float))  # where it stood then
        draw(ax, gate.boundary, COLOURS["boundary"], "-", 1.2)
        if case.labels is not None and k < case.labels.shape[2]:
            draw(ax, case.labels[:, :, k], "white", ":", 1.0)
        if f["frame_valid"]:
            draw(ax, f["target_mask"], "#00C853", "-", 1.4)
            draw(ax, f["predicted_mask"], COLOURS["predicted"], "--", 1.4)
            pc = np.asarray(f["predicted_centroid_mm"]) / np.asarray(run.spacing_mm)
            ax.plot(pc[1], pc[0], "+", color=COLOURS["predicted"], ms=8, mew=1.5)
        state = "ON" if f["beam_on"] else "HOLD"
        colour = "#007A5E" if f["beam_on"] else "#B3005E"
        ax.set_title(f"frame {k}, {f['acquisition_time_s']:.1f} s\nbeam {state}: {f['gate_reason']}", fontsize=8.5,
                     color=colour)
    from matplotlib.lines import Line2D

    legend = [
        Line2D([], [], color=COLOURS["boundary"], lw=1.2, label="gating boundary"),
        Line2D([], [], color="#00C853", lw=1.4, label="tracked target"),
        Line2D([], [], color=COLOURS["predicted"], ls="--", lw=1.4, label="predicted target (+ centre)"),
    ]
    if case.labels is not None:
        legend.append(Line2D([], [], color="0.4", ls=":", lw=1.0, label="true target"))
    fig.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=8.5, frameon=False)
    fig.subplots_adjust(bottom=0.1 if nrows > 1 else 0.16, wspace=0.05, hspace=0.3)
    return png_bytes(fig)


def render_figures(run: GatingRun, outcome: DeliveryOutcome) -> dict[str, bytes]:
    """Every plot of the report, as PNG bytes by name."""
    import matplotlib

    matplotlib.use("Agg")
    figures = {
        "trajectory": trajectory_figure(run, outcome),
        "dvh": dvh_figure(outcome),
        "confidence": confidence_figure(run),
        "montage": montage_figure(run),
    }
    if run.recentring:
        figures["baseline"] = baseline_figure(run)
    return figures


# ------------------------------------------------------------------------------------- html
_CSS = REPORT_CSS + """\
.ok { color: #007A5E; font-weight: 600; } .bad { color: #B3005E; font-weight: 600; }
.meta { color: #666; font-size: 0.9em; } img { max-width: 100%; }
.row { display: flex; gap: 1.5em; flex-wrap: wrap; align-items: flex-start; }
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for j, cell in enumerate(row):
            cls = ' class="num"' if j in numeric else ""
            cells.append(f"<td{cls}>{cell if isinstance(cell, _Raw) else html.escape(str(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


class _Raw(str):
    """Table cell text that is already HTML."""


def render_html(
    run: GatingRun, outcome: DeliveryOutcome, facts: Mapping[str, Any], figures: Mapping[str, bytes]
) -> str:
    """The report as one HTML document (``facts`` from :func:`summary`)."""
    s = run.settings
    m = facts["metrics"]
    esc = html.escape
    ref_note = (
        "Reference: the <b>true</b> target of the phantom (its every-frame labels)."
        if outcome.reference_kind == "truth"
        else "<b>This case has no true target.</b> The tracked target positions serve as the reference: "
        "“outside the window” and the dose are judged against what the tracker saw, so tracking errors "
        "are not counted against the gating."
    )
    bo = m["beam_off_latency"]
    dose = m["dose"]
    metric_rows = [
        ("Duty cycle (gating)", format_value(m["duty_cycle_pct"], 1, " %"), "beam-on time / treatment window"),
        ("Beam-on time with the target outside the window", format_value(m["beam_on_outside_pct"], 1, " %"),
         f"more than {s.threshold_pct:g} % of the {outcome.reference_kind} target outside the boundary"),
        ("Beam-off latency after the target leaves (median / p95 / max)",
         f"{format_value(bo['median_ms'], 0)} / {format_value(bo['p95_ms'], 0)} / {format_value(bo['max_ms'], 0)} ms",
         f"{bo['exits']} exits: {bo['stopped']} stopped, {bo['already_held']} already held, {bo['missed']} "
         f"returned before the beam stopped; includes the {s.latency_ms:g} ms system latency"),
        ("Prediction RMSE at acquisition + latency",
         f"{format_value(m['prediction_rmse_mm']['predicted'], 2)} mm (no prediction "
         f"{format_value(m['prediction_rmse_mm']['no prediction'], 2)} mm)",
         f"{s.predictor} predictor, 2D, against the {outcome.reference_kind} position"),
    ]
    if outcome.reference_kind == "truth":
        metric_rows.append(("Tracking centroid error (mean)", format_value(m["tracking_error_mm"], 2, " mm"),
                            f"{s.tracking_method} tracker vs truth, frames after the first"))
    metric_table = _table(("metric", "value", "how"), metric_rows, numeric=(1,))
    dose_rows = [
        (name, *(format_value(dose[name][key], 3) for key in ("d98", "d2", "mean")))
        for name in ("plan", *STRATEGIES)
    ]
    dose_table = _table(("strategy", "D98 / prescription", "D2 / prescription", "mean"), dose_rows, numeric=(1, 2, 3))

    dec = facts["decisions"]
    examples: dict[str, tuple[str, bool]] = {}
    for _, rec in run.decisions:
        reason = str(rec.data.get("reason", rec.value))
        examples.setdefault(reason, (rec.explanation, rec.safety))
    dec_rows = [
        (reason, count, "yes" if examples.get(reason, ("", False))[1] else "no", examples.get(reason, ("", False))[0])
        for reason, count in dec["by_reason"].items()
    ]
    dec_table = _table(("reason", "decisions", "safety", "example explanation"), dec_rows, numeric=(1,))
    audit = facts["audit_log"]
    audit_line = (
        f'<span class="{"ok" if audit["verified"] else "bad"}">'
        f'{"verified" if audit["verified"] else "FAILED verification"}</span>: {audit["rows"]} rows, '
        f'one per gating decision ({dec["total"]} decisions: {dec["beam_on"]} beam on, {dec["hold"]} hold, '
        f'{dec["safety"]} safety), the rest supervision (session start, alerts, veto windows closing, human '
        f'actions); head hash <code>{esc(audit["head_hash"][:16])}…</code>'
    )
    supervision_html = _supervision_html(facts.get("supervision") or {})
    recentring_html = _recentring_html(run, figures)
    lat = run.latency
    lat_rows = [
        (name, st.n, format_value(st.median_ms, 2), format_value(st.p99_ms, 2), format_value(st.max_ms, 2))
        for name, st in [*lat.per_operator.items(), ("end-to-end", lat.end_to_end)]
    ]
    lat_table = _table(("stage", "frames", "median ms", "p99 ms", "max ms"), lat_rows, numeric=(1, 2, 3, 4))
    settings_rows = [
        ("gating margin", f"{s.margin_mm:g} mm"),
        ("outside threshold / hysteresis", f"{s.threshold_pct:g} % / {min(s.hysteresis_pct, s.threshold_pct):g} %"),
        ("system latency (prediction horizon, beam response)", f"{s.latency_ms:g} ms"),
        ("tracking / prediction", f"{s.tracking_method} / {s.predictor}"),
        ("minimum confidence", _threshold_text(s)),
        ("stale-frame deadline / source timeout", f"{s.max_frame_age_ms:g} ms / {s.source_timeout_s * 1e3:g} ms"),
        ("baseline-drift re-centring", _recentre_text(s)),
        ("patient profile", s.profile),
    ]
    citation = CITATIONS.get(run.case.case_id, "")
    files = [f"audit log <code>{esc(str(run.audit_path.name))}</code>"]
    if run.session_path is not None:
        files.insert(0, f"session file <code>{esc(run.session_path.name)}</code>")
    mode = "at its native frame rate" if run.realtime else "as fast as possible"
    rate = f"{run.case.frame_rate_hz:.2f} Hz" if run.case.frame_rate_hz else "unknown rate"
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    grid = outcome.grid_time_s
    grid_ms = 1e3 * float(grid[1] - grid[0]) if grid.size > 1 else 0.0
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>igikit gating report: {esc(run.case.case_id)}</title>
<style>{_CSS}</style></head><body>
<h1>MR-linac gating report: {esc(run.case.case_id)}</h1>
<p class="meta">{run.n_frames} frames ({rate}) replayed {mode} through tracking, prediction and gating;
session {esc(run.session_id)}, {stamp}. Files beside this report: {", ".join(files)}.
{esc(citation)}</p>
<p class="note">{ref_note}</p>
<h2>Delivery</h2>
{metric_table}
<p class="meta">Window {outcome.window_s[0]:.2f}–{outcome.window_s[1]:.2f} s (from the first command reaching
the beam to the last frame), replayed on a {grid_ms:.0f} ms grid.</p>
<div class="row"><div style="max-width: 520px">{dose_table}
<p class="meta">2D dose model in the cine plane: plan = target + {s.margin_mm:g} mm with a 4 mm Gaussian
penumbra, D98 = 1; delivered dose averaged over beam-on time. No motion management: beam always on,
aperture fixed. Gating: the beam follows the gating decisions. Tracking: the aperture follows the
predicted target (each aim after the system latency); it stops only for safety holds.</p></div>
<div>{img_tag(figures["dvh"], "DVH")}</div></div>
<h2>Target trajectory and beam</h2>
{img_tag(figures["trajectory"], "trajectory")}
<h2>Tracking confidence and holds</h2>
{img_tag(figures["confidence"], "confidence")}
{recentring_html}
<h2>Supervision</h2>
{supervision_html}
<h2>Decisions</h2>
<p>{audit_line}</p>
{dec_table}
<h2>Frames</h2>
{img_tag(figures["montage"], "frame montage")}
<h2>Settings and real-time performance</h2>
<div class="row"><div>{_table(("setting", "value"), settings_rows)}</div>
<div>{lat_table}<p class="meta">{esc(lat.summary_line())}</p></div></div>
</body></html>
"""


def _recentre_text(settings: GatingSettings) -> str:
    if not settings.recentre:
        return "off"
    c = settings.recentre_config()
    return (f"on: propose when the end-exhale baseline (median of {c.cycles} cycles) is more than "
            f"{c.threshold_mm:g} mm off for {c.persist_s:g} s; hard limit {c.max_shift_mm:g} mm")


def _recentring_html(run: GatingRun, figures: Mapping[str, bytes]) -> str:
    """The re-centring section: settings, proposals and what became of them, the shift, the baseline plot."""
    rec = run.recentring
    if not rec:
        return ""
    shifts = rec.get("shifts", [])

    def outcome(p: Mapping[str, Any]) -> str:
        later = [x for x in shifts if x["time_s"] >= p["time_s"] and (x["shift_si_mm"], x["shift_ap_mm"]) ==
                 (p["shift_si_mm"], p["shift_ap_mm"])]
        if later:
            return f"in effect at {later[0]['time_s']:.1f} s"
        return {"proposed": "waited for a human's approval; never approved",
                "pending": "vetoed or cancelled before its veto window closed",
                "displayed": "displayed only (manual)", "handed_over": "handed over to the human (alert); not applied",
                "safe_state": "refused: the session was in its safe state"}.get(p["mode"], p["mode"])

    rows = [
        (f"{p['time_s']:.1f}", p["value"], p["cycles"], format_value(p["spread_mm"], 1, " mm"),
         format_value(p["confidence"], 2),
         p["mode"].replace("_", " "), outcome(p))
        for p in rec.get("proposals", [])
    ]
    none = "<p>No proposal: the baseline never stayed beyond the threshold for the persistence time.</p>"
    header = ("time s", "proposed window shift", "cycles", "spread", "confidence", "supervision", "outcome")
    table = _table(header, rows, numeric=(0, 2, 3, 4)) if rows else none
    final = rec.get("final_shift_mm", [0.0, 0.0])
    holds = rec.get("limit_holds", [])
    hold_text = (
        "; ".join(f"{h['start_s']:.1f}–{h.get('end_s', h['start_s']):.1f} s (drift {h['drift_mm']:.1f} mm)"
                  for h in holds)
        if holds else "none"
    )
    return f"""<h2>Baseline drift and re-centring</h2>
<p>{html.escape(_recentre_text(run.settings))}. A proposal moves the gating window <i>and</i> the gated
beam's aperture together (a baseline shift); it takes effect only as the autonomy level allows, and the
beam never turns on because of a shift that has not taken effect. Window shift at the end:
<b>SI {final[0]:+.1f} mm, AP {final[1]:+.1f} mm</b> ({len(shifts)} shift(s) took effect). Beam held beyond the
hard limit: {html.escape(hold_text)}.</p>
{table}
{img_tag(figures["baseline"], "baseline drift")}"""


def _supervision_html(sup: Mapping[str, Any]) -> str:
    """The supervision section: level, who supervised, what supervision did to the beam decisions."""
    if not sup:
        return "<p>Not supervised.</p>"

    def counts(d: Mapping[str, int]) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in d.items()) or "none"

    rows = [
        ("autonomy level", f"{sup['level_start']} ({sup['level_label']}) at the start, {sup['level_end']} at the end"),
        ("veto window (level 2) / handover below confidence (level 3)",
         f"{sup['veto_window_s']:g} s / {sup['handover_confidence']:g}"),
        ("beam decisions by what supervision did", counts(sup["modes"])),
        ("alerts raised (each held the beam until acknowledged)", counts(sup["alerts"])),
        ("acknowledged automatically (headless policy)", str(sup["acknowledged_automatically"])),
        ("human actions", counts(sup["human_actions"])),
        ("people", ", ".join(sup["people"]) or "none"),
    ]
    note = (
        f'<p class="note"><b>Headless run.</b> {html.escape(sup["note"])}.</p>' if sup["headless"] else
        f'<p class="meta">{html.escape(sup["note"])}.</p>'
    )
    return note + _table(("", ""), rows)


def write_report(
    path: str | Path, run: GatingRun, outcome: DeliveryOutcome, facts: Mapping[str, Any] | None = None
) -> Path:
    """Write the HTML report (atomically); returns its path."""
    path = Path(path)
    facts = summary(run, outcome) if facts is None else facts
    page = render_html(run, outcome, facts, render_figures(run, outcome))
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def write_json(path: str | Path, facts: Mapping[str, Any]) -> Path:
    """Write the summary as JSON (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(facts, indent=2) + "\n")
    return path


def _threshold_text(settings: GatingSettings) -> str:
    """The confidence interlock's threshold, saying what a calibrated confidence means."""
    model = settings.confidence_model()
    text = f"{settings.confidence_threshold():g}"
    return text + (f" (calibrated: probability that the centroid is within {model.tolerance_mm:g} mm)" if model else "")
