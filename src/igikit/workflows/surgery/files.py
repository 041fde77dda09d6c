"""Read the surgery workflow's CSV files: points (x, y, z) and tracked-tool poses.

Both may start with one header line. Points: ``x,y,z`` (mm), optionally with a ``name`` (or
``label``) column that names each fiducial in reports. Poses: ``m00..m33`` (4x4 tool-to-tracker,
row-major, mm, as ``igikit igtl record`` writes) or ``x,y,z,qw,qx,qy,qz`` (position in mm and a unit
quaternion), with an optional ``t_s`` and ``device`` column (rows of other devices are dropped when a
device is asked for). Without a header, 3 columns are points and 16 / 7 columns poses.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from igikit.errors import InputError

MATRIX_COLUMNS: tuple[str, ...] = tuple(f"m{r}{c}" for r in range(4) for c in range(4))
QUATERNION_COLUMNS: tuple[str, ...] = ("x", "y", "z", "qw", "qx", "qy", "qz")
POINT_COLUMNS: tuple[str, ...] = ("x", "y", "z")
_NAME_COLUMNS = ("name", "label")


@dataclass(frozen=True, eq=False)
class PointTable:
    """Points ``(N, 3)`` mm, their names, and the file line each came from."""

    points_mm: np.ndarray
    names: list[str]
    lines: list[int]


@dataclass(frozen=True, eq=False)
class PoseTable:
    """Poses ``(N, 4, 4)`` (tool to tracker, mm), times (s, or None) and the file line of each."""

    poses: np.ndarray
    times_s: np.ndarray | None
    lines: list[int]


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [(i + 1, [c.strip() for c in row]) for i, row in enumerate(csv.reader(fh))]
    except UnicodeDecodeError:
        raise InputError("not a text (CSV) file", path) from None
    rows = [(n, r) for n, r in rows if any(r) and not r[0].startswith("#")]
    if not rows:
        raise InputError("the file holds no rows", path)
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _header(rows: list[tuple[int, list[str]]]) -> list[str] | None:
    first = rows[0][1]
    if all(_is_number(c) for c in first):
        return None
    rows.pop(0)
    return [c.lower() for c in first]


def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"line {line}: {column} {text!r} is not a number", path) from None
    if not np.isfinite(value):
        raise InputError(f"line {line}: {column} is {text} (NaN or infinity)", path)
    return value


def _unknown(header: list[str], known: set[str], path: Path, expected: str) -> None:
    extra = [c for c in header if c not in known]
    if extra:
        raise InputError(f"unknown column header {extra[0]!r}; expected {expected}", path)
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise InputError(f"column {dup[0]!r} appears twice in the header", path)


def read_points_csv(path: str | Path) -> PointTable:
    """Rows of x, y, z (mm) with an optional header line and an optional name column."""
    path = Path(path)
    rows = _rows(path)
    header = _header(rows)
    if header is None:
        header = list(POINT_COLUMNS)
    else:
        header = [{"x_mm": "x", "y_mm": "y", "z_mm": "z"}.get(c, c) for c in header]
        _unknown(header, {*POINT_COLUMNS, *_NAME_COLUMNS}, path, "x,y,z (and optionally name)")
        missing = [c for c in POINT_COLUMNS if c not in header]
        if missing:
            raise InputError(f"the header lacks column {missing[0]!r}; expected x,y,z", path)
    cols = [header.index(c) for c in POINT_COLUMNS]
    name_col = next((header.index(c) for c in _NAME_COLUMNS if c in header), None)
    points: list[list[float]] = []
    names: list[str] = []
    lines: list[int] = []
    for line, row in rows:
        if len(row) != len(header):
            raise InputError(f"line {line}: {len(row)} values, expected {len(header)} ({','.join(header)})", path)
        points.append([_number(row[c], path, line, POINT_COLUMNS[k]) for k, c in enumerate(cols)])
        names.append(row[name_col] if name_col is not None else f"point {len(names) + 1}")
        lines.append(line)
    if not points:
        raise InputError("the file holds a header but no points", path)
    return PointTable(np.asarray(points, dtype=np.float64), names, lines)


def quaternion_to_matrix(q_wxyz: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(N, 3, 3)`` from unit quaternions ``(N, 4)`` (w, x, y, z; Hamilton)."""
    w, x, y, z = np.moveaxis(np.asarray(q_wxyz, dtype=np.float64), -1, 0)
    out: np.ndarray = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=-2,
    )
    return out


