"""DICOM networking with a PACS (pynetdicom): verify, query, retrieve a study, store results.

The services are those of DICOM PS3.4: Verification (C-ECHO, Annex A), Query/Retrieve with the
Study Root information model (C-FIND, C-MOVE, C-GET, Annex C) and Storage (C-STORE, Annex B).
igikit is the service class user; the node (a PACS, Orthanc, a vendor archive) is the provider.

Retrieval by C-MOVE asks the node to open a second association back to a storage SCP that igikit
starts in-process (on a loopback port by default), so the node must know igikit's AE title with that
host and port (in Orthanc: ``DicomModalities``). Where the node refuses the move (the destination
is unknown to it, our port cannot be opened, it cannot reach us), the same study is fetched by
C-GET, which sends the instances back on the association igikit opened and so needs no
configuration on the node. Instances are written as received (no transcoding) to
``DIR/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``, into a temporary folder renamed into place at the
end, so a failed retrieval leaves nothing behind.

Results go back under the source study with :func:`store`; :mod:`igikit.io.dicomdoc` makes them
(the RTDOSE with the source's UIDs, the report as Encapsulated PDF).

Every failure the user can act on (no node at that address, association rejected and why, the
node answering with a failure status, an unknown study, a file that is not DICOM) raises
:class:`PacsError` or :class:`~igikit.errors.InputError` with one line saying so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igikit.errors import IgikitError, InputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4242
DEFAULT_CALLING_AET = "IGIKIT"
DEFAULT_CALLED_AET = "ORTHANC"
#: Port of the in-process storage SCP that receives C-MOVE sub-operations (pynetdicom's default).
DEFAULT_STORE_PORT = 11112
DEFAULT_TIMEOUT_S = 30.0

VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
FIND_LEVELS = ("STUDY", "SERIES", "IMAGE")
RETRIEVE_METHODS = ("auto", "move", "get")

#: Return keys of a C-FIND at each level (empty in the query: the node fills them in).
_RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "STUDY": (
        "PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription",
        "AccessionNumber", "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ),
    "SERIES": (
        "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    ),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}

#: A-ASSOCIATE-RJ (source, reason) in words, PS3.8 table 9-21.
_REJECT_REASONS: dict[tuple[int, int], str] = {
    (1, 1): "no reason given",
    (1, 2): "application context not supported",
    (1, 3): "calling AE title not recognised (register it on the node)",
    (1, 7): "called AE title not recognised (check --called-aet)",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class PacsError(IgikitError):
    """A DICOM node could not be reached, refused a request, or answered with a failure."""


ProgressCallback = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class DicomNode:
    """Where a DICOM node listens and the AE titles of the association.

    Attributes
    ----------
    host, port
        The node's address (its DICOM port, not its web port).
    called_aet
        The node's AE title (Orthanc's ``DicomAet``).
    calling_aet
        igikit's AE title: the node must know it (with igikit's host and storage port) for C-MOVE.
    timeout_s
        Seconds to wait for the connection, the association and each response.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    called_aet: str = DEFAULT_CALLED_AET
    calling_aet: str = DEFAULT_CALLING_AET
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if not 0 < int(self.port) < 65536:
            raise InputError(f"DICOM port must be 1-65535, got {self.port}")
        for what, aet in (("called AE title", self.called_aet), ("calling AE title", self.calling_aet)):
            check_ae_title(aet, what)
        if not self.timeout_s > 0:
            raise InputError(f"timeout must be positive seconds, got {self.timeout_s}")

    def __str__(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}"


def check_ae_title(aet: str, what: str = "AE title") -> str:
    """``aet`` if it is a valid AE title (1-16 characters of printable ASCII, no backslash)."""
    text = str(aet)
    if not text.strip() or len(text) > 16 or "\\" in text or not all(32 <= ord(c) < 127 for c in text):
        raise InputError(f"{what} must be 1-16 printable ASCII characters without backslash, got {aet!r}")
    return text


def _quiet_pynetdicom() -> None:
    # pynetdicom logs each refused association at ERROR level; igikit says it once, in the PacsError.
    logger = logging.getLogger("pynetdicom")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.CRITICAL)


def _new_ae(node: DicomNode) -> Any:
    from pynetdicom import AE

    _quiet_pynetdicom()
    ae = AE(ae_title=node.calling_aet)
    ae.acse_timeout = node.timeout_s
    ae.dimse_timeout = node.timeout_s
    ae.network_timeout = node.timeout_s
    ae.connection_timeout = node.timeout_s
    return ae


