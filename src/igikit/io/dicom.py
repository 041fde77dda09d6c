"""DICOM images read with pydicom into :class:`~igikit.core.image.Image`, and CT series written.

Geometry follows DICOM PS3.3 C.7.6.2 (Image Plane module): ``ImageOrientationPatient`` holds the
row direction (towards increasing column index, ITK ``x``) then the column direction (increasing
row index, ITK ``y``); ``PixelSpacing`` is (row spacing, column spacing) = (``dy``, ``dx``);
``ImagePositionPatient`` is the centre of the first transmitted pixel. Slices are stacked along
the normal ``row x col`` and sorted by their position on it, as SimpleITK / GDCM do, so the
direction matrix is ``[row, col, normal]`` and the origin is the position of the first slice.

What is read:

* a single-frame file: a 3D image of one slice (it keeps its plane in the patient) -- or a 2D
  image when the file has no ``ImagePositionPatient`` / ``ImageOrientationPatient``;
* a multi-frame file: an enhanced object (per-frame functional groups, e.g. SEG, enhanced MR),
  a dose grid (``GridFrameOffsetVector``) or a cine (``FrameTime`` / ``FrameTimeVector``);
* a folder: one series of single-frame files, sorted along the slice normal, checked for one
  orientation, one pixel spacing and an even slice spacing; slices repeating one position over
  time become a series whose ``frame_times_s`` come from the acquisition times.

``RescaleSlope`` / ``RescaleIntercept`` (and RTDOSE's ``DoseGridScaling``) are applied; the array
keeps an integer type when the rescale is integral (CT in HU) and is floating point otherwise.
Colour frames (ultrasound) are reduced to their luma (ITU-R BT.601), the ``Y`` of ``YBR_FULL``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igikit.core.image import Image
from igikit.errors import InputError

log = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"

#: Positions closer than this along the slice normal are the same slice (mm).
POSITION_TOLERANCE_MM = 0.01
#: Orientation cosines and pixel spacings closer than this are the same.
ORIENTATION_TOLERANCE = 1e-4

_UNITS = {"BQML": "Bq/mL", "CNTS": "counts", "GY": "Gy", "RELATIVE": "relative", "HU": "HU"}


# --------------------------------------------------------------------------------------- reading
def read_dataset(path: str | Path, *, stop_before_pixels: bool = False) -> Any:
    """Read one DICOM file with pydicom, turning its failures into :class:`InputError`.

    Files without the 128-byte preamble and ``DICM`` marker (older writers, pydicom's own
    ``rtstruct.dcm``) are accepted when they parse into real DICOM elements.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise InputError("file not found" if not path.exists() else "is not a file", path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
            except InvalidDicomError:
                ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
                # force=True parses any bytes; real DICOM has identifying elements.
                if not any(k in ds for k in ("SOPClassUID", "Modality", "Rows", "StudyInstanceUID")):
                    raise InputError("not a DICOM file (no DICM marker, no DICOM elements)", path) from None
        except InputError:
            raise
        except Exception as exc:  # pydicom raises many types on damaged files
            raise InputError(f"truncated or corrupt DICOM file ({type(exc).__name__}: {exc})"[:200], path) from None
    for w in caught:
        log.debug("%s: %s", path, w.message)
    return ds


@dataclass
class _Frame:
    """One 2D frame with everything needed to place, order and rescale it."""

    pixels: np.ndarray
    position: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing: tuple[float, float] | None  # (row spacing dy, column spacing dx)
    slice_spacing: float | None
    time_s: float | None
    slope: float
    intercept: float
    instance: int


def _float_list(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    try:
        items = value if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str) else [value]
        arr = np.asarray([float(v) for v in items])
    except (TypeError, ValueError):
        return None
    return arr if arr.size and np.all(np.isfinite(arr)) else None


def _first_float(*values: Any) -> float | None:
    for v in values:
        arr = _float_list(v)
        if arr is not None and arr.size == 1:
            return float(arr[0])
    return None


def _group_attr(ds: Any, frame: int, sequence: str, keyword: str) -> Any:
    """``keyword`` of ``sequence`` in frame ``frame``'s functional groups, else the shared ones."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items is None or len(items) <= index:
            continue
        seq = items[index].get(sequence)
        if seq and keyword in seq[0]:
            return seq[0].get(keyword)
    return None


def _datetime_seconds(value: Any) -> float | None:
    """A DICOM DT value as POSIX seconds (the offset from UTC, if any, is ignored)."""
    from pydicom.valuerep import DT

    if not value:
        return None
    try:
        stamp = dt.datetime.fromisoformat(DT(str(value)).replace(tzinfo=None).isoformat())
    except (ValueError, TypeError):
        return None
    return (stamp - dt.datetime(1970, 1, 1)).total_seconds()


def _date_time_seconds(date: Any, time: Any) -> float | None:
    """A DICOM DA + TM pair as POSIX seconds; a missing date counts as 1970-01-01."""
    from pydicom.valuerep import DA, TM

    if not time:
        return None
    try:
        t = TM(str(time))
        day = DA(str(date)) if date else dt.date(1970, 1, 1)
    except (ValueError, TypeError):
        return None
    return (dt.datetime.combine(day, t.replace(tzinfo=None)) - dt.datetime(1970, 1, 1)).total_seconds()


def _acquisition_time(ds: Any) -> float | None:
    """Acquisition time of a dataset (POSIX s), by the most specific attribute present.

    ``TriggerTime`` (ms after the R wave) is left out on purpose: it is not a clock time and
    repeats every heartbeat, so it cannot order frames of a series.
    """
    stamp = _datetime_seconds(ds.get("AcquisitionDateTime"))
    if stamp is not None:
        return stamp
    for date_kw, time_kw in (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime")):
        # A time without its own date takes the series' or study's date (midnight crossings).
        date = ds.get(date_kw) or ds.get("SeriesDate") or ds.get("StudyDate")
        stamp = _date_time_seconds(date, ds.get(time_kw))
        if stamp is not None:
            return stamp
    return None


def _pixels(ds: Any, path: Path) -> np.ndarray:
    """Stored pixel values as (frames, rows, cols); colour reduced to luma."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(f"holds no image (a {ds.get('Modality', 'DICOM')} object without pixel data)", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(ds.pixel_array)
    except Exception as exc:
        what = "truncated: pixel data" if "less than expected" in str(exc) else "pixel data cannot be decoded"
        raise InputError(f"{what} ({type(exc).__name__}: {exc})"[:240], path) from None
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples == 3:
        # pydicom hands YBR data back as RGB; BT.601 luma is the Y the scanner stored.
        luma = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
        arr = np.rint(luma).astype(arr.dtype)
    elif samples != 1:
        raise InputError(f"has {samples} samples per pixel; igikit reads grey or RGB images", path)
    return arr.reshape(frames, *arr.shape[-2:])


def _frames_of(ds: Any, path: Path) -> tuple[list[_Frame], dict[str, Any]]:
    """Split a dataset into frames with their geometry, time and rescale."""
    pixels = _pixels(ds, path)
    n = pixels.shape[0]
    notes: dict[str, Any] = {}
    iop = _float_list(ds.get("ImageOrientationPatient"))
    ipp = _float_list(ds.get("ImagePositionPatient"))
    spacing = _float_list(ds.get("PixelSpacing"))
    slice_spacing = _first_float(ds.get("SpacingBetweenSlices"), ds.get("SliceThickness"))
    slope = _first_float(ds.get("RescaleSlope")) or 1.0
    intercept = _first_float(ds.get("RescaleIntercept")) or 0.0
    if "DoseGridScaling" in ds:
        slope *= _first_float(ds.get("DoseGridScaling")) or 1.0
    instance = int(_first_float(ds.get("InstanceNumber")) or 0)
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds

    times: list[float | None] = [None] * n
    positions: list[np.ndarray | None] = [ipp] * n
    if n == 1 and not enhanced:
        times = [_acquisition_time(ds)]
    elif enhanced:
        per: list[_Frame] = []
        for k in range(n):
            f_iop = _float_list(_group_attr(ds, k, "PlaneOrientationSequence", "ImageOrientationPatient"))
            f_ipp = _float_list(_group_attr(ds, k, "PlanePositionSequence", "ImagePositionPatient"))
            f_sp = _float_list(_group_attr(ds, k, "PixelMeasuresSequence", "PixelSpacing"))
            f_ss = _first_float(
                _group_attr(ds, k, "PixelMeasuresSequence", "SpacingBetweenSlices"),
                _group_attr(ds, k, "PixelMeasuresSequence", "SliceThickness"),
                slice_spacing,
            )
            f_slope = _first_float(_group_attr(ds, k, "PixelValueTransformationSequence", "RescaleSlope"))
            f_icpt = _first_float(_group_attr(ds, k, "PixelValueTransformationSequence", "RescaleIntercept"))
            f_time = _datetime_seconds(_group_attr(ds, k, "FrameContentSequence", "FrameAcquisitionDateTime"))
            sp = f_sp if f_sp is not None else spacing
            per.append(
                _Frame(
                    pixels[k],
                    f_ipp if f_ipp is not None else ipp,
                    f_iop if f_iop is not None else iop,
                    None if sp is None or sp.size != 2 else (float(sp[0]), float(sp[1])),
                    f_ss,
                    f_time,
                    slope if f_slope is None else f_slope,
                    intercept if f_icpt is None else f_icpt,
                    k,
                )
            )
        return per, notes
    else:
        offsets = _float_list(ds.get("GridFrameOffsetVector"))
        frame_time = _first_float(ds.get("FrameTime"))
        frame_time_vector = _float_list(ds.get("FrameTimeVector"))
        if offsets is not None and offsets.size == n and iop is not None and ipp is not None:
            normal = np.cross(iop[:3], iop[3:])
            if offsets[0] == 0:
                positions = [ipp + o * normal for o in offsets]
            else:
                # PS3.3 C.8.8.3.2: a non-zero first offset makes the vector absolute z positions,
                # allowed only for an axial (1,0,0,0,1,0) orientation.
                positions = [np.array([ipp[0], ipp[1], o]) for o in offsets]
        elif frame_time_vector is not None and frame_time_vector.size == n:
            cumulative = np.cumsum(frame_time_vector) / 1000.0
            times = list(cumulative - cumulative[0])
        elif frame_time is not None and frame_time > 0:
            times = list(np.arange(n) * frame_time / 1000.0)
        elif ipp is not None and iop is not None and n > 1:
            normal = np.cross(iop[:3], iop[3:])
            step = slice_spacing or 1.0
            positions = [ipp + k * step * normal for k in range(n)]
            notes["slice_positions"] = f"inferred: {step} mm apart along the normal"
        if any(t is not None for t in times):
            # Frame times of a cine are offsets; the file's acquisition time anchors them. They stay
            # offsets (adding a POSIX time would round them to 0.2 microseconds).
            notes["_times_relative"] = True
            start = _acquisition_time(ds)
            if start is not None:
                notes["acquisition_start_s"] = start
    sp2 = None if spacing is None or spacing.size != 2 else (float(spacing[0]), float(spacing[1]))
    return [
        _Frame(pixels[k], positions[k], iop, sp2, slice_spacing, times[k], slope, intercept, instance + k)
        for k in range(n)
    ], notes


def _rescaled(frames: list[_Frame], floating: type[np.floating]) -> np.ndarray:
    """Stack frames applying each one's slope and intercept in the narrowest faithful type."""
    raw = np.stack([f.pixels for f in frames])
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    if np.all(slopes == 1) and np.all(intercepts == 0):
        return raw
    shape = (-1,) + (1,) * (raw.ndim - 1)
    if raw.dtype.kind in "iu" and np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)):
        values = raw.astype(np.int64) * slopes.astype(np.int64).reshape(shape) + intercepts.astype(np.int64).reshape(
            shape
        )
        lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
        for candidate in (np.int16, np.int32):
            if np.iinfo(candidate).min <= lo and hi <= np.iinfo(candidate).max:
                return values.astype(candidate)
        return values
    return raw.astype(floating) * slopes.astype(floating).reshape(shape) + intercepts.astype(floating).reshape(shape)


