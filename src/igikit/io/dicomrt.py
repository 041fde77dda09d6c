"""DICOM-RT: structure sets read into masks, dose grids read and written.

RTSTRUCT (PS3.3 A.19): each ROI is a set of planar polygons in patient coordinates (mm). They are
mapped through the reference image's geometry into continuous voxel indices and filled slice by
slice. Several contours of one ROI on one slice combine by the even-odd rule, so a contour inside
another is a hole, the convention of treatment planning systems for rings and cavities.

RTDOSE (PS3.3 A.18): a multi-frame grid of unsigned integers times ``DoseGridScaling`` (Gy), the
frames placed along the slice normal by ``GridFrameOffsetVector``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from igikit.core.image import Image
from igikit.errors import GeometryError, InputError
from igikit.io.atomic import atomic_path
from igikit.io.dicom import (
    RT_DOSE_STORAGE,
    RT_PLAN_STORAGE,
    format_ds,
    new_dataset,
    patient_plane,
    read_dataset,
    read_dicom,
    set_plane,
)

log = logging.getLogger(__name__)

#: A planar contour may wander this far off its slice plane (in slices) and still be planar.
PLANARITY_TOLERANCE_SLICES = 0.1


def fill_polygons(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons by the pixel-centre rule with even-odd combination.

    A pixel is inside exactly when its centre is inside the polygon set (an odd number of edges
    lie to its left on its row). Edges are half-open in y, so a vertex on a row centre counts once.
    We rasterise here with NumPy rather than with ``cv2.fillPoly`` (OpenCV rounds vertices to a
    fixed-point grid and also paints pixels the outline merely touches, which biases small
    structures upward) or ``skimage.draw.polygon`` (the same centre rule, but one more dependency
    and no even-odd combination of several contours). Every crossing of a row centre by an edge
    toggles the pixels to its right; a cumulative sum of the toggles gives the parity.

    Parameters
    ----------
    polygons
        Each ``(N, 2)``: vertices as continuous pixel indices ``(x = column, y = row)``, integer
        values at pixel centres; closed implicitly (last vertex joins the first).
    shape
        ``(rows, columns)`` of the output.

    Returns
    -------
    numpy.ndarray
        ``uint8`` mask, 1 inside.

    Examples
    --------
    >>> square = np.array([[0.5, 0.5], [3.5, 0.5], [3.5, 2.5], [0.5, 2.5]])
    >>> fill_polygons([square], (4, 5))
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]], dtype=uint8)
    """
    rows, cols = shape
    toggles = np.zeros((rows, cols + 1), dtype=np.int32)
    for poly in polygons:
        poly = np.asarray(poly, dtype=np.float64)
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
            continue
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        # Rows j with lo <= j < hi cross the edge; horizontal edges cross none.
        start = np.clip(np.ceil(np.minimum(y0, y1)), 0, rows).astype(np.int64)
        stop = np.clip(np.ceil(np.maximum(y0, y1)), 0, rows).astype(np.int64)
        counts = np.maximum(stop - start, 0)
        if not counts.any():
            continue
        edge = np.repeat(np.arange(len(poly)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        j = start[edge] + offsets
        xa, ya, xb, yb = x0[edge], y0[edge], x1[edge], y1[edge]
        x = xa + (j - ya) * (xb - xa) / (yb - ya)
        col = np.clip(np.ceil(x), 0, cols).astype(np.int64)
        np.add.at(toggles, (j, col), 1)
    return (np.cumsum(toggles, axis=1)[:, :cols] % 2).astype(np.uint8)


def read_rtstruct(path: str | Path, reference: Image) -> dict[str, np.ndarray]:
    """Read an RTSTRUCT's ROIs as masks on the grid of ``reference``.

    Parameters
    ----------
    path
        RT Structure Set file.
    reference
        The 3D image the masks are to lie on (typically the CT the contours were drawn on). A
        series contributes its spatial grid.

    Returns
    -------
    dict of str to numpy.ndarray
        ROI name to ``uint8`` mask in NumPy order ``(Z, Y, X)``, 1 inside. Closed planar contours
        are filled on the slice nearest their plane (no interpolation between contoured slices);
        a POINT marks the voxel whose centre is nearest; open contours have no inside and leave
        their ROI's mask empty. An ROI without contours gets an empty mask, so every name is there.

    Raises
    ------
    InputError
        Naming the file: not an RTSTRUCT, contours not parallel to the reference slices.
    GeometryError
        The structure set and the reference image name different frames of reference.
    """
    path = Path(path)
    ds = read_dataset(path)
    if ds.get("Modality") != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise InputError(f"is not an RT Structure Set (Modality {ds.get('Modality', 'missing')})", path)
    grid = reference.frame(0) if reference.is_series else reference
    if grid.dim != 3:
        raise InputError("masks from an RTSTRUCT need a 3D reference image (a 2D image has no z)", path)
    ref_for = grid.meta.get("FrameOfReferenceUID")
    struct_for = {str(item.get("FrameOfReferenceUID")) for item in ds.get("ReferencedFrameOfReferenceSequence", [])}
    if ref_for and struct_for and ref_for not in struct_for:
        raise GeometryError(f"frame of reference {sorted(struct_for)[0]} differs from the image's {ref_for}", path)
    names: dict[int, str] = {}
    for roi in ds.StructureSetROISequence:
        name = str(roi.get("ROIName") or f"ROI {roi.ROINumber}")
        while name in names.values():
            name += "'"  # two ROIs may share a name; both must survive
        names[int(roi.ROINumber)] = name
    nx, ny, nz = grid.size
    masks = {name: np.zeros((nz, ny, nx), dtype=np.uint8) for name in names.values()}
    outside = 0
    for roi_contour in ds.get("ROIContourSequence", []):
        number = int(roi_contour.ReferencedROINumber)
        if number not in names:
            log.warning("%s: contours for undeclared ROI %d ignored", path, number)
            continue
        name = names[number]
        per_slice: dict[int, list[np.ndarray]] = {}
        for contour in roi_contour.get("ContourSequence", []):
            points = np.asarray([float(v) for v in contour.get("ContourData", [])], dtype=np.float64)
            if points.size == 0 or points.size % 3:
                raise InputError(f"ROI '{name}' has ContourData of {points.size} values (not x,y,z triplets)", path)
            index = grid.physical_to_index(points.reshape(-1, 3))
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
            if kind == "POINT":
                voxel = np.rint(index[0]).astype(int)
                if np.all(voxel >= 0) and np.all(voxel < np.array(grid.size)):
                    masks[name][voxel[2], voxel[1], voxel[0]] = 1
                else:
                    outside += 1
                continue
            if kind != "CLOSED_PLANAR":
                log.info("%s: ROI '%s' has a %s contour, which has no inside; skipped", path, name, kind)
                continue
            k = index[:, 2]
            if np.ptp(k) > PLANARITY_TOLERANCE_SLICES:
                raise InputError(
                    f"ROI '{name}' has a contour spanning {np.ptp(k):.2f} slices: not parallel to the "
                    "reference image's slices",
                    path,
                )
            slice_index = int(np.rint(k.mean()))
            if not 0 <= slice_index < nz:
                outside += 1
                continue
            per_slice.setdefault(slice_index, []).append(index[:, :2])
        for slice_index, polygons in per_slice.items():
            masks[name][slice_index] = fill_polygons(polygons, (ny, nx))
    if outside:
        log.warning("%s: %d contours lie outside the reference grid and were dropped", path, outside)
    return masks


def read_rtdose(path: str | Path) -> Image:
    """Read an RTDOSE grid as an image of dose (``units`` ``"Gy"`` or ``"relative"``), float64.

    Raises
    ------
    InputError
        When the file is not an RTDOSE object or has no dose grid.
    """
    path = Path(path)
    image = read_dicom(path)
    if image.modality != "RTDOSE":
        raise InputError(f"is not an RT Dose object (Modality {image.modality})", path)
    return image


def write_rtdose(
    dose: Image,
    path: str | Path,
    *,
    reference: Any | None = None,
    dose_type: str = "PHYSICAL",
    summation_type: str = "PLAN",
) -> None:
    """Write a dose grid (Gy) as a DICOM RT Dose file, atomically.

    Parameters
    ----------
    dose
        3D (or 2D: one frame) absorbed dose in Gy, finite and non-negative, on any orthonormal
        grid (a left-handed one is stored with the frame order reversed; see
        :func:`igikit.io.dicom.patient_plane`).
    path
        Output ``.dcm`` file.
    reference
        Optional pydicom dataset whose patient, study and frame of reference the dose joins (an
        image slice of the planning CT, or an RTPLAN, which is then referenced). None: new UIDs.
    dose_type
        ``"PHYSICAL"`` or ``"EFFECTIVE"`` (weighted, e.g. by RBE).
    summation_type
        DoseSummationType (``"PLAN"``, ``"FRACTION"``, ``"RECORD"``...). Strict validators want a
        referenced plan for ``"PLAN"``; pass the RTPLAN as ``reference`` where there is one.

    Notes
    -----
    Pixels are ``uint32``; ``DoseGridScaling`` is the maximum dose over ``2**32 - 1``, rounded up
    to a 16-character decimal string, so the quantisation step is about 2.3e-10 of the maximum.
    ``GridFrameOffsetVector`` is relative (first element 0) along the slice normal.
    """
    from pydicom import dcmwrite
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag

    vol = patient_plane(dose)
    arr = np.asarray(vol.array, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError("dose holds NaN or infinite values", path)
    if arr.size and arr.min() < 0:
        raise InputError(f"dose has negative values (min {arr.min():.4g} Gy); RTDOSE stores unsigned", path)
    if dose_type not in ("PHYSICAL", "EFFECTIVE", "ERROR"):
        raise InputError(f"dose_type must be PHYSICAL, EFFECTIVE or ERROR, got {dose_type!r}")
    top = np.iinfo(np.uint32).max
    peak = float(arr.max()) if arr.size else 0.0
    scaling = 1.0
    if peak > 0:
        scaling = float(format_ds(peak / top))
        while peak / scaling > top:  # the decimal string rounded the scaling down: nudge it up
            scaling = float(format_ds(scaling * (1 + 1e-9)))
    pixels = np.clip(np.rint(arr / scaling), 0, top).astype("<u4")

    ds = new_dataset(RT_DOSE_STORAGE, "RTDOSE", reference)
    if reference is not None and reference.get("SOPClassUID") == RT_PLAN_STORAGE:
        plan = Dataset()
        plan.ReferencedSOPClassUID = RT_PLAN_STORAGE
        plan.ReferencedSOPInstanceUID = reference.SOPInstanceUID
        ds.ReferencedRTPlanSequence = [plan]
    set_plane(ds, vol, 0)
    nz, ny, nx = pixels.shape
    dz = vol.spacing_mm[2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ny, nx
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = Tag(0x3004, 0x000C)
    ds.GridFrameOffsetVector = [format_ds(k * dz) for k in range(nz)]
    ds.BitsAllocated = ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = dose_type
    ds.DoseSummationType = summation_type
    ds.DoseGridScaling = format_ds(scaling)
    ds.PixelData = pixels.tobytes()
    with atomic_path(path) as tmp:
        dcmwrite(tmp, ds, enforce_file_format=True)
