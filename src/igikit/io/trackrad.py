"""TrackRAD2025 case folders: 2D cine-MRI frames with target labels.

Layout (the challenge's own, see ``../shared/data/trackrad_format_example``)::

    CASE/images/CASE_frames.mha          frames, NumPy (H, W, T) via SimpleITK, time last
    CASE/targets/CASE_first_label.mha    target on frame 0, (H, W, 1), uint8, 1 inside
    CASE/targets/CASE_labels.mha         target on every frame, (H, W, T) (only with ground truth)
    CASE/frame-rate.json                 frames per second (Hz), a bare number
    CASE/b-field-strength.json           tesla, a bare number
    CASE/scanned-region.json             a bare string ("liver", "thorax", ...)
    CASE/meta.json                       optional: {"pixel_spacing_mm": ..., ...}

The ``.mha`` files store NumPy (H, W, T), i.e. ITK axes (T, W, H). Files in the wild disagree on
which ITK spacing is the pixel size, so :func:`pixel_spacing_from_itk` states the rule used. The
frames file's ITK header (spacing, origin, direction) is kept as read (:class:`CineGeometry`) and
written back unchanged, so labels written for a case line up with its frames in any viewer. The
JSON files are written as the challenge writes them: the bare JSON value and a newline.
Reference: TrackRAD2025 challenge, https://trackrad2025.grand-challenge.org (data format page).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igikit.core.image import Image
from igikit.errors import GeometryError, InputError
from igikit.io.atomic import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CineGeometry:
    """The ITK header of a cine ``.mha`` as read, in ITK axis order (T, W, H).

    TrackRAD files put physical meaning on the two image axes only (axis 0 is time, its spacing
    and origin are whatever the exporting tool wrote); this keeps all of it so a written file
    carries the header its source had.
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major, ITK's GetDirection()

    @classmethod
    def of(cls, image: Image) -> CineGeometry:
        """The header of a 3D :class:`Image` read from a cine file (ITK order)."""
        s, o = image.spacing_mm, image.origin_mm
        return cls((s[0], s[1], s[2]), (o[0], o[1], o[2]), tuple(float(v) for v in image.direction.reshape(-1)))


@dataclass(frozen=True, eq=False)
class CineCase:
    """One cine-MRI case: frames (H, W, T), geometry, timing and optional labels.

    Parameters
    ----------
    case_id
        Folder / file stem, e.g. ``"Z_001"``.
    frames
        NumPy (H, W, T), time last (TrackRAD convention).
    pixel_spacing_mm
        ``(dx, dy)``: column spacing (along W) and row spacing (along H), mm.
    frame_rate_hz
        Frames per second, or None when the source does not say.
    first_label
        (H, W) uint8 target on frame 0, or None.
    labels
        (H, W, T) uint8 target on every frame (ground truth), or None.
    meta
        Further facts, written to ``meta.json``.
    geometry
        The frames file's ITK header when the case was read from one (None: made in memory).
    """

    case_id: str
    frames: np.ndarray
    pixel_spacing_mm: tuple[float, float] = (1.0, 1.0)
    frame_rate_hz: float | None = None
    b_field_t: float | None = None
    scanned_region: str | None = None
    first_label: np.ndarray | None = None
    labels: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    geometry: CineGeometry | None = None

    def __post_init__(self) -> None:
        if self.frames.ndim != 3:
            raise InputError(f"frames must be (H, W, T), got shape {self.frames.shape}")
        h, w, t = self.frames.shape
        if self.first_label is not None and self.first_label.shape != (h, w):
            raise GeometryError(f"first label is {self.first_label.shape}, frames are {(h, w)} (H, W)")
        if self.labels is not None and self.labels.shape != (h, w, t):
            raise GeometryError(f"labels are {self.labels.shape}, frames are {(h, w, t)} (H, W, T)")
        if self.frame_rate_hz is not None and not self.frame_rate_hz > 0:
            raise InputError(f"frame rate must be positive, got {self.frame_rate_hz}")

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[2])

    @property
    def frame_interval_s(self) -> float | None:
        return None if self.frame_rate_hz is None else 1.0 / self.frame_rate_hz

    def frame_times_s(self) -> np.ndarray:
        """Acquisition time of each frame (s); frame index when the rate is unknown."""
        return np.arange(self.n_frames) * (self.frame_interval_s or 1.0)

    def to_image(self) -> Image:
        """The frames as an :class:`Image` series, array (T, H, W), with frame times."""
        return Image(
            np.moveaxis(self.frames, 2, 0),
            spacing_mm=self.pixel_spacing_mm,
            frame_times_s=self.frame_times_s(),
            modality="MR",
            meta={"case_id": self.case_id, "frame_rate_hz": self.frame_rate_hz},
        )


