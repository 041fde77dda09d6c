"""NIfTI / MHA / NRRD round trips keep geometry and frame times; bad files fail with the file named."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from igikit.core.image import Image
from igikit.errors import InputError
from igikit.io import read_image, write_image

SUFFIXES = [".mha", ".nrrd", ".nii.gz", ".nii", ".mhd"]
MAGDEBURG = "cine/magdeburg_liver/images/magdeburg_liver_frames.mha"


def _rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:  # NIfTI can store only proper rotations exactly (its qform)
        q[:, 0] *= -1
    return q


def _cases() -> dict[str, Image]:
    rng = np.random.default_rng(7)
    return {
        "3d-oblique": Image(
            rng.normal(size=(6, 7, 8)).astype(np.float32),
            spacing_mm=(0.7, 1.3, 2.5),
            origin_mm=(-123.456789, 45.5, 310.25),
            direction=_rotation(rng, 3),
            modality="CT",
            units="HU",
        ),
        "2d-rotated": Image(
            rng.integers(-3000, 3000, size=(9, 11)).astype(np.int16),
            spacing_mm=(1.818, 0.5),
            origin_mm=(12.5, -7.25),
            direction=_rotation(rng, 2),
        ),
        "2d+t-irregular": Image(
            rng.integers(0, 4000, size=(5, 6, 7)).astype(np.uint16),
            spacing_mm=(1.5, 1.5),
            origin_mm=(3.0, 4.0),
            frame_times_s=np.array([0.0, 0.1675, 0.335, 0.6, 0.7675]),
            modality="MR",
        ),
        "3d+t": Image(
            rng.normal(size=(3, 4, 5, 6)).astype(np.float64),
            spacing_mm=(2.0, 2.0, 3.0),
            origin_mm=(1.0, 2.0, 3.0),
            direction=_rotation(rng, 3),
            frame_times_s=np.array([10.0, 10.5, 11.0]),
            units="Bq/mL",
        ),
    }


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("case", list(_cases()))
def test_round_trip_keeps_geometry_and_times(tmp_path: Path, suffix: str, case: str) -> None:
    image = _cases()[case]
    path = tmp_path / f"im{suffix}"
    write_image(image, path)
    back = read_image(path, series=image.is_series)
    nifti = suffix.startswith(".nii")
    # NIfTI headers hold float32 geometry; MetaImage and NRRD keep doubles.
    tol = 1e-5 * 400 if nifti else 1e-9
    assert back.array.dtype == image.array.dtype
    np.testing.assert_array_equal(back.array, image.array)
    np.testing.assert_allclose(back.spacing_mm, image.spacing_mm, rtol=1e-6 if nifti else 1e-12)
    np.testing.assert_allclose(back.origin_mm, image.origin_mm, atol=tol)
    np.testing.assert_allclose(back.direction, image.direction, atol=1e-6 if nifti else 1e-12)
    # Exact (irregular) frame times, modality and units: key/value metadata, a NIfTI extension.
    assert back.is_series == image.is_series
    if image.is_series:
        assert image.frame_times_s is not None and back.frame_times_s is not None
        np.testing.assert_array_equal(back.frame_times_s, image.frame_times_s)
    assert back.modality == image.modality and back.units == image.units
    assert read_image(path).is_series == image.is_series  # recognised without being asked
    # SimpleITK reads the same voxels and geometry from the file igikit wrote.
    ref = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ref), image.array)
    np.testing.assert_allclose(ref.GetOrigin()[: image.dim], image.origin_mm, atol=tol)
    assert not list(tmp_path.glob(".*partial*")), "temporary files left behind"


def test_series_is_recognised_without_being_asked(tmp_path: Path) -> None:
    image = _cases()["2d+t-irregular"]
    write_image(image, tmp_path / "s.mha")
    assert read_image(tmp_path / "s.mha").is_series
    assert not read_image(tmp_path / "s.mha", series=False).is_series


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_extension_is_one_a_nifti_reader_skips(tmp_path: Path, suffix: str) -> None:
    """The igikit keys sit in a well-formed NIfTI-1 extension: ecode 6, size a multiple of 16."""
    image = _cases()["2d+t-irregular"]
    path = tmp_path / f"s{suffix}"
    write_image(image, path)
    raw = path.read_bytes()
    data = gzip.decompress(raw) if suffix.endswith(".gz") else raw
    assert struct.unpack("<i", data[:4])[0] == 348 and data[348] == 1  # the extender announces extensions
    vox_offset = int(struct.unpack("<f", data[108:112])[0])
    esize, ecode = struct.unpack("<ii", data[352:360])
    assert ecode == 6 and esize % 16 == 0 and vox_offset == 352 + esize and vox_offset % 16 == 0
    text = json.loads(data[360 : 352 + esize].rstrip(b"\0"))
    assert text["igikit_modality"] == "MR" and len(text["igikit_frame_times_s"].split()) == 5
    assert np.frombuffer(data[vox_offset:], np.uint16).size == image.array.size
    # A NIfTI written by SimpleITK alone has no keys: a plain image unless a series is asked for.
    plain = tmp_path / f"plain{suffix}"
    sitk.WriteImage(image.to_sitk(), str(plain))
    assert not read_image(plain).is_series
    assert read_image(plain, series=True).frame_times_s is not None


def test_a_foreign_comment_extension_is_kept_and_ignored(tmp_path: Path) -> None:
    from igikit.io import nifti_extension

    path = tmp_path / "s.nii"
    sitk.WriteImage(_cases()["3d-oblique"].to_sitk(), str(path))
    data = bytearray(path.read_bytes())
    comment = b"acquired on scanner 7".ljust(24, b"\0")
    data[108:112] = struct.pack("<f", 352 + 32)
    data[348] = 1
    path.write_bytes(bytes(data[:352]) + struct.pack("<ii", 32, 6) + comment + bytes(data[352:]))
    assert nifti_extension.read_keys(path) == {}
    nifti_extension.write_keys(path, {"igikit_units": "HU"})
    assert nifti_extension.read_keys(path) == {"igikit_units": "HU"}
    assert b"acquired on scanner 7" in path.read_bytes()
    back = read_image(path)
    assert back.units == "HU"
    np.testing.assert_array_equal(back.array, _cases()["3d-oblique"].array)


def test_mhd_data_file_gets_its_final_name(tmp_path: Path) -> None:
    write_image(_cases()["3d-oblique"], tmp_path / "vol.mhd", compress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["vol.mhd", "vol.raw"]
    assert "ElementDataFile = vol.raw" in (tmp_path / "vol.mhd").read_text()


def test_real_cine_reads_as_simpleitk_does(data_dir: Path) -> None:
    path = data_dir / MAGDEBURG
    image = read_image(path)
    ref = sitk.ReadImage(str(path))
    assert image.size == ref.GetSize() == (498, 140, 176)
    assert image.spacing_mm == pytest.approx(ref.GetSpacing())
    assert image.spacing_mm[1:] == pytest.approx((1.818, 1.818))
    series = read_image(path, series=True)  # as a file, its last ITK axis is H: igikit does not guess
    assert series.n_frames == 176


def _cut_in_half(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def test_truncated_real_mha_names_the_file(tmp_path: Path, data_dir: Path) -> None:
    cut = _cut_in_half(data_dir / MAGDEBURG, tmp_path / "cut_frames.mha")
    with pytest.raises(InputError, match="truncated") as info:
        read_image(cut)
    assert info.value.path == cut


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_nifti_is_caught(tmp_path: Path, data_dir: Path, suffix: str) -> None:
    # ITK itself reads a cut NIfTI silently, zero-filling the missing voxels.
    whole = tmp_path / f"unity{suffix}"
    write_image(read_image(data_dir / "cine/unity/coronal_image.mha"), whole)
    cut = _cut_in_half(whole, tmp_path / f"cut{suffix}")
    with pytest.raises(InputError, match="truncated") as info:
        read_image(cut)
    assert info.value.path == cut


@pytest.mark.parametrize("name", ["notes.mha", "notes.nii.gz", "notes.nrrd"])
def test_text_file_is_not_an_image(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("this is not an image\n")
    with pytest.raises(InputError) as info:
        read_image(path)
    assert info.value.path == path
    assert "not" in info.value.problem


def test_missing_unsupported_and_not_a_series(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nope.mha")
    png = tmp_path / "picture.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(png)
    with pytest.raises(InputError, match="2D image; a series needs a time axis"):
        read_image(data_dir / "cine/unity/coronal_image.mha", series=True)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    image = _cases()["2d-rotated"]
    with pytest.raises(InputError, match="output folder does not exist"):
        write_image(image, tmp_path / "missing" / "out.mha")
    with pytest.raises(InputError, match="unsupported"):
        write_image(image, tmp_path / "out.png")
    with pytest.raises(InputError, match=r"igikit\.io\.dicom"):
        write_image(image, tmp_path / "out.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
