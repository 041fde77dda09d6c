"""Configuration files (patient profiles, treatment plans) are YAML: read them with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from igikit.errors import InputError


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse the YAML file at ``path``; ``what`` names it in errors ("profile", "plan").

    Raises
    ------
    InputError
        Naming the file: missing, unreadable, or invalid YAML (with its line and column).
    """
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} file not found", p) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} ({exc})", p) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"invalid YAML{where}: {problem}", p) from None
