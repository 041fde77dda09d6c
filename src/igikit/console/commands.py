"""``igikit users`` (add, list, remove console users) and ``igikit console`` (serve the console)."""

from __future__ import annotations

import argparse
import datetime as _dt
import getpass
import sys
from pathlib import Path

from igikit.errors import InputError
from igikit.workflows.mrgrt.commands import TRACKING_METHODS


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``users`` and ``console``."""
    users = sub.add_parser("users", help="add, list or remove the console's users (operator, physicist, observer)")
    actions = users.add_subparsers(dest="users_command", metavar="ACTION", parser_class=type(users))
    actions.required = True

    add = actions.add_parser(
        "add",
        help="add a user",
        description="Add a console user. Roles: operator (acts: acknowledges alerts, approves or vetoes, pauses, "
        "resumes), physicist (also changes the autonomy level), observer (views only). The password is read from "
        "the terminal (twice), or from standard input with --password-stdin; it is stored as an argon2id hash.",
    )
    add.add_argument("name", help="user name (letters, digits, ._@-)")
    add.add_argument("--role", required=True, choices=("operator", "physicist", "observer"))
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    _users_option(add)
    add.set_defaults(func=_cmd_add)

    lst = actions.add_parser("list", help="list users and roles")
    _users_option(lst)
    lst.set_defaults(func=_cmd_list)

    rm = actions.add_parser("remove", help="remove a user (their console session ends at their next request)")
    rm.add_argument("name")
    _users_option(rm)
    rm.set_defaults(func=_cmd_remove)

    c = sub.add_parser(
        "console",
        help="serve the supervisor's web console for a live gating run on a cine case, a recorded session, or "
        "the treatment plans awaiting approval in an audit log",
        description="Serve the web console (http://127.0.0.1:8000 by default). With --case, the MR-linac gating "
        "workflow (tracking, prediction, gating) runs live on a TrackRAD cine case under the console's "
        "supervision: its decisions, alerts and beam are the real workflow's; audit log, session file and "
        "report go to --out-dir. With --session, a recorded session file is replayed: the decisions a workflow "
        "recorded (igikit gate, igikit demo) are supervised again; a plain motion recording without decisions "
        "gets a clearly labelled stand-in gate. With --proposals, the plans that `igikit plan ... --audit` "
        "appended to that log and nobody has approved or vetoed yet wait in the console for a physicist, "
        "with their activity, doses and limits; the answer goes to the same log. Users log in with the "
        "accounts of `igikit users`; every action goes to the audit log.",
    )
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--session", metavar="SESSION.h5", type=Path, help="replay this recorded session file")
    what.add_argument(
        "--case", metavar="CASE_DIR", type=Path, help="run the gating workflow live on this TrackRAD case folder"
    )
    what.add_argument(
        "--proposals", metavar="AUDIT.db", type=Path,
        help="review the plans awaiting approval in this audit log (igikit plan ... --audit); answers go to it",
    )
    c.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    c.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    _users_option(c)
    c.add_argument("--audit", metavar="AUDIT.db", type=Path, help="--session: audit log (default: a new file in out/)")
    c.add_argument(
        "--autonomy", type=int, choices=(0, 1, 2, 3),
        help="starting autonomy level (default 3 for --case, 2 for --session)",
    )
    c.add_argument("--veto-window-s", type=float, default=3.0, help="veto window at level 2 (s, default 3)")
    c.add_argument("--loop", action="store_true", help="--session: replay the session file again and again")
    c.add_argument("--rate-hz", type=float, help="--session: replay rate (default: the recorded rhythm)")
    c.add_argument(
        "--target", metavar="ROW,COL,RADIUS_MM", help="--case: target disc on frame 0, for a case without a first label"
    )
    c.add_argument(
        "--out-dir", type=Path, metavar="DIR", help="--case: output folder (default out/console-<case>-<timestamp>)"
    )
    c.add_argument("--fast", action="store_true", help="--case: as fast as possible instead of the native frame rate")
    c.add_argument("--max-frames", type=int, metavar="N", help="--case: replay only the first N frames")
    c.add_argument("--latency-ms", type=float, default=300.0, help="--case: system latency (ms, default 300)")
    c.add_argument("--margin-mm", type=float, help="--case: gating margin (default: profile, 3)")
    c.add_argument("--profile", default="adult", help="--case: patient profile (default adult)")
    c.add_argument(
        "--method", default="ensemble", choices=TRACKING_METHODS,
        help="--case: tracking method (default ensemble; ai or ensemble_ai also explain frames on request)",
    )
    c.set_defaults(func=_cmd_console)


def _users_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--users", metavar="USERS.db", type=Path, help="users file (default: $IGIKIT_HOME/users.db, ~/.igikit)"
    )


def _store(path: Path | None, *, create: bool):  # type: ignore[no-untyped-def]
    from igikit.console.users import UserStore, default_users_path

    return UserStore(path or default_users_path(), create=create)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        text = sys.stdin.readline()
        if not text:
            raise InputError("--password-stdin: no password on standard input")
        return text.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InputError("no terminal to ask for the password; pipe it in with --password-stdin")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise InputError("the two passwords differ")
    return first


def _cmd_add(args: argparse.Namespace) -> int:
    password = _read_password(args.password_stdin)
    store = _store(args.users, create=True)
    try:
        user = store.add(args.name, args.role, password)
    finally:
        store.close()
    print(f"added {user.name} ({user.role}) to {store.path}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    store = _store(args.users, create=False)
    try:
        users = store.list()
    finally:
        store.close()
    if not users:
        print(f"no users in {store.path}")
    for user in users:
        created = _dt.datetime.fromtimestamp(user.created_wall_s).strftime("%Y-%m-%d %H:%M")
        print(f"{user.name:<24} {user.role:<10} added {created}")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    store = _store(args.users, create=False)
    try:
        store.remove(args.name)
    finally:
        store.close()
    print(f"removed {args.name} from {store.path}")
    return 0


def _cmd_case(args: argparse.Namespace) -> int:
    """``igikit console --case``: the real gating workflow, live, under the console's supervision."""
    # the console layer computes nothing clinical: the workflow does, the console serves its session
    from igikit.workflows.mrgrt import commands as mrgrt
    from igikit.workflows.mrgrt.workflow import GatingSettings, SupervisionSettings

    for option in ("audit", "loop", "rate_hz"):
        if getattr(args, option) not in (None, False):
            raise InputError(f"--{option.replace('_', '-')} is for --session; --case writes into --out-dir")
    if args.max_frames is not None and args.max_frames < 2:
        raise InputError(f"--max-frames must be at least 2, got {args.max_frames}")
    if not 0 <= args.port < 65536:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    settings = GatingSettings.from_profile(
        args.profile, latency_ms=args.latency_ms, margin_mm=args.margin_mm, tracking_method=args.method
    )
    supervision = SupervisionSettings(
        level=3 if args.autonomy is None else args.autonomy, veto_window_s=args.veto_window_s, headless=False
    )
    if not args.case.is_dir():
        raise InputError("not a TrackRAD case folder (images/, targets/, frame-rate.json)", args.case)
    case, label = mrgrt.load_gating_case(args.case, args.target)
    out_dir = args.out_dir or Path("out") / f"console-{case.case_id}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return mrgrt.serve_gating(
        case, label, settings, supervision, out_dir=out_dir, fast=args.fast, max_frames=args.max_frames,
        port=args.port, host=args.host, users_path=args.users,
    )


