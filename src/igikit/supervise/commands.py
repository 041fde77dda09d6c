"""``igikit audit verify`` and ``igikit audit show``: check and read a session's audit log."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from igikit.errors import InputError
from igikit.supervise.audit import AuditEntry, AuditLog
from igikit.supervise.records import DecisionRecord

EXIT_OK = 0
EXIT_TAMPERED = 1


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``igikit audit {verify,show}``."""
    audit = sub.add_parser("audit", help="verify or show a session's hash-chained audit log")
    actions = audit.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=type(audit))
    actions.required = True

    verify = actions.add_parser(
        "verify",
        help="check the hash chain; exit 0 if intact, 1 naming the first edited, deleted or moved row",
        description="Recompute every row's hash and link. Exit 0 on an intact log, 1 when any row was "
        "edited, deleted or reordered (or the tail was truncated, given --expect-head/--expect-rows), "
        "2 when the file is missing or not an igikit audit log.",
    )
    verify.add_argument("log", metavar="SESSION.db", help="the audit log")
    verify.add_argument(
        "--expect-head", metavar="HASH", help="head hash recorded earlier; detects a truncated or rewritten log"
    )
    verify.add_argument(
        "--expect-rows", metavar="N", type=int, help="the log must hold at least N rows (detects truncation)"
    )
    verify.set_defaults(func=_verify)

    show = actions.add_parser("show", help="print the decisions and human actions in a log")
    show.add_argument("log", metavar="SESSION.db", help="the audit log")
    show.add_argument("--tail", metavar="N", type=_positive_int, help="only the last N entries")
    show.add_argument("--json", action="store_true", help="one JSON object per entry and line (JSON Lines)")
    show.set_defaults(func=_show)


def _verify(args: argparse.Namespace) -> int:
    if args.expect_rows is not None and args.expect_rows < 0:
        raise InputError(f"--expect-rows must be >= 0, got {args.expect_rows}")
    with AuditLog(args.log, create=False) as audit:
        result = audit.verify(expected_head=args.expect_head, expected_rows=args.expect_rows)
    for note in result.notes:
        print(f"note: {note}")
    if result.ok:
        print(f"{args.log}: OK: {result.n_rows} rows, hash chain intact")
        print(f"head {result.head_hash}")
        return EXIT_OK
    where = f"first bad row {result.first_bad_seq}" if result.first_bad_seq is not None else "rewritten"
    print(f"{args.log}: TAMPERED ({where}): {result.reason}")
    print(f"{result.n_rows} rows; stored head {result.head_hash}")
    return EXIT_TAMPERED


def _show(args: argparse.Namespace) -> int:
    with AuditLog(args.log, create=False) as audit:
        entries = audit.tail(args.tail) if args.tail else list(audit.records())
    for entry in entries:
        if args.json:
            print(json.dumps(_entry_json(entry), sort_keys=True, ensure_ascii=False))
        else:
            print(format_entry(entry))
    return EXIT_OK


def _entry_json(entry: AuditEntry) -> dict[str, object]:
    try:
        return entry.to_dict()
    except ValueError:  # a payload that is not JSON (only a tampered log has one): show it as text
        return {**{k: v for k, v in vars(entry).items() if k != "payload"}, "record": None, "raw": entry.payload}


def _time(wall_time_s: float) -> str:
    return datetime.fromtimestamp(wall_time_s, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def format_entry(entry: AuditEntry) -> str:
    """Two readable lines for a log entry: what happened, then the explanation or reason."""
    head = f"#{entry.seq:<5d} {_time(entry.wall_time_s)}"
    try:
        record = entry.record
    except InputError as exc:
        return f"{head}  {entry.kind}  (unreadable: {exc})\n        {entry.payload[:200]}"
    if isinstance(record, DecisionRecord):
        flags = "".join(
            [", SAFETY" if record.safety else "", ", PROPOSAL awaiting approval" if record.proposal else ""]
        )
        frame = "" if record.frame_time_s is None else f" at frame time {record.frame_time_s:.3f} s"
        who = " ".join(p for p in (record.workflow, record.component, record.component_version) if p)
        return (
            f"{head}  decision  {record.decision} = {record.value}  "
            f"(confidence {record.confidence:.2f}{flags})  by {who}{frame}\n"
            f"        {record.explanation}"
        )
    target = "" if record.responds_to_seq is None else f" -> #{record.responds_to_seq}"
    value = "" if record.value is None else f" = {record.value}"
    refused = "  REFUSED" if record.refused else ""
    reason = f"\n        {record.reason}" if record.reason else ""
    return f"{head}  human     {record.action}{value}{target}  by {record.operator} ({record.role}){refused}{reason}"
