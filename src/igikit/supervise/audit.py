"""The audit log: an append-only, hash-chained SQLite file of decision records and human actions.

Each row stores ``seq`` (1, 2, 3...), ``kind`` (``"decision"`` or ``"human_action"``), the wall time
it was appended, the record's canonical JSON, the previous row's hash and its own hash::

    hash(n) = SHA-256( prev_hash | n | kind | repr(wall_time_s) | payload )

Row 1 chains from a *genesis* hash drawn when the log is created and kept in the ``meta`` table, so
rows cannot be spliced in from another log. Two defences work together:

* SQLite triggers refuse ``UPDATE`` and ``DELETE`` on the rows — protection against accidents;
* the chain catches deliberate edits made after dropping the triggers: :meth:`AuditLog.verify`
  recomputes every hash and names the first row that was edited, deleted or moved. A truncated tail
  (or a log rewritten from scratch) leaves a consistent chain; it is caught by comparing the head
  hash with one kept elsewhere (``expected_head``), as a hash chain is meant to be used.

Appends start with ``BEGIN IMMEDIATE``, which takes SQLite's write lock *before* the head is read,
so concurrent writers — threads sharing a log, or separate processes — queue up and never fork the
chain. The file is in WAL mode, so readers (the console, ``igikit audit show``) never block writers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from igikit import __version__
from igikit.errors import IgikitError, InputError
from igikit.supervise.records import Record, record_from_json

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: ``meta.format`` of an igikit audit log; anything else is not ours.
LOG_FORMAT = "igikit-audit"
#: Version of the row layout and hash rule; bump when either changes.
LOG_FORMAT_VERSION = "1"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    wall_time_s REAL NOT NULL,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'igikit audit log is append-only: rows cannot be updated'); END;
CREATE TRIGGER records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'igikit audit log is append-only: rows cannot be deleted'); END;
CREATE TRIGGER meta_no_update BEFORE UPDATE ON meta
BEGIN SELECT RAISE(ABORT, 'igikit audit log metadata cannot be changed'); END;
CREATE TRIGGER meta_no_delete BEFORE DELETE ON meta
BEGIN SELECT RAISE(ABORT, 'igikit audit log metadata cannot be deleted'); END;
"""
_TRIGGERS = ("records_no_update", "records_no_delete", "meta_no_update", "meta_no_delete")

#: Rows fetched per query when iterating, so that a long log never sits in memory at once and a
#: reader never holds a read transaction open across a caller's loop body.
_PAGE_ROWS = 1000


class AuditLogBusyError(IgikitError):
    """The log stayed locked by another writer for longer than the timeout."""