def _unreachable(node: DicomNode) -> str:
    """Why a TCP connection to the node fails, in words (probed after a failed association)."""
    try:
        with socket.create_connection((node.host, node.port), timeout=min(node.timeout_s, 5.0)):
            return (f"no DICOM answer within {node.timeout_s:g} s although the connection opened "
                    "(is this the node's DICOM port, not its web port?)")
    except ConnectionRefusedError:
        return "connection refused (nothing listens there)"
    except TimeoutError:
        return f"no answer within {min(node.timeout_s, 5.0):g} s (firewall, or wrong host)"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


@contextlib.contextmanager
def _association(
    node: DicomNode,
    ae: Any,
    *,
    ext_neg: Sequence[Any] | None = None,
    evt_handlers: Sequence[Any] | None = None,
    service: str = "",
) -> Iterator[Any]:
    """An established association with ``node``, released on exit; refusals become PacsError."""
    assoc = ae.associate(
        node.host, node.port, ae_title=node.called_aet, ext_neg=list(ext_neg or []) or None,
        evt_handlers=list(evt_handlers or []) or None,
    )
    if not assoc.is_established:
        if assoc.is_rejected and assoc.acceptor.primitive is not None:
            p = assoc.acceptor.primitive
            reason = _REJECT_REASONS.get((int(p.result_source), int(p.diagnostic)), f"diagnostic {p.diagnostic}")
            kind = "permanently" if int(p.result) == 1 else "transiently"
            raise PacsError(
                f"{node}: association {kind} rejected: {reason} (calling AE title {node.calling_aet!r})"
            )
        raise PacsError(f"{node}: cannot associate: {_unreachable(node)}")
    try:
        if not assoc.accepted_contexts:
            raise PacsError(f"{node}: the node accepted none of the proposed {service or 'services'}")
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _status_text(status: Any, service: str) -> tuple[int | None, str]:
    """(code, words) of a DIMSE response status; code None when no response came."""
    from pynetdicom.status import code_to_category

    if status is None or "Status" not in status:
        return None, "no response (timed out, or the association was aborted)"
    code = int(status.Status)
    words = {
        0xA700: "out of resources", 0xA701: "out of resources: unable to calculate the number of matches",
        0xA702: "out of resources: unable to perform sub-operations", 0xA801: "move destination unknown",
        0xA900: "identifier does not match the SOP class", 0xB000: "sub-operations completed with failures",
        0xC000: "unable to process", 0xFE00: "cancelled", 0x0122: "SOP class not supported",
        0x0124: "not authorised", 0x0211: "unrecognised operation",
    }.get(code) or code_to_category(code).lower()
    comment = status.get("ErrorComment")
    if comment:
        words += f": {comment}"
    return code, f"{service} status 0x{code:04X} ({words})"


def _text(value: Any) -> str:
    from pydicom.multival import MultiValue

    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


# ------------------------------------------------------------------------------------ C-ECHO
def echo(node: DicomNode) -> float:
    """Verify the node with C-ECHO.

    Returns
    -------
    float
        Round-trip time of the association and the echo (ms).

    Raises
    ------
    PacsError
        The node is unreachable, rejects the association or answers with a failure.
    """

    ae = _new_ae(node)
    ae.add_requested_context(VERIFICATION)
    start = time.perf_counter()
    with _association(node, ae, service="Verification") as assoc:
        status = assoc.send_c_echo()
    code, words = _status_text(status, "C-ECHO")
    if code != 0x0000:
        raise PacsError(f"{node}: {words}")
    return (time.perf_counter() - start) * 1000.0


