"""Console users: names, roles and argon2id password hashes in a small SQLite file.

Roles (:data:`igikit.supervise.session.ROLES`): an *operator* acts (acknowledges alerts, approves
or vetoes decisions, pauses and resumes), a *physicist* also changes the autonomy level, an
*observer* only views. The file is created readable by its owner only (0600), as it holds password
hashes; the console's session secret lives beside it (:func:`load_secret`).

Passwords are hashed with argon2id (RFC 9106) through ``argon2-cffi``'s defaults; a login for an
unknown name still computes one hash, so response time does not reveal which names exist.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from igikit.errors import InputError
from igikit.supervise.session import ROLES

#: Where users and the console secret live unless told otherwise: ``$IGIKIT_HOME`` or ``~/.igikit``.
HOME_ENV = "IGIKIT_HOME"
USERS_FILE = "users.db"
SECRET_FILE = "console.secret"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_wall_s REAL NOT NULL
)
"""


def igikit_home() -> Path:
    """The folder for per-install files (users, console secret)."""
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path.home() / ".igikit"


def default_users_path() -> Path:
    """``$IGIKIT_HOME/users.db`` (``~/.igikit/users.db``)."""
    return igikit_home() / USERS_FILE


@dataclass(frozen=True)
class User:
    """A console user (never carries the password hash out of the store)."""

    name: str
    role: str
    created_wall_s: float


def _hasher():  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher

    return PasswordHasher()


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if missing (before SQLite writes anything into it)."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)


class UserStore:
    """The users of one install.

    Parameters
    ----------
    path
        The SQLite file; created (0600, with its folder at 0700) when ``create`` is true.
    create
        Create a missing file; with ``False`` a missing file is an :class:`InputError`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> store = UserStore(pathlib.Path(tempfile.mkdtemp()) / "users.db")
    >>> store.add("alice", "operator", "correct horse battery").role
    'operator'
    >>> store.authenticate("alice", "correct horse battery").role
    'operator'
    >>> store.authenticate("alice", "wrong") is None
    True
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError("is a folder, not a users file", self.path)
        if not self.path.exists():
            if not create:
                raise InputError("users file not found (add a user with: igikit users add NAME --role ROLE)", self.path)
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _private_file(self.path)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0)
            self._conn.execute(_SCHEMA)
            self._conn.commit()
            self._conn.execute("SELECT name, role, password_hash, created_wall_s FROM users LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"not an igikit users file ({exc})", self.path) from None
        self._dummy: str | None = None

    def close(self) -> None:
        """Close the file."""
        self._conn.close()

    def add(self, name: str, role: str, password: str) -> User:
        """Add a user.

        Raises
        ------
        InputError
            For a malformed name, an unknown role, a password shorter than 8 characters, or a name
            that exists.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise InputError(
                f"user name {name!r} must be 1-64 letters, digits or ._@- and start with a letter or digit"
            )
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise InputError(f"password must have at least {MIN_PASSWORD} characters")
        user = User(name, role, time.time())
        digest = _hasher().hash(password)
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO users (name, role, password_hash, created_wall_s) VALUES (?, ?, ?, ?)",
                    (name, role, digest, user.created_wall_s),
                )
                self._conn.commit()
            except sqlite3.IntegrityError:
                raise InputError(f"user {name!r} exists already", self.path) from None
        return user

    def remove(self, name: str) -> None:
        """Remove a user; :class:`InputError` when there is none of that name."""
        with self._lock:
            cur = self._conn.execute("DELETE FROM users WHERE name = ?", (name,))
            self._conn.commit()
        if cur.rowcount == 0:
            raise InputError(f"no user {name!r}", self.path)

    def list(self) -> list[User]:
        """All users, by name."""
        with self._lock:
            rows = self._conn.execute("SELECT name, role, created_wall_s FROM users ORDER BY name").fetchall()
        return [User(str(n), str(r), float(t)) for n, r, t in rows]

    def get(self, name: str) -> User | None:
        """The user ``name``, if there is one."""
        with self._lock:
            row = self._conn.execute("SELECT name, role, created_wall_s FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else User(str(row[0]), str(row[1]), float(row[2]))

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs; None otherwise (same work for unknown names)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        with self._lock:
            row = self._conn.execute(
                "SELECT name, role, password_hash, created_wall_s FROM users WHERE name = ?", (name,)
            ).fetchone()
        hasher = _hasher()
        if row is None and self._dummy is None:
            # a hash of a random password, verified against when the name is unknown (equal timing)
            self._dummy = hasher.hash(secrets.token_hex(16))
        digest = str(row[2]) if row is not None else str(self._dummy)
        try:
            hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if hasher.check_needs_rehash(digest):
            with self._lock:
                self._conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (hasher.hash(password), name))
                self._conn.commit()
        return User(str(row[0]), str(row[1]), float(row[3]))


def load_secret(path: str | Path, *, create: bool = True) -> bytes:
    """The console's session-signing secret: 32 random bytes kept in ``path`` with mode 0600.

    Created on first use, so each install signs its cookies with its own key. A secret file that
    others can read is refused, as anyone who reads it can forge a session.

    Raises
    ------
    InputError
        When the file is readable or writable by group or others, or too short.
    """
    path = Path(path)
    if not path.exists():
        if not create:
            raise InputError("console secret not found", path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another console created it meanwhile
            return load_secret(path, create=False)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise InputError(f"console secret is accessible to others (mode {mode:o}); run: chmod 600 {path}", path)
    text = path.read_text().strip()
    if len(text) < 32:
        raise InputError("console secret is too short (delete it to make a new one)", path)
    return text.encode()