def chain_hash(prev_hash: str, seq: int, kind: str, wall_time_s: float, payload: str) -> str:
    """SHA-256 (hex) of one row, chained to the previous row's hash.

    ``repr`` of a float round-trips exactly through SQLite's 8-byte REAL, so the hash recomputed from
    a stored row equals the one computed at append time. Fields are joined with ``|``: ``prev_hash``
    is fixed-length hex, ``seq`` digits, ``kind`` a word, and ``payload`` comes last, so no two rows
    can produce the same text.
    """
    text = f"{prev_hash}|{seq}|{kind}|{wall_time_s!r}|{payload}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """One row of the log as stored: the record's JSON plus its place in the chain."""

    seq: int
    kind: str
    wall_time_s: float
    payload: str
    prev_hash: str
    hash: str

    @property
    def record(self) -> Record:
        """The :class:`DecisionRecord` or :class:`HumanAction` this row holds."""
        return record_from_json(self.kind, self.payload)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form: the chain fields plus the record's fields under ``record``."""
        return {
            "seq": self.seq,
            "kind": self.kind,
            "wall_time_s": self.wall_time_s,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "record": json.loads(self.payload),
        }


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`AuditLog.verify`.

    Attributes
    ----------
    ok
        ``True`` when every row's hash and link are intact (and the expected head / count match).
    n_rows
        Rows in the log.
    first_bad_seq
        The first row that was edited, deleted (a missing ``seq``) or moved; ``n_rows + 1`` for a
        truncated tail; ``None`` when the log is intact or when it was rewritten as a whole.
    reason
        One sentence saying what was found.
    head_hash
        Hash of the last row (the genesis hash for an empty log); keep it elsewhere to detect
        truncation later.
    notes
        Observations that do not break the chain, e.g. missing append-only triggers.
    """

    ok: bool
    n_rows: int
    first_bad_seq: int | None
    reason: str
    head_hash: str
    notes: tuple[str, ...] = ()


class AuditLog:
    """Append-only, hash-chained audit log in one SQLite file.

    Parameters
    ----------
    path
        The log file (conventionally ``SESSION.db``).
    create
        Create the log when the file does not exist (or is an empty database). With ``False`` a
        missing file is an :class:`~igikit.errors.InputError`, and nothing is written to an existing
        one unless :meth:`append` is called.
    timeout_s
        How long an append waits for another writer's lock before :class:`AuditLogBusyError`.

    Raises
    ------
    InputError
        If the file is missing (``create=False``), not an SQLite database, or an SQLite database that
        is not an igikit audit log.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from igikit.supervise import AuditLog, HumanAction
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "session.db"
    >>> with AuditLog(path) as audit:
    ...     audit.append(HumanAction(action="pause", operator="alice", role="operator"))
    ...     audit.verify().ok
    1
    True

    One log object may be shared by threads; separate objects (or processes) on the same file are
    also safe, as every append serialises on SQLite's write lock.
    """

    def __init__(self, path: str | Path, *, create: bool = True, timeout_s: float = 30.0) -> None:
        self._path = Path(path)
        self._timeout_s = float(timeout_s)
        self._lock = threading.Lock()
        if self._path.is_dir():
            raise InputError("is a folder, not an audit log", self._path)
        if not create and not self._path.exists():
            raise InputError("audit log not found", self._path)
        if not self._path.parent.is_dir():
            raise InputError("folder does not exist", self._path.parent)
        # mode=rw never creates a file; isolation_level=None lets us issue BEGIN IMMEDIATE ourselves
        uri = f"{self._path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
        try:
            self._conn = sqlite3.connect(
                uri, uri=True, timeout=self._timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise InputError(f"cannot open as an SQLite database ({exc})", self._path) from None
        try:
            self._meta = self._open(create)
        except BaseException:
            self._conn.close()
            raise
        self._genesis = self._meta["genesis"]

    # ------------------------------------------------------------------------------- opening
    def _tables(self) -> set[str]:
        try:
            rows = self._when_free(
                lambda: self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            )
        except sqlite3.DatabaseError as exc:
            raise InputError(f"not an SQLite database ({exc})", self._path) from None
        return {r[0] for r in rows}

    def _when_free(self, operation: Callable[[], _T]) -> _T:
        """Run ``operation``, retrying while another connection holds a lock it needs.

        SQLite's busy timeout covers most waits, but not all: switching a new file to WAL while
        another process creates the same log fails at once with "database is locked", so opening
        retries here until ``timeout_s``.
        """
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return operation()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise AuditLogBusyError(
                        f"{self._path}: audit log stayed locked by another connection for {self._timeout_s:g} s"
                    ) from None
            time.sleep(0.005)

    def _open(self, create: bool) -> dict[str, str]:
        tables = self._tables()
        if not tables and create:
            self._initialise()
            tables = self._tables()
        if not tables:
            raise InputError("empty SQLite database, not an igikit audit log", self._path)
        if "meta" not in tables or "records" not in tables:
            raise InputError(
                f"not an igikit audit log (tables: {', '.join(sorted(tables))}; no igikit meta/records)",
                self._path,
            )
        try:
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise InputError(f"unreadable audit log metadata ({exc})", self._path) from None
        if meta.get("format") != LOG_FORMAT:
            raise InputError(f"not an igikit audit log (meta format is {meta.get('format')!r})", self._path)
        if meta.get("format_version") != LOG_FORMAT_VERSION:
            raise InputError(
                f"audit log format version {meta.get('format_version')!r} is not supported "
                f"(this igikit reads version {LOG_FORMAT_VERSION})",
                self._path,
            )
        genesis = meta.get("genesis")
        if not isinstance(genesis, str) or len(genesis) != 64:
            raise InputError("audit log metadata has no valid genesis hash", self._path)
        return meta

    def _initialise(self) -> None:
        # WAL lets readers (the console) run while a treatment loop appends; it persists in the file.
        # The pragma answers the mode in force, which stays the old one while another process holds
        # the file, so it is repeated until the switch has happened.
        def to_wal() -> None:
            mode = str(self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            if mode != "wal":
                raise sqlite3.OperationalError(f"database is locked (journal mode still {mode})")

        self._when_free(to_wal)
        self._begin()
        try:
            # another process may have created the log between our check and our lock
            if not self._tables():
                for statement in _SCHEMA.split(";\n"):
                    if statement.strip():
                        self._conn.execute(statement)
                created = time.time()
                meta = {
                    "format": LOG_FORMAT,
                    "format_version": LOG_FORMAT_VERSION,
                    "hash": "sha256",
                    # random per log, so that rows copied from another log never chain here
                    "genesis": hashlib.sha256(
                        f"igikit-audit-genesis|{secrets.token_hex(16)}|{created!r}".encode()
                    ).hexdigest(),
                    "created_wall_time_s": repr(created),
                    "created_by": f"igikit {__version__}",
                }
                self._conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
                log.debug("created audit log %s", self._path)
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _begin(self) -> None:
        # the busy timeout makes this wait for other writers; _when_free covers the rare busy
        # answers SQLite gives without waiting (e.g. while another connection recovers the WAL)
        self._when_free(lambda: self._conn.execute("BEGIN IMMEDIATE"))

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    # ------------------------------------------------------------------------------ properties
    @property
    def path(self) -> Path:
        """The log file."""
        return self._path

    @property
    def genesis_hash(self) -> str:
        """The hash row 1 chains from, drawn when the log was created."""
        return self._genesis

    @property
    def created_wall_time_s(self) -> float:
        """When the log was created (Unix time, s)."""
        return float(self._meta["created_wall_time_s"])

    # --------------------------------------------------------------------------------- writing
    def append(self, record: Record) -> int:
        """Append a decision record or human action; returns its ``seq`` (1 for the first row).

        The write lock is taken before the head is read, so no other writer can append between the
        two, and the row is committed (durable) when this returns.

        Raises
        ------
        InputError
            If ``record`` is not a record igikit knows how to log.
        AuditLogBusyError
            If another writer held the lock for longer than ``timeout_s``.
        """
        kind = getattr(record, "KIND", None)
        if kind is None or not hasattr(record, "to_json"):
            raise InputError(f"only DecisionRecord and HumanAction can be logged, got {type(record).__name__}")
        payload = record.to_json()
        with self._lock:
            self._begin()
            try:
                head = self._conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev_hash = (int(head[0]) + 1, str(head[1])) if head else (1, self._genesis)
                wall_time_s = time.time()
                digest = chain_hash(prev_hash, seq, kind, wall_time_s, payload)
                self._conn.execute(
                    "INSERT INTO records (seq, kind, wall_time_s, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, kind, wall_time_s, payload, prev_hash, digest),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return seq

    # --------------------------------------------------------------------------------- reading
    def _raw_rows(self, after_seq: int | None = None) -> Iterator[tuple[Any, ...]]:
        """Rows as stored (any SQLite types, since a tampered file can hold anything), by seq."""
        last = after_seq
        while True:
            with self._lock:
                if last is None:
                    query = "SELECT seq, kind, wall_time_s, payload, prev_hash, hash FROM records"
                    page = self._conn.execute(f"{query} ORDER BY seq LIMIT ?", (_PAGE_ROWS,)).fetchall()
                else:
                    page = self._conn.execute(
                        "SELECT seq, kind, wall_time_s, payload, prev_hash, hash FROM records "
                        "WHERE seq > ? ORDER BY seq LIMIT ?",
                        (last, _PAGE_ROWS),
                    ).fetchall()
            yield from page
            if len(page) < _PAGE_ROWS:
                return
            last = page[-1][0]

    def records(self, *, start_seq: int = 1) -> Iterator[AuditEntry]:
        """Entries in ``seq`` order from ``start_seq``; use ``entry.record`` for the typed record."""
        for row in self._raw_rows(after_seq=start_seq - 1):
            yield _entry(row)

    def tail(self, n: int) -> list[AuditEntry]:
        """The last ``n`` entries, oldest first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"tail needs a positive number of rows, got {n!r}")
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, kind, wall_time_s, payload, prev_hash, hash FROM records ORDER BY seq DESC LIMIT ?",
                (n,),
            ).fetchall()
        return [_entry(row) for row in reversed(rows)]

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last row; ``(0, genesis_hash)`` for an empty log."""
        with self._lock:
            row = self._conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, self._genesis)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    # ------------------------------------------------------------------------------- verifying
    def verify(self, *, expected_head: str | None = None, expected_rows: int | None = None) -> VerifyResult:
        """Recompute the chain and report the first row that was edited, deleted or moved.

        Parameters
        ----------
        expected_head
            A head hash recorded earlier (e.g. printed at the end of the session). The log must
            still contain a row with that hash; the log may have grown since. Detects a truncated
            tail and a log rewritten with a fresh, self-consistent chain.
        expected_rows
            The log must have at least this many rows (detects a truncated tail).

        Returns
        -------
        VerifyResult
            ``ok`` and, when not, the first bad ``seq`` and the reason.
        """
        if expected_head is not None:
            expected_head = expected_head.strip().lower()
            if len(expected_head) != 64 or any(c not in "0123456789abcdef" for c in expected_head):
                raise InputError(f"expected head {expected_head!r} is not a SHA-256 hex digest (64 hex digits)")
        if expected_rows is not None and (
            isinstance(expected_rows, bool) or not isinstance(expected_rows, int) or expected_rows < 0
        ):
            raise InputError(f"expected_rows must be a non-negative integer, got {expected_rows!r}")

        n_rows, head_hash = len(self), self.head()[1]
        notes = self._trigger_notes()

        def bad(seq: int | None, reason: str) -> VerifyResult:
            return VerifyResult(False, n_rows, seq, reason, head_hash, notes)

        prev_hash, expected_seq = self._genesis, 1
        head_found_at = 0 if expected_head == self._genesis else None
        for row in self._raw_rows():
            seq, kind, wall_time_s, payload, stored_prev, stored_hash = row
            if seq != expected_seq:
                if seq > expected_seq:
                    missing = f"row {expected_seq}" if seq == expected_seq + 1 else f"rows {expected_seq}-{seq - 1}"
                    return bad(expected_seq, f"{missing} missing: seq jumps from {expected_seq - 1} to {seq} (deleted)")
                return bad(seq, f"row {seq}: unexpected seq (expected {expected_seq})")
            if stored_prev != prev_hash:
                return bad(
                    seq,
                    f"row {seq}: link to the previous row is broken (its prev_hash does not match the hash of "
                    f"row {seq - 1}): rows before it were deleted, inserted, reordered or re-hashed",
                )
            if (
                not (isinstance(kind, str) and isinstance(payload, str) and isinstance(wall_time_s, float))
                or chain_hash(prev_hash, seq, kind, wall_time_s, payload) != stored_hash
            ):
                return bad(seq, f"row {seq}: content does not match its hash (edited, or moved from another seq)")
            prev_hash = stored_hash
            if stored_hash == expected_head:
                head_found_at = seq
            expected_seq += 1

        verified = expected_seq - 1
        if expected_rows is not None and verified < expected_rows:
            return bad(
                verified + 1,
                f"log has {verified} rows, expected at least {expected_rows}: the tail was truncated "
                f"(rows {verified + 1}-{expected_rows} are gone)",
            )
        if expected_head is not None and head_found_at is None:
            return bad(
                None if expected_rows is not None and verified >= expected_rows else verified + 1,
                f"expected head {expected_head[:16]}... is not in the log: the tail after row {verified} "
                "was truncated, or the log was rewritten",
            )
        if expected_head is not None and expected_rows is not None and head_found_at != expected_rows:
            return bad(
                None,
                f"expected head is row {head_found_at}, but {expected_rows} rows were expected: the log was rewritten",
            )
        # rows appended while we verified are verified too: report what was checked
        return VerifyResult(True, verified, None, f"{verified} rows, chain intact", prev_hash, notes)

    def _trigger_notes(self) -> tuple[str, ...]:
        with self._lock:
            present = {
                r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
            }
        missing = [t for t in _TRIGGERS if t not in present]
        if missing:
            return (f"append-only trigger(s) missing: {', '.join(missing)} (dropped?)",)
        return ()

    # ------------------------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Close the database connection (appends are already committed)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditLog({str(self._path)!r})"


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, kind, wall_time_s, payload, prev_hash, digest = row
    try:
        wall = float(wall_time_s)
    except (TypeError, ValueError):
        raise InputError(f"row {seq}: wall time {wall_time_s!r} is not a number (the row was tampered with)") from None
    return AuditEntry(int(seq), str(kind), wall, str(payload), str(prev_hash), str(digest))