# ------------------------------------------------------------------------------------ C-FIND
def find(
    node: DicomNode,
    *,
    level: str = "STUDY",
    patient_id: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    modality: str | None = None,
    extra_keys: Sequence[str] = (),
) -> list[dict[str, str]]:
    """Query the node with C-FIND (Study Root) at study, series or instance level.

    Parameters
    ----------
    node
        The node to query.
    level
        ``"STUDY"``, ``"SERIES"`` or ``"IMAGE"``.
    patient_id, study_uid, series_uid
        Matching keys (``*`` and ``?`` wildcards allowed in ``patient_id``); None: any.
    modality
        ``"PT"``, ``"NM"``, ``"RTDOSE"``...: matches ``ModalitiesInStudy`` at study level and
        ``Modality`` below it.
    extra_keys
        More return keys (DICOM keywords) to ask for.

    Returns
    -------
    list of dict
        One dict per match, keyword to value as text (multi-valued attributes joined by ``\\``);
        keys the node did not fill in are empty strings.

    Raises
    ------
    PacsError
        Unreachable node, refused association, failure status.
    """
    from pydicom.dataset import Dataset

    level = level.upper()
    if level not in FIND_LEVELS:
        raise InputError(f"query level must be one of {', '.join(FIND_LEVELS)}, got {level!r}")
    for what, uid in (("study UID", study_uid), ("series UID", series_uid)):
        if uid is not None:
            check_uid(uid, what)
    query = Dataset()
    query.QueryRetrieveLevel = level
    keys = list(dict.fromkeys((*_RETURN_KEYS[level], *extra_keys)))
    for kw in keys:
        setattr(query, kw, "")
    if patient_id:
        query.PatientID = patient_id
    if study_uid:
        query.StudyInstanceUID = study_uid
    if series_uid:
        if level == "STUDY":
            raise InputError("a series UID narrows series or image queries, not study queries")
        query.SeriesInstanceUID = series_uid
    if modality:
        if level == "STUDY":
            query.ModalitiesInStudy = modality
        else:
            query.Modality = modality
    ae = _new_ae(node)
    ae.add_requested_context(STUDY_ROOT_FIND)
    matches: list[dict[str, str]] = []
    with _association(node, ae, service="Study Root C-FIND") as assoc:
        for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
            code, words = _status_text(status, "C-FIND")
            if code in (0xFF00, 0xFF01):
                if identifier is not None:
                    matches.append({kw: _text(identifier.get(kw)) for kw in keys})
            elif code != 0x0000:
                raise PacsError(f"{node}: {words}")
    return matches


def check_uid(uid: str, what: str = "UID") -> str:
    """``uid`` if it is a valid DICOM UID (digits and dots, at most 64 characters)."""
    if not _UID.match(uid) or len(uid) > 64:
        raise InputError(f"{what} must be digits and dots (at most 64 characters), got {uid!r}")
    return uid


# ------------------------------------------------------------------------------- retrieving
@dataclass(frozen=True)
class RetrieveResult:
    """What a retrieval brought back.

    Attributes
    ----------
    folder
        The study folder: one sub-folder per series, named by its SeriesInstanceUID.
    method
        ``"C-MOVE"`` or ``"C-GET"``.
    files
        The instance files written, sorted.
    expected
        Instances the node announced for the study (None when it did not say).
    failed
        Sub-operations the node reported as failed.
    seconds
        Wall time of the transfer.
    notes
        What happened on the way (a refused C-MOVE before the C-GET, a short count).
    """

    folder: Path
    method: str
    files: tuple[Path, ...]
    expected: int | None
    failed: int
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def series(self) -> dict[str, int]:
        """SeriesInstanceUID to the number of instances received."""
        out: dict[str, int] = {}
        for f in self.files:
            out[f.parent.name] = out.get(f.parent.name, 0) + 1
        return out


class _Receiver:
    """The C-STORE handler of a retrieval: writes each instance of ``study_uid`` under ``folder``."""

    def __init__(self, folder: Path, study_uid: str, total: int | None, progress: ProgressCallback | None) -> None:
        self.folder = folder
        self.study_uid = study_uid
        self.total = total
        self.progress = progress
        self.files: list[Path] = []
        self.refused = 0
        self._lock = threading.Lock()

    def handle(self, event: Any) -> int:
        try:
            ds = event.dataset
            series = str(ds.get("SeriesInstanceUID", "") or "unknown-series")
            sop = str(event.request.AffectedSOPInstanceUID)
            if str(ds.get("StudyInstanceUID", "")) != self.study_uid:
                with self._lock:
                    self.refused += 1
                return 0xC001  # not the study asked for: refuse, do not mix studies
            series = series if _UID.match(series) else "unknown-series"
            name = sop if _UID.match(sop) else f"instance-{len(self.files) + 1}"
            target = self.folder / series / f"{name}.dcm"
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(event.encoded_dataset(include_meta=True))
        except Exception as exc:  # a failed write must become a failed sub-operation, not a dead thread
            log.warning("could not store an instance: %s", exc)
            return 0xA700
        with self._lock:
            self.files.append(target)
            done = len(self.files)
        if self.progress is not None:
            self.progress(done, self.total)
        return 0x0000


