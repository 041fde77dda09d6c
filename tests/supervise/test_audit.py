import itertools
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import igikit.supervise.audit as audit_module
from igikit.errors import InputError
from igikit.supervise import AuditLog, DecisionRecord, HumanAction, Record, chain_hash
from tests.supervise.helpers import decision, make_log, tamper


def test_append_returns_consecutive_seqs_and_records_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "session.db"
    originals: list[Record] = [decision(1), HumanAction(action="pause", operator="bob", role="operator"), decision(2)]
    with AuditLog(path) as audit:
        assert len(audit) == 0
        assert audit.head() == (0, audit.genesis_hash)
        assert [audit.append(r) for r in originals] == [1, 2, 3]
        genesis = audit.genesis_hash
    with AuditLog(path, create=False) as audit:  # reopened: same log, same genesis
        assert audit.genesis_hash == genesis
        entries = list(audit.records())
        assert [e.record for e in entries] == originals
        assert [e.kind for e in entries] == ["decision", "human_action", "decision"]
        assert entries[0].prev_hash == genesis
        for prev, entry in itertools.pairwise(entries):
            assert entry.prev_hash == prev.hash
        for e in entries:
            assert chain_hash(e.prev_hash, e.seq, e.kind, e.wall_time_s, e.payload) == e.hash
        assert entries[0].payload == originals[0].to_json()
        assert audit.head() == (3, entries[-1].hash)
        assert [e.seq for e in audit.tail(2)] == [2, 3]
        assert [e.seq for e in audit.records(start_seq=3)] == [3]
        assert audit.tail(10) == entries


def test_iterating_more_rows_than_one_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "_PAGE_ROWS", 4)  # pages of 4 rows: 23 rows span 6 pages
    path = tmp_path / "long.db"
    make_log(path, 23)
    with AuditLog(path) as audit:
        assert [e.seq for e in audit.records()] == list(range(1, 24))
        assert [e.seq for e in audit.records(start_seq=8)] == list(range(8, 24))
        assert audit.verify().ok
    make_log(tmp_path / "exact.db", 8)  # a multiple of the page size ends on a full page
    with AuditLog(tmp_path / "exact.db") as audit:
        assert [e.seq for e in audit.records()] == list(range(1, 9))