def _units(ds: Any) -> str | None:
    if ds.get("Modality") == "RTDOSE":
        return _UNITS.get(str(ds.get("DoseUnits", "")).upper()) or ds.get("DoseUnits") or None
    if ds.get("Modality") in ("PT", "NM") and ds.get("Units"):
        return _UNITS.get(str(ds.Units).upper(), str(ds.Units))
    rescale_type = str(ds.get("RescaleType") or "")
    if rescale_type and rescale_type != "US":  # "US": unspecified
        return _UNITS.get(rescale_type, rescale_type)
    if ds.get("Modality") == "CT":
        return "HU"
    return None


def _meta(ds: Any, path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": str(path)}
    for kw in (
        "SOPClassUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "SeriesDescription",
        "Manufacturer",
        "PhotometricInterpretation",
    ):
        value = ds.get(kw)
        if value not in (None, ""):
            meta[kw] = str(value)
    if "ImageType" in ds:
        meta["ImageType"] = "\\".join(str(v) for v in ds.ImageType)
    if int(ds.get("SamplesPerPixel") or 1) == 3:
        meta["colour"] = "converted to luma (ITU-R BT.601)"
    return meta


def _assemble(frames: list[_Frame], ds: Any, path: Path, notes: dict[str, Any]) -> Image:
    """Order frames in space and time and build the image with its geometry."""
    modality = ds.get("Modality") or None
    meta = {**_meta(ds, path), **notes}
    relative = bool(meta.pop("_times_relative", False))  # True: times are offsets, not clock times
    floating = np.float64 if modality == "RTDOSE" else np.float32
    shapes = {f.pixels.shape for f in frames}
    if len(shapes) > 1:
        raise InputError(f"frames differ in size: {sorted(shapes)}", path)
    located = all(f.position is not None and f.orientation is not None for f in frames)
    if not located:
        return _assemble_unplaced(frames, path, modality, _units(ds), meta, floating, relative)

    orientation = frames[0].orientation
    assert orientation is not None
    for f in frames:
        assert f.orientation is not None
        if f.orientation.size != 6 or not np.allclose(f.orientation, orientation, atol=ORIENTATION_TOLERANCE):
            raise InputError("slices differ in ImageOrientationPatient (more than one plane)", path)
    spacings = {f.pixel_spacing for f in frames}
    if None in spacings and len(spacings) > 1:
        raise InputError("some slices have PixelSpacing and some do not", path)
    if len(spacings) > 1 and np.ptp(np.array(list(spacings), dtype=float), axis=0).max() > 1e-4:
        raise InputError(f"slices differ in PixelSpacing: {sorted(s for s in spacings if s)}", path)
    pixel_spacing = frames[0].pixel_spacing
    if pixel_spacing is None:
        pixel_spacing = (1.0, 1.0)
        meta["pixel_spacing"] = "not in file: 1 mm assumed"
    row, col = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(f"ImageOrientationPatient {orientation.tolist()} is not two orthonormal vectors", path)
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    positions = np.array([f.position for f in frames], dtype=np.float64)
    along = positions @ normal

    # Cluster the positions along the normal: each distinct one is a slice of the volume.
    order = np.argsort(along, kind="stable")
    breaks = np.flatnonzero(np.diff(along[order]) > POSITION_TOLERANCE_MM) + 1
    groups = np.split(order, breaks)
    counts = {len(g) for g in groups}
    if len(counts) > 1:
        raise InputError(
            f"slice positions repeat unevenly ({sorted(len(g) for g in groups)[:3]}... frames per position); "
            "a missing or duplicated slice?",
            path,
        )
    repeats = counts.pop()
    slice_d = np.array([along[g[0]] for g in groups])
    if len(groups) > 1:
        gaps = np.diff(slice_d)
        dz = float(np.median(gaps))
        if np.any(np.abs(gaps - dz) > 0.01 * dz + 1e-3):
            raise InputError(
                f"slice spacing is not even: gaps from {gaps.min():.4g} to {gaps.max():.4g} mm (a missing slice?)",
                path,
            )
        first, last = positions[groups[0][0]], positions[groups[-1][0]]
        shear = (last - first) - normal * (slice_d[-1] - slice_d[0])
        if np.linalg.norm(shear) > 0.01 + 1e-4 * abs(slice_d[-1] - slice_d[0]):
            raise InputError(
                f"slices are not stacked along their normal (in-plane shift {np.linalg.norm(shear):.3g} mm, "
                "gantry tilt?); igikit does not resample tilted stacks",
                path,
            )
    else:
        dz = frames[0].slice_spacing or 1.0
        if frames[0].slice_spacing is None:
            meta["slice_spacing"] = "not in file: 1 mm assumed"

    times = None
    if repeats > 1:
        # The same positions acquired again and again: a series over time.
        ordered = []
        for g in groups:
            g_times = [frames[i].time_s for i in g]
            key: list[float] = []
            if any(t is None for t in g_times):
                key = [float(frames[i].instance) for i in g]
                meta["frame_times"] = "no acquisition times: frames ordered by InstanceNumber, 1 s apart"
            else:
                key = [float(t) for t in g_times if t is not None]
            ordered.append([g[i] for i in np.argsort(key, kind="stable")])
        volumes = np.array(ordered).T  # (T, Z) frame indices
        first_times = [frames[int(v[0])].time_s for v in volumes]
        if all(t is not None for t in first_times):
            times = np.array(first_times, dtype=np.float64)
            if np.any(np.diff(times) <= 0):
                raise InputError("two frames at one position share an acquisition time (duplicates?)", path)
            if not relative:
                meta["acquisition_start_s"] = float(times[0])
            times = times - times[0]
        else:
            times = np.arange(len(volumes), dtype=np.float64)
        flat = [frames[int(i)] for i in volumes.reshape(-1)]
        array = _rescaled(flat, floating).reshape(len(volumes), len(groups), *frames[0].pixels.shape)
    else:
        array = _rescaled([frames[int(g[0])] for g in groups], floating)
    origin = positions[groups[0][0]]
    dy, dx = pixel_spacing
    return Image(
        array,
        spacing_mm=(dx, dy, dz),
        origin_mm=tuple(origin),
        direction=np.column_stack([row, col, normal]),
        frame_times_s=times,
        modality=modality,
        units=_units(ds),
        meta=meta,
    )


def _assemble_unplaced(
    frames: list[_Frame],
    path: Path,
    modality: str | None,
    units: str | None,
    meta: dict[str, Any],
    floating: type[np.floating],
    relative: bool,
) -> Image:
    """Frames with no position in the patient: a 2D image, a 2D cine, or a plain stack."""
    meta["geometry"] = "no ImagePositionPatient / ImageOrientationPatient: patient position unknown"
    ps = frames[0].pixel_spacing
    if ps is None:
        meta["pixel_spacing"] = "not in file: 1 mm assumed"
    dy, dx = ps or (1.0, 1.0)
    times = [f.time_s for f in frames]
    if len(frames) > 1 and all(t is not None for t in times):
        order = np.argsort(np.asarray(times, dtype=float), kind="stable")
        t = np.asarray(times, dtype=float)[order]
        if np.any(np.diff(t) <= 0):
            raise InputError("two frames share an acquisition time (duplicates?)", path)
        array = _rescaled([frames[i] for i in order], floating)
        if not relative:
            meta["acquisition_start_s"] = float(t[0])
        return Image(array, (dx, dy), frame_times_s=t - t[0], modality=modality, units=units, meta=meta)
    if len(frames) == 1:
        return Image(_rescaled(frames, floating)[0], (dx, dy), modality=modality, units=units, meta=meta)
    order = np.argsort([f.instance for f in frames], kind="stable")
    dz = frames[0].slice_spacing or 1.0
    stack = _rescaled([frames[i] for i in order], floating)
    return Image(stack, (dx, dy, dz), modality=modality, units=units, meta=meta)


def read_dicom(path: str | Path, *, series_uid: str | None = None) -> Image:
    """Read a DICOM file (single- or multi-frame) or a folder holding one series.

    Parameters
    ----------
    path
        A DICOM file, or a folder of single-frame files (other files in it are ignored).
    series_uid
        For a folder holding several series: the ``SeriesInstanceUID`` to read.

    Returns
    -------
    Image
        Rescaled values with geometry from the Image Plane module; ``modality`` and ``units``
        (``"HU"``, ``"Bq/mL"``, ``"Gy"``...) from the file; UIDs and notes on anything assumed
        (missing spacing, unknown position) in ``meta``. A series over time has ``frame_times_s``
        in seconds from the first frame (the absolute start, POSIX seconds, is
        ``meta['acquisition_start_s']`` when known).

    Raises
    ------
    InputError
        Naming the file or folder: missing, not DICOM, truncated, no pixel data, inconsistent
        orientation / spacing, missing slices, several series without ``series_uid``.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> ct = read_dicom(get_testdata_file("CT_small.dcm"))
    >>> ct.size, ct.units
    ((128, 128, 1), 'HU')
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        return _read_folder(path, series_uid)
    ds = read_dataset(path)
    frames, notes = _frames_of(ds, path)
    return _assemble(frames, ds, path, notes)


def _read_folder(folder: Path, series_uid: str | None) -> Image:
    headers: dict[str, list[tuple[Path, Any]]] = {}
    for file in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if file.name.upper() == "DICOMDIR":
            continue
        try:
            ds = read_dataset(file, stop_before_pixels=True)
        except InputError as exc:
            log.debug("skipping %s: %s", file, exc)
            continue
        if "Rows" not in ds:  # RTSTRUCT, RTPLAN, reports: not images
            continue
        headers.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((file, ds))
    if not headers:
        raise InputError("no DICOM images in this folder", folder)
    if series_uid is not None:
        if series_uid not in headers:
            raise InputError(f"no series {series_uid} in this folder", folder)
        chosen = headers[series_uid]
    elif len(headers) > 1:
        listing = "; ".join(
            f"{uid or '(no UID)'} ({len(v)} files, {v[0][1].get('Modality', '?')} "
            f"{v[0][1].get('SeriesDescription', '')!s})".replace(" )", ")")
            for uid, v in headers.items()
        )
        raise InputError(f"holds {len(headers)} series, pass series_uid: {listing}"[:300], folder)
    else:
        chosen = next(iter(headers.values()))
    frames: list[_Frame] = []
    first = None
    for file, _ in chosen:
        ds = read_dataset(file)
        if int(ds.get("NumberOfFrames") or 1) > 1:
            raise InputError(f"{file.name} is multi-frame; read multi-frame files one at a time", folder)
        first = first or ds
        try:
            file_frames, _notes = _frames_of(ds, file)
        except InputError as exc:
            raise InputError(f"{file.name}: {exc.problem}", folder) from None
        frames.extend(file_frames)
    assert first is not None
    image = _assemble(frames, first, folder, {"files": len(chosen)})
    return image


# --------------------------------------------------------------------------------------- writing
def format_ds(value: float) -> str:
    """``value`` as a DICOM decimal string (at most 16 characters, as precise as that allows)."""
    from pydicom.valuerep import format_number_as_ds

    return str(format_number_as_ds(float(value)))


def new_dataset(sop_class_uid: str, modality: str, reference: Any | None = None) -> Any:
    """A DICOM dataset with file meta, SOP identity and patient / study / frame of reference.

    Parameters
    ----------
    sop_class_uid
        The storage SOP class (e.g. :data:`RT_DOSE_STORAGE`).
    modality
        The Modality attribute (``"CT"``, ``"RTDOSE"``...).
    reference
        A pydicom dataset of the same patient (an image slice, a plan): its patient, study and
        frame of reference are copied so the new object lines up with it. None: new UIDs and
        empty patient identity (type 2 attributes present but empty).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

    from igikit import __version__

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    now = dt.datetime.now()
    ds.InstanceCreationDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.ContentTime = now.strftime("%H%M%S.%f")
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime"):
        setattr(ds, kw, reference.get(kw, "") if reference is not None else "")
    for kw in ("ReferringPhysicianName", "StudyID", "AccessionNumber"):
        setattr(ds, kw, reference.get(kw, "") if reference is not None else "")
    if reference is not None and "SpecificCharacterSet" in reference:
        ds.SpecificCharacterSet = reference.SpecificCharacterSet
    ref = reference if reference is not None else {}
    ds.StudyInstanceUID = ref.get("StudyInstanceUID") or generate_uid()
    ds.FrameOfReferenceUID = ref.get("FrameOfReferenceUID") or generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "igikit"
    ds.SoftwareVersions = __version__
    return ds


def patient_plane(image: Image) -> Image:
    """``image`` as a 3D volume whose direction DICOM can store (orthonormal, right-handed).

    DICOM stacks slices along ``row x col``. A left-handed direction (third axis against that
    normal) is made right-handed by reversing the slice order, which keeps every voxel in place.
    A 2D image becomes one slice. Raises :class:`InputError` for a series or a sheared direction.
    """
    if image.is_series:
        raise InputError("a series over time cannot be written as one DICOM volume; write one frame")
    if image.dim == 2:
        direction = np.eye(3)
        direction[:2, :2] = image.direction
        image = Image(
            image.array[None],
            (*image.spacing_mm, 1.0),
            (*image.origin_mm, 0.0),
            direction,
            modality=image.modality,
            units=image.units,
            meta=image.meta,
        )
    d = image.direction
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-6):
        raise InputError("direction matrix is not orthonormal; DICOM can only store rotations")
    if np.linalg.det(d) < 0:
        flipped = d.copy()
        flipped[:, 2] *= -1
        last = image.index_to_physical([0.0, 0.0, image.size[2] - 1.0])
        image = Image(
            image.array[::-1].copy(),
            image.spacing_mm,
            tuple(last),
            flipped,
            modality=image.modality,
            units=image.units,
            meta=image.meta,
        )
    return image