def _study_summary(node: DicomNode, study_uid: str) -> dict[str, str]:
    matches = find(node, level="STUDY", study_uid=study_uid, extra_keys=("SOPClassesInStudy",))
    if not matches:
        raise PacsError(f"{node}: no study {study_uid} on the node")
    return matches[0]


def _sop_classes(node: DicomNode, study_uid: str, summary: Mapping[str, str]) -> list[str]:
    """The storage SOP classes of a study: from SOPClassesInStudy, else from an instance query."""
    listed = [c for c in summary.get("SOPClassesInStudy", "").split("\\") if c]
    if listed:
        return sorted(set(listed))
    return sorted({m["SOPClassUID"] for m in find(node, level="IMAGE", study_uid=study_uid) if m["SOPClassUID"]})


def _failed_sub_operations(status: Any) -> int:
    value = status.get("NumberOfFailedSuboperations") if status is not None else None
    return int(value) if value not in (None, "") else 0


def _retrieve_move(
    node: DicomNode, study_uid: str, receiver: _Receiver, *, store_host: str, store_port: int, move_aet: str
) -> int:
    """C-MOVE the study to a storage SCP started here; returns the failed sub-operations."""
    from pydicom.dataset import Dataset
    from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

    scp = _new_ae(DicomNode(node.host, node.port, node.called_aet, move_aet, node.timeout_s))
    for context in AllStoragePresentationContexts:
        scp.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    try:
        server = scp.start_server(
            (store_host, store_port), block=False, evt_handlers=[(evt.EVT_C_STORE, receiver.handle)]
        )
    except OSError as exc:
        raise PacsError(f"cannot receive on {store_host}:{store_port} for C-MOVE: {exc.strerror or exc}") from None
    try:
        ae = _new_ae(node)
        ae.add_requested_context(STUDY_ROOT_MOVE)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid
        failed = 0
        with _association(node, ae, service="Study Root C-MOVE") as assoc:
            for status, _identifier in assoc.send_c_move(query, move_aet, STUDY_ROOT_MOVE):
                code, words = _status_text(status, "C-MOVE")
                if code in (0xFF00,):
                    continue
                failed = _failed_sub_operations(status)
                if code not in (0x0000, 0xB000):
                    raise PacsError(f"{node}: {words} (move destination {move_aet} at {store_host}:{store_port})")
    finally:
        server.shutdown()
    return failed


def _retrieve_get(node: DicomNode, study_uid: str, receiver: _Receiver, sop_classes: Sequence[str]) -> int:
    """C-GET the study on one association (storage as SCP by role selection); returns failures."""
    from pydicom.dataset import Dataset
    from pynetdicom import ALL_TRANSFER_SYNTAXES, build_role, evt

    if not sop_classes:
        raise PacsError(f"{node}: study {study_uid} lists no instances to get")
    if len(sop_classes) > 127:  # 128 presentation contexts, one taken by the C-GET itself
        raise PacsError(f"{node}: study {study_uid} holds {len(sop_classes)} SOP classes; C-GET can take 127")
    ae = _new_ae(node)
    ae.add_requested_context(STUDY_ROOT_GET)
    for uid in sop_classes:
        ae.add_requested_context(uid, ALL_TRANSFER_SYNTAXES)
    roles = [build_role(uid, scp_role=True) for uid in sop_classes]
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    failed = 0
    with _association(
        node, ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, receiver.handle)], service="Study Root C-GET"
    ) as assoc:
        for status, _identifier in assoc.send_c_get(query, STUDY_ROOT_GET):
            code, words = _status_text(status, "C-GET")
            if code == 0xFF00:
                continue
            failed = _failed_sub_operations(status)
            if code not in (0x0000, 0xB000):
                raise PacsError(f"{node}: {words}")
    return failed


