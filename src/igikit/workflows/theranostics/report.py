"""A self-contained HTML dosimetry report per patient (``igikit dose ... --report OUT.html``).

One file, figures embedded as PNG (matplotlib, Agg): the VOI table (volume, TIA with its standard
error and fitted model, mean / D98 / D50 / D2 / max dose), dose-map slices over the activity image
with the VOI outlines, cumulative dose-volume histograms per VOI, and the time-activity curve of
each VOI with its fit and the fit's uncertainty, plus the registrations and notes of the pipeline.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from igikit.core.figures import png_bytes
from igikit.core.image import Image
from igikit.errors import InputError
from igikit.workflows.theranostics.pipeline import DoseResult
from igikit.workflows.theranostics.tac import TacFit

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.9em}td,th{padding:.25em .7em;border-bottom:1px solid #e3e3e3;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.muted{color:#666;font-size:.9em}
img{max-width:100%}
"""


def _png(fig: Any) -> str:
    """The figure as a PNG data URL (closed)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig)).decode("ascii")


def _curve(fit: TacFit, t: np.ndarray) -> np.ndarray | None:
    p = fit.params
    if fit.model in ("mono", "physical"):
        return p["a0"] * np.exp(-p["k_per_h"] * t)
    if fit.model == "bi":
        return p["a0"] * (np.exp(-p["k_per_h"] * t) - np.exp(-p["k_uptake_per_h"] * t))
    if fit.model == "hybrid":
        # what the TIA integrates: flat to the first point, straight to the fitted tail, then the tail
        t0, t1, first = p["t_first_h"], p["t_tail_h"], p["a_first"]
        tail = p["a0"] * np.exp(-p["k_per_h"] * t)
        at1 = p["a0"] * np.exp(-p["k_per_h"] * t1)
        ramp = first + (at1 - first) * (t - t0) / (t1 - t0)
        return np.where(t <= t0, first, np.where(t <= t1, ramp, tail))
    return None


def _slices_figure(activity: np.ndarray, dose: np.ndarray, lab: np.ndarray | None, spacing: tuple[float, ...]) -> Any:
    import matplotlib.pyplot as plt

    centre = np.unravel_index(int(np.argmax(dose)), dose.shape)
    sx, sy, sz = spacing
    views = [
        ("axial", (centre[0],), sy / sx),
        ("coronal", (slice(None), centre[1]), sz / sx),
        ("sagittal", (slice(None), slice(None), centre[2]), sz / sy),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    vmax_a = float(np.percentile(activity, 99.5)) or 1.0
    vmax_d = float(dose.max()) or 1.0
    im = None
    for ax, (name, index, aspect) in zip(axes, views, strict=True):
        a = activity[index]
        d = dose[index]
        ax.imshow(a, cmap="gray", vmin=0, vmax=vmax_a, origin="lower", aspect=aspect)
        im = ax.imshow(np.ma.masked_less(d, 0.05 * vmax_d), cmap="inferno", vmin=0, vmax=vmax_d, alpha=0.6,
                       origin="lower", aspect=aspect)
        if lab is not None:
            sl = lab[index]
            for v in [int(x) for x in np.unique(sl) if x > 0]:
                ax.contour(sl == v, levels=[0.5], colors=[f"C{v % 10}"], linewidths=0.9)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.8, label="absorbed dose (Gy)")
    return fig


def write_report(
    result: DoseResult,
    path: str | Path,
    *,
    labels: Image | None = None,
    nuclide_name: str = "",
    voi_names: Mapping[int, str] | None = None,
    title: str = "Radionuclide therapy dosimetry",
) -> Path:
    """Write the HTML report of ``result`` (from :func:`.pipeline.compute_dose`) to ``path``.

    ``labels`` is the VOI label image given to ``compute_dose`` (for outlines and DVHs);
    ``voi_names`` optional names per label. The time-activity panels draw the fitted curve and,
    shaded, the curve scaled by one standard error of the TIA either way (the fit covariance
    propagated to the TIA, :func:`.tac.fit_time_activity`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if result.activity is None:
        raise InputError("the dose result carries no activity image to report on")
    names = dict(voi_names or {})
    dose = np.asarray(result.dose.array, dtype=np.float64)
    activity = np.asarray(result.activity.array, dtype=np.float64)
    lab = np.asarray(labels.array).astype(np.int64) if labels is not None else None
    figures: list[tuple[str, str]] = []

    fig = _slices_figure(activity, dose, lab, result.dose.spacing_mm)
    figures.append(("Dose over the activity image (earliest time point): slices through the dose maximum, "
                    "VOI outlines", _png(fig)))

    if lab is not None and result.vois:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        top = float(dose.max()) or 1.0
        grid = np.linspace(0.0, top * 1.02, 400)
        for k in result.vois:
            d = np.sort(dose[lab == k])
            frac = 1.0 - np.searchsorted(d, grid, side="left") / max(d.size, 1)
            ax.plot(grid, 100 * frac, color=f"C{k % 10}", label=names.get(k, f"VOI {k}"))
        ax.set_xlabel("absorbed dose (Gy)")
        ax.set_ylabel("volume receiving at least this dose (%)")
        ax.set_ylim(0, 101)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        figures.append(("Cumulative dose-volume histograms", _png(fig)))

    timed = [t for t in result.times_h if t is not None]
    if len(timed) > 1 and result.voi_activity_mbq:
        n = len(result.voi_activity_mbq)
        cols = min(3, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
        t = np.asarray(timed)
        tt = np.linspace(0.0, t.max() * 1.15, 300)
        for ax, (k, act) in zip(axes.ravel(), result.voi_activity_mbq.items(), strict=False):
            ax.plot(t, act, "o", color=f"C{k % 10}", label="measured")
            fit = result.vois[k].fit if k in result.vois else None
            curve = _curve(fit, tt) if fit is not None else None
            if fit is not None and curve is not None:
                ax.plot(tt, curve, "-", color=f"C{k % 10}", label=f"{fit.model} fit")
                if math.isfinite(fit.tia_se) and fit.tia > 0:
                    rel = fit.tia_se / fit.tia
                    ax.fill_between(tt, curve * (1 - rel), curve * (1 + rel), color=f"C{k % 10}", alpha=0.2,
                                    label=f"±1 SE (TIA ±{100 * rel:.1f}%)")
            elif fit is not None:
                ax.plot(t, act, "-", color=f"C{k % 10}", label=fit.model)
            ax.set_title(names.get(k, f"VOI {k}"), fontsize=10)
            ax.set_xlabel("time after administration (h)")
            ax.set_ylabel("activity (MBq)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in axes.ravel()[n:]:
            ax.axis("off")
        fig.tight_layout()
        figures.append(("Time-activity curves with fits and uncertainty", _png(fig)))

    def fmt(v: float, digits: int = 3) -> str:
        return f"{v:.{digits}g}" if math.isfinite(v) else "–"

    rows_html = []
    for k, v in result.vois.items():
        se = f" ± {fmt(v.tia_se_mbq_h, 2)}" if math.isfinite(v.tia_se_mbq_h) else ""
        model = v.fit.model if v.fit is not None else "physical decay"
        rows_html.append(
            f"<tr><td>{html.escape(names.get(k, f'VOI {k}'))}</td><td>{v.volume_ml:.1f}</td>"
            f"<td>{fmt(v.tia_mbq_h, 4)}{se}</td><td>{model}</td><td>{fmt(v.mean_gy)}</td><td>{fmt(v.d98_gy)}</td>"
            f"<td>{fmt(v.d50_gy)}</td><td>{fmt(v.d2_gy)}</td><td>{fmt(v.max_gy)}</td></tr>"
        )
    times = ", ".join(f"{t:g} h" for t in timed) or "one image (permanent implant)"
    reg_rows = [
        f"<tr><td>{i + 1} ({timed[i]:g} h)</td><td>{', '.join(f'{x:.1f}' for x in r.translation_mm)}</td>"
        f"<td>{', '.join(f'{x:.2f}' for x in r.rotation_deg)}</td><td>{r.correlation:.3f}</td></tr>"
        for i, r in enumerate(result.registrations) if r is not None
    ]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='muted'>{html.escape(nuclide_name)} · time points: {html.escape(times)} · maximum dose "
        f"{fmt(float(dose.max()))} Gy</p>",
    ]
    if result.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in result.notes) + "</ul>")
    if rows_html:
        parts.append("<h2>Volumes of interest</h2><table><tr><th>VOI</th><th>volume (mL)</th><th>TIA (MBq h)</th>"
                     "<th>fit</th><th>mean (Gy)</th><th>D98</th><th>D50</th><th>D2</th><th>max</th></tr>"
                     + "".join(rows_html) + "</table>")
    for caption, src in figures:
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' src='{src}'>")
    if reg_rows:
        parts.append("<h2>Registration to the earliest time point</h2><table><tr><th>time point</th>"
                     "<th>translation x, y, z (mm)</th><th>rotation (deg)</th><th>correlation</th></tr>"
                     + "".join(reg_rows) + "</table>")
    parts.append("<p class='muted'>Generated by igikit. A decision aid: doses are to be reviewed by a medical "
                 "physicist.</p></body></html>")
    out = Path(path)
    from igikit.io.atomic import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return out


