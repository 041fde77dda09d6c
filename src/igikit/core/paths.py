"""Where the real data lives: ``$IGIKIT_DATA``, else ``../shared/data`` beside the project."""

from __future__ import annotations

import os
from pathlib import Path

from igikit.errors import InputError


def data_dir(*, required: bool = True) -> Path:
    """The real-data folder.

    ``$IGIKIT_DATA`` when set; otherwise the first ``shared/data`` beside the project root (this
    file is ``src/igikit/core/paths.py`` in an editable install) or beside the working folder.
    With ``required`` a missing folder is an :class:`InputError` saying where it was looked for;
    without, the first candidate is returned for the caller to report.
    """
    env = os.environ.get("IGIKIT_DATA")
    if env:
        path = Path(env)
    else:
        candidates = [base.parent / "shared" / "data" for base in (Path(__file__).resolve().parents[3], Path.cwd())]
        path = next((c for c in candidates if c.is_dir()), candidates[0])
    if required and not path.is_dir():
        raise InputError("real data folder not found (set IGIKIT_DATA to its location)", path)
    return path