def _check_output_folder(folder: Path) -> None:
    """Refuse an output folder that holds files, or whose parent is missing."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError("output folder exists and is not empty", folder)
    if not folder.parent.is_dir():
        raise InputError("parent folder does not exist", folder.parent)


def retrieve(
    node: DicomNode,
    study_uid: str,
    folder: str | Path,
    *,
    method: str = "auto",
    store_host: str = DEFAULT_HOST,
    store_port: int = DEFAULT_STORE_PORT,
    move_aet: str | None = None,
    progress: ProgressCallback | None = None,
) -> RetrieveResult:
    """Retrieve a study into ``folder`` by C-MOVE to an in-process storage SCP, or by C-GET.

    Parameters
    ----------
    node
        The node holding the study.
    study_uid
        StudyInstanceUID of the study; it is looked up with C-FIND first (an unknown study fails
        before anything is moved) and the number of instances it announces drives ``progress``.
    folder
        Output folder, new or empty: ``folder/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``.
    method
        ``"move"``, ``"get"``, or ``"auto"``: C-MOVE, then C-GET when the move is refused or
        brings nothing.
    store_host, store_port
        Where the storage SCP for C-MOVE listens; the node must reach it there (its modality
        entry for ``move_aet``). Port 0 takes any free port, which only a node configured after
        the fact could use.
    move_aet
        AE title of the move destination (default: the node's ``calling_aet``).
    progress
        Called with (instances received, instances expected or None) after each instance.

    Returns
    -------
    RetrieveResult

    Raises
    ------
    PacsError
        Unreachable node, refused association, unknown study, failed retrieval (nothing written).
    InputError
        Output folder not empty or its parent missing.
    """
    check_uid(study_uid, "study UID")
    if method not in RETRIEVE_METHODS:
        raise InputError(f"retrieve method must be one of {', '.join(RETRIEVE_METHODS)}, got {method!r}")
    folder = Path(folder)
    move_aet = check_ae_title(move_aet or node.calling_aet, "move destination AE title")
    _check_output_folder(folder)  # before any network traffic
    summary = _study_summary(node, study_uid)
    count = summary.get("NumberOfStudyRelatedInstances", "")
    expected = int(count) if count.strip().isdigit() else None
    _check_output_folder(folder)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:12]}.partial"
    tmp.mkdir()  # not mkdtemp: the study folder gets the usual permissions, not 0700
    notes: list[str] = []
    start = time.perf_counter()
    try:
        used = ""
        failed = 0
        receiver = _Receiver(tmp, study_uid, expected, progress)
        if method in ("auto", "move"):
            try:
                failed = _retrieve_move(
                    node, study_uid, receiver, store_host=store_host, store_port=store_port, move_aet=move_aet
                )
                used = "C-MOVE"
                if method == "auto" and not receiver.files:
                    notes.append(f"C-MOVE brought no instance ({failed} failed sub-operations): the node "
                                 f"cannot reach {move_aet} at {store_host}:{store_port}?")
                    used = ""
            except PacsError as exc:
                if method == "move":
                    raise
                notes.append(f"C-MOVE refused ({exc}); trying C-GET")
            if not used:
                log.info("%s", notes[-1])
        if not used:
            shutil.rmtree(tmp)
            tmp.mkdir()
            receiver = _Receiver(tmp, study_uid, expected, progress)
            try:
                failed = _retrieve_get(node, study_uid, receiver, _sop_classes(node, study_uid, summary))
            except PacsError as exc:
                if notes:
                    raise PacsError(f"{exc}; before it, {notes[-1]}") from None
                raise
            used = "C-GET"
        if not receiver.files:
            raise PacsError(f"{node}: {used} of study {study_uid} brought no instance ({failed} failed)")
        if expected is not None and len(receiver.files) < expected:
            notes.append(f"{len(receiver.files)} of {expected} instances received")
        if receiver.refused:
            notes.append(f"{receiver.refused} instances of other studies refused")
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = tuple(sorted(folder / f.relative_to(tmp) for f in receiver.files))
    return RetrieveResult(folder, used, files, expected, failed, time.perf_counter() - start, tuple(notes))


# ------------------------------------------------------------------------------------ C-STORE
@dataclass(frozen=True)
class StoreResult:
    """What a C-STORE push did: instances stored, with warnings, and failures (label, why)."""

    stored: int
    warnings: int = 0
    failures: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    sop_instance_uids: tuple[str, ...] = field(default=())


def dicom_files(paths: Sequence[str | Path]) -> list[Path]:
    """The DICOM files named by ``paths``: files as given, folders walked (non-DICOM skipped).

    Raises
    ------
    InputError
        A path that does not exist, a named file that is not DICOM, a folder with no DICOM file.
    """
    from igikit.io.dicom import read_dataset

    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError("file not found", path)
        if path.is_file():
            read_dataset(path, stop_before_pixels=True)  # not DICOM: InputError naming it
            out.append(path)
            continue
        found = 0
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            if file.name.startswith(".") or file.name.upper() == "DICOMDIR":
                continue
            try:
                read_dataset(file, stop_before_pixels=True)
            except InputError:
                log.debug("skipping %s: not DICOM", file)
                continue
            out.append(file)
            found += 1
        if not found:
            raise InputError("no DICOM files in this folder", path)
    return out


def store(
    node: DicomNode,
    items: Sequence[str | Path | Dataset],
    *,
    progress: ProgressCallback | None = None,
) -> StoreResult:
    """Send DICOM files or datasets to the node with C-STORE.

    Parameters
    ----------
    node
        The destination.
    items
        Paths of DICOM files (see :func:`dicom_files` to expand folders) or pydicom datasets.
        Each goes in the transfer syntax it has; uncompressed ones may be re-encoded to whichever
        uncompressed syntax the node accepts.
    progress
        Called with (instances sent, total) after each.

    Returns
    -------
    StoreResult
        Failures are listed, not raised, so that one refused instance does not hide the others.

    Raises
    ------
    PacsError
        Unreachable node, refused association.
    InputError
        A file that is not DICOM or lacks its SOP class / instance UID.
    """
    from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from igikit.io.dicom import read_dataset

    headers: list[tuple[str, str, str, str | Path | Dataset]] = []  # (label, sop class, syntax, item)
    for item in items:
        if isinstance(item, str | Path):
            ds = read_dataset(item, stop_before_pixels=True)
            label = str(item)
        else:
            ds, label = item, f"dataset {item.get('SOPInstanceUID', '?')}"
        sop_class = str(ds.get("SOPClassUID", "") or getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", ""))
        if not sop_class or not ds.get("SOPInstanceUID"):
            raise InputError("has no SOPClassUID / SOPInstanceUID: not a storable DICOM instance", label)
        meta = getattr(ds, "file_meta", None)
        syntax = str(getattr(meta, "TransferSyntaxUID", "") or ImplicitVRLittleEndian)
        headers.append((label, sop_class, syntax, item))
    if not headers:
        raise InputError("nothing to store")
    # One presentation context per (SOP class, transfer syntax) of the items; uncompressed data may
    # also go in either plain syntax (pynetdicom re-encodes it), compressed data only as it is.
    contexts = sorted({(sop_class, syntax) for _, sop_class, syntax, _ in headers})
    stored = warned = 0
    failures: list[tuple[str, str]] = []
    uids: list[str] = []
    start = time.perf_counter()
    for batch_start in range(0, len(contexts), 128):
        batch = set(contexts[batch_start:batch_start + 128])
        ae = _new_ae(node)
        for sop_class, syntax in sorted(batch):
            ae.add_requested_context(sop_class, list(dict.fromkeys(
                [syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian] if not UID(syntax).is_compressed
                else [syntax]
            )))
        with _association(node, ae, service="storage SOP classes") as assoc:
            accepted = {str(c.abstract_syntax) for c in assoc.accepted_contexts}
            lost = False
            for label, sop_class, syntax, item in headers:
                if (sop_class, syntax) not in batch:
                    continue
                problem = ""
                if lost:
                    problem = "not sent: the association was lost"
                elif sop_class not in accepted:
                    problem = f"the node does not accept SOP class {sop_class}"
                else:
                    ds = read_dataset(item) if isinstance(item, str | Path) else item
                    try:
                        status = assoc.send_c_store(ds)
                    except (ValueError, AttributeError) as exc:  # no accepted context for its syntax
                        status, problem = None, str(exc)[:160]
                    if not problem:
                        code, words = _status_text(status, "C-STORE")
                        if code is not None and (code == 0x0000 or code >> 12 == 0xB):
                            stored += 1
                            uids.append(str(ds.SOPInstanceUID))
                            if code:
                                warned += 1
                                log.info("%s: %s", label, words)
                        else:
                            problem = words
                            lost = code is None or not assoc.is_established  # the rest cannot go on it
                if problem:
                    failures.append((label, problem))
                if progress is not None:
                    progress(stored + len(failures), len(headers))
    return StoreResult(stored, warned, tuple(failures), time.perf_counter() - start, tuple(uids))
