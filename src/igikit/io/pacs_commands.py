"""``igikit pacs echo|find|pull|push|push-results``: a PACS (DICOM node) from the command line.

``pull`` retrieves a study by C-MOVE to a storage SCP that igikit starts for the transfer (the node
must know igikit's AE title at ``--store-host``/``--store-port``), or by C-GET where the node does
not; ``push-results`` sends what ``igikit dose --rtdose --json --report`` wrote (the RTDOSE and the
report as an Encapsulated PDF) back under the source study. pynetdicom is imported only when a
subcommand runs, so ``igikit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igikit.errors import InputError

if TYPE_CHECKING:
    from igikit.io.pacs import DicomNode

_FIND_COLUMNS = {
    "STUDY": ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "ModalitiesInStudy",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "StudyDescription"),
    "SERIES": ("SeriesInstanceUID", "StudyInstanceUID", "Modality", "SeriesNumber",
               "NumberOfSeriesRelatedInstances", "SeriesDescription"),
    "IMAGE": ("SOPInstanceUID", "SeriesInstanceUID", "SOPClassUID", "InstanceNumber"),
}


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, got {text!r}") from None
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``pacs echo|find|pull|push|push-results``."""
    from igikit.io.pacs import (
        DEFAULT_CALLED_AET,
        DEFAULT_CALLING_AET,
        DEFAULT_HOST,
        DEFAULT_PORT,
        DEFAULT_STORE_PORT,
        DEFAULT_TIMEOUT_S,
    )

    node = argparse.ArgumentParser(add_help=False)
    g = node.add_argument_group("DICOM node")
    g.add_argument("--host", default=DEFAULT_HOST, help=f"the node's address (default {DEFAULT_HOST})")
    g.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"its DICOM port (default {DEFAULT_PORT})")
    g.add_argument("--aet", default=DEFAULT_CALLING_AET,
                   help=f"igikit's AE title, known to the node (default {DEFAULT_CALLING_AET})")
    g.add_argument("--called-aet", default=DEFAULT_CALLED_AET,
                   help=f"the node's AE title (default {DEFAULT_CALLED_AET})")
    g.add_argument("--timeout-s", type=_positive, default=DEFAULT_TIMEOUT_S,
                   help=f"connection and response timeout (default {DEFAULT_TIMEOUT_S:g} s)")

    p = sub.add_parser(
        "pacs",
        help="DICOM node (PACS): echo, find, pull a study, push files and dosimetry results",
        description="Talk to a DICOM node (PACS, Orthanc) with pynetdicom: verify it (C-ECHO), query it "
        "(C-FIND), retrieve a study into a folder (C-MOVE to a storage SCP started here, or C-GET), "
        "store files (C-STORE), and push igikit dose results (RTDOSE + the report as an Encapsulated "
        "PDF) under the source study.",
    )
    cmds = p.add_subparsers(dest="pacs_command", metavar="SUBCOMMAND", parser_class=type(p))
    cmds.required = True

    e = cmds.add_parser("echo", parents=[node], help="verify the node (C-ECHO)")
    e.set_defaults(func=_cmd_echo)

    f = cmds.add_parser("find", parents=[node], help="query studies, series or instances (C-FIND)",
                        description="C-FIND with the Study Root model; prints one line per match.")
    f.add_argument("--level", type=str.upper, choices=("STUDY", "SERIES", "IMAGE"), default="STUDY",
                   help="query level (default STUDY)")
    f.add_argument("--patient-id", default=None, help="PatientID (wildcards * and ? allowed)")
    f.add_argument("--study-uid", default=None, help="StudyInstanceUID")
    f.add_argument("--series-uid", default=None, help="SeriesInstanceUID (series and image levels)")
    f.add_argument("--modality", default=None, help="PT, NM, CT, RTDOSE, DOC, ...")
    f.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the matches as JSON")
    f.set_defaults(func=_cmd_find)

    pull = cmds.add_parser(
        "pull", parents=[node], help="retrieve a study into a folder (C-MOVE, or C-GET)",
        description="Retrieve a study into DIR/<SeriesInstanceUID>/<SOPInstanceUID>.dcm. C-MOVE sends it "
        "to a storage SCP igikit starts on --store-host:--store-port under AE title --aet (the node must "
        "list that AE with that address); when the node refuses, C-GET fetches it on the same association. "
        "Nothing is left in DIR if the retrieval fails.",
    )
    pull.add_argument("study_uid", metavar="STUDY_UID", help="StudyInstanceUID to retrieve")
    pull.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (new or empty)")
    pull.add_argument("--method", choices=("auto", "move", "get"), default="auto",
                      help="auto: C-MOVE, then C-GET if it is refused (default)")
    pull.add_argument("--store-host", default=DEFAULT_HOST,
                      help=f"interface the C-MOVE storage SCP listens on (default {DEFAULT_HOST})")
    pull.add_argument("--store-port", type=_port, default=DEFAULT_STORE_PORT,
                      help=f"its port, as registered on the node (default {DEFAULT_STORE_PORT})")
    pull.add_argument("--move-aet", default=None, help="move destination AE title (default: --aet)")
    pull.set_defaults(func=_cmd_pull)

    push = cmds.add_parser("push", parents=[node], help="store DICOM files or folders on the node (C-STORE)")
    push.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR",
                      help="DICOM files, or folders searched for DICOM files")
    push.set_defaults(func=_cmd_push)

    r = cmds.add_parser(
        "push-results", parents=[node], help="store igikit dose results (RTDOSE + PDF report) under the study",
        description="Store the RTDOSE that 'igikit dose --rtdose' wrote (with the source study's patient and "
        "UIDs) and a report as Encapsulated PDF under the same study: the dose statistics of --json and the "
        "figures of --report. An RTDOSE that names no patient (its dose was computed from NIfTI or MHA "
        "images, so its study UID was made up) is refused before anything is sent, unless --allow-unlinked.",
    )
    r.add_argument("--rtdose", required=True, type=Path, metavar="DOSE.dcm", help="igikit dose --rtdose output")
    r.add_argument("--json", type=Path, default=None, metavar="DOSE.json", help="igikit dose --json output")
    r.add_argument("--report", type=Path, default=None, metavar="REPORT.html", help="igikit dose --report output")
    r.add_argument("--pdf-out", type=Path, default=None, metavar="REPORT.dcm",
                   help="also keep the Encapsulated PDF instance in this file")
    r.add_argument("--allow-unlinked", action="store_true",
                   help="store an RTDOSE that names no patient (computed from non-DICOM images) as a new study")
    r.set_defaults(func=_cmd_push_results)


