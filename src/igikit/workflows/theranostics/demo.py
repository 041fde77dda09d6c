"""``igikit demo theranostics``: Lu-177 four-time-point dosimetry and a Ho-166 scout-to-treatment plan, end to end.

1. A Lu-177 SPECT phantom (:func:`igikit.sim.spect.lu177_spect_phantom`: scans at 4, 24, 96 and
   168 h with 11 mm blur, Poisson noise and 4 mm patient shifts) goes through ``igikit dose``'s
   pipeline: rigid registration, VOI time-activity fits (four points: the hybrid rule of
   :mod:`.tac`), GTM partial-volume correction and kernel dose; its TIAs are checked against the
   phantom's truth, and the next cycle's activity under the kidney BED limit is planned from it.
2. A Ho-166 scout and post-treatment SPECT of one liver (:func:`igikit.sim.spect.microsphere_study`)
   go through ``igikit plan ho166``: the activity for 60 Gy to the perfused liver, then the
   delivered dose against the prediction.
3. Everything lands in the output folder: images, dose maps, JSON, the HTML reports with an index
   (``report.html``) and the audit log, in which both plans wait for a physicist's approval. Without
   ``--no-console`` the supervisor's console then serves both plans from that log for approval, as
   ``igikit console --proposals`` does (a demo physicist's password is printed), until Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import sys
import time
from pathlib import Path
from typing import Any

from igikit.errors import InputError

#: Scan times of the Lu-177 phantom (h after administration): the four-time-point schedule.
LU177_TIMES_H = (4.0, 24.0, 96.0, 168.0)
AUDIT_FILE = "audit.db"


def _plan_args(**kw: Any) -> argparse.Namespace:
    base = {"json": None, "audit": None, "profile": "adult", "lung_kg": None, "resolution_mm": None,
            "liver_label": "1", "tumour_label": "5", "lung_label": "7"}
    base.update(kw)
    return argparse.Namespace(**base)


def _quiet(fn: Any, args: argparse.Namespace) -> int:
    """Run a plan command, its printed lines indented under the demo's own."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = int(fn(args))
    for line in buf.getvalue().splitlines():
        print(f"    {line}")
    return code