def set_plane(ds: Any, image: Image, slice_index: int = 0) -> None:
    """Write the Image Plane module of slice ``slice_index`` of a :func:`patient_plane` image."""
    d = image.direction
    dx, dy, dz = image.spacing_mm
    ds.ImageOrientationPatient = [format_ds(v) for v in (*d[:, 0], *d[:, 1])]
    ds.ImagePositionPatient = [format_ds(v) for v in image.index_to_physical([0.0, 0.0, float(slice_index)])]
    ds.PixelSpacing = [format_ds(dy), format_ds(dx)]
    ds.SliceThickness = format_ds(dz)


def write_dicom_series(
    image: Image,
    folder: str | Path,
    *,
    modality: str = "CT",
    reference: Any | None = None,
    series_description: str = "igikit",
) -> list[Path]:
    """Write a 3D image as a series of single-frame DICOM files, one per slice.

    Parameters
    ----------
    image
        3D (or 2D: one slice) image; CT values in HU for ``modality="CT"``.
    folder
        Output folder: created, and must not hold files already. The series is written to a
        temporary folder beside it and renamed into place, so a failure leaves nothing behind.
    modality
        ``"CT"`` writes CT Image Storage; anything else writes Secondary Capture Image Storage
        carrying that Modality and the Image Plane module (as scanner consoles export derived MR).
    reference
        Optional pydicom dataset whose patient, study and frame of reference are copied.
    series_description
        SeriesDescription of the new series.

    Returns
    -------
    list of Path
        The files written, in slice order.

    Notes
    -----
    Integer images within 16 bits are stored as they are; anything else is stored as uint16
    with ``RescaleSlope`` / ``RescaleIntercept`` mapping its range, quantised to 1/65535 of it.
    """
    from pydicom import dcmwrite

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError("output folder exists and is not empty", folder)
    if not folder.parent.is_dir():
        raise InputError("parent folder does not exist", folder.parent)
    vol = patient_plane(image)
    arr = vol.array
    if not np.all(np.isfinite(arr)):
        raise InputError("image holds NaN or infinite values; DICOM stores integers")
    stored, slope, intercept = _to_uint16_or_int16(arr)
    sop = CT_IMAGE_STORAGE if modality == "CT" else SECONDARY_CAPTURE_IMAGE_STORAGE
    template = new_dataset(sop, modality, reference)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    written: list[Path] = []
    try:
        for k in range(arr.shape[0]):
            ds = new_dataset(sop, modality, reference)
            for kw in ("StudyInstanceUID", "FrameOfReferenceUID", "SeriesInstanceUID", "StudyDate", "StudyTime"):
                setattr(ds, kw, template.get(kw))
            ds.SeriesDescription = series_description
            ds.ImageType = ["DERIVED", "SECONDARY"]
            if sop == CT_IMAGE_STORAGE:
                ds.KVP = ""
                ds.AcquisitionNumber = 1
            else:
                ds.ConversionType = "WSD"
            ds.InstanceNumber = k + 1
            set_plane(ds, vol, k)
            ds.SliceLocation = format_ds(float(vol.index_to_physical([0.0, 0.0, float(k)]) @ vol.direction[:, 2]))
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = (int(n) for n in arr.shape[1:])
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
            ds.RescaleSlope = format_ds(slope)
            ds.RescaleIntercept = format_ds(intercept)
            if modality == "CT":
                ds.RescaleType = "HU"
            ds.PixelData = np.ascontiguousarray(stored[k]).astype(stored.dtype.newbyteorder("<")).tobytes()
            name = f"{k + 1:04d}.dcm"
            dcmwrite(tmp / name, ds, enforce_file_format=True)
            written.append(folder / name)
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def _to_uint16_or_int16(arr: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Stored values, slope and intercept for 16-bit DICOM pixel data."""
    if arr.dtype.kind in "iub":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            return arr.astype(np.uint16), 1.0, 0.0
        if lo >= -32768 and hi <= 32767:
            return arr.astype(np.int16), 1.0, 0.0
    low, high = float(arr.min()), float(arr.max())
    intercept = float(format_ds(low))
    slope = float(format_ds((high - intercept) / 65535.0)) if high > intercept else 1.0
    while (high - intercept) / slope > 65535.0:  # the 16-character decimal string rounded slope down
        slope = float(format_ds(slope * (1 + 1e-9)))
    return np.clip(np.rint((arr - intercept) / slope), 0, 65535).astype(np.uint16), slope, intercept
