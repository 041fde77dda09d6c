"""Write output files so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from igikit.errors import InputError


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once (process-wide, but only for an instant).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    The temporary file keeps ``path``'s suffixes so that writers which choose the format from the
    file name (SimpleITK, h5py) behave as for the final name. On any exception it is removed and
    ``path`` is untouched (an earlier file there survives).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        from igikit.errors import InputError

        raise InputError("output folder does not exist", parent)
    suffix = "".join(target.suffixes)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".partial{suffix}", dir=parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.is_file():
            # mkstemp makes the file private (0600); the result should get the usual permissions.
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def refuse_existing(out_dir: Path, names: Sequence[str]) -> None:
    """Input error unless ``out_dir`` is a folder (or absent) holding none of ``names``.

    Nothing already recorded is ever overwritten: a run that would must stop before it starts.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("is not a folder", out_dir)
    for name in names:
        if (out_dir / name).exists():
            raise InputError("already exists; choose another --out-dir", out_dir / name)


def make_dirs(path: Path) -> list[Path]:
    """Create ``path`` (and missing parents); returns the folders created, deepest first (to remove on failure)."""
    created: list[Path] = []
    p = path
    while not p.exists():
        created.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return created


def remove_outputs(files: Iterable[Path], folders: Iterable[Path]) -> None:
    """Remove what a failed run wrote: ``files`` (with SQLite's ``-wal`` / ``-shm`` beside them), then ``folders``.

    Only the files named are removed; a folder is removed only when it is then empty (``folders``
    as :func:`make_dirs` returns them, deepest first), never one holding someone else's files.
    """
    for path in files:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{path}{suffix}").unlink()
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()
