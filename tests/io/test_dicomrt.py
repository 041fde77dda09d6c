"""RTSTRUCT contours into masks, RTDOSE written and read back, the polygon fill rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from igikit.core.image import Image
from igikit.errors import GeometryError, InputError
from igikit.io import (
    fill_polygons,
    read_dataset,
    read_dicom,
    read_image,
    read_rtdose,
    read_rtstruct,
    write_dicom_series,
    write_rtdose,
)
from igikit.io.dicom import RT_STRUCTURE_SET_STORAGE, new_dataset


# ------------------------------------------------------------------------------ polygon filling
def test_fill_includes_exactly_the_pixel_centres_inside() -> None:
    square = np.array([[0.5, 0.5], [3.5, 0.5], [3.5, 2.5], [0.5, 2.5]])
    mask = fill_polygons([square], (4, 5))
    expected = np.zeros((4, 5), np.uint8)
    expected[1:3, 1:4] = 1
    np.testing.assert_array_equal(mask, expected)


def test_fill_inner_contour_is_a_hole_and_outside_parts_are_cut() -> None:
    outer = np.array([[-10.0, -10.0], [30.0, -10.0], [30.0, 30.0], [-10.0, 30.0]])
    inner = np.array([[4.5, 4.5], [9.5, 4.5], [9.5, 9.5], [4.5, 9.5]])
    mask = fill_polygons([outer, inner], (20, 20))
    assert mask.sum() == 400 - 25
    assert mask[7, 7] == 0 and mask[0, 0] == 1


def test_fill_disc_area_matches_pi_r_squared() -> None:
    theta = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    disc = np.c_[50.3 + 30 * np.cos(theta), 49.7 + 30 * np.sin(theta)]
    area = fill_polygons([disc], (100, 100)).sum()
    assert abs(area - np.pi * 30**2) / (np.pi * 30**2) < 0.01


# ------------------------------------------------------------------------------------ RTSTRUCT
def _rotation() -> np.ndarray:
    a, b = np.deg2rad(25.0), np.deg2rad(40.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return rz @ ry


def _write_sphere_rtstruct(path: Path, ct_first: Dataset, grid: Image, centre: np.ndarray, radius: float) -> int:
    """An RTSTRUCT holding a sphere contoured on every CT slice it cuts; returns the contour count."""
    ds = new_dataset(RT_STRUCTURE_SET_STORAGE, "RTSTRUCT", ct_first)
    ds.StructureSetLabel = "sphere test"
    ds.StructureSetDate, ds.StructureSetTime = ds.ContentDate, ds.ContentTime
    frame = Dataset()
    frame.FrameOfReferenceUID = ct_first.FrameOfReferenceUID
    ds.ReferencedFrameOfReferenceSequence = [frame]
    names = Dataset()
    names.ROINumber, names.ROIName = 1, "sphere"
    names.ReferencedFrameOfReferenceUID = ct_first.FrameOfReferenceUID
    names.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = [names]
    row, col, normal = grid.direction.T
    contours = []
    for k in range(grid.size[2]):
        plane = grid.index_to_physical([0.0, 0.0, float(k)])
        h = (plane - centre) @ normal
        if abs(h) >= radius:
            continue
        r = np.sqrt(radius**2 - h**2)
        theta = np.linspace(0, 2 * np.pi, 180, endpoint=False)
        ring = centre + h * normal + r * (np.outer(np.cos(theta), row) + np.outer(np.sin(theta), col))
        c = Dataset()
        c.ContourGeometricType = "CLOSED_PLANAR"
        c.NumberOfContourPoints = len(ring)
        c.ContourData = [f"{v:.6f}" for v in ring.reshape(-1)]
        contours.append(c)
    roi = Dataset()
    roi.ReferencedROINumber = 1
    roi.ROIDisplayColor = [255, 0, 0]
    roi.ContourSequence = contours
    ds.ROIContourSequence = [roi]
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return len(contours)


@pytest.mark.parametrize("oblique", [False, True])
def test_sphere_contours_give_the_sphere_volume(tmp_path: Path, oblique: bool) -> None:
    radius = 20.0
    ct = Image(
        np.full((30, 72, 80), -1000, np.int16),
        spacing_mm=(0.7, 0.75, 2.0),
        origin_mm=(-27.0, -26.0, -29.0),
        direction=_rotation() if oblique else np.eye(3),
        modality="CT",
    )
    files = write_dicom_series(ct, tmp_path / "ct")
    grid = read_dicom(tmp_path / "ct")  # the whole path is real: the grid comes back from DICOM
    centre = grid.index_to_physical([40.3, 35.6, 14.4])
    n = _write_sphere_rtstruct(tmp_path / "rs.dcm", read_dataset(files[0]), grid, centre, radius)
    assert n == 20  # slices within 20 mm of the centre, 2 mm apart
    masks = read_rtstruct(tmp_path / "rs.dcm", grid)
    assert list(masks) == ["sphere"]
    mask = masks["sphere"]
    assert mask.shape == grid.array.shape and mask.dtype == np.uint8
    volume = mask.sum() * np.prod(grid.spacing_mm)
    expected = 4 / 3 * np.pi * radius**3
    assert abs(volume - expected) / expected < 0.03
    inside = np.argwhere(mask)[:, ::-1].mean(axis=0)
    assert np.linalg.norm(grid.index_to_physical(inside) - centre) < 0.5


def test_pydicom_rtstruct_on_a_grid_covering_its_contours() -> None:
    path = get_testdata_file("rtstruct.dcm")
    # Contours: a 400 x 300 mm body outline on z = -200, -190, -180; two isocentre points at 0.
    grid = Image(np.zeros((21, 161, 211), np.int16), spacing_mm=(2.0, 2.0, 10.0), origin_mm=(-210, -160, -200))
    masks = read_rtstruct(path, grid)
    assert list(masks) == ["patient", "Isocenter 1", "Isocenter 2"]
    assert all(m.any() for m in masks.values())
    body = masks["patient"]
    assert [k for k in range(21) if body[k].any()] == [0, 1, 2]
    ds = pydicom.dcmread(path, force=True)
    for k, contour in enumerate(ds.ROIContourSequence[0].ContourSequence):
        xy = np.asarray(contour.ContourData, float).reshape(-1, 3)[:, :2]
        area = 0.5 * abs(np.dot(xy[:, 0], np.roll(xy[:, 1], 1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], 1)))
        assert abs(body[k].sum() * 4.0 - area) / area < 0.02
    assert masks["Isocenter 1"].sum() == 1 and masks["Isocenter 1"][20, 80, 105] == 1


def test_rtstruct_errors(tmp_path: Path) -> None:
    path = get_testdata_file("rtstruct.dcm")
    grid = Image(
        np.zeros((3, 4, 5)),
        meta={"FrameOfReferenceUID": "1.2.3.4"},
    )
    with pytest.raises(GeometryError, match="frame of reference"):
        read_rtstruct(path, grid)
    with pytest.raises(InputError, match="not an RT Structure Set"):
        read_rtstruct(get_testdata_file("CT_small.dcm"), grid)
    with pytest.raises(InputError, match="3D reference"):
        read_rtstruct(path, Image(np.zeros((4, 5))))


# -------------------------------------------------------------------------------------- RTDOSE
def _dose(direction: np.ndarray) -> Image:
    z, y, x = np.mgrid[0:12, 0:15, 0:17].astype(float)
    gy = 60.0 * np.exp(-((x - 8) ** 2 + (y - 7) ** 2 + (z - 6) ** 2) / 40.0)
    return Image(gy, spacing_mm=(2.5, 2.5, 3.0), origin_mm=(-20.0, 15.5, -100.0), direction=direction, units="Gy")


@pytest.mark.parametrize("oblique", [False, True])
def test_rtdose_round_trip(tmp_path: Path, oblique: bool) -> None:
    dose = _dose(_rotation() if oblique else np.eye(3))
    path = tmp_path / "dose.dcm"
    write_rtdose(dose, path)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.2" and ds.Modality == "RTDOSE"
    assert (ds.DoseUnits, ds.DoseType, ds.BitsAllocated, ds.PixelRepresentation) == ("GY", "PHYSICAL", 32, 0)
    assert ds.FrameIncrementPointer == 0x3004000C and int(ds.NumberOfFrames) == 12
    np.testing.assert_allclose([float(v) for v in ds.GridFrameOffsetVector], 3.0 * np.arange(12))
    assert ds.SOPInstanceUID != ds.SeriesInstanceUID != ds.StudyInstanceUID
    step = float(ds.DoseGridScaling)
    assert ds.pixel_array.dtype == np.uint32 and len(str(ds["DoseGridScaling"].value)) <= 16
    assert np.max(np.abs(ds.pixel_array * step - dose.array)) <= step / 2 + 1e-12
    assert step < 60.0 / 2**31
    back = read_rtdose(path)
    assert back.same_grid(dose, tol=1e-6) and back.units == "Gy"
    assert np.max(np.abs(back.array - dose.array)) <= step / 2 + 1e-12
    via_image = read_image(path)
    assert via_image.same_grid(dose, tol=1e-6)
    ref = sitk.ReadImage(str(path))
    np.testing.assert_allclose(ref.GetOrigin(), dose.origin_mm, atol=1e-6)
    np.testing.assert_allclose(ref.GetSpacing(), dose.spacing_mm, rtol=1e-9)
    np.testing.assert_allclose(np.reshape(ref.GetDirection(), (3, 3)), dose.direction, atol=1e-6)


def test_rtdose_joins_the_plan_and_ct_it_references(tmp_path: Path) -> None:
    plan = pydicom.dcmread(get_testdata_file("rtplan.dcm"))
    write_rtdose(_dose(np.eye(3)), tmp_path / "dose.dcm", reference=plan)
    ds = pydicom.dcmread(tmp_path / "dose.dcm")
    assert ds.StudyInstanceUID == plan.StudyInstanceUID and ds.PatientID == plan.PatientID
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    write_rtdose(_dose(np.eye(3)), tmp_path / "dose_ct.dcm", reference=ct)
    on_ct = pydicom.dcmread(tmp_path / "dose_ct.dcm")
    assert on_ct.FrameOfReferenceUID == ct.FrameOfReferenceUID and "ReferencedRTPlanSequence" not in on_ct
    assert read_rtdose(tmp_path / "dose_ct.dcm").meta["FrameOfReferenceUID"] == ct.FrameOfReferenceUID


def test_rtdose_rejects_bad_dose_and_leaves_no_file(tmp_path: Path) -> None:
    dose = _dose(np.eye(3))
    for bad, fragment in [(-dose.array, "negative"), (dose.array * np.nan, "NaN")]:
        with pytest.raises(InputError, match=fragment):
            write_rtdose(dose.with_array(bad), tmp_path / "dose.dcm")
    assert list(tmp_path.iterdir()) == []


def test_read_pydicom_rtdose() -> None:
    dose = read_rtdose(get_testdata_file("rtdose.dcm"))
    assert dose.units == "relative" and dose.array.dtype == np.float64
    with pytest.raises(InputError, match="not an RT Dose"):
        read_rtdose(get_testdata_file("CT_small.dcm"))
