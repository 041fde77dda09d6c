"""``igikit info FILE [--mask MASK]``: what an image file or a recorded session holds, in a few lines."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from igikit.core.image import Image
from igikit.errors import GeometryError, InputError
from igikit.io import trackrad
from igikit.io.image import read_image

#: Endings of session files (HDF5) written by :class:`igikit.stream.recorder.Recorder`.
SESSION_SUFFIXES = (".h5", ".hdf5")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` command."""
    p = sub.add_parser(
        "info",
        help="print an image's geometry, modality and value range, or a recorded session's summary",
        description=(
            "Print size, spacing (mm), origin, direction, modality, pixel type and value range of a "
            "NIfTI / MHA / NRRD file, a DICOM file or folder, or a TrackRAD cine (frames file or case "
            "folder). With --mask, check the mask lies on the image grid and print its volume and centroid. "
            "For a session file (.h5) recorded by replay --record, gate or navigate: its "
            "workflow and source metadata, frames, time span and frame rate, recorded results, whether "
            "it was closed cleanly, and the value range."
        ),
    )
    p.add_argument("file", type=Path, help="image file, DICOM folder, TrackRAD case folder or session .h5")
    p.add_argument("--mask", type=Path, help="a mask (1 inside) on the same grid")
    p.set_defaults(func=run_info)


def run_info(args: argparse.Namespace) -> int:
    """Describe ``args.file`` (and ``args.mask``) on stdout."""
    path: Path = args.file
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_file() and path.suffix.lower() in SESSION_SUFFIXES:
        if args.mask is not None:
            raise InputError("--mask applies to images; this is a recorded session", path)
        from igikit.stream.recorder import read_session  # igikit.stream imports igikit.io

        session = read_session(path)
        print(f"file: {path}")
        print(session.describe())
        return 0
    if _is_cine(path):
        print(describe_cine(path, args.mask))
        return 0
    image = read_image(path)
    print(f"file: {path}")
    print(image.describe())
    if args.mask is not None:
        print(describe_mask(image, args.mask))
    return 0


def _is_cine(path: Path) -> bool:
    if path.is_dir():
        return any((path / "images").glob("*_frames.mha"))
    return path.name.endswith("_frames.mha")


def _cine_case(path: Path) -> trackrad.CineCase:
    """The case of a folder, or of a frames file (its folder's timing when it sits in one)."""
    if path.is_dir():
        return trackrad.read_case(path)
    case_dir = path.parent.parent
    if path.parent.name == "images":
        case = trackrad.read_case(case_dir)
        if case.case_id == path.name[: -len("_frames.mha")]:
            return case
    frames, spacing = trackrad.read_frames(path)
    return trackrad.CineCase(path.name[: -len("_frames.mha")], frames, spacing)


def describe_cine(path: Path, mask: Path | None = None) -> str:
    """Lines describing a TrackRAD cine: frames, H x W, pixel spacing, frame rate, values."""
    case = _cine_case(path)
    h, w, t = case.frames.shape
    dx, dy = case.pixel_spacing_mm
    lines = [
        f"file: {path}",
        f"cine series (TrackRAD2025 layout, case {case.case_id}): {t} frames of {h} x {w} (H x W)",
        f"pixel spacing (mm): {dx:.6g} x {dy:.6g}",
    ]
    if case.geometry is not None:
        g = case.geometry
        lines.append(
            "frames file header (ITK axes T, W, H): spacing ("
            + ", ".join(f"{v:.6g}" for v in g.spacing)
            + "), origin ("
            + ", ".join(f"{v + 0.0:.6g}" for v in g.origin)
            + ")"
            + ("" if np.allclose(np.reshape(g.direction, (3, 3)), np.eye(3)) else ", oblique direction")
        )
    if case.frame_rate_hz is not None:
        lines.append(f"frame rate: {case.frame_rate_hz:.4g} Hz ({1000.0 / case.frame_rate_hz:.4g} ms per frame)")
    else:
        lines.append("frame rate: not given")
    if case.b_field_t is not None:
        lines.append(f"field strength: {case.b_field_t:g} T")
    if case.scanned_region:
        lines.append(f"scanned region: {case.scanned_region}")
    lines.append("modality: MR")
    lines.append(f"pixel type: {case.frames.dtype}")
    lines.append(f"value range: {case.frames.min():.6g} .. {case.frames.max():.6g}")
    if case.first_label is not None:
        lines.append(f"first-frame label: {int(case.first_label.sum())} pixels")
    if case.labels is not None:
        lines.append(f"labels: every frame ({t})")
    if mask is not None:
        label = trackrad.read_label(mask, (h, w))
        mask_spacing = _label_pixel_spacing(mask)
        if not np.allclose(mask_spacing, case.pixel_spacing_mm, atol=1e-4):
            raise GeometryError(
                f"mask pixel spacing {mask_spacing} differs from the frames' {case.pixel_spacing_mm}", mask
            )
        frame = Image(label, spacing_mm=case.pixel_spacing_mm)
        lines.append(_mask_summary(frame, label))
    return "\n".join(lines)


def _label_pixel_spacing(path: Path) -> tuple[float, float]:
    """Pixel spacing ``(dx, dy)`` of a cine label: a 2D file, or (H, W, 1) in TrackRAD layout."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    spacing = reader.GetSpacing()
    if len(spacing) == 2:
        return (float(spacing[0]), float(spacing[1]))
    return trackrad.pixel_spacing_from_itk(spacing)


def describe_mask(image: Image, mask_path: Path) -> str:
    """Check ``mask_path`` lies on ``image``'s grid; its volume (or area) and centroid in mm."""
    mask = read_image(mask_path, series=False)
    grid = image.frame(0) if image.is_series else image
    try:
        grid.require_same_grid(mask, "mask")
    except GeometryError as exc:
        raise GeometryError(exc.problem, mask_path) from None
    return _mask_summary(grid, mask.array)


def _mask_summary(grid: Image, mask: np.ndarray) -> str:
    inside = np.argwhere(np.asarray(mask) > 0)
    voxel = float(np.prod(grid.spacing_mm) * abs(np.linalg.det(grid.direction)))
    if grid.dim == 2:
        size = f"mask: {len(inside)} pixels, area {len(inside) * voxel:.6g} mm^2"
    else:
        size = f"mask: {len(inside)} voxels, volume {len(inside) * voxel / 1000.0:.6g} mL"
    if not len(inside):
        return size + ", empty (no centroid)"
    centroid = grid.index_to_physical(inside[:, ::-1].mean(axis=0))  # NumPy order -> ITK (x, y, z)
    return size + "\nmask centroid (mm): (" + ", ".join(f"{c:.4f}" for c in centroid) + ")"
