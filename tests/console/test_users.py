"""Console users: argon2 hashes in a 0600 SQLite file, roles checked, the `igikit users` commands."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from igikit.console.users import UserStore, load_secret
from igikit.errors import InputError

from ..conftest import assert_input_error, run_cli


def test_store_hashes_passwords_checks_roles_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "home" / "users.db"
    store = UserStore(path)
    store.add("alice", "physicist", "long enough password")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"long enough password" not in path.read_bytes()
    assert store.authenticate("alice", "long enough password").role == "physicist"
    assert store.authenticate("alice", "wrong password") is None
    assert store.authenticate("nobody", "long enough password") is None
    for args in (
        ("bob", "admin", "long enough"),
        ("bob", "operator", "short"),
        ("-bob", "operator", "long enough"),
        ("alice", "operator", "long enough"),
    ):
        with pytest.raises(InputError):
            store.add(*args)
    store.remove("alice")
    with pytest.raises(InputError, match="no user"):
        store.remove("alice")
    store.close()


def test_secret_is_created_0600_and_refused_when_others_can_read_it(tmp_path: Path) -> None:
    path = tmp_path / "console.secret"
    secret = load_secret(path)
    assert len(secret) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(path) == secret
    os.chmod(path, 0o644)
    with pytest.raises(InputError, match="chmod 600"):
        load_secret(path)


def test_users_commands(tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    r = run_cli("users", "add", "olga", "--role", "observer", "--password-stdin", "--users", db, input="pw-for-olga\n")
    assert r.returncode == 0 and "added olga (observer)" in r.stdout, r.stderr
    run_cli("users", "add", "pat", "--role", "physicist", "--password-stdin", "--users", db, input="pw-for-pat1\n")
    listed = run_cli("users", "list", "--users", db)
    assert listed.returncode == 0
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [["olga", "observer"], ["pat", "physicist"]]
    assert_input_error(
        run_cli(
            "users", "add", "olga", "--role", "operator", "--password-stdin", "--users", db, input="another-pass\n"
        ),
        "exists already",
    )
    assert_input_error(
        run_cli("users", "add", "x", "--role", "operator", "--password-stdin", "--users", db, input="short\n"),
        "at least 8",
    )
    assert_input_error(
        run_cli("users", "add", "y", "--role", "operator", "--users", db, stdin=open(os.devnull)), "--password-stdin"
    )
    assert run_cli("users", "add", "z", "--role", "admin", "--password-stdin", "--users", db).returncode == 2
    assert run_cli("users", "remove", "olga", "--users", db).returncode == 0
    assert_input_error(run_cli("users", "remove", "olga", "--users", db), "no user")
    assert_input_error(run_cli("users", "list", "--users", tmp_path / "missing.db"), "users file not found")


def test_console_command_rejects_bad_inputs_with_one_line(tmp_path: Path) -> None:
    assert_input_error(
        run_cli("console", "--session", tmp_path / "nope.h5", "--users", tmp_path / "u.db"), "session file not found"
    )
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    assert_input_error(
        run_cli("console", "--session", bad, "--users", tmp_path / "u.db", "--audit", tmp_path / "a.db"), "bad.h5"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]  # nothing left behind
