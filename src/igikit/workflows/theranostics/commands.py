"""``igikit dose``, ``igikit bed`` and ``igikit plan y90``: theranostics dosimetry and planning.

Public contracts (DESIGN.md, issue 9). Heavy imports (SciPy, SimpleITK, the nuclide packages) stay
inside the run functions so that ``igikit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from igikit.errors import InputError


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    from igikit.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _finite_float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{what} must be finite, got {text!r}")
    return value


def parse_timed_path(text: str) -> tuple[Path, float | None]:
    """``"scan.nii.gz@24"`` -> (path, 24.0); ``"scan.nii.gz"`` -> (path, None)."""
    if "@" in text:
        head, _, tail = text.rpartition("@")
        try:
            hours = float(tail)
        except ValueError:
            return Path(text), None  # an '@' that is part of the file name
        if not math.isfinite(hours) or hours < 0:
            raise InputError(f"time after administration must be non-negative hours, got {tail!r}", head)
        return Path(head), hours
    return Path(text), None


def register(sub: Any) -> None:
    """Add ``dose``, ``bed`` and ``plan`` to the ``igikit`` command line."""
    d = sub.add_parser(
        "dose",
        help="absorbed dose (Gy) from activity images (Bq/mL): local deposition or kernel convolution",
        description="Absorbed dose from quantitative SPECT/PET activity images (Bq/mL). One image without "
        "a time: permanent implant (physical decay only). Several: IMAGE@HOURS after administration each.",
    )
    d.add_argument("images", nargs="+", metavar="IMAGE[@HOURS]", help="activity image(s), Bq/mL")
    d.add_argument("--nuclide", required=True, help="Y-90, Ho-166, Lu-177, I-131, ...")
    d.add_argument("--out", required=True, type=Path, metavar="DOSE.nii.gz", help="absorbed dose map (Gy)")
    d.add_argument("--method", choices=("kernel", "local"), default="kernel")
    d.add_argument("--density", default=None, metavar="VALUE|CT_IMAGE",
                   help="density in g/mL, or a CT image (HU) converted to density (default 1.04, soft tissue)")
    d.add_argument("--voi", type=Path, default=None, metavar="LABELS", help="label image on the activity grid")
    d.add_argument("--resolution-mm", type=float, default=None, metavar="FWHM",
                   help="system resolution: correct VOI activities for partial volume")
    d.add_argument("--no-register", action="store_true",
                   help="time points are already registered and on the earliest image's grid")
    d.add_argument("--json", type=Path, default=None, metavar="OUT", help="per-VOI statistics as JSON")
    d.add_argument("--report", type=Path, default=None, metavar="OUT.html",
                   help="HTML report: dose maps, DVHs, time-activity curves with fits")
    d.add_argument("--rtdose", type=Path, default=None, metavar="OUT.dcm",
                   help="also write the dose as DICOM RTDOSE, under the patient and study of a DICOM input")
    d.set_defaults(func=_run_dose)

    b = sub.add_parser("bed", help="linear-quadratic BED of radionuclide therapy cycles")
    b.add_argument("--dose-gy", required=True, metavar="D[,D,...]", help="absorbed dose per cycle (Gy)")
    b.add_argument("--alpha-beta-gy", type=float, required=True)
    b.add_argument("--repair-h", type=float, required=True, help="repair half-time (h)")
    b.add_argument("--effective-h", type=float, required=True, help="effective half-time of the dose rate (h)")
    b.add_argument("--json", type=Path, default=None, metavar="OUT")
    b.set_defaults(func=_run_bed)

    from igikit.workflows.theranostics.plan_commands import add_scout_options

    p = sub.add_parser("plan", help="treatment planning: y90 (partition model), ho166 (scout), lu177 (next cycle)")
    psub = p.add_subparsers(dest="plan_kind", metavar="KIND")
    psub.required = True
    y = psub.add_parser("y90", help="Y-90 radioembolisation activity by the partition model",
                        description="Partition model from given masses, T/N and lung shunt, or from a scout SPECT "
                        "and its VOIs (--scout --voi: masses from VOI volumes and the profile's liver density, T/N and "
                        "lung shunt from the counts); the BSA method alongside for comparison. The plan is a decision "
                        "proposal with its uncertainty; --audit appends it to an audit log for approval.")
    y.add_argument("--normal-liver-gy", type=float, default=None,
                   help="prescribed normal-liver dose (default: the profile's normal_liver_gy)")
    y.add_argument("--tumour-kg", type=float, default=None)
    y.add_argument("--normal-liver-kg", type=float, default=None)
    y.add_argument("--tn", type=float, default=None, help="tumour-to-normal-liver uptake ratio")
    y.add_argument("--lsf", type=float, default=None, help="lung shunt fraction (0-1)")
    y.add_argument("--lung-kg", type=float, default=None,
                   help="lung mass (default: the profile's partition_model_lung_kg, 1.0 kg for adults)")
    add_scout_options(y, required=False)
    y.add_argument("--height-m", type=float, default=None, help="height for the BSA method (default: profile)")
    y.add_argument("--weight-kg", type=float, default=None, help="weight for the BSA method (default: profile)")
    y.add_argument("--bsa-formula", choices=("mosteller", "dubois", "meeh"), default=None,
                   help="BSA formula (default mosteller; meeh for animal profiles without a height)")
    y.add_argument("--profile", default="adult", help="patient profile for defaults and limits (default adult)")
    y.add_argument("--json", type=Path, default=None, metavar="OUT")
    y.set_defaults(func=_run_plan_y90)

    h = psub.add_parser("ho166", help="Ho-166 radioembolisation activity from a Ho-166 scout; post-treatment check",
                        description="The Ho-166 scout (about 250 MBq) predicts the treatment's distribution: the "
                        "activity that gives the prescribed mean dose to the perfused liver (local deposition, "
                        "15.87 Gy kg/GBq), the tumour, normal-liver and lung doses it predicts, with their "
                        "uncertainty. With --post, the post-treatment SPECT (Bq/mL) is registered to the scout and "
                        "its dose compared with the prediction voxel by voxel and per VOI.")
    add_scout_options(h, required=True)
    h.add_argument("--prescribe-gy", type=float, default=None,
                   help="mean perfused-liver dose (default: the profile's ho166_perfused_liver_gy, 60 Gy)")
    h.add_argument("--post", default=None, metavar="SPECT[@HOURS]",
                   help="post-treatment SPECT (Bq/mL; @HOURS after administration, default at administration)")
    h.add_argument("--administered-gbq", type=float, default=None,
                   help="activity given, for the post-treatment comparison (default: the planned activity)")
    h.add_argument("--lung-kg", type=float, default=None, help="lung mass (default: the profile's)")
    h.add_argument("--out", type=Path, default=None, metavar="DOSE.nii.gz", help="predicted dose map (Gy)")
    h.add_argument("--report", type=Path, default=None, metavar="OUT.html", help="HTML plan report")
    h.add_argument("--profile", default="adult", help="patient profile for defaults and limits (default adult)")
    h.add_argument("--json", type=Path, default=None, metavar="OUT")
    h.set_defaults(func=_run_plan_ho166)

    lu = psub.add_parser("lu177", help="next Lu-177 cycle's activity under a cumulative kidney BED limit",
                         description="From cycle-1 dosimetry (the JSON of igikit dose --json): the next cycle's "
                         "activity that keeps the cumulative kidney BED below the limit (linear-quadratic model, "
                         "profile radiobiology, kidney effective half-time from the TAC fit).")
    lu.add_argument("--dosimetry", required=True, type=Path, metavar="CYCLE1.json", help="igikit dose --json output")
    lu.add_argument("--administered-gbq", required=True, type=float, help="activity administered in cycle 1 (GBq)")
    lu.add_argument("--kidney-voi", required=True, metavar="LABEL[,LABEL]",
                    help="VOI label(s) of the kidneys in the JSON; the most restrictive kidney sets the plan")
    lu.add_argument("--kidney-bed-limit-gy", type=float, default=None,
                    help="cumulative kidney BED limit (28 with risk factors, 40 without; default: the profile's)")
    lu.add_argument("--cycles-done", type=int, default=1, help="cycles given so far, each taken as cycle 1 (default 1)")
    lu.add_argument("--effective-h", type=float, default=None,
                    help="kidney effective half-time (h) when the dosimetry has no exponential fit")
    lu.add_argument("--profile", default="adult", help="patient profile for radiobiology and limits (default adult)")
    lu.add_argument("--audit", type=Path, default=None, metavar="DB",
                    help="append the plan, a proposal awaiting approval, to this audit log")
    lu.add_argument("--json", type=Path, default=None, metavar="OUT")
    lu.set_defaults(func=_run_plan_lu177)


def _density(text: str | None, reference: Any) -> Any:
    from igikit.workflows.theranostics.dose import SOFT_TISSUE_G_ML

    if text is None:
        return SOFT_TISSUE_G_ML
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is not None:
        if not math.isfinite(value) or value <= 0:
            raise InputError(f"--density must be a positive number of g/mL, got {text!r}")
        return value
    import numpy as np
    import SimpleITK as sitk

    from igikit.io.image import read_image

    ct = read_image(text)
    if ct.is_series or ct.dim != 3:
        raise InputError("is not a 3D CT image", text)
    if ct.units and ct.units.upper() != "HU":
        raise InputError(f"holds {ct.units!r}; a density image must be a CT in HU", text)
    img = ct.to_sitk()
    if not reference.same_grid(ct):
        img = sitk.Resample(sitk.Cast(img, sitk.sitkFloat32), reference.to_sitk(), sitk.Transform(),
                            sitk.sitkLinear, -1000.0)
    return hu_to_density(np.asarray(sitk.GetArrayFromImage(img), dtype=np.float64))


def hu_to_density(hu: Any) -> Any:
    """CT number (HU) to mass density (g/mL): a two-segment linear calibration (approximate).

    Air (-1000 HU) 0.001, water (0 HU) 1.0, cortical bone (+1000 HU) about 1.6 g/mL; in the spirit of
    Schneider, Bortfeld & Schlegel, Phys Med Biol 45 (2000) 459, without scanner-specific fitting.
    """
    import numpy as np

    h = np.asarray(hu, dtype=np.float64)
    rho = np.where(h <= 0, 1.0 + h * (0.999 / 1000.0), 1.0 + h * (0.6 / 1000.0))
    return np.clip(rho, 0.001, 3.0)


def _run_dose(args: argparse.Namespace) -> int:
    from igikit.io.image import read_image, write_image
    from igikit.workflows.theranostics.nuclides import nuclide
    from igikit.workflows.theranostics.pipeline import compute_dose

    nuc = nuclide(args.nuclide)  # unknown nuclides fail before any image is read
    timed = [parse_timed_path(t) for t in args.images]
    if len(timed) > 1:
        missing = [str(p) for p, h in timed if h is None]
        if missing:
            raise InputError("several images need a time each: write IMAGE@HOURS (hours after administration)",
                             missing[0])
    images = []
    for path, _ in timed:
        im = read_image(path, series=False)
        images.append(im)
    from igikit.workflows.theranostics.pipeline import activity_concentration_bq_ml

    for (path, _), im in zip(timed, images, strict=True):
        try:
            activity_concentration_bq_ml(im, "image")
        except InputError as exc:
            raise InputError(exc.problem, path) from None
    labels = read_image(args.voi, series=False) if args.voi is not None else None
    earliest = min(range(len(timed)), key=lambda i: timed[i][1] or 0.0)
    density = _density(args.density, images[earliest])
    try:
        result = compute_dose(
            images,
            [h for _, h in timed],
            nuc.name,
            method=args.method,
            density_g_ml=density,
            labels=labels,
            resolution_mm=args.resolution_mm,
            register=not args.no_register,
            names=[str(p) for p, _ in timed],
        )
    except InputError as exc:
        where = args.voi if labels is not None and "VOI" in exc.problem else None
        if where is not None:
            raise InputError(exc.problem, where) from None
        raise
    dose = result.dose
    payload = {
        "nuclide": nuc.name,
        "method": args.method,
        "half_life_h": nuc.half_life_h,
        "times_h": list(result.times_h),
        "registrations": [r.to_dict() if r is not None else None for r in result.registrations],
        "dose_max_gy": float(dose.array.max()),
        "notes": list(result.notes),
        "vois": {str(k): v.to_dict() for k, v in result.vois.items()},
    }
    write_image(dose, args.out)
    if args.rtdose is not None:
        from igikit.io.dicomdoc import source_dataset
        from igikit.io.dicomrt import write_rtdose

        # The source's patient, study and frame of reference, so a PACS files the dose with its images.
        reference = source_dataset(images[earliest])
        write_rtdose(dose, args.rtdose, reference=reference)
        if reference is None:
            print(f"warning: {args.rtdose}: the source images carry no DICOM patient or study (NIfTI, MHA), so "
                  "the RTDOSE names no patient and has a new study UID (igikit pacs push-results refuses it "
                  "unless --allow-unlinked)", file=sys.stderr)
    if args.json is not None:
        _write_json(args.json, payload)
    if args.report is not None:
        from igikit.workflows.theranostics.report import write_report

        write_report(result, args.report, labels=labels, nuclide_name=nuc.name)
    print(f"dose ({args.method}, {nuc.name}): max {payload['dose_max_gy']:.4g} Gy -> {args.out}")
    for k, v in result.vois.items():
        print(f"  VOI {k}: {v.volume_ml:.1f} mL, TIA {v.tia_mbq_h:.4g} MBq h, mean {v.mean_gy:.4g} Gy, "
              f"D98 {v.d98_gy:.4g} Gy" + (f", fit {v.fit.model}" if v.fit else ""))
    return 0


def _run_bed(args: argparse.Namespace) -> int:
    from igikit.workflows.theranostics.planning import bed_lq

    doses = [_finite_float(t.strip(), "--dose-gy") for t in args.dose_gy.split(",") if t.strip()]
    if not doses:
        raise InputError("--dose-gy needs at least one dose")
    bed = bed_lq(doses, alpha_beta_gy=args.alpha_beta_gy, repair_half_time_h=args.repair_h,
                 effective_half_time_h=args.effective_h)
    payload = {
        "bed_gy": bed,
        "dose_gy": doses,
        "total_dose_gy": float(sum(doses)),
        "alpha_beta_gy": args.alpha_beta_gy,
        "repair_half_time_h": args.repair_h,
        "effective_half_time_h": args.effective_h,
        "model": "linear-quadratic, mono-exponential dose rate and repair (Dale 1985)",
    }
    if args.json is not None:
        _write_json(args.json, payload)
    print(f"BED {bed:.3f} Gy from {len(doses)} cycle(s), total dose {sum(doses):.3f} Gy")
    return 0


def _run_plan_y90(args: argparse.Namespace) -> int:
    from igikit.workflows.theranostics.plan_commands import run_plan_y90

    return run_plan_y90(args)


def _run_plan_ho166(args: argparse.Namespace) -> int:
    from igikit.workflows.theranostics.plan_commands import run_plan_ho166

    return run_plan_ho166(args)


def _kidney_from_dosimetry(
    payload: Any, label: str, path: Path, effective_h: float | None
) -> tuple[float, float, float]:
    """(mean dose Gy, relative SE of the dose, effective half-time h) of one VOI of a dose JSON."""
    vois = payload.get("vois") if isinstance(payload, dict) else None
    if not isinstance(vois, dict) or label not in vois:
        known = ", ".join(vois) if isinstance(vois, dict) else "none"
        raise InputError(f"no VOI {label!r} in the dosimetry (VOIs: {known})", path)
    v = vois[label]
    mean = v.get("mean_gy")
    if not isinstance(mean, int | float) or not math.isfinite(mean) or mean <= 0:
        raise InputError(f"VOI {label} has no positive mean_gy", path)
    tia, se = v.get("tia_mbq_h"), v.get("tia_se_mbq_h")
    rel = float(se) / float(tia) if isinstance(se, int | float) and isinstance(tia, int | float) and tia > 0 else 0.0
    if effective_h is not None:
        return float(mean), rel, effective_h
    k = (v.get("fit") or {}).get("params", {}).get("k_per_h")
    if not isinstance(k, int | float) or not k > 0:
        model = (v.get("fit") or {}).get("model", "none")
        raise InputError(f"VOI {label}'s time-activity fit ({model}) has no clearance rate; give --effective-h",
                         path)
    return float(mean), rel, math.log(2.0) / float(k)


def _run_plan_lu177(args: argparse.Namespace) -> int:
    from igikit.core.profile import load_profile
    from igikit.supervise.records import DecisionRecord
    from igikit.workflows.theranostics.planning import plan_lu177_next_cycle

    try:
        payload = json.loads(args.dosimetry.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", args.dosimetry) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable dosimetry JSON ({exc.__class__.__name__})", args.dosimetry) from None
    if isinstance(payload, dict) and payload.get("nuclide") not in (None, "Lu-177"):
        raise InputError(f"dosimetry is for {payload.get('nuclide')}, not Lu-177", args.dosimetry)
    profile = load_profile(args.profile)
    rb = profile.radiobiology("kidney")
    limit = (args.kidney_bed_limit_gy if args.kidney_bed_limit_gy is not None
             else profile.number("dosimetry_limits.kidney_bed_gy"))
    labels = [t.strip() for t in args.kidney_voi.split(",") if t.strip()]
    if not labels:
        raise InputError("--kidney-voi needs at least one label")
    plans = {}
    for label in labels:
        dose, rel, teff = _kidney_from_dosimetry(payload, label, args.dosimetry, args.effective_h)
        plans[label] = plan_lu177_next_cycle(
            kidney_gy=dose, administered_gbq=args.administered_gbq, effective_half_time_h=teff,
            bed_limit_gy=limit, alpha_beta_gy=rb.alpha_beta_gy, repair_half_time_h=rb.repair_half_time_h,
            cycles_done=args.cycles_done, kidney_gy_rel_se=rel,
        )
    binding = min(plans, key=lambda k: plans[k].activity_gbq)
    plan = plans[binding]
    explanation = f"{plan.explanation()}; kidney VOI {binding}; profile {profile.name}"
    record = DecisionRecord(
        decision="plan_activity",
        value=f"{plan.activity_gbq:.2f} GBq",
        explanation=explanation,
        confidence=1.0,
        component="theranostics.plan_lu177",
        component_version="1",
        workflow="theranostics",
        proposal=True,
        data={"nuclide": "Lu-177", "activity_gbq": plan.activity_gbq, "activity_low_gbq": plan.activity_low_gbq,
              "activity_high_gbq": plan.activity_high_gbq if math.isfinite(plan.activity_high_gbq) else -1.0,
              "kidney_gy_next": plan.kidney_gy_next, "bed_done_gy": plan.bed_done_gy,
              "bed_total_gy": plan.bed_total_gy, "bed_limit_gy": plan.bed_limit_gy, "limits_ok": plan.limits_ok,
              "cycles_done": plan.cycles_done, "profile": profile.name},
    )
    out = {
        "activity_gbq": plan.activity_gbq,
        "activity_low_gbq": plan.activity_low_gbq,
        "activity_high_gbq": plan.activity_high_gbq if math.isfinite(plan.activity_high_gbq) else None,
        "kidney_voi": binding,
        "kidneys": {k: {"gy_per_gbq": p.kidney_gy_per_gbq, "effective_half_time_h": p.effective_half_time_h,
                        "bed_done_gy": p.bed_done_gy, "activity_gbq": p.activity_gbq} for k, p in plans.items()},
        "kidney_gy_next": plan.kidney_gy_next,
        "bed_done_gy": plan.bed_done_gy,
        "bed_total_gy": plan.bed_total_gy,
        "bed_limit_gy": plan.bed_limit_gy,
        "alpha_beta_gy": plan.alpha_beta_gy,
        "repair_half_time_h": plan.repair_half_time_h,
        "cycles_done": plan.cycles_done,
        "limits_ok": plan.limits_ok,
        "explanation": explanation,
        "profile": profile.name,
        "model": "linear-quadratic BED, mono-exponential dose rate and repair (Dale 1985; Bodei et al. 2008)",
        "decision": record.to_dict(),
    }
    from igikit.workflows.theranostics.plan_commands import append_to_audit

    if getattr(args, "audit", None) is not None:
        out["audit_seq"] = append_to_audit(args.audit, record)
    if args.json is not None:
        _write_json(args.json, out)
    print(explanation)
    if "audit_seq" in out:
        print(f"proposal appended to {args.audit} (seq {out['audit_seq']}), awaiting approval")
    return 0