def _cmd_proposals(args: argparse.Namespace) -> int:
    """``igikit console --proposals``: the plans awaiting a physicist's approval in an audit log."""
    from igikit.workflows.theranostics.plan_commands import serve_plan_review

    for option in ("audit", "autonomy", "loop", "rate_hz", "target", "out_dir", "fast", "max_frames", "margin_mm"):
        if getattr(args, option) not in (None, False):
            raise InputError(f"--{option.replace('_', '-')} does not apply to --proposals")
    if not 0 <= args.port < 65536:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    # the log is read before any users file or secret is created: a bad one leaves neither behind
    serve_plan_review(args.proposals, session_id=f"plan-review-{stamp}", host=args.host, port=args.port,
                      users_path=args.users)
    return 0


def _cmd_console(args: argparse.Namespace) -> int:
    if args.case is not None:
        return _cmd_case(args)
    if args.proposals is not None:
        return _cmd_proposals(args)
    from igikit.console.app import create_app
    from igikit.console.feed import ReplayFeed
    from igikit.console.server import console_access
    from igikit.supervise.audit import AuditLog
    from igikit.supervise.autonomy import AutonomyPolicy
    from igikit.supervise.session import SupervisedSession

    if args.rate_hz is not None and not args.rate_hz > 0:
        raise InputError(f"--rate-hz must be positive, got {args.rate_hz}")
    for option in ("target", "out_dir", "fast", "max_frames", "margin_mm"):
        if getattr(args, option) not in (None, False):
            raise InputError(f"--{option.replace('_', '-')} is for --case")
    # inputs first: a bad one must leave no users file, secret or audit log behind
    from igikit.stream.recorder import read_session

    recording = read_session(args.session)
    if recording.n_frames == 0:
        raise InputError("session file holds no complete frame", args.session)
    access = console_access(args.host, args.port, users_path=args.users)
    audit_path = args.audit
    if audit_path is None:
        Path("out").mkdir(exist_ok=True)
        audit_path = Path("out") / f"console_audit_{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.db"
    audit = AuditLog(audit_path)
    session = SupervisedSession(
        audit,
        workflow=str(recording.attrs.get("workflow") or "console"),
        session_id=args.session.name,
        level=2 if args.autonomy is None else args.autonomy,
        policy=AutonomyPolicy(veto_window_s=args.veto_window_s),
        safe_values={"beam": "hold"},
    )
    feed = ReplayFeed(recording, session, loop=args.loop, rate_hz=args.rate_hz)
    app = create_app(session, access.store, secret=access.secret, title=feed.describe(), on_shutdown=feed.stop)
    server = access.server(app, audit_path=audit_path, about=feed.describe())
    feed.start()
    try:
        server.run()
    finally:
        feed.stop()
        audit.close()
        access.store.close()
    return 0