def pixel_spacing_from_itk(spacing: tuple[float, ...]) -> tuple[float, float]:
    """Pixel spacing ``(dx, dy)`` (mm) of a (H, W, T) cine file from its ITK spacing.

    ITK axes are (T, W, H). TrackRAD files put the pixel size on ITK axes 1 and 2 (the
    time axis 0 holds 1.0 or the slice thickness); other tools write ``(px, px, frame interval)``.
    Rule: axes 1 and 2 when they agree; otherwise axes 0 and 1 when those agree; else axes 1, 2.
    """
    s0, s1, s2 = (float(s) for s in spacing[:3])
    if np.isclose(s1, s2):
        return (s1, s2)
    if np.isclose(s0, s1):
        return (s0, s1)
    log.warning("ambiguous cine spacing %s: using ITK axes 1, 2 as (dx, dy)", spacing)
    return (s1, s2)


def _read_mha(path: Path) -> Image:
    """A cine file as a plain :class:`Image` (NumPy order, ITK geometry), errors naming the file."""
    from igikit.io.image import read_image

    if not path.is_file():
        raise InputError("file not found" if not path.exists() else "is not a file", path)
    # read_image catches what ITK prints on stderr and reports truncated or non-image files.
    return read_image(path, series=False)


def read_frames(path: str | Path) -> tuple[np.ndarray, tuple[float, float]]:
    """Read a cine frames file: NumPy (H, W, T) and pixel spacing ``(dx, dy)`` in mm."""
    arr, spacing, _ = _read_frames(Path(path))
    return arr, spacing


def _read_frames(path: Path) -> tuple[np.ndarray, tuple[float, float], CineGeometry]:
    image = _read_mha(path)
    arr = image.array
    if arr.ndim != 3:
        raise InputError(f"is a {arr.ndim}D image; cine frames must be 3D (H, W, T), time last", path)
    if arr.shape[2] < 2:
        raise InputError(f"holds {arr.shape[2]} frame; a cine series needs at least 2 (H, W, T)", path)
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InputError(f"contains NaN or infinite values (first at frame {bad[2]})", path)
    return arr, pixel_spacing_from_itk(image.spacing_mm), CineGeometry.of(image)


