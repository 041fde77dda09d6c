"""``remove_outputs``: what a failed run wrote goes, nothing else does."""

from __future__ import annotations

from pathlib import Path

from igikit.io.atomic import make_dirs, remove_outputs


def test_remove_outputs_removes_only_the_run_files_and_the_folders_it_made_when_empty(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    created = make_dirs(out)
    assert created == [out, tmp_path / "a"]
    for name in ("audit.db", "audit.db-wal", "audit.db-shm", "report.html"):
        (out / name).write_text("x")
    remove_outputs([out / "audit.db", out / "report.html", out / "session.h5"], created)  # session.h5 never written
    assert not (tmp_path / "a").exists()

    kept = tmp_path / "c" / "d"
    created = make_dirs(kept)
    (kept / "audit.db").write_text("x")
    (kept / "notes.txt").write_text("someone else's")
    remove_outputs([kept / "audit.db"], created)
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]  # the folder holds another file: kept
