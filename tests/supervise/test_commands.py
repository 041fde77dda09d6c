"""``igikit audit``: the verify contract (intact, edited, deleted, reordered) and the input errors as a
real subprocess; the rest in-process, because every subprocess pays igikit's import time (about a second)."""

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from igikit.cli import main
from igikit.supervise import AuditLog
from tests.conftest import assert_input_error, run_cli
from tests.supervise.helpers import make_log, tamper


def _in_process(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    argv: Sequence[str] = [str(a) for a in args]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors exit from inside the parser
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _input_error(capsys: pytest.CaptureFixture, *args: object, fragment: str) -> None:
    code, _, err = _in_process(capsys, *args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert fragment in err


def test_verify_an_intact_log(tmp_path: Path) -> None:
    path = tmp_path / "session.db"
    hashes = make_log(path, 12)
    result = run_cli("audit", "verify", path, "--expect-head", hashes[-1], "--expect-rows", "12")
    assert result.returncode == 0, result.stderr
    assert "OK: 12 rows" in result.stdout
    assert f"head {hashes[-1]}" in result.stdout


def test_verify_names_an_edited_row(tmp_path: Path) -> None:
    path = tmp_path / "edited.db"
    make_log(path, 10)
    tamper(path, "UPDATE records SET payload = replace(payload, 'alice', 'mallory') WHERE seq = 5")
    result = run_cli("audit", "verify", path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "first bad row 5" in result.stdout and "edited" in result.stdout
    assert "Traceback" not in result.stderr


def test_verify_names_deleted_reordered_and_truncated_rows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    deleted, swapped, truncated = (tmp_path / f"{n}.db" for n in ("deleted", "swapped", "truncated"))
    for path in (deleted, swapped, truncated):
        make_log(path, 10)
    with AuditLog(truncated) as audit:
        head = audit.head()[1]
    tamper(deleted, "DELETE FROM records WHERE seq = 6")
    tamper(
        swapped,
        "UPDATE records SET seq = -1 WHERE seq = 2",
        "UPDATE records SET seq = 2 WHERE seq = 3",
        "UPDATE records SET seq = 3 WHERE seq = -1",
    )
    tamper(truncated, "DELETE FROM records WHERE seq = 10")

    # As a user runs it (separate processes), like the edited row above: exit 1 naming the row.
    for path, fragments in ((deleted, ("first bad row 6", "row 6 missing")), (swapped, ("first bad row 2",))):
        result = run_cli("audit", "verify", path)
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert "TAMPERED" in result.stdout and all(f in result.stdout for f in fragments), result.stdout
        assert result.stderr == ""
    assert _in_process(capsys, "audit", "verify", truncated)[0] == 0  # consistent without the kept head
    code, out, _ = _in_process(capsys, "audit", "verify", truncated, "--expect-head", head)
    assert code == 1 and "first bad row 10" in out and "truncated" in out
    code, out, _ = _in_process(capsys, "audit", "verify", truncated, "--expect-rows", "10")
    assert code == 1 and "first bad row 10" in out


def test_show_prints_records_readably_and_as_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "session.db"
    make_log(path, 6)
    result = run_cli("audit", "show", path)
    assert result.returncode == 0, result.stderr
    assert "beam = on" in result.stdout
    assert "target 1.48 mm outside the boundary (limit 3.0 mm)" in result.stdout  # the explanation, row 4
    assert "approve -> #4  by alice (operator)" in result.stdout
    assert "#6" in result.stdout

    code, out, _ = _in_process(capsys, "audit", "show", path, "--tail", "2", "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in lines] == [5, 6]
    assert lines[0]["kind"] == "human_action" and lines[0]["record"]["operator"] == "alice"
    assert lines[1]["record"]["input_frame_ids"] == [6]
    assert len(lines[1]["hash"]) == 64


def test_show_does_not_crash_on_a_mangled_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "session.db"
    make_log(path, 3)
    tamper(path, "UPDATE records SET payload = 'garbage' WHERE seq = 2")
    code, out, _ = _in_process(capsys, "audit", "show", path)
    assert code == 0 and "unreadable" in out and "garbage" in out
    code, out, _ = _in_process(capsys, "audit", "show", path, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[1]["raw"] == "garbage" and rows[1]["record"] is None


def test_missing_and_non_sqlite_files_are_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert_input_error(run_cli("audit", "verify", missing), str(missing), "not found")
    assert not missing.exists()

    not_sqlite = tmp_path / "frames.db"
    not_sqlite.write_bytes(b"\x00\x01 definitely not sqlite " * 64)
    assert_input_error(run_cli("audit", "show", not_sqlite), str(not_sqlite), "not an SQLite database")


def test_other_bad_inputs_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE images (id INTEGER, path TEXT)")
    conn.commit()
    conn.close()
    _input_error(capsys, "audit", "verify", foreign, fragment="not an igikit audit log")
    _input_error(capsys, "audit", "show", tmp_path, fragment="is a folder")

    good = tmp_path / "good.db"
    make_log(good, 2)
    _input_error(capsys, "audit", "verify", good, "--expect-head", "1234", fragment="64 hex digits")
    _input_error(capsys, "audit", "verify", good, "--expect-rows", "-1", fragment="--expect-rows")
    _input_error(capsys, "audit", "show", good, "--tail", "0", fragment="positive integer")