def read_label(path: str | Path, shape_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a first-frame label: (H, W) or (H, W, 1), returned (H, W) uint8 in {0, 1}."""
    path = Path(path)
    arr = _read_mha(path).array
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InputError(f"label must be (H, W) or (H, W, 1), got {arr.shape}", path)
    if shape_hw is not None and arr.shape != tuple(shape_hw):
        raise GeometryError(f"label is {arr.shape} (H, W) but the frames are {tuple(shape_hw)}", path)
    label = (arr > 0).astype(np.uint8)
    if not label.any():
        raise InputError("label is empty (no pixel is 1)", path)
    return label


def read_labels(path: str | Path, shape_hwt: tuple[int, int, int] | None = None) -> np.ndarray:
    """Read every-frame labels (H, W, T) as uint8 in {0, 1}."""
    path = Path(path)
    arr = _read_mha(path).array
    if arr.ndim != 3:
        raise InputError(f"is a {arr.ndim}D image {arr.shape}; labels must be 3D (H, W, T)", path)
    if shape_hwt is not None and arr.shape != tuple(shape_hwt):
        raise GeometryError(f"labels are {arr.shape} (H, W, T) but the frames are {tuple(shape_hwt)}", path)
    return (arr > 0).astype(np.uint8)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"is not valid JSON ({exc})", path) from None


def _positive_number(value: Any, what: str, path: Path) -> float | None:
    """``value`` as a positive finite float (None stays None); an error naming ``path`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{what} must be a positive number, got {json.dumps(value)[:60]}", path)
    return float(value)


def _pixel_spacing(value: Any, path: Path) -> tuple[float, float]:
    items = value if isinstance(value, list) else [value]
    if len(items) not in (1, 2):
        raise InputError(f"pixel_spacing_mm must be one or two numbers (mm), got {json.dumps(value)[:60]}", path)
    mm = [_positive_number(v, "pixel_spacing_mm", path) for v in items]
    return (float(mm[0] or 0.0), float(mm[-1] or 0.0))


def read_case(folder: str | Path) -> CineCase:
    """Read a TrackRAD2025 case folder (labels are loaded when present).

    Raises
    ------
    InputError
        Naming the folder or the file: no (or several) frames files, a frames file that is not a
        3D (H, W, T) image, JSON that does not parse or holds the wrong kind of value, labels whose
        shape differs from the frames'.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("case folder not found" if not folder.exists() else "is not a case folder", folder)
    images = sorted((folder / "images").glob("*_frames.mha"))
    if not images:
        raise InputError("no images/*_frames.mha in this case folder", folder)
    if len(images) > 1:
        raise InputError(f"holds {len(images)} frames files in images/; a case folder holds one", folder)
    frames_path = images[0]
    case_id = frames_path.name[: -len("_frames.mha")]
    frames, spacing, geometry = _read_frames(frames_path)
    meta_path = folder / "meta.json"
    meta = _read_json(meta_path)
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict):
        raise InputError(f"must hold a JSON object, got {type(meta).__name__}", meta_path)
    if meta.get("pixel_spacing_mm") is not None:
        spacing = _pixel_spacing(meta["pixel_spacing_mm"], meta_path)
    rate_path = folder / "frame-rate.json"
    rate = _positive_number(_read_json(rate_path), "frame rate (Hz)", rate_path)
    if rate is None:
        rate = _positive_number(meta.get("frame_rate_hz"), "frame_rate_hz", meta_path)
    field_path = folder / "b-field-strength.json"
    field_t = _positive_number(_read_json(field_path), "field strength (T)", field_path)
    region_path = folder / "scanned-region.json"
    region = _read_json(region_path)
    if region is not None and not isinstance(region, str):
        raise InputError(f"must hold a JSON string (the region), got {json.dumps(region)[:60]}", region_path)
    h, w, t = frames.shape
    first_path = folder / "targets" / f"{case_id}_first_label.mha"
    labels_path = folder / "targets" / f"{case_id}_labels.mha"
    first = read_label(first_path, (h, w)) if first_path.is_file() else None
    labels = read_labels(labels_path, (h, w, t)) if labels_path.is_file() else None
    return CineCase(
        case_id=case_id,
        frames=frames,
        pixel_spacing_mm=spacing,
        frame_rate_hz=rate,
        b_field_t=field_t,
        scanned_region=region,
        first_label=first,
        labels=labels,
        meta=meta,
        geometry=geometry,
    )


def write_hwt(
    path: str | Path,
    array: np.ndarray,
    pixel_spacing_mm: tuple[float, float],
    geometry: CineGeometry | None = None,
) -> None:
    """Write a NumPy (H, W, T) array as a TrackRAD ``.mha``, atomically.

    With ``geometry`` (the header the case was read with) its spacing, origin and direction are
    written unchanged, unless its pixel spacing differs from ``pixel_spacing_mm`` (the case's was
    changed): then, as without ``geometry``, ITK spacing is ``(1, dx, dy)``.
    """
    import SimpleITK as sitk

    if array.ndim != 3:
        raise InputError(f"expected (H, W, T), got shape {array.shape}", path)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    dx, dy = pixel_spacing_mm
    spacing: tuple[float, ...] = (1.0, float(dx), float(dy))
    if geometry is not None:
        if np.allclose(pixel_spacing_from_itk(geometry.spacing), (dx, dy), rtol=0, atol=1e-9):
            spacing = geometry.spacing
        img.SetOrigin(geometry.origin)
        img.SetDirection(geometry.direction)
    img.SetSpacing(spacing)
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)


def _write_json(path: Path, value: Any, *, indent: int | None = None) -> None:
    """``value`` as the challenge writes its JSON files: the JSON text and a newline, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=indent) + "\n", encoding="utf-8")


def write_case(folder: str | Path, case: CineCase) -> Path:
    """Write ``case`` as a TrackRAD2025 case folder ``folder/<case_id>``; returns that folder.

    The frames and labels files keep the header the case was read with (:class:`CineGeometry`);
    ``frame-rate.json``, ``b-field-strength.json`` and ``scanned-region.json`` are written as the
    challenge writes them (a JSON value and a newline), and ``meta.json`` adds igikit's summary.
    """
    root = Path(folder) / case.case_id
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "targets").mkdir(parents=True, exist_ok=True)
    spacing, geometry = case.pixel_spacing_mm, case.geometry
    write_hwt(root / "images" / f"{case.case_id}_frames.mha", case.frames, spacing, geometry)
    if case.first_label is not None:
        first = case.first_label[:, :, None].astype(np.uint8)
        write_hwt(root / "targets" / f"{case.case_id}_first_label.mha", first, spacing, geometry)
    if case.labels is not None:
        labels_path = root / "targets" / f"{case.case_id}_labels.mha"
        write_hwt(labels_path, case.labels.astype(np.uint8), spacing, geometry)
    if case.frame_rate_hz is not None:
        _write_json(root / "frame-rate.json", case.frame_rate_hz)
    if case.b_field_t is not None:
        _write_json(root / "b-field-strength.json", case.b_field_t)
    if case.scanned_region is not None:
        _write_json(root / "scanned-region.json", case.scanned_region)
    h, w, t = case.frames.shape
    dx, dy = (float(v) for v in case.pixel_spacing_mm)
    meta = {
        **case.meta,
        "frame_rate_hz": case.frame_rate_hz,
        "b_field_T": case.b_field_t,
        "scanned_region": case.scanned_region,
        # one number for square pixels, as the real cases' meta.json files have it
        "pixel_spacing_mm": dx if dx == dy else [dx, dy],
        "frames": t,
        "shape_numpy_HWT": [h, w, t],
    }
    _write_json(root / "meta.json", meta, indent=1)
    return root