def test_every_log_has_its_own_genesis(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db") as a, AuditLog(tmp_path / "b.db") as b:
        assert a.genesis_hash != b.genesis_hash
        assert len(a.genesis_hash) == 64


def test_triggers_refuse_update_and_delete(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    make_log(path, 3)
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE records SET payload = '{}' WHERE seq = 2")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM records WHERE seq = 3")
        with pytest.raises(sqlite3.IntegrityError, match="cannot be changed"):
            conn.execute("UPDATE meta SET value = 'x' WHERE key = 'genesis'")
    finally:
        conn.close()
    with AuditLog(path) as audit:
        result = audit.verify()
    assert result.ok and result.n_rows == 3 and result.notes == ()


def test_verify_intact_and_empty_logs(tmp_path: Path) -> None:
    hashes = make_log(tmp_path / "s.db", 10)
    with AuditLog(tmp_path / "s.db") as audit:
        result = audit.verify(expected_head=hashes[-1], expected_rows=10)
        assert (result.ok, result.n_rows, result.first_bad_seq, result.head_hash) == (True, 10, None, hashes[-1])
        # a head recorded earlier still verifies after the log has grown
        assert audit.verify(expected_head=hashes[3]).ok
    with AuditLog(tmp_path / "empty.db") as empty:
        result = empty.verify(expected_head=empty.genesis_hash, expected_rows=0)
        assert result.ok and result.n_rows == 0 and result.head_hash == empty.genesis_hash


def _verify(path: Path, **kw: object) -> tuple[bool, int | None, str]:
    with AuditLog(path, create=False) as audit:
        result = audit.verify(**kw)  # type: ignore[arg-type]
    return result.ok, result.first_bad_seq, result.reason


def test_verify_detects_an_edited_payload(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    make_log(path)
    tamper(path, 'UPDATE records SET payload = replace(payload, \'"value":"on"\', \'"value":"hold"\') WHERE seq = 4')
    ok, bad, reason = _verify(path)
    assert (ok, bad) == (False, 4)
    assert "does not match its hash" in reason


def test_verify_detects_an_edited_wall_time(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    make_log(path)
    tamper(path, "UPDATE records SET wall_time_s = wall_time_s - 3600 WHERE seq = 7")
    assert _verify(path)[:2] == (False, 7)


def test_verify_detects_an_edit_whose_hash_was_recomputed(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    make_log(path)
    with AuditLog(path) as audit:
        row = next(e for e in audit.records() if e.seq == 4)
    forged_payload = row.payload.replace('"value":"on"', '"value":"hold"')
    forged_hash = chain_hash(row.prev_hash, 4, row.kind, row.wall_time_s, forged_payload)
    tamper(path, f"UPDATE records SET payload = '{forged_payload}', hash = '{forged_hash}' WHERE seq = 4")
    ok, bad, reason = _verify(path)
    assert (ok, bad) == (False, 5)  # row 4 is self-consistent now; row 5's link to it breaks
    assert "link to the previous row is broken" in reason


@pytest.mark.parametrize(("deleted", "first_bad"), [("seq = 5", 5), ("seq = 1", 1), ("seq IN (3, 4)", 3)])
def test_verify_detects_deleted_rows(tmp_path: Path, deleted: str, first_bad: int) -> None:
    path = tmp_path / "s.db"
    make_log(path)
    tamper(path, f"DELETE FROM records WHERE {deleted}")
    ok, bad, reason = _verify(path)
    assert (ok, bad) == (False, first_bad)
    assert "missing" in reason


def test_verify_detects_a_deletion_hidden_by_renumbering(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    make_log(path)
    tamper(path, "DELETE FROM records WHERE seq = 5", "UPDATE records SET seq = seq - 1 WHERE seq > 5")
    ok, bad, _ = _verify(path)
    assert (ok, bad) == (False, 5)


def test_verify_detects_swapped_payloads(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    make_log(path)
    tamper(
        path,
        "UPDATE records SET payload = (SELECT payload FROM records WHERE seq = 6) || '|' || payload WHERE seq = 3",
        "UPDATE records SET payload = substr((SELECT payload FROM records WHERE seq = 3), "
        "instr((SELECT payload FROM records WHERE seq = 3), '|') + 1) WHERE seq = 6",
        "UPDATE records SET payload = substr(payload, 1, instr(payload, '|') - 1) WHERE seq = 3",
    )
    with AuditLog(path) as audit:
        records = {e.seq: e.record for e in audit.records()}
    assert isinstance(records[3], DecisionRecord) and records[3].input_frame_ids == (6,)  # really swapped
    assert _verify(path)[:2] == (False, 3)


def test_verify_detects_swapped_seqs(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    make_log(path)
    tamper(
        path,
        "UPDATE records SET seq = -1 WHERE seq = 3",
        "UPDATE records SET seq = 3 WHERE seq = 4",
        "UPDATE records SET seq = 4 WHERE seq = -1",
    )
    ok, bad, _ = _verify(path)
    assert (ok, bad) == (False, 3)


def test_verify_detects_a_truncated_tail_given_the_expected_head_or_count(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    hashes = make_log(path)
    tamper(path, "DELETE FROM records WHERE seq > 8")
    assert _verify(path)[0]  # the remaining chain is consistent on its own...
    ok, bad, reason = _verify(path, expected_head=hashes[-1])  # ...but the kept head is gone
    assert (ok, bad) == (False, 9)
    assert "truncated" in reason
    ok, bad, reason = _verify(path, expected_rows=10)
    assert (ok, bad) == (False, 9)
    assert "rows 9-10 are gone" in reason


def test_verify_detects_a_log_rewritten_from_scratch(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    hashes = make_log(path)
    with AuditLog(path) as audit:
        genesis = audit.genesis_hash
        entries = list(audit.records())
    # re-chain every row with a forged decision in row 2: self-consistent, but a different head
    statements, prev = [], genesis
    for e in entries:
        payload = e.payload.replace('"confidence":0.58', '"confidence":0.99') if e.seq == 2 else e.payload
        digest = chain_hash(prev, e.seq, e.kind, e.wall_time_s, payload)
        statements.append(
            f"UPDATE records SET payload = '{payload}', prev_hash = '{prev}', hash = '{digest}' WHERE seq = {e.seq}"
        )
        prev = digest
    tamper(path, *statements)
    assert _verify(path)[0]
    ok, bad, reason = _verify(path, expected_head=hashes[-1], expected_rows=10)
    assert not ok and bad is None
    assert "rewritten" in reason


def test_verify_detects_rows_spliced_in_from_another_log(tmp_path: Path) -> None:
    make_log(tmp_path / "a.db", 3)
    make_log(tmp_path / "b.db", 3)
    tamper(
        tmp_path / "b.db",
        "DELETE FROM records",
        f"ATTACH DATABASE '{tmp_path / 'a.db'}' AS other",
        "INSERT INTO records SELECT * FROM other.records",
    )
    ok, bad, _ = _verify(tmp_path / "b.db")
    assert (ok, bad) == (False, 1)


def test_verify_notes_dropped_triggers(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    make_log(path, 2)
    tamper(path)
    with AuditLog(path) as audit:
        result = audit.verify()
    assert result.ok
    assert "records_no_update" in result.notes[0]


def test_verify_rejects_a_malformed_expected_head(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "s.db") as audit, pytest.raises(InputError, match="64 hex digits"):
        audit.verify(expected_head="abc123")


def _append_many(audit: AuditLog, writer: str, n: int) -> None:
    for i in range(n):
        audit.append(decision(i, writer=writer))


def _writers_lose_nothing(path: Path, n_per_writer: int, writers: list[str]) -> None:
    with AuditLog(path) as audit:
        result = audit.verify(expected_rows=n_per_writer * len(writers))
        assert result.ok, result.reason
        assert result.n_rows == n_per_writer * len(writers)
        by_writer: dict[str, list[int]] = {w: [] for w in writers}
        for entry in audit.records():
            record = entry.record
            assert isinstance(record, DecisionRecord)
            by_writer[record.data["writer"]].append(record.data["i"])
    for writer in writers:  # every writer's appends are all there, in its own order
        assert by_writer[writer] == list(range(n_per_writer))


def test_two_threads_sharing_one_log_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with AuditLog(path) as audit:
        threads = [threading.Thread(target=_append_many, args=(audit, name, 500)) for name in ("t1", "t2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    _writers_lose_nothing(path, 500, ["t1", "t2"])


def test_two_threads_with_their_own_connections_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    AuditLog(path).close()

    def run(name: str) -> None:
        with AuditLog(path) as own:
            _append_many(own, name, 200)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _writers_lose_nothing(path, 200, ["t1", "t2"])


_WRITER = """
import sys, time
from igikit.supervise import AuditLog
from tests.supervise.helpers import decision
path, name, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
time.sleep(max(0.0, start - time.time()))  # both processes start appending at the same moment
with AuditLog(path) as audit:
    for i in range(n):
        audit.append(decision(i, writer=name))
"""


def test_processes_creating_and_appending_to_one_log_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"  # does not exist yet: the processes race to create it too
    root = Path(__file__).resolve().parents[2]
    names = ["p1", "p2", "p3"]
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), name, "200", str(start)],
            cwd=root,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    _writers_lose_nothing(path, 200, names)


def test_opening_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="audit log not found") as info:
        AuditLog(tmp_path / "missing.db", create=False)
    assert str(tmp_path / "missing.db") in str(info.value)
    assert not (tmp_path / "missing.db").exists()  # nothing created

    text = tmp_path / "notes.db"
    text.write_text("these are not the rows you are looking for\n" * 100)
    with pytest.raises(InputError, match="not an SQLite database"):
        AuditLog(text)
    assert text.read_text().startswith("these are not")  # and not overwritten

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE patients (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(InputError, match="not an igikit audit log"):
        AuditLog(other)

    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(InputError, match="empty SQLite database"):
        AuditLog(empty, create=False)
    with AuditLog(empty) as audit:  # an empty file is fine to create a log in
        assert audit.append(decision(1)) == 1

    with pytest.raises(InputError, match="is a folder"):
        AuditLog(tmp_path)
    with pytest.raises(InputError, match="folder does not exist"):
        AuditLog(tmp_path / "no" / "s.db")


def test_append_refuses_things_that_are_not_records(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "s.db") as audit:
        with pytest.raises(InputError, match="only DecisionRecord and HumanAction"):
            audit.append({"decision": "beam"})  # type: ignore[arg-type]
        with pytest.raises(InputError, match="positive number"):
            audit.tail(0)
        assert len(audit) == 0
