"""``igikit plan y90`` and ``igikit plan ho166``: microsphere plans as decision proposals.

Each plan is a decision proposal (DESIGN.md): a :class:`igikit.supervise.records.DecisionRecord`
with ``proposal=True``, its explanation, the uncertainty carried from the scout (VOI masses and
counts, :mod:`.scout`) and the patient profile it read its defaults and limits from. ``--audit DB``
appends it to a hash-chained audit log, where a physicist approves or overrides it.

The confidence of a plan is the probability, under the propagated standard errors (normal
approximation), that the organ-at-risk limits it was checked against hold: the lung dose at or
below the profile's per-treatment limit and the lung shunt fraction at or below the profile's
maximum. Manual inputs carry no uncertainty, so it is then 1 or 0.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from igikit.errors import InputError

#: Label values of the VOIs by default: those of the phantoms of :mod:`igikit.sim.spect`.
DEFAULT_LIVER_LABELS = "1"
DEFAULT_TUMOUR_LABELS = "5"
DEFAULT_LUNG_LABELS = "7"


def add_scout_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    """The options every scout-based plan shares."""
    p.add_argument("--scout", type=Path, required=required, metavar="SPECT",
                   help="scout SPECT (Tc-99m MAA or Ho-166 scout; counts or Bq/mL)")
    p.add_argument("--voi", type=Path, required=required, metavar="LABELS", help="VOI label image on the scout's grid")
    p.add_argument("--liver-label", default=DEFAULT_LIVER_LABELS, metavar="L[,L]",
                   help=f"label(s) of the normal (perfused, non-tumour) liver (default {DEFAULT_LIVER_LABELS})")
    p.add_argument("--tumour-label", default=DEFAULT_TUMOUR_LABELS, metavar="L[,L]",
                   help=f"label(s) of the tumour(s) (default {DEFAULT_TUMOUR_LABELS})")
    p.add_argument("--lung-label", default=DEFAULT_LUNG_LABELS, metavar="L[,L]",
                   help=f"label(s) of the lungs (default {DEFAULT_LUNG_LABELS})")
    p.add_argument("--resolution-mm", type=float, default=None, metavar="FWHM",
                   help="scout resolution: correct VOI counts for partial volume (GTM)")
    p.add_argument("--audit", type=Path, default=None, metavar="DB",
                   help="append the plan, a proposal awaiting approval, to this audit log")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    from igikit.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _profile_default(profile: Any, key: str, given: float | None) -> float:
    return float(given) if given is not None else float(profile.number(key))


def _confidence(lung_gy: float, lung_se: float, lung_limit: float, lsf: float, lsf_se: float,
                lsf_max: float | None) -> float:
    from igikit.workflows.theranostics.planning import probability_below

    p = probability_below(lung_gy, lung_se, lung_limit)
    if lsf_max is not None:
        p *= probability_below(lsf, lsf_se, lsf_max)
    return float(min(max(p, 0.0), 1.0))


def _lsf_max(profile: Any) -> float | None:
    try:
        return float(profile.number("dosimetry_limits.lung_shunt_fraction_max"))
    except InputError:
        return None


def plan_record(kind: str, value: str, explanation: str, confidence: float, data: dict[str, Any]) -> Any:
    """The plan as a decision proposal (``plan_activity``) of the theranostics workflow."""
    from igikit.supervise.records import DecisionRecord

    clean = {k: v for k, v in data.items() if not (isinstance(v, float) and not math.isfinite(v))}
    return DecisionRecord(decision="plan_activity", value=value, explanation=explanation, confidence=confidence,
                          component=f"theranostics.plan_{kind}", component_version="2", workflow="theranostics",
                          proposal=True, data=clean)


def append_to_audit(path: Path, record: Any) -> int:
    """Append ``record`` to the audit log at ``path`` (created if missing); returns its ``seq``."""
    from igikit.supervise.audit import AuditLog

    with AuditLog(path) as audit:
        return int(audit.append(record))


#: The decision name of every plan (``igikit plan y90|ho166|lu177``).
PLAN_DECISION = "plan_activity"
#: Who signs a plan off: approving or vetoing it is a physicist's act; an operator or observer is refused.
PLAN_APPROVER_ROLES: tuple[str, ...] = ("physicist",)
# plans logged before their data named the nuclide
_NUCLIDE_OF_COMPONENT = {"theranostics.plan_y90": "Y-90", "theranostics.plan_ho166": "Ho-166",
                         "theranostics.plan_lu177": "Lu-177"}
_DOSE_ROWS = (("perfused_liver_gy", "perfused liver (prescribed)"), ("tumour_gy", "tumour"),
              ("normal_liver_gy", "normal liver"), ("lung_gy", "lung"), ("kidney_gy_next", "kidneys this cycle"))


def plan_summary(record: Any) -> tuple[tuple[str, str], ...]:
    """What a physicist reads before signing a plan off, as (label, text) rows, from the plan's logged data.

    Nuclide; activity in MBq with its standard error (Y-90, Ho-166) or its range (Lu-177); the
    absorbed doses in Gy; the limits it was checked against and whether they hold; the patient
    profile; the confidence that the limits hold.
    """
    data = record.data

    def num(key: str) -> float | None:
        value = data.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    rows = [("nuclide", str(data.get("nuclide") or _NUCLIDE_OF_COMPONENT.get(record.component, "not recorded")))]
    activity = num("activity_gbq")
    if activity is not None:
        se, low, high = num("activity_se_gbq"), num("activity_low_gbq"), num("activity_high_gbq")
        text = f"{1000 * activity:.0f}" + (f" ± {1000 * se:.0f}" if se else "") + " MBq"
        if low is not None and high is not None:
            text += f" (range {1000 * low:.0f}-{1000 * high:.0f} MBq)" if high >= 0 else f" (at least {1000 * low:.0f})"
        rows.append(("activity", f"{text} = {activity:.2f} GBq"))
    doses = []
    for key, label in _DOSE_ROWS:
        gy = num(key)
        if gy is not None:
            se = num(key.removesuffix("_gy") + "_se_gy")
            doses.append(f"{label} {gy:.1f}" + (f" ± {se:.1f}" if se else "") + " Gy")
    if doses:
        rows.append(("absorbed dose", "; ".join(doses)))
    limits = []
    lung, lung_limit = num("lung_gy"), num("lung_limit_gy")
    if lung is not None and lung_limit is not None:
        limits.append(f"lung {lung:.1f} Gy <= {lung_limit:.0f} Gy per treatment")
    bed, bed_limit = num("bed_total_gy"), num("bed_limit_gy")
    if bed is not None and bed_limit is not None:
        limits.append(f"cumulative kidney BED {bed:.1f} Gy <= {bed_limit:.0f} Gy")
    lsf = num("lung_shunt_fraction")
    if lsf is not None:
        lsf_se = num("lung_shunt_se")
        limits.append(f"lung shunt {100 * lsf:.1f}" + (f" ± {100 * lsf_se:.2g}" if lsf_se else "") + " %")
    ok = data.get("limits_ok")
    verdict = "" if not isinstance(ok, bool) else ("met" if ok else "NOT MET")
    if limits or verdict:
        rows.append(("limits", "; ".join(limits) + (f": {verdict}" if limits and verdict else verdict)))
    rows.append(("profile", str(data.get("profile") or "not recorded")))
    rows.append(("confidence", f"{record.confidence:.2f} (probability that the limits hold)"))
    return tuple(rows)


def open_plan_review(path: Path, *, session_id: str) -> Any:
    """A supervised session on the plans awaiting approval in the audit log at ``path``.

    Each plan that ``igikit plan ... --audit`` appended and no approve, veto or override has
    answered waits in the session (:meth:`~igikit.supervise.session.SupervisedSession.restore_proposal`)
    with its :func:`plan_summary`, for a physicist; the answer is appended to the same log and names
    the plan's ``seq``, so an answered plan no longer waits when the log is opened again. The
    session's audit log is open: close it (``session.audit.close()``) when done.

    Raises
    ------
    InputError
        When the file is missing or not an igikit audit log, fails its hash-chain check, or holds
        no plan awaiting approval.
    """
    from igikit.supervise.audit import AuditLog
    from igikit.supervise.session import SupervisedSession, unanswered_proposals

    audit = AuditLog(path, create=False)
    try:
        check = audit.verify()
        if not check.ok:
            raise InputError(f"fails its hash-chain check ({check.reason}); see igikit audit verify", path)
        waiting = unanswered_proposals(audit, decision=PLAN_DECISION)
        if not waiting:
            if not any(getattr(e.record, "decision", None) == PLAN_DECISION for e in audit.records()):
                raise InputError("holds no plan proposal (igikit plan ... --audit appends one)", path)
            raise InputError("no plan awaits approval: every plan in it was approved, vetoed or overridden "
                             "(igikit audit show lists them)", path)
        session = SupervisedSession(audit, workflow="theranostics", session_id=session_id, level=1)
        for seq, record in waiting:
            session.restore_proposal(seq, approver_roles=PLAN_APPROVER_ROLES, summary=plan_summary(record))
        return session
    except BaseException:
        audit.close()
        raise


def serve_plan_review(
    path: Path, *, session_id: str, host: str = "127.0.0.1", port: int = 8000, users_path: Path | None = None,
    demo_dir: Path | None = None,
) -> None:
    """Serve the plans awaiting approval in the audit log at ``path`` in the supervisor's console until Ctrl-C.

    The log is read first (:func:`open_plan_review`), so that a bad one leaves no users file or
    secret behind; then :func:`igikit.console.server.console_access` opens who may log in: with
    ``demo_dir`` a demo physicist there, else the install's users (``users_path``), with a warning
    on stderr when none of them may approve a plan. Printed (the rest as
    :meth:`~igikit.console.server.ConsoleAccess.server` says):
    ``igikit console: URL  (N plans awaiting a physicist's approval (NAME); answers go to PATH); Ctrl-C to stop``.

    Raises
    ------
    InputError
        As :func:`open_plan_review`, or for a ``port`` outside 0..65535.
    """
    import sys

    from igikit.console.app import create_app
    from igikit.console.server import DEMO_USER, console_access

    session = open_plan_review(path, session_id=session_id)
    try:
        access = console_access(host, port, demo_dir=demo_dir, users_path=users_path, warn_no_users=False)
        try:
            if not any(u.role in PLAN_APPROVER_ROLES for u in access.store.list()):
                print(f"warning: no {' or '.join(PLAN_APPROVER_ROLES)} in {access.store.path}, and only one may "
                      f"approve a plan; add one with: igikit users add NAME --role {PLAN_APPROVER_ROLES[0]}",
                      file=sys.stderr)
            n = len(session.pending())
            what = f"{n} plan{'s' if n > 1 else ''} awaiting a physicist's approval ({path.name})"
            app = create_app(session, access.store, secret=access.secret, title=what)
            access.server(app, audit_path=path, about=what, log_label="answers go to", login_note=DEMO_USER[1]).run()
        finally:
            access.store.close()
    finally:
        session.audit.close()


def _finish(args: argparse.Namespace, payload: dict[str, Any], record: Any, lines: list[str]) -> int:
    payload["decision"] = record.to_dict()
    if args.audit is not None:
        payload["audit_seq"] = append_to_audit(args.audit, record)
        lines.append(f"proposal appended to {args.audit} (seq {payload['audit_seq']}), awaiting approval")
    if args.json is not None:
        _write_json(args.json, payload)
    for line in lines:
        print(line)
    return 0


def _read_scout(args: argparse.Namespace) -> tuple[Any, Any, dict[str, np.ndarray], Any]:
    """(scout image, labels, VOI masks, ScoutVois) from ``--scout``/``--voi`` and the label options."""
    from igikit.io.image import read_image
    from igikit.workflows.theranostics.scout import analyse_scout, parse_labels, voi_masks

    scout = read_image(args.scout, series=False)
    labels = read_image(args.voi, series=False)
    groups = {"normal_liver": parse_labels(args.liver_label, "--liver-label"),
              "tumour": parse_labels(args.tumour_label, "--tumour-label"),
              "lung": parse_labels(args.lung_label, "--lung-label")}
    if args.resolution_mm is not None and not (math.isfinite(args.resolution_mm) and args.resolution_mm > 0):
        raise InputError(f"--resolution-mm must be a positive FWHM in mm, got {args.resolution_mm}")
    try:
        masks = voi_masks(labels, scout, groups)
    except InputError as exc:
        raise InputError(exc.problem, args.voi) from None
    try:
        vois = analyse_scout(scout, labels, liver_labels=groups["normal_liver"], tumour_labels=groups["tumour"],
                             lung_labels=groups["lung"], resolution_mm=args.resolution_mm)
    except InputError as exc:
        raise InputError(exc.problem, args.scout) from None
    return scout, labels, masks, vois


def _bsa(args: argparse.Namespace, profile: Any, tumour_ml: float, liver_ml: float, lsf: float,
         warnings: list[str]) -> Any:
    from igikit.workflows.theranostics.planning import body_surface_area_m2, bsa_method_y90

    weight = _profile_default(profile, "physiology.body_mass_kg", args.weight_kg)
    height = args.height_m
    if height is None:
        try:
            height = profile.number("physiology.height_m")
        except InputError:
            height = None
    formula = args.bsa_formula or ("mosteller" if height is not None else "meeh")
    meeh_k = None
    if formula == "meeh":
        try:
            meeh_k = profile.number("physiology.bsa_meeh_k")
        except InputError:
            warnings.append(f"no BSA comparison: profile {profile.name} has no height_m or bsa_meeh_k; give --height-m")
            return None
    bsa = body_surface_area_m2(weight_kg=weight, height_m=height, formula=formula, meeh_k=meeh_k)
    return bsa_method_y90(bsa_m2=bsa, tumour_ml=tumour_ml, liver_ml=liver_ml, lung_shunt_fraction=lsf,
                          formula=formula)


def run_plan_y90(args: argparse.Namespace) -> int:
    """``igikit plan y90``: the partition model from given masses, T/N and LSF, or from a scout's images."""
    from igikit.core.profile import load_profile
    from igikit.workflows.theranostics.nuclides import local_deposition_gy_per_gbq_kg
    from igikit.workflows.theranostics.planning import partition_model_y90, propagate
    from igikit.workflows.theranostics.scout import lung_shunt, tn_ratio

    manual = {"--tumour-kg": args.tumour_kg, "--normal-liver-kg": args.normal_liver_kg, "--tn": args.tn,
              "--lsf": args.lsf}
    if args.scout is not None or args.voi is not None:
        if args.scout is None or args.voi is None:
            raise InputError("--scout and --voi go together")
        given = [k for k, v in manual.items() if v is not None]
        if given:
            raise InputError(f"{given[0]} comes from the scout images; drop it or drop --scout")
    elif any(v is None for v in manual.values()):
        missing = [k for k, v in manual.items() if v is None]
        raise InputError("give --scout SPECT --voi LABELS, or the partition-model inputs "
                         f"(missing {', '.join(missing)})")
    profile = load_profile(args.profile)
    limit = profile.number("dosimetry_limits.lung_gy_per_treatment")
    dn = _profile_default(profile, "dosimetry_limits.normal_liver_gy", args.normal_liver_gy)
    lung_kg = _profile_default(profile, "therapy_defaults.partition_model_lung_kg", args.lung_kg)
    rho_kg_ml = profile.tissue("liver").density_kg_m3 / 1e6  # kg per mL
    scout_info: dict[str, Any] | None = None
    if args.scout is not None:
        _, _, _, vois = _read_scout(args)
        x, se = vois.inputs()
        scout_info = vois.to_dict()
    else:
        # masses to volumes with the profile's density, so that the BSA method and the scout path agree
        x = [args.normal_liver_kg / rho_kg_ml, args.tumour_kg / rho_kg_ml, 1.0, args.tn * args.tumour_kg /
             args.normal_liver_kg, 0.0]
        lsf = args.lsf
        if not (math.isfinite(lsf) and 0 <= lsf < 1):
            raise InputError(f"--lsf (lung shunt fraction) must lie in [0, 1), got {lsf}")
        x[4] = lsf / (1.0 - lsf) * (x[2] + x[3])  # the "counts" that give this LSF and T/N
        se = [0.0] * 5

    def model(v: np.ndarray) -> np.ndarray:
        p = partition_model_y90(normal_liver_gy=dn, tumour_kg=rho_kg_ml * v[1], normal_liver_kg=rho_kg_ml * v[0],
                                tn_ratio=tn_ratio(v) if v[3] > 0 else 1.0, lung_shunt_fraction=lung_shunt(v),
                                lung_kg=lung_kg, lung_limit_gy=limit)
        return np.array([p.activity_gbq, p.tumour_gy, p.lung_gy, tn_ratio(v), lung_shunt(v)])

    x_arr = np.asarray(x, dtype=np.float64)
    if x_arr[3] <= 0 and args.scout is not None:
        raise InputError("the scout has no counts in the tumour VOI", args.scout)
    _, sd = propagate(model, x_arr, se)
    tn, lsf = tn_ratio(x_arr), lung_shunt(x_arr)
    plan = partition_model_y90(normal_liver_gy=dn, tumour_kg=rho_kg_ml * x_arr[1], normal_liver_kg=rho_kg_ml * x_arr[0],
                               tn_ratio=tn, lung_shunt_fraction=lsf, lung_kg=lung_kg, lung_limit_gy=limit)
    warnings: list[str] = []
    lsf_max = _lsf_max(profile)
    if lsf_max is not None and lsf > lsf_max:
        warnings.append(f"lung shunt fraction {lsf:.2f} above {lsf_max:.2f} (profile {profile.name})")
    bsa = _bsa(args, profile, x_arr[1], x_arr[0], lsf, warnings)
    k = local_deposition_gy_per_gbq_kg("Y-90")
    bsa_out = None
    if bsa is not None:
        a_liver = bsa.activity_gbq * (1.0 - lsf)
        dn_bsa = k * a_liver / (rho_kg_ml * (x_arr[0] + tn * x_arr[1]))
        bsa_out = {"activity_gbq": bsa.activity_gbq, "bsa_m2": bsa.bsa_m2, "formula": bsa.formula,
                   "tumour_fraction": bsa.tumour_fraction, "lsf_factor": bsa.lsf_factor,
                   "normal_liver_gy": dn_bsa, "tumour_gy": tn * dn_bsa, "lung_gy": k * bsa.activity_gbq * lsf / lung_kg,
                   "model": "BSA method (SIR-Spheres instructions for use)"}
    explanation = plan.explanation()
    if scout_info is not None:
        explanation += (f"; ±{sd[0]:.2f} GBq from VOI masses and counts; scout T/N {tn:.2f} ± {sd[3]:.2f}, "
                        f"lung shunt {100 * lsf:.1f} ± {100 * sd[4]:.2g}%")
    if bsa is not None:
        explanation += f"; {bsa.explanation()}"
    explanation += f"; profile {profile.name}"
    confidence = _confidence(plan.lung_gy, float(sd[2]), limit, lsf, float(sd[4]), lsf_max)
    data = {"nuclide": "Y-90", "activity_gbq": plan.activity_gbq, "activity_se_gbq": float(sd[0]),
            "tumour_gy": plan.tumour_gy,
            "tumour_se_gy": float(sd[1]), "normal_liver_gy": plan.normal_liver_gy, "lung_gy": plan.lung_gy,
            "lung_se_gy": float(sd[2]), "lung_limit_gy": limit, "tn_ratio": tn, "tn_se": float(sd[3]),
            "lung_shunt_fraction": lsf, "lung_shunt_se": float(sd[4]), "limits_ok": plan.limits_ok,
            "profile": profile.name}
    record = plan_record("y90", f"{plan.activity_gbq:.2f} GBq", explanation, confidence, data)
    payload: dict[str, Any] = {
        "activity_gbq": plan.activity_gbq,
        "liver_activity_gbq": plan.liver_activity_gbq,
        "tumour_gy": plan.tumour_gy,
        "normal_liver_gy": plan.normal_liver_gy,
        "lung_gy": plan.lung_gy,
        "lung_limit_gy": plan.lung_limit_gy,
        "limits_ok": plan.limits_ok,
        "warnings": warnings,
        "explanation": explanation,
        "uncertainty": {"activity_se_gbq": float(sd[0]), "tumour_se_gy": float(sd[1]), "lung_se_gy": float(sd[2]),
                        "tn_se": float(sd[3]), "lung_shunt_se": float(sd[4]),
                        "source": "VOI masses (half-voxel boundary) and counts (voxel noise)" if scout_info
                        else "none: manual inputs"},
        "tn_ratio": tn,
        "lung_shunt_fraction": lsf,
        "tumour_kg": rho_kg_ml * x_arr[1],
        "normal_liver_kg": rho_kg_ml * x_arr[0],
        "lung_kg": lung_kg,
        "confidence": confidence,
        "scout": scout_info,
        "bsa_method": bsa_out,
        "profile": profile.name,
        "profile_source": str(profile.source),
        "model": "partition model (Ho et al. 1996), 49.67 Gy kg/GBq",
    }
    lines = [explanation] + [f"warning: {w}" for w in warnings]
    return _finish(args, payload, record, lines)


def run_plan_ho166(args: argparse.Namespace) -> int:
    """``igikit plan ho166``: activity for a prescribed perfused-liver dose from a Ho-166 scout; the post check."""
    from igikit.core.profile import load_profile
    from igikit.io.image import read_image, write_image
    from igikit.workflows.theranostics.commands import parse_timed_path
    from igikit.workflows.theranostics.planning import MicrospherePlan, microsphere_activity, propagate
    from igikit.workflows.theranostics.scout import (
        compare_doses,
        delivered_dose,
        density_map,
        lung_shunt,
        predicted_dose,
        tn_ratio,
    )

    profile = load_profile(args.profile)
    limit = profile.number("dosimetry_limits.lung_gy_per_treatment")
    prescribed = _profile_default(profile, "therapy_defaults.ho166_perfused_liver_gy", args.prescribe_gy)
    if not (math.isfinite(prescribed) and prescribed > 0):
        raise InputError(f"--prescribe-gy must be a positive dose, got {prescribed}")
    lung_kg = _profile_default(profile, "therapy_defaults.partition_model_lung_kg", args.lung_kg)
    rho_g_ml = profile.tissue("liver").density_kg_m3 / 1000.0
    rho_kg_ml = rho_g_ml / 1000.0
    post, post_path, post_hours = None, Path(), None
    if args.post is not None:
        post_path, post_hours = parse_timed_path(args.post)
        post = read_image(post_path, series=False)
    if args.administered_gbq is not None and not (math.isfinite(args.administered_gbq) and args.administered_gbq > 0):
        raise InputError(f"--administered-gbq must be a positive activity, got {args.administered_gbq}")
    scout, _, masks, vois = _read_scout(args)
    x, se = vois.inputs()

    def model(v: np.ndarray) -> np.ndarray:
        a, t, n, lung = microsphere_activity(
            prescribed_gy=prescribed, perfused_kg=rho_kg_ml * (v[0] + v[1]), tumour_kg=rho_kg_ml * v[1],
            liver_kg=rho_kg_ml * v[0], tumour_fraction_of_liver=v[3] / (v[2] + v[3]),
            lung_shunt_fraction=lung_shunt(v), lung_kg=lung_kg, nuclide_name="Ho-166")
        return np.array([a, t, n, lung, tn_ratio(v), lung_shunt(v)])

    x_arr = np.asarray(x, dtype=np.float64)
    values, sd = propagate(model, x_arr, se)
    plan = MicrospherePlan("Ho-166", float(values[0]), float(sd[0]), prescribed, float(values[1]), float(sd[1]),
                           float(values[2]), float(sd[2]), float(values[3]), float(sd[3]), limit,
                           bool(values[3] <= limit))
    tn, lsf = float(values[4]), float(values[5])
    lsf_max = _lsf_max(profile)
    warnings = []
    if lsf_max is not None and lsf > lsf_max:
        warnings.append(f"lung shunt fraction {lsf:.2f} above {lsf_max:.2f} (profile {profile.name})")
    rho = density_map(masks, rho_g_ml, scout.array.shape)
    given_gbq = args.administered_gbq if args.administered_gbq is not None else plan.activity_gbq
    predicted = predicted_dose(scout, plan.activity_gbq, "Ho-166", rho)
    comparison = None
    registration = None
    delivered = None
    if post is not None:
        from igikit.workflows.theranostics.registration import register_rigid

        try:
            post_on_scout, reg = register_rigid(scout, post, what="post-treatment image")
        except InputError as exc:
            raise InputError(exc.problem, post_path) from None
        registration = reg.to_dict()
        try:
            delivered = delivered_dose(post_on_scout, post_hours, "Ho-166", rho)
        except InputError as exc:
            raise InputError(exc.problem, post_path) from None
        at_given = predicted * (given_gbq / plan.activity_gbq)
        comparison = compare_doses(at_given, delivered, masks)
    explanation = (f"{plan.explanation()}; scout T/N {tn:.2f} ± {sd[4]:.2f}, lung shunt {100 * lsf:.1f} ± "
                   f"{100 * sd[5]:.2g}%; perfused liver {rho_kg_ml * (x_arr[0] + x_arr[1]):.2f} kg; "
                   f"profile {profile.name}")
    confidence = _confidence(plan.lung_gy, plan.lung_se_gy, limit, lsf, float(sd[5]), lsf_max)
    data = {"nuclide": "Ho-166", "activity_gbq": plan.activity_gbq, "activity_se_gbq": plan.activity_se_gbq,
            "perfused_liver_gy": prescribed, "tumour_gy": plan.tumour_gy, "tumour_se_gy": plan.tumour_se_gy,
            "normal_liver_gy": plan.normal_liver_gy, "normal_liver_se_gy": plan.normal_liver_se_gy,
            "lung_gy": plan.lung_gy, "lung_se_gy": plan.lung_se_gy, "lung_limit_gy": limit, "tn_ratio": tn,
            "lung_shunt_fraction": lsf, "lung_shunt_se": float(sd[5]), "limits_ok": plan.limits_ok,
            "profile": profile.name}
    record = plan_record("ho166", f"{plan.activity_gbq:.2f} GBq", explanation, confidence, data)
    payload: dict[str, Any] = {
        "nuclide": "Ho-166",
        "activity_gbq": plan.activity_gbq,
        "perfused_liver_gy": prescribed,
        "tumour_gy": plan.tumour_gy,
        "normal_liver_gy": plan.normal_liver_gy,
        "lung_gy": plan.lung_gy,
        "lung_limit_gy": limit,
        "limits_ok": plan.limits_ok,
        "warnings": warnings,
        "explanation": explanation,
        "uncertainty": {"activity_se_gbq": plan.activity_se_gbq, "tumour_se_gy": plan.tumour_se_gy,
                        "normal_liver_se_gy": plan.normal_liver_se_gy, "lung_se_gy": plan.lung_se_gy,
                        "tn_se": float(sd[4]), "lung_shunt_se": float(sd[5]),
                        "source": "VOI masses (half-voxel boundary) and counts (voxel noise)"},
        "tn_ratio": tn,
        "lung_shunt_fraction": lsf,
        "perfused_liver_kg": rho_kg_ml * (x_arr[0] + x_arr[1]),
        "lung_kg": lung_kg,
        "confidence": confidence,
        "scout": vois.to_dict(),
        "predicted_vois_gy": {name: float(predicted[m].mean()) for name, m in masks.items()},
        "post_treatment": None if comparison is None else {
            **comparison.to_dict(), "administered_gbq": given_gbq, "registration": registration,
            "explanation": comparison.explanation()},
        "profile": profile.name,
        "profile_source": str(profile.source),
        "model": "local deposition 15.87 Gy kg/GBq; scout-predicted distribution (Smits et al. 2020)",
    }
    if args.out is not None:
        write_image(scout.with_array(predicted.astype(np.float32), modality="RTDOSE", units="Gy",
                                     meta={"nuclide": "Ho-166"}), args.out)
    if args.report is not None:
        from igikit.workflows.theranostics.report import write_plan_report

        write_plan_report(payload, args.report, scout=scout, masks=masks, predicted_gy=predicted,
                          delivered_gy=delivered, given_gbq=given_gbq)
    lines = [explanation] + [f"warning: {w}" for w in warnings]
    if comparison is not None:
        lines.append(comparison.explanation())
    return _finish(args, payload, record, lines)