def read_poses_csv(path: str | Path, *, device: str | None = None, tol: float | None = None) -> PoseTable:
    """Tool-to-tracker poses, checked to be rigid (the bad line is named).

    Parameters
    ----------
    path
        CSV with a header naming ``m00..m33`` or ``x,y,z,qw,qx,qy,qz`` (optional ``t_s``, ``device``).
    device
        Keep only rows whose ``device`` column equals this (the file must have one).
    tol
        Largest tolerated ``max |RᵀR − I|`` (default :data:`igikit.register.pivot.ORTHONORMAL_TOL`);
        for quaternions, the tolerated deviation of their norm from 1.
    """
    from igikit.register.pivot import ORTHONORMAL_TOL, rotation_errors

    tol = ORTHONORMAL_TOL if tol is None else tol
    path = Path(path)
    rows = _rows(path)
    header = _header(rows)
    if header is None:
        width = len(rows[0][1])
        if width == len(MATRIX_COLUMNS):
            header = list(MATRIX_COLUMNS)
        elif width == len(QUATERNION_COLUMNS):
            header = list(QUATERNION_COLUMNS)
        else:
            raise InputError(f"{width} columns and no header: add a header naming m00..m33 or x,y,z,qw,qx,qy,qz", path)
    if all(c in header for c in MATRIX_COLUMNS):
        layout = MATRIX_COLUMNS
    elif all(c in header for c in QUATERNION_COLUMNS):
        layout = QUATERNION_COLUMNS
    else:
        _unknown(header, {*MATRIX_COLUMNS, *QUATERNION_COLUMNS, "t_s", "device"}, path, "m00..m33 or x,y,z,qw,qx,qy,qz")
        raise InputError("the header must name all of m00..m33, or x,y,z,qw,qx,qy,qz", path)
    _unknown(header, {*layout, "t_s", "device"}, path, f"{','.join(layout[:3])}... (with optional t_s, device)")
    if device is not None and "device" not in header:
        raise InputError(f"a device ({device!r}) was asked for, but the file has no device column", path)
    cols = [header.index(c) for c in layout]
    t_col = header.index("t_s") if "t_s" in header else None
    d_col = header.index("device") if "device" in header else None
    values, times, lines = [], [], []
    for line, row in rows:
        if len(row) != len(header):
            raise InputError(f"line {line}: {len(row)} values, expected {len(header)}", path)
        if device is not None and d_col is not None and row[d_col] != device:
            continue
        values.append([_number(row[c], path, line, layout[k]) for k, c in enumerate(cols)])
        if t_col is not None:
            times.append(_number(row[t_col], path, line, "t_s"))
        lines.append(line)
    if not values:
        what = f" of device {device!r}" if device is not None else ""
        raise InputError(f"the file holds no poses{what}", path)
    v = np.asarray(values, dtype=np.float64)
    if layout is MATRIX_COLUMNS:
        poses = v.reshape(-1, 4, 4)
        bottom = np.flatnonzero(np.abs(poses[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=1) > 1e-9)
        if bottom.size:
            raise InputError(f"line {lines[bottom[0]]}: m30..m33 must be 0, 0, 0, 1", path)
        err = rotation_errors(poses)
        bad = np.flatnonzero(err > tol)
        if bad.size:
            i = int(bad[0])
            what = "is a reflection" if np.isinf(err[i]) else f"is not orthonormal (max |RᵀR − I| = {err[i]:.3g})"
            raise InputError(f"line {lines[i]}: the rotation {what}; tolerance {tol:g}", path)
    else:
        q = v[:, 3:]
        norm = np.linalg.norm(q, axis=1)
        bad = np.flatnonzero(np.abs(norm - 1.0) > tol)
        if bad.size:
            i = int(bad[0])
            raise InputError(
                f"line {lines[i]}: quaternion qw,qx,qy,qz has norm {norm[i]:.4g}, not 1 (tolerance {tol:g})", path
            )
        poses = np.tile(np.eye(4), (v.shape[0], 1, 1))
        poses[:, :3, :3] = quaternion_to_matrix(q / norm[:, None])
        poses[:, :3, 3] = v[:, :3]
    return PoseTable(poses, np.asarray(times) if t_col is not None else None, lines)
