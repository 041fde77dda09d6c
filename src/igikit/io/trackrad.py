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
which ITK spacing is the pixel size, so :func:`pixel_spacing_from_itk` states the rule used.
Reference: TrackRAD2025 challenge, https://trackrad2025.grand-challenge.org (data format page).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igikit.core.image import Image
from igikit.errors import GeometryError, InputError
from igikit.io.atomic import atomic_path

log = logging.getLogger(__name__)


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


def _read_mha(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import SimpleITK as sitk

    if not path.is_file():
        raise InputError("file not found", path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((ln for ln in first if "rror" in ln), first[-1] if first else "")
        raise InputError(f"cannot be read as an image ({detail.strip()[:160]})", path) from None
    return sitk.GetArrayFromImage(img), img.GetSpacing()


def read_frames(path: str | Path) -> tuple[np.ndarray, tuple[float, float]]:
    """Read a cine frames file: NumPy (H, W, T) and pixel spacing ``(dx, dy)`` in mm."""
    path = Path(path)
    arr, spacing = _read_mha(path)
    if arr.ndim != 3:
        raise InputError(f"is a {arr.ndim}D image; cine frames must be 3D (H, W, T), time last", path)
    if arr.shape[2] < 2:
        raise InputError(f"holds {arr.shape[2]} frame; a cine series needs at least 2 (H, W, T)", path)
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InputError(f"contains NaN or infinite values (first at frame {bad[2]})", path)
    return arr, pixel_spacing_from_itk(spacing)


def read_label(path: str | Path, shape_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a first-frame label: (H, W) or (H, W, 1), returned (H, W) uint8 in {0, 1}."""
    path = Path(path)
    arr, _ = _read_mha(path)
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
    arr, _ = _read_mha(path)
    if arr.ndim != 3:
        raise InputError(f"labels must be (H, W, T), got {arr.shape}", path)
    if shape_hwt is not None and arr.shape != tuple(shape_hwt):
        raise GeometryError(f"labels are {arr.shape} (H, W, T) but the frames are {tuple(shape_hwt)}", path)
    return (arr > 0).astype(np.uint8)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"is not valid JSON ({exc})", path) from None


def read_case(folder: str | Path) -> CineCase:
    """Read a TrackRAD2025 case folder (labels are loaded when present)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("case folder not found", folder)
    images = sorted((folder / "images").glob("*_frames.mha"))
    if not images:
        raise InputError("no images/*_frames.mha in this case folder", folder)
    frames_path = images[0]
    case_id = frames_path.name[: -len("_frames.mha")]
    frames, spacing = read_frames(frames_path)
    meta = _read_json(folder / "meta.json") or {}
    if isinstance(meta, dict) and meta.get("pixel_spacing_mm"):
        ps = meta["pixel_spacing_mm"]
        ps = np.broadcast_to(np.asarray(ps, dtype=np.float64).reshape(-1), (2,))
        spacing = (float(ps[0]), float(ps[1]))
    rate = _read_json(folder / "frame-rate.json")
    if rate is None and isinstance(meta, dict):
        rate = meta.get("frame_rate_hz")
    field_t = _read_json(folder / "b-field-strength.json")
    region = _read_json(folder / "scanned-region.json")
    h, w, t = frames.shape
    first_path = folder / "targets" / f"{case_id}_first_label.mha"
    labels_path = folder / "targets" / f"{case_id}_labels.mha"
    first = read_label(first_path, (h, w)) if first_path.is_file() else None
    labels = read_labels(labels_path, (h, w, t)) if labels_path.is_file() else None
    return CineCase(
        case_id=case_id,
        frames=frames,
        pixel_spacing_mm=spacing,
        frame_rate_hz=None if rate is None else float(rate),
        b_field_t=None if field_t is None else float(field_t),
        scanned_region=None if region is None else str(region),
        first_label=first,
        labels=labels,
        meta=meta if isinstance(meta, dict) else {},
    )


def write_hwt(path: str | Path, array: np.ndarray, pixel_spacing_mm: tuple[float, float]) -> None:
    """Write a NumPy (H, W, T) array as a TrackRAD ``.mha`` (ITK spacing ``(1, dx, dy)``), atomically."""
    import SimpleITK as sitk

    if array.ndim != 3:
        raise InputError(f"expected (H, W, T), got shape {array.shape}")
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    dx, dy = pixel_spacing_mm
    img.SetSpacing((1.0, float(dx), float(dy)))
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)


def write_case(folder: str | Path, case: CineCase) -> Path:
    """Write ``case`` as a TrackRAD2025 case folder ``folder/<case_id>``; returns that folder."""
    root = Path(folder) / case.case_id
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "targets").mkdir(parents=True, exist_ok=True)
    write_hwt(root / "images" / f"{case.case_id}_frames.mha", case.frames, case.pixel_spacing_mm)
    if case.first_label is not None:
        write_hwt(
            root / "targets" / f"{case.case_id}_first_label.mha",
            case.first_label[:, :, None].astype(np.uint8),
            case.pixel_spacing_mm,
        )
    if case.labels is not None:
        labels_path = root / "targets" / f"{case.case_id}_labels.mha"
        write_hwt(labels_path, case.labels.astype(np.uint8), case.pixel_spacing_mm)
    if case.frame_rate_hz is not None:
        (root / "frame-rate.json").write_text(json.dumps(case.frame_rate_hz))
    if case.b_field_t is not None:
        (root / "b-field-strength.json").write_text(json.dumps(case.b_field_t))
    if case.scanned_region is not None:
        (root / "scanned-region.json").write_text(json.dumps(case.scanned_region))
    h, w, t = case.frames.shape
    meta = {
        **case.meta,
        "frame_rate_hz": case.frame_rate_hz,
        "b_field_T": case.b_field_t,
        "scanned_region": case.scanned_region,
        "pixel_spacing_mm": list(case.pixel_spacing_mm),
        "frames": t,
        "shape_numpy_HWT": [h, w, t],
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=1))
    return root