def run_demo(args: argparse.Namespace) -> int:
    """Run the theranostics demo (see the module docstring); returns the exit code."""
    from igikit.io.image import write_image
    from igikit.sim.spect import LABELS, lu177_spect_phantom, microsphere_study
    from igikit.workflows.theranostics.commands import _run_plan_lu177
    from igikit.workflows.theranostics.nuclides import nuclide
    from igikit.workflows.theranostics.pipeline import compute_dose
    from igikit.workflows.theranostics.plan_commands import run_plan_ho166
    from igikit.workflows.theranostics.report import write_report

    out_dir = getattr(args, "out_dir", None) or Path("out") / (
        f"demo-theranostics-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("--out-dir must be a folder", out_dir)
    no_console = bool(getattr(args, "no_console", True))
    port = int(getattr(args, "port", 8000) or 0)
    if not no_console and not 0 <= port < 65536:
        raise InputError(f"--port must be in 0..65535, got {port}")
    out_dir.mkdir(parents=True, exist_ok=True)
    audit_path = out_dir / AUDIT_FILE
    t_start = time.perf_counter()

    # 1. Lu-177: four time points through the dose pipeline
    print("1/3 Lu-177: simulating SPECT at 4, 24, 96 and 168 h (11 mm blur, Poisson noise, 4 mm shifts) ...",
          flush=True)
    phantom = lu177_spect_phantom(times_h=LU177_TIMES_H, seed=0)
    lu_dir = out_dir / "lu177"
    lu_dir.mkdir(exist_ok=True)
    for t, im in zip(phantom.times_h, phantom.images, strict=True):
        write_image(im, lu_dir / f"spect_{t:g}h.nii.gz")
    write_image(phantom.labels, lu_dir / "voi.nii.gz")
    result = compute_dose(list(phantom.images), list(phantom.times_h), "Lu-177", method="kernel",
                          labels=phantom.labels, resolution_mm=phantom.fwhm_mm)
    write_image(result.dose, lu_dir / "dose.nii.gz")
    names = {v: k for k, v in LABELS.items() if k in {o.name for o in phantom.organs}}
    nuc = nuclide("Lu-177")
    dosimetry = {"nuclide": nuc.name, "method": "kernel", "half_life_h": nuc.half_life_h,
                 "times_h": list(result.times_h), "notes": list(result.notes),
                 "vois": {str(k): v.to_dict() for k, v in result.vois.items()}}
    (lu_dir / "dose.json").write_text(json.dumps(dosimetry, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    write_report(result, lu_dir / "report.html", labels=phantom.labels, nuclide_name=nuc.name, voi_names=names,
                 title="Lu-177 dosimetry (four-time-point phantom)")
    rows = []
    for k, v in result.vois.items():
        truth = phantom.true_tia_mbq_h[names[k]]
        err = 100.0 * (v.tia_mbq_h / truth - 1.0)
        rows.append((names[k], v.volume_ml, v.tia_mbq_h, truth, err, v.mean_gy, v.fit.model if v.fit else "-"))
        print(f"    {names[k]:>12}: TIA {v.tia_mbq_h:9.0f} MBq h (truth {truth:9.0f}, {err:+5.1f}%), mean "
              f"{v.mean_gy:6.2f} Gy, fit {v.fit.model if v.fit else '-'}")
    administered_gbq = phantom.administered_mbq / 1000.0
    print(f"    next cycle (kidneys, cumulative BED <= profile limit), from {administered_gbq:g} GBq in cycle 1:")
    _quiet(_run_plan_lu177, _plan_args(dosimetry=lu_dir / "dose.json", administered_gbq=administered_gbq,
                                       kidney_voi=f"{LABELS['kidney_left']},{LABELS['kidney_right']}",
                                       kidney_bed_limit_gy=None, cycles_done=1, effective_h=None,
                                       json=lu_dir / "plan_lu177.json", audit=audit_path))

    # 2. Ho-166: scout -> plan -> treatment -> comparison
    print("2/3 Ho-166: simulating a 250 MBq scout and the post-treatment SPECT ...", flush=True)
    study = microsphere_study(seed=0)
    ho_dir = out_dir / "ho166"
    ho_dir.mkdir(exist_ok=True)
    write_image(study.scout, ho_dir / "scout.nii.gz")
    write_image(study.treatment, ho_dir / "post.nii.gz")
    write_image(study.labels, ho_dir / "voi.nii.gz")
    _quiet(run_plan_ho166, _plan_args(
        scout=ho_dir / "scout.nii.gz", voi=ho_dir / "voi.nii.gz", resolution_mm=study.fwhm_mm, prescribe_gy=None,
        post=str(ho_dir / "post.nii.gz"), administered_gbq=study.treatment_mbq / 1000.0,
        out=ho_dir / "predicted_dose.nii.gz", report=ho_dir / "report.html", json=ho_dir / "plan.json",
        audit=audit_path))
    ho_plan = json.loads((ho_dir / "plan.json").read_text(encoding="utf-8"))
    lu_plan = json.loads((lu_dir / "plan_lu177.json").read_text(encoding="utf-8"))

    # 3. one index
    index = _write_index(out_dir / "report.html", rows, lu_plan, ho_plan, study)
    elapsed = time.perf_counter() - t_start
    print(f"3/3 reports: {index} (Lu-177: {lu_dir / 'report.html'}, Ho-166: {ho_dir / 'report.html'}); "
          f"audit log {audit_path}; {elapsed:.0f} s", flush=True)
    if no_console:
        return 0
    return _serve(out_dir, audit_path, port)


def _write_index(path: Path, rows: list[tuple[Any, ...]], lu_plan: dict[str, Any], ho_plan: dict[str, Any],
                 study: Any) -> Path:
    from igikit.io.atomic import atomic_path

    tr = "".join(f"<tr><td>{html.escape(n)}</td><td>{vol:.0f}</td><td>{tia:.0f}</td><td>{truth:.0f}</td>"
                 f"<td>{err:+.1f}</td><td>{mean:.2f}</td><td>{model}</td></tr>"
                 for n, vol, tia, truth, err, mean, model in rows)
    post = ho_plan.get("post_treatment") or {}
    true_a = None
    try:
        from igikit.workflows.theranostics.nuclides import local_deposition_gy_per_gbq_kg

        rho = ho_plan["perfused_liver_kg"] / (study.true_volume_ml["liver"] + study.true_volume_ml["tumour"])
        true_a = (ho_plan["perfused_liver_gy"] * rho * (study.true_volume_ml["liver"] + study.true_volume_ml["tumour"])
                  / (local_deposition_gy_per_gbq_kg("Ho-166") * (1.0 - study.lsf_scout)))
    except (KeyError, ZeroDivisionError):
        true_a = None
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>igikit theranostics demo</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}"
        "table{border-collapse:collapse}</style></head><body>",
        "<h1>igikit theranostics demo</h1>",
        "<h2>Lu-177, four time points (phantom with known truth)</h2>",
        "<p><a href='lu177/report.html'>dosimetry report</a> (dose maps, DVHs, time-activity fits)</p>",
        "<table><tr><th>VOI</th><th>volume (mL)</th><th>TIA (MBq h)</th><th>truth</th><th>error (%)</th>"
        f"<th>mean dose (Gy)</th><th>fit</th></tr>{tr}</table>",
        f"<p><b>Next cycle (proposal):</b> {html.escape(str(lu_plan.get('explanation', '')))}</p>",
        "<h2>Ho-166 scout to treatment</h2>",
        "<p><a href='ho166/report.html'>plan report</a> (predicted and delivered dose, DVHs)</p>",
        f"<p><b>Plan (proposal):</b> {html.escape(str(ho_plan.get('explanation', '')))}</p>",
        (f"<p>Activity from the phantom's true volumes and lung shunt: {true_a:.2f} GBq.</p>" if true_a else ""),
        f"<p><b>Post-treatment:</b> {html.escape(str(post.get('explanation', 'no post-treatment image')))}</p>",
        "<p>Both plans are decision proposals in <code>audit.db</code>; check them with "
        "<code>igikit audit show audit.db</code>.</p></body></html>",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return path


def _serve(out_dir: Path, audit_path: Path, port: int) -> int:
    """Serve the plans in the demo's audit log, awaiting a physicist's approval, in the console until Ctrl-C.

    The console reads the plans from the log (:func:`.plan_commands.serve_plan_review`, as ``igikit
    console --proposals`` does): an approval or veto names the plan's row, and nothing is logged twice.
    """
    from igikit.workflows.theranostics.plan_commands import serve_plan_review

    serve_plan_review(audit_path, session_id=out_dir.name, port=port, demo_dir=out_dir)
    print("console stopped", file=sys.stderr, flush=True)
    return 0


__all__ = ["run_demo"]
