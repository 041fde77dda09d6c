"""The navigation report: one self-contained HTML file (plots embedded as PNG).

Plots: the trajectory in two planes that contain the planned path (the label map resliced there,
the structures in colour, the planned line and the tip's course, warnings marked); the signed
distance to each structure over time with its warning and critical distances and the 95 % band
of the TRE at the tip, the distance to the target beneath, lost and frozen tool-stream time
shaded. Tables: the run's facts, every warning decision with its explanation and what the
supervision did with it, the tool-stream alerts with their detection delay.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from igikit.core.figures import REPORT_CSS, format_value, img_tag, png_bytes, true_spans
from igikit.io.atomic import atomic_path
from igikit.workflows.surgery.navigation import Z95, Navigator, label_at

if TYPE_CHECKING:
    from igikit.core.image import Image
    from igikit.workflows.surgery.navigate import NavigationRun

#: Colour-blind safe colours (Okabe-Ito), one per structure in plan order, then the rest.
PALETTE = ("#0072B2", "#009E73", "#56B4E9", "#F0E442", "#999999")
LEVEL_COLOURS = {"clear": "#009E73", "warning": "#E69F00", "critical": "#D55E00"}
TARGET_COLOUR = "#CC79A7"

_CSS = REPORT_CSS + """\
.critical { color: #B3005E; font-weight: 600; } .warning { color: #A05A00; font-weight: 600; }
.clear { color: #007A5E; } .meta { color: #666; font-size: 0.9em; } img { max-width: 100%; }
"""


def _plane_axes(navigator: Navigator, tips: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Origin, path axis and two lateral axes of the report's planes (the planned path when there is one)."""
    plan = navigator.plan
    start = plan.entry_mm if plan.entry_mm is not None else tips[0]
    d = plan.target_mm - start
    if float(np.linalg.norm(d)) < 1e-6:
        d = np.array([1.0, 0.0, 0.0])
    d = d / np.linalg.norm(d)
    helper = np.array([0.0, 1.0, 0.0]) if abs(d[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = helper - (helper @ d) * d
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    return start, d, e1, e2


def trajectory_figure(run: NavigationRun, navigator: Navigator, labels: Image) -> bytes:
    """The label map resliced in two planes along the planned path, with the planned line and the tip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from scipy.ndimage import map_coordinates

    recs = run.records
    tips = np.stack([r.tip_mm for r in recs])
    start, d, e1, e2 = _plane_axes(navigator, tips)
    depth = (tips - start) @ d
    length = float(np.linalg.norm(navigator.plan.target_mm - start))
    u = np.linspace(min(-20.0, depth.min() - 10), max(length + 25.0, depth.max() + 10), 360)
    v = np.linspace(-30.0, 30.0, 121)
    structures = navigator.plan.structures
    target_label = label_at(labels, navigator.plan.target_mm)
    target_label = 0 if target_label in {s.label for s in structures} else target_label
    colours = [PALETTE[k % len(PALETTE)] for k in range(len(structures))]
    array = np.asarray(labels.array)
    fig, axes = plt.subplots(2, 1, figsize=(10.5, 7.2), sharex=True)
    for ax, lat, name in ((axes[0], e1, "lateral 1"), (axes[1], e2, "lateral 2")):
        uu, vv = np.meshgrid(u, v)
        pts = start + uu[..., None] * d + vv[..., None] * lat
        idx = labels.physical_to_index(pts.reshape(-1, 3))
        sampled = map_coordinates(array, idx[:, ::-1].T, order=0, mode="constant", cval=0).reshape(uu.shape)
        shown = np.zeros(uu.shape, dtype=np.int16)
        shown[sampled > 0] = 1  # any tissue (e.g. the organ)
        if target_label:
            shown[sampled == target_label] = 2
        for k, s in enumerate(structures):
            shown[sampled == s.label] = k + 3
        cmap = ListedColormap(["#ffffff", "#eeeeee", TARGET_COLOUR, *colours])
        ax.imshow(
            shown,
            origin="lower",
            extent=(u[0], u[-1], v[0], v[-1]),
            cmap=cmap,
            vmin=0,
            vmax=len(structures) + 2,
            interpolation="nearest",
            aspect="equal",
        )
        ax.plot([0, length], [0, 0], "--", color="#444444", lw=1.2, label="planned trajectory")
        ax.plot(depth, (tips - start) @ lat, color="#000000", lw=1.0, label="tool tip (navigated)")
        truth = [r.true_tip_mm for r in recs if r.true_tip_mm is not None]
        if truth:
            t = np.stack(truth)
            ax.plot((t - start) @ d, (t - start) @ lat, color="#56B4E9", lw=0.8, alpha=0.9, label="tool tip (truth)")
        ax.plot([length], [0.0], "+", ms=9, color="#000000", label=f"target ({navigator.plan.target_name} centre)")
        if run.supervision is not None:
            for dec in run.supervision.log.decisions:
                if dec["level"] == "clear":
                    continue
                r = next((x for x in recs if x.frame_id == dec["frame_id"]), None)
                if r is not None:
                    p = r.tip_mm - start
                    ax.plot(p @ d, p @ lat, "v", color=LEVEL_COLOURS[dec["level"]], ms=7)
        ax.set_ylabel(f"{name} (mm)")
        ax.set_ylim(v[0], v[-1])
    axes[1].set_xlabel("depth along the planned trajectory from the entry (mm)")
    handles, _ = axes[0].get_legend_handles_labels()
    from matplotlib.patches import Patch

    handles += [Patch(color=c, label=s.name) for c, s in zip(colours, structures, strict=True)]
    if target_label:
        handles.append(Patch(color=TARGET_COLOUR, label=f"{navigator.plan.target_name} (label {target_label})"))
    axes[0].legend(handles=handles, loc="upper left", fontsize=8, ncol=3)
    axes[0].set_title("the label map in two planes through the planned trajectory; triangles: warnings")
    fig.tight_layout()
    return png_bytes(fig)


def distance_figure(run: NavigationRun, navigator: Navigator) -> bytes:
    """Signed distance to each structure (with the TRE's 95 % band) and to the target over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = run.records
    t = np.array([r.time_s for r in recs])
    t = t - t[0]
    tre = np.array([r.tre_mm for r in recs])
    dist = np.stack([r.distances_mm for r in recs])
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10.5, 6.4), sharex=True, height_ratios=[2, 1])
    top = 0.0
    for k, s in enumerate(navigator.plan.structures):
        c = PALETTE[k % len(PALETTE)]
        ax.plot(t, dist[:, k], color=c, lw=1.2, label=s.name)
        ax.fill_between(t, dist[:, k] - Z95 * tre, dist[:, k] + Z95 * tre, color=c, alpha=0.18, lw=0)
        ax.axhline(s.warn_mm, color=c, ls=":", lw=0.9)
        ax.axhline(s.critical_mm, color=c, ls="--", lw=0.9)
        top = max(top, s.warn_mm)
    lo = min(-2.0, float(np.nanmin(dist)) - 1.0)
    nearest = float(np.max(np.nanmin(dist, axis=0)))  # the farthest structure's closest approach
    ax.set_ylim(lo, min(max(4.0 * top, 25.0, nearest + 10.0), 80.0))
    ax.set_ylabel("signed distance (mm)")
    ax.set_title(
        "tip to structures: band = 95 % bound of the registration error (1.645 TRE); dotted: warning, "
        "dashed: critical; grey: no pose (tool lost), pink: tool stream frozen",
        fontsize=9,
    )
    ax2.plot(t, [r.target_distance_mm for r in recs], color="#000000", lw=1.2, label=navigator.plan.target_name)
    ax2.set_ylabel(f"to the {navigator.plan.target_name} (mm)")
    ax2.set_xlabel("time (s)")
    states = np.array([r.stream_state for r in recs])
    period = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    gaps = [(float(t[k]), float(t[k + 1])) for k in np.flatnonzero(np.diff(t) > 3.0 * period)] if period else []
    for a in (ax, ax2):
        for s0, s1 in true_spans(t, states == "frozen"):
            a.axvspan(s0, s1, color="#CC79A7", alpha=0.25, lw=0)
        for s0, s1 in gaps:
            a.axvspan(s0, s1, color="#999999", alpha=0.3, lw=0)
    if run.supervision is not None:
        t0 = recs[0].time_s
        for dec in run.supervision.log.decisions:
            ax.axvline(dec["time_s"] - t0, color=LEVEL_COLOURS[dec["level"]], lw=0.8, alpha=0.8)
        for a in run.supervision.log.stream_alarms:
            r = next((x for x in recs if x.frame_id == a.frame_id), None)
            if r is not None:
                ax2.axvline(r.time_s - t0, color="#CC79A7", lw=1.5)
                ax2.annotate(
                    f"tool {a.kind} ({a.detection_ms:.0f} ms)",
                    (r.time_s - t0, ax2.get_ylim()[1]),
                    fontsize=7,
                    rotation=90,
                    va="top",
                    ha="right",
                )
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    numeric: Sequence[int] = (),
    classes: Sequence[str] | None = None,
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        num = ' class="num"'
        cells = "".join(f"<td{num if j in numeric else ''}>{html.escape(str(c))}</td>" for j, c in enumerate(row))
        cls = f' class="{classes[i]}"' if classes else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_html(
    run: NavigationRun, navigator: Navigator, facts: Mapping[str, Any], figures: Mapping[str, bytes], title: str
) -> str:
    """The report page."""
    reg = facts["registration"]
    final = facts.get("final", {})
    upd = facts["update_ms"]
    rows = [
        (
            "poses navigated",
            f"{facts['poses']} over {format_value(facts['duration_s'], 1, ' s')}"
            + (f" ({format_value(facts['rate_hz'], 1, ' Hz')})" if facts.get("rate_hz") else ""),
        ),
        (
            "registration",
            f"{reg['fiducials']} fiducials, FLE {format_value(reg['fle_mm'], 2, ' mm')}, FRE "
            f"{format_value(reg['fre_mm'], 2, ' mm')}, predicted TRE at the {navigator.plan.target_name} "
            f"{format_value(reg['tre_at_target_mm'], 2, ' mm')}",
        ),
        (
            "final tip",
            f"{format_value(final.get('target_distance_mm'), 1, ' mm')} from the {navigator.plan.target_name}, "
            f"{format_value(final.get('lateral_mm'), 1, ' mm')} off the planned line, tool "
            f"{format_value(final.get('angle_deg'), 1, ' deg')} from the planned direction",
        ),
        (
            "update (pose in, distances and warnings out)",
            f"median {format_value(upd['median'], 3, ' ms')}, p99 {format_value(upd['p99'], 3, ' ms')}, "
            f"max {format_value(upd['max'], 3, ' ms')}",
        ),
    ]
    for key, label in (("pivot", "tool calibration"), ("registration_detail", "fiducial registration")):
        if key in facts:
            rows.append((label, str(facts[key])))
    if "simulation" in facts:
        sim = facts["simulation"]
        rows.append(
            (
                "tip error vs simulated truth",
                f"RMS {format_value(sim['tip_error_rms_mm'], 2, ' mm')} (max "
                f"{format_value(sim['tip_error_max_mm'], 2, ' mm')}); predicted TRE RMS "
                f"{format_value(sim['predicted_tre_rms_mm'], 2, ' mm')}",
            )
        )
    struct_rows = [
        (
            name,
            format_value(s["min_distance_mm"], 1, " mm"),
            format_value(s["min_at_s"], 2, " s"),
            format_value(s["tre_at_min_mm"], 2, " mm"),
            format_value(s["warn_mm"], 1, " mm"),
            format_value(s["critical_mm"], 1, " mm"),
            s["updates_warning"],
            s["updates_critical"],
        )
        for name, s in facts.get("structures", {}).items()
    ]
    warn = facts.get("warnings", {}).get("log", [])
    warn_rows = [
        (
            format_value(w["time_s"], 2, " s"), w["structure"], w["level"], w["explanation"],
            format_value(w["confidence"], 2), w["mode"],
        )
        for w in warn
    ]
    alerts = facts.get("stream_alerts", [])
    alert_rows = [
        (
            a["kind"], format_value(a["detected_after_ms"], 0, " ms"), format_value(a["limit_ms"], 0, " ms"),
            a["frame_id"],
        )
        for a in alerts
    ]
    audit = facts.get("audit_log", {})
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    headless = facts.get("headless")
    note = (
        '<p class="note">No human supervisor watched (headless): every alert was acknowledged automatically '
        "(logged as 'igikit-headless') once its condition had cleared.</p>"
        if headless
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">igikit navigation report, {stamp}. Coordinates: image (patient, LPS), mm.</p>
{note}
<h2>Summary</h2>
{_table(("what", "value"), rows)}
<h2>Trajectory</h2>
{img_tag(figures["trajectory"], "trajectory")}
<h2>Distances over time</h2>
{img_tag(figures["distances"], "distances")}
<h2>Structures</h2>
{
        _table(
            (
                "structure",
                "closest",
                "at",
                "TRE there",
                "warning at",
                "critical at",
                "updates in warning",
                "updates critical",
            ),
            struct_rows,
            numeric=(1, 2, 3, 4, 5, 6, 7),
        )
    }
<h2>Warnings (decision records)</h2>
<p class="meta">A level change is one decision record in the audit log; escalations are safety decisions (in
effect at once at every autonomy level). "Margin not guaranteed": the 95 % lower bound of the distance
(distance - 1.645 TRE) falls inside the structure's critical margin.</p>
{
        _table(
            ("time", "structure", "level", "explanation", "confidence", "supervision"),
            warn_rows,
            classes=[w["level"] for w in warn],
        )
        if warn_rows
        else "<p>No warning: every structure stayed clear.</p>"
    }
<h2>Tool stream</h2>
{
        _table(("alert", "raised after", "limit", "last frame"), alert_rows)
        if alert_rows
        else "<p>The tool stream never stopped or froze.</p>"
    }
<p class="meta">Audit log {html.escape(str(audit.get("path", "")))}: {audit.get("rows", "?")} rows,
{"verified (hash chain intact)" if audit.get("verified") else "NOT verified"}.
Session file: {html.escape(str(facts.get("session_file") or "–"))}.</p>
</body></html>
"""


def write_report(
    path: str | Path,
    run: NavigationRun,
    navigator: Navigator,
    facts: Mapping[str, Any],
    *,
    labels: Image,
    title: str = "navigation",
) -> Path:
    """Render the plots and write the report (atomically)."""
    figures = {"trajectory": trajectory_figure(run, navigator, labels), "distances": distance_figure(run, navigator)}
    text = render_html(run, navigator, facts, figures, title)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


__all__ = ["distance_figure", "render_html", "trajectory_figure", "write_report"]
