"""DICOM images: real secondary captures, pydicom's test files, and series written and read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from igikit.core.image import Image
from igikit.errors import InputError
from igikit.io import read_dataset, read_dicom, read_image, write_dicom_series

UNITY = "cine/unity"
VIEWS = ["coronal", "sagittal", "transversal"]


def _assert_same_geometry_as_sitk(image: Image, path: str | Path, *, check_z_spacing: bool = True) -> None:
    ref = sitk.ReadImage(str(path))
    assert image.size == ref.GetSize()
    n = 3 if check_z_spacing else 2
    np.testing.assert_allclose(image.spacing_mm[:n], ref.GetSpacing()[:n], rtol=1e-9)
    np.testing.assert_allclose(image.origin_mm, ref.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(image.direction, np.reshape(ref.GetDirection(), (3, 3)), atol=1e-9)


@pytest.mark.parametrize("view", VIEWS)
def test_unity_secondary_capture_matches_mha_and_vendor_geometry(data_dir: Path, view: str) -> None:
    folder = data_dir / UNITY
    image = read_dicom(folder / f"{view}_frame.dcm")
    summary = json.loads((folder / "summary.json").read_text())[view]
    # The file is an MR secondary capture: one slice placed in 3D, no acquisition time in it.
    assert image.modality == "MR" and not image.is_series
    assert image.size == (summary["cols"], summary["rows"], 1)
    mha = read_image(folder / f"{view}_image.mha")
    np.testing.assert_array_equal(image.array[0], mha.array)
    np.testing.assert_allclose(image.spacing_mm[:2], mha.spacing_mm, rtol=1e-12)
    np.testing.assert_allclose(image.spacing_mm, summary["spacing_mm"], rtol=1e-9)
    xyz = ("X", "Y", "Z")
    np.testing.assert_allclose(image.origin_mm, [summary["origin"][k] for k in xyz], atol=1e-9)
    np.testing.assert_allclose(image.direction[:, 0], [summary["row_cos"][k] for k in xyz], atol=1e-12)
    np.testing.assert_allclose(image.direction[:, 1], [summary["col_cos"][k] for k in xyz], atol=1e-12)
    # The .mha exports dropped the third dimension: their 2D origin is the first two of the 3D one.
    np.testing.assert_allclose(mha.origin_mm, image.origin_mm[:2], atol=1e-9)
    # The vendor's 3D target centroid lies in every imaging plane it was computed from.
    centroid = np.array([summary["centroid_mm"][k] for k in xyz])
    distance = (centroid - np.array(image.origin_mm)) @ image.direction[:, 2]
    assert abs(distance) < 0.05
    # ...and the target outline drawn in the plane has its centroid within a few mm of it.
    outline = np.argwhere(read_image(folder / f"{view}_mask_reference_slice.mha").array > 0)
    in_plane = image.index_to_physical(np.c_[outline[:, ::-1], np.zeros(len(outline))].mean(axis=0))
    assert np.linalg.norm(in_plane - centroid) < 5.0
    _assert_same_geometry_as_sitk(image, folder / f"{view}_frame.dcm")
    assert image.meta["FrameOfReferenceUID"]


@pytest.mark.parametrize(("name", "units"), [("CT_small.dcm", "HU"), ("MR_small.dcm", None)])
def test_pydicom_single_frames_agree_with_simpleitk(name: str, units: str | None) -> None:
    path = get_testdata_file(name)
    image = read_dicom(path)
    assert image.units == units
    # SimpleITK takes a lone slice's z spacing from SpacingBetweenSlices or 1; igikit falls back to
    # SliceThickness, the slab the slice stands for. In-plane geometry and values must agree.
    _assert_same_geometry_as_sitk(image, path, check_z_spacing=name == "CT_small.dcm")
    ref = sitk.GetArrayFromImage(sitk.ReadImage(path))  # rescaled by GDCM
    np.testing.assert_array_equal(image.array, ref)
    if name == "CT_small.dcm":
        ds = pydicom.dcmread(path)
        np.testing.assert_array_equal(image.array[0], ds.pixel_array * 1 + int(ds.RescaleIntercept))


def test_multiframe_dose_grid_agrees_with_simpleitk() -> None:
    path = get_testdata_file("rtdose.dcm")
    image = read_dicom(path)
    assert image.modality == "RTDOSE" and image.size == (10, 10, 15)
    _assert_same_geometry_as_sitk(image, path)
    raw = sitk.GetArrayFromImage(sitk.ReadImage(path))  # SimpleITK ignores DoseGridScaling
    scaling = float(pydicom.dcmread(path).DoseGridScaling)
    np.testing.assert_allclose(image.array, raw * scaling, rtol=1e-12)


def test_enhanced_functional_groups_segmentation() -> None:
    path = get_testdata_file("liver_1frame.dcm")
    image = read_dicom(path)
    assert image.modality == "SEG"
    _assert_same_geometry_as_sitk(image, path)
    ref = sitk.GetArrayFromImage(sitk.ReadImage(path))
    np.testing.assert_array_equal(image.array > 0, ref > 0)
    assert image.array.sum() > 1000


def test_colour_ultrasound_cine_has_frame_times() -> None:
    path = get_testdata_file("examples_ybr_color.dcm")
    image = read_dicom(path)
    assert image.is_series and image.n_frames == 30 and image.size == (320, 240)
    assert image.frame_times_s is not None
    np.testing.assert_allclose(np.diff(image.frame_times_s), 0.033333, rtol=1e-9)
    rgb = sitk.GetArrayFromImage(sitk.ReadImage(path)).astype(np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    assert np.max(np.abs(image.array - luma)) <= 0.5 + 1e-9
    assert "patient position unknown" in image.meta["geometry"]


def _ct_volume(direction: np.ndarray | None = None) -> Image:
    z, y, x = np.mgrid[0:6, 0:20, 0:24]
    hu = (-1000 + 40 * x + 25 * y + 300 * z).astype(np.int16)
    return Image(
        hu,
        spacing_mm=(0.8, 0.9, 2.5),
        origin_mm=(-100.25, 40.5, -30.0),
        direction=np.eye(3) if direction is None else direction,
        modality="CT",
        units="HU",
    )


def _oblique() -> np.ndarray:
    a, b = np.deg2rad(20.0), np.deg2rad(-35.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


@pytest.mark.parametrize("oblique", [False, True])
def test_series_folder_round_trip_in_any_file_order(tmp_path: Path, oblique: bool) -> None:
    image = _ct_volume(_oblique() if oblique else None)
    files = write_dicom_series(image, tmp_path / "ct")
    assert len(files) == 6
    # File names must not decide the order: reverse them.
    for f in files:
        f.rename(f.with_name("x" + f.name))
    for i, f in enumerate(sorted((tmp_path / "ct").iterdir())):
        f.rename(tmp_path / "ct" / f"{len(files) - i:03d}")
    back = read_dicom(tmp_path / "ct")
    assert back.same_grid(image, tol=1e-6)
    np.testing.assert_array_equal(back.array, image.array)
    assert back.modality == "CT" and back.units == "HU" and back.array.dtype == np.int16
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    ref = reader.Execute()
    np.testing.assert_allclose(back.origin_mm, ref.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(back.spacing_mm, ref.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(back.direction.reshape(-1), ref.GetDirection(), atol=1e-6)


def test_float_values_are_rescaled_within_a_quantum(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image = Image(rng.uniform(-5.0, 1234.5, size=(3, 8, 9)), spacing_mm=(1.0, 1.0, 2.0), modality="PT")
    write_dicom_series(image, tmp_path / "pt", modality="PT")
    back = read_dicom(tmp_path / "pt")
    quantum = (1234.5 + 5.0) / 65535
    assert np.max(np.abs(back.array - image.array)) <= quantum
    assert pydicom.dcmread(next((tmp_path / "pt").iterdir())).SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"


def test_left_handed_direction_is_stored_by_reversing_slices(tmp_path: Path) -> None:
    image = _ct_volume(np.diag([1.0, 1.0, -1.0]))
    write_dicom_series(image, tmp_path / "ct")
    back = read_dicom(tmp_path / "ct")
    np.testing.assert_array_equal(back.array, image.array[::-1])
    np.testing.assert_allclose(back.index_to_physical([3, 4, 0]), image.index_to_physical([3, 4, 5]), atol=1e-6)


def _one_slice_series(tmp_path: Path) -> list[Path]:
    return write_dicom_series(_ct_volume(), tmp_path / "src")


def test_temporal_folder_becomes_a_series_with_acquisition_times(tmp_path: Path) -> None:
    template = read_dataset(_one_slice_series(tmp_path)[2])
    out = tmp_path / "cine"
    out.mkdir()
    times = ["101500.000000", "101500.250000", "101500.750000", "101501.000000"]
    for k, tm in enumerate(reversed(times)):  # written in reverse acquisition order
        template.AcquisitionDate = "20250321"
        template.AcquisitionTime = tm
        template.SOPInstanceUID = pydicom.uid.generate_uid()
        template.PixelData = np.full((20, 24), 100 * (len(times) - 1 - k), "<i2").tobytes()
        template.save_as(out / f"f{k}.dcm")
    image = read_dicom(out)
    assert image.is_series and image.n_frames == 4 and image.size == (24, 20, 1)
    np.testing.assert_allclose(image.frame_times_s, [0.0, 0.25, 0.75, 1.0], atol=1e-9)
    np.testing.assert_array_equal(image.array[:, 0, 0, 0], [0, 100, 200, 300])
    assert image.meta["acquisition_start_s"] == pytest.approx(1742552100.0)


def test_missing_slice_is_reported(tmp_path: Path) -> None:
    files = _one_slice_series(tmp_path)
    files[3].unlink()
    with pytest.raises(InputError, match="slice spacing is not even") as info:
        read_dicom(tmp_path / "src")
    assert info.value.path == tmp_path / "src"


def test_mixed_orientation_and_two_series_are_reported(tmp_path: Path) -> None:
    files = _one_slice_series(tmp_path)
    ds = read_dataset(files[0])
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(files[0])
    with pytest.raises(InputError, match="ImageOrientationPatient"):
        read_dicom(tmp_path / "src")
    shutil.rmtree(tmp_path / "src")
    write_dicom_series(_ct_volume(), tmp_path / "a")
    write_dicom_series(_ct_volume(), tmp_path / "b")
    for f in (tmp_path / "b").iterdir():
        f.rename(tmp_path / "a" / ("b" + f.name))
    with pytest.raises(InputError, match="holds 2 series"):
        read_dicom(tmp_path / "a")
    uid = str(read_dataset(tmp_path / "a" / "b0001.dcm").SeriesInstanceUID)
    assert read_dicom(tmp_path / "a", series_uid=uid).size == (24, 20, 6)


def test_bad_dicom_inputs_name_the_file(tmp_path: Path) -> None:
    ct = Path(get_testdata_file("CT_small.dcm"))
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(ct.read_bytes()[: ct.stat().st_size // 2])
    text = tmp_path / "notes.dcm"
    text.write_text("hello, not DICOM\n" * 20)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing here")
    for path, fragment in [
        (cut, "truncated"),
        (Path(get_testdata_file("MR_truncated.dcm")), "truncated"),
        (text, "not a DICOM file"),
        (empty, "no DICOM images"),
        (Path(get_testdata_file("rtplan.dcm")), "without pixel data"),
        (tmp_path / "missing.dcm", "not found"),
    ]:
        with pytest.raises(InputError, match=fragment) as info:
            read_dicom(path)
        assert info.value.path == path


def test_volumes_repeated_over_time_become_a_3d_series(tmp_path: Path) -> None:
    files = _one_slice_series(tmp_path)  # 6 slices
    out = tmp_path / "4d"
    out.mkdir()
    for t, tm in enumerate(["120000.000000", "120002.500000"]):
        for k, f in enumerate(files):
            ds = read_dataset(f)
            ds.AcquisitionTime = tm
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.PixelData = np.full((20, 24), 10 * k + 1000 * t, "<i2").tobytes()
            ds.save_as(out / f"t{t}_{k}.dcm")
    image = read_dicom(out)
    assert image.is_series and image.array.shape == (2, 6, 20, 24)
    np.testing.assert_allclose(image.frame_times_s, [0.0, 2.5])
    np.testing.assert_array_equal(image.array[:, :, 0, 0], [[10 * k + 1000 * t for k in range(6)] for t in range(2)])
    assert image.frame(0).same_grid(_ct_volume(), tol=1e-6)