def _node(args: argparse.Namespace) -> DicomNode:
    from igikit.io.pacs import DicomNode

    # pynetdicom logs every refusal at ERROR level; the PacsError says it once. -vv shows its log.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if getattr(args, "verbose", 0) >= 2 else logging.CRITICAL)
    return DicomNode(args.host, args.port, args.called_aet, args.aet, args.timeout_s)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int | None], None]]:
    """A progress bar on stderr (when it is a terminal) fed by (done, total) callbacks."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        transient=True, console=Console(stderr=True), disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("", total=None)

        def step(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield step


def _cmd_echo(args: argparse.Namespace) -> int:
    from igikit.io.pacs import echo

    node = _node(args)
    ms = echo(node)
    print(f"C-ECHO {node}: success in {ms:.1f} ms (as {node.calling_aet})")
    return 0


def _cmd_find(args: argparse.Namespace) -> int:
    from igikit.io.atomic import atomic_path
    from igikit.io.pacs import find

    node = _node(args)
    matches = find(node, level=args.level, patient_id=args.patient_id, study_uid=args.study_uid,
                   series_uid=args.series_uid, modality=args.modality)
    if args.json is not None:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"level": args.level, "matches": matches}, indent=2) + "\n", encoding="utf-8")
    columns = _FIND_COLUMNS[args.level]
    print(f"{len(matches)} {args.level.lower()} match(es) on {node}")
    for m in matches:
        print("  " + "  ".join(m.get(c, "") or "-" for c in columns))
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from igikit.io.pacs import retrieve

    node = _node(args)
    with _progress("pull") as step:
        result = retrieve(node, args.study_uid, args.out, method=args.method, store_host=args.store_host,
                          store_port=args.store_port, move_aet=args.move_aet, progress=step)
    n = len(result.files)
    rate = n / result.seconds if result.seconds > 0 else float("inf")
    print(f"{result.method}: {n} instance(s) of study {args.study_uid} in {result.seconds:.2f} s "
          f"({rate:.0f}/s) -> {result.folder}")
    for series, count in sorted(result.series.items()):
        print(f"  {result.folder / series}: {count}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _report_store(result: Any, what: str, node: DicomNode) -> int:
    from igikit.io.pacs import PacsError

    total = result.stored + len(result.failures)
    print(f"C-STORE {node}: {result.stored} of {total} {what} stored in {result.seconds:.2f} s"
          + (f" ({result.warnings} with warnings)" if result.warnings else ""))
    if result.failures:
        label, why = result.failures[0]
        more = f" (and {len(result.failures) - 1} more)" if len(result.failures) > 1 else ""
        raise PacsError(f"{label}: not stored: {why}{more}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from igikit.io.pacs import dicom_files, store

    node = _node(args)
    files = dicom_files(args.paths)
    with _progress("push") as step:
        result = store(node, files, progress=step)
    return _report_store(result, "instance(s)", node)


def unlinked_reason(dose: Any) -> str | None:
    """Why an RTDOSE cannot be filed under a patient in a PACS, or None when it can.

    ``igikit dose --rtdose`` copies the patient and study of DICOM source images; from NIfTI or MHA
    images there are none, and the RTDOSE carries an empty patient ID and generated study UIDs
    (:func:`igikit.io.dicom.new_dataset`). The same holds for a source whose patient ID was removed.
    """
    if str(dose.get("PatientID", "") or "").strip():
        return None
    return ("the RTDOSE names no patient (empty PatientID): its dose was computed from images that were not "
            "DICOM (NIfTI, MHA) or had no patient ID, so its study UID was generated and the PACS would file it "
            "as a new study of an unknown patient")


def _cmd_push_results(args: argparse.Namespace) -> int:
    from pydicom import dcmwrite

    from igikit.io.atomic import atomic_path
    from igikit.io.dicom import read_dataset
    from igikit.io.dicomdoc import results_datasets
    from igikit.io.pacs import store

    node = _node(args)
    if args.json is None and args.report is None:
        raise InputError("push-results needs --json or --report (or both) to make the report from")
    # before the report is made or anything is sent: an unlinked dose would be an orphan study on the node
    header = read_dataset(args.rtdose, stop_before_pixels=True)
    unlinked = unlinked_reason(header) if header.get("Modality") == "RTDOSE" else None
    if unlinked is not None and not args.allow_unlinked:
        raise InputError(f"{unlinked}; refused (give --allow-unlinked to store it anyway)", args.rtdose)
    dose, pdf = results_datasets(args.rtdose, dosimetry_json=args.json, report_html=args.report)
    if unlinked is not None:
        print(f"warning: {args.rtdose}: {unlinked}; storing it as study {dose.StudyInstanceUID} "
              "(--allow-unlinked)", file=sys.stderr, flush=True)
    if args.pdf_out is not None:
        with atomic_path(args.pdf_out) as tmp:
            dcmwrite(tmp, pdf, enforce_file_format=True)
    result = store(node, [args.rtdose, pdf])
    code = _report_store(result, "object(s) (RTDOSE, Encapsulated PDF)", node)
    print(f"  study {dose.StudyInstanceUID}, patient {dose.get('PatientID', '') or '(no ID)'}")
    return code