def write_plan_report(
    payload: Mapping[str, Any],
    path: str | Path,
    *,
    scout: Image,
    masks: Mapping[str, np.ndarray],
    predicted_gy: np.ndarray,
    delivered_gy: np.ndarray | None = None,
    given_gbq: float | None = None,
    title: str = "Ho-166 radioembolisation plan",
) -> Path:
    """Write the HTML report of a scout-based microsphere plan (``igikit plan ho166 --report``).

    ``payload`` is the plan's JSON; the figures show the predicted dose over the scout (and, with a
    post-treatment image, the delivered dose and their difference) with the VOI outlines, and the
    dose-volume histograms of the VOIs, predicted against delivered.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = (given_gbq / float(payload["activity_gbq"])) if given_gbq else 1.0
    pred = np.asarray(predicted_gy, dtype=np.float64) * scale
    lab = np.zeros(pred.shape, dtype=np.int64)
    for k, m in enumerate(masks.values(), start=1):
        lab[np.asarray(m)] = k
    figures: list[tuple[str, str]] = []
    fig = _slices_figure(np.asarray(scout.array, dtype=np.float64), pred, lab, scout.spacing_mm)
    figures.append((f"Predicted dose over the scout ({scale * float(payload['activity_gbq']):.2f} GBq), VOI outlines",
                    _png(fig)))
    if delivered_gy is not None:
        fig = _slices_figure(np.asarray(scout.array, dtype=np.float64), np.asarray(delivered_gy), lab, scout.spacing_mm)
        figures.append(("Delivered dose (post-treatment SPECT registered to the scout)", _png(fig)))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    top = float(max(pred.max(), np.max(delivered_gy) if delivered_gy is not None else 0.0)) or 1.0
    grid = np.linspace(0.0, top * 1.02, 400)
    for k, (name, m) in enumerate(masks.items()):
        for arr, style, what in ((pred, "--", "predicted"), (delivered_gy, "-", "delivered")):
            if arr is None:
                continue
            d = np.sort(np.asarray(arr)[np.asarray(m)])
            frac = 1.0 - np.searchsorted(d, grid, side="left") / max(d.size, 1)
            ax.plot(grid, 100 * frac, style, color=f"C{k}", label=f"{name.replace('_', ' ')} {what}")
    ax.set_xlabel("absorbed dose (Gy)")
    ax.set_ylabel("volume receiving at least this dose (%)")
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figures.append(("Dose-volume histograms", _png(fig)))

    def fmt(v: Any, digits: int = 3) -> str:
        return f"{v:.{digits}g}" if isinstance(v, int | float) and math.isfinite(v) else "–"

    unc = payload.get("uncertainty") or {}
    rows = [("activity (GBq)", payload.get("activity_gbq"), unc.get("activity_se_gbq")),
            ("perfused liver (Gy, prescribed)", payload.get("perfused_liver_gy"), None),
            ("tumour (Gy)", payload.get("tumour_gy"), unc.get("tumour_se_gy")),
            ("normal liver (Gy)", payload.get("normal_liver_gy"), unc.get("normal_liver_se_gy")),
            ("lung (Gy)", payload.get("lung_gy"), unc.get("lung_se_gy")),
            ("T/N ratio", payload.get("tn_ratio"), unc.get("tn_se")),
            ("lung shunt fraction", payload.get("lung_shunt_fraction"), unc.get("lung_shunt_se"))]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p><b>Proposal awaiting a physicist's approval:</b> {html.escape(str(payload.get('explanation', '')))}</p>",
        f"<p class='muted'>confidence (limits hold under the uncertainty) {fmt(payload.get('confidence'))} · profile "
        f"{html.escape(str(payload.get('profile', '')))}</p>",
        "<h2>Plan</h2><table><tr><th>quantity</th><th>value</th><th>standard error</th></tr>"
        + "".join(f"<tr><td>{html.escape(n)}</td><td>{fmt(v, 4)}</td><td>{fmt(e, 2)}</td></tr>" for n, v, e in rows)
        + "</table>",
    ]
    post = payload.get("post_treatment")
    if post:
        parts.append(f"<h2>Post-treatment against prediction</h2><p>{html.escape(str(post.get('explanation', '')))}"
                     "</p><table><tr><th>VOI</th><th>predicted (Gy)</th><th>delivered (Gy)</th><th>difference (Gy)</th>"
                     "<th>difference (%)</th></tr>"
                     + "".join(f"<tr><td>{html.escape(k.replace('_', ' '))}</td><td>{fmt(v['predicted_gy'])}</td>"
                               f"<td>{fmt(v['delivered_gy'])}</td><td>{fmt(v['difference_gy'])}</td>"
                               f"<td>{fmt(v['difference_pct'], 2)}</td></tr>" for k, v in post["vois"].items())
                     + "</table>")
    for caption, src in figures:
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' src='{src}'>")
    for w in payload.get("warnings") or []:
        parts.append(f"<p><b>warning:</b> {html.escape(str(w))}</p>")
    parts.append("<p class='muted'>Generated by igikit. A decision proposal: the activity is to be approved by a "
                 "medical physicist.</p></body></html>")
    out = Path(path)
    from igikit.io.atomic import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return out
