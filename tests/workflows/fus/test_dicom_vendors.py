"""DICOM magnitude + phase (and real + imaginary) as the scanner vendors write them, read for thermometry.

Each test writes its files with pydicom alone (not igikit's writer), following one vendor's
convention, stated in the test:

* Siemens: magnitude and phase are two series; ``ImageType`` ``ORIGINAL\\PRIMARY\\M\\ND\\NORM`` and
  ``ORIGINAL\\PRIMARY\\P\\ND``; the phase is stored as unsigned 12 bits 0..4095 with
  ``RescaleSlope`` 2 and ``RescaleIntercept`` -4096, i.e. -4096..4094 for [-pi, pi).
* Philips: magnitude and phase interleaved in one series (one ``SeriesInstanceUID``); ``ImageType``
  ``ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE`` and ``ORIGINAL\\PRIMARY\\PHASE MAP\\P\\FFE``; the phase stored
  0..4095 with ``RescaleSlope`` 1.53455, ``RescaleIntercept`` -3142 and ``RescaleType`` ``mrad``
  (milliradians) — or, without ``RescaleType``, rescaled straight to radians (slope 2 pi / 4095,
  intercept -pi).
* GE: one series, ``ImageType`` ``ORIGINAL\\PRIMARY\\OTHER``; the part is the private image type
  (0043,102F) of creator ``GEMS_PARM_01``: 0 magnitude, 1 phase, 2 real, 3 imaginary; the phase is
  signed 16-bit milliradians (-3142..3142) without rescale; real and imaginary are signed 16 bits.
* Philips real + imaginary: ``ImageType`` ``...\\R_FFE\\R\\FFE`` and ``...\\I_FFE\\I\\FFE``, stored
  unsigned with a negative ``RescaleIntercept``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from igikit.errors import InputError
from igikit.workflows.fus import prf_phase_per_degree, prf_thermometry
from igikit.workflows.fus.series import image_kind, phase_to_radians, read_series
from tests.conftest import assert_input_error, run_cli

TE_MS, B0_T = 16.0, 1.5
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
HEATING_C = [0.0, 10.0, 20.0, 30.0]
HOT = (5, 6)


def truth_frames() -> np.ndarray:
    """4 frames of 16 x 16: a background phase sweeping all of [-pi, pi), one voxel heated 0-30 °C."""
    k = prf_phase_per_degree(te_s=TE_MS / 1000, b0_t=B0_T)
    yy, xx = np.mgrid[:16, :16]
    background = np.angle(np.exp(1j * (0.41 * xx + 0.37 * yy - 3.0)))
    magnitude = 800.0 + 40.0 * xx
    frames = []
    for rise in HEATING_C:
        delta = np.zeros((16, 16))
        delta[HOT] = rise
        frames.append(magnitude * np.exp(1j * (background + k * delta)))
    return np.asarray(frames)


def write_image(
    path: Path,
    stored: np.ndarray,
    *,
    frame: int,
    series_uid: str,
    image_type: list[str],
    manufacturer: str,
    slope: float | None = None,
    intercept: float | None = None,
    rescale_type: str | None = None,
    ge_image_type: int | None = None,
    implicit: bool = False,
) -> None:
    """One single-frame MR image as a scanner exports it (frames 2 s apart, one slice position)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Manufacturer = manufacturer
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid
    ds.ImageType = image_type
    ds.InstanceNumber = frame + 1
    ds.AcquisitionDate = "20240101"
    ds.AcquisitionTime = f"1200{2 * frame:02d}.000000"
    ds.EchoTime = TE_MS
    ds.MagneticFieldStrength = B0_T
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1.5, 1.5]
    ds.SliceThickness = 5
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    signed = stored.dtype == np.int16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    if slope is not None:
        ds.RescaleSlope = f"{slope:.8g}"
        ds.RescaleIntercept = f"{intercept:.8g}"
    if rescale_type is not None:
        ds.RescaleType = rescale_type
    if ge_image_type is not None:
        block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
        block.add_new(0x2F, "SS", ge_image_type)
    ds.PixelData = stored.tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def write_series(folder: Path, parts: dict[str, np.ndarray], **per_part: dict) -> None:
    """Each part's frames; ``per_part[name]`` holds write_image's keywords; the file names interleave the parts."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, stored in parts.items():
        options = dict(per_part[name])
        sub = folder / options.pop("folder", "")
        sub.mkdir(exist_ok=True)
        for t, image in enumerate(stored):
            write_image(sub / f"IM_{t:04d}_{name}.dcm", image, frame=t, **options)


def siemens(folder: Path, z: np.ndarray) -> None:
    """Siemens: two series in two folders; phase 0..4095, slope 2, intercept -4096."""
    phase = np.angle(z)
    stored = np.round(phase * 2048 / math.pi + 2048).astype(np.int64) % 4096
    write_series(
        folder,
        {"mag": np.round(np.abs(z)).astype(np.uint16), "pha": stored.astype(np.uint16)},
        mag={"folder": "gre_M", "series_uid": "1.2.3.1", "image_type": ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"],
             "manufacturer": "SIEMENS"},
        pha={"folder": "gre_P", "series_uid": "1.2.3.2", "image_type": ["ORIGINAL", "PRIMARY", "P", "ND"],
             "manufacturer": "SIEMENS", "slope": 2.0, "intercept": -4096.0, "rescale_type": "US"},
    )


def philips_mrad(folder: Path, z: np.ndarray) -> None:
    """Philips: one series, M and P interleaved; phase 0..4095 * 1.53455 - 3142 mrad, RescaleType mrad."""
    stored = np.round((np.angle(z) * 1000 + 3142) / 1.53455).clip(0, 4095).astype(np.uint16)
    common = {"series_uid": "1.2.3.9", "manufacturer": "Philips Medical Systems"}
    write_series(
        folder,
        {"m": np.round(np.abs(z)).astype(np.uint16), "p": stored},
        m={**common, "image_type": ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"], "slope": 1.0, "intercept": 0.0},
        p={**common, "image_type": ["ORIGINAL", "PRIMARY", "PHASE MAP", "P", "FFE"], "slope": 1.53455,
           "intercept": -3142.0, "rescale_type": "mrad"},
    )


def philips_radians(folder: Path, z: np.ndarray) -> None:
    """Philips, phase rescaled straight to radians: slope 2 pi / 4095, intercept -pi, no RescaleType."""
    slope = 2 * math.pi / 4095
    stored = np.round((np.angle(z) + math.pi) / slope).clip(0, 4095).astype(np.uint16)
    common = {"series_uid": "1.2.3.10", "manufacturer": "Philips Medical Systems"}
    write_series(
        folder,
        {"m": np.round(np.abs(z)).astype(np.uint16), "p": stored},
        m={**common, "image_type": ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"]},
        p={**common, "image_type": ["ORIGINAL", "PRIMARY", "PHASE MAP", "P", "FFE"], "slope": slope,
           "intercept": -math.pi},
    )


def ge_mrad(folder: Path, z: np.ndarray) -> None:
    """GE: one series, ImageType OTHER, private image type 0043,102F (0 M, 1 P); phase int16 mrad."""
    common = {"series_uid": "1.2.3.20", "manufacturer": "GE MEDICAL SYSTEMS",
              "image_type": ["ORIGINAL", "PRIMARY", "OTHER"]}
    write_series(
        folder,
        {"m": np.round(np.abs(z)).astype(np.int16), "p": np.round(np.angle(z) * 1000).astype(np.int16)},
        m={**common, "ge_image_type": 0},
        p={**common, "ge_image_type": 1, "implicit": True},  # implicit VR: the private tag arrives as raw bytes
    )


def ge_real_imaginary(folder: Path, z: np.ndarray) -> None:
    """GE real + imaginary: private image type 2 and 3, signed 16 bits, no rescale."""
    common = {"series_uid": "1.2.3.21", "manufacturer": "GE MEDICAL SYSTEMS",
              "image_type": ["ORIGINAL", "PRIMARY", "OTHER"]}
    write_series(
        folder,
        {"r": np.round(z.real).astype(np.int16), "i": np.round(z.imag).astype(np.int16)},
        r={**common, "ge_image_type": 2},
        i={**common, "ge_image_type": 3},
    )


def philips_real_imaginary(folder: Path, z: np.ndarray) -> None:
    """Philips real + imaginary: R_FFE / I_FFE, stored unsigned with intercept -2048 (slope 1)."""
    common = {"series_uid": "1.2.3.30", "manufacturer": "Philips Medical Systems", "slope": 1.0, "intercept": -2048.0}
    write_series(
        folder,
        {"r": np.round(z.real + 2048).astype(np.uint16), "i": np.round(z.imag + 2048).astype(np.uint16)},
        r={**common, "image_type": ["ORIGINAL", "PRIMARY", "R_FFE", "R", "FFE"]},
        i={**common, "image_type": ["ORIGINAL", "PRIMARY", "I_FFE", "I", "FFE"]},
    )


VENDORS: dict[str, tuple[Callable[[Path, np.ndarray], None], float]] = {
    # writer, phase quantisation step (rad)
    "siemens_12bit": (siemens, 2 * math.pi / 4096),
    "philips_mrad": (philips_mrad, 1.53455e-3),
    "philips_radians": (philips_radians, 2 * math.pi / 4095),
    "ge_mrad": (ge_mrad, 1e-3),
    "ge_real_imaginary": (ge_real_imaginary, 2.0 / 800),
    "philips_real_imaginary": (philips_real_imaginary, 2.0 / 800),
}


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_vendor_convention_reads_the_true_phase_and_temperature(tmp_path: Path, vendor: str) -> None:
    writer, step = VENDORS[vendor]
    z = truth_frames()
    writer(tmp_path / vendor, z)
    series = read_series(tmp_path / vendor)
    assert series.frames.shape == (4, 16, 16)
    assert series.te_s == pytest.approx(TE_MS / 1000) and series.b0_t == pytest.approx(B0_T)
    assert np.allclose(series.frame_times_s, [0.0, 2.0, 4.0, 6.0])
    error = np.angle(series.frames * np.conj(z))
    # within half a quantisation step (plus the magnitude's rounding for real + imaginary)
    assert np.abs(error).max() <= 0.5 * step + 1e-6, (vendor, np.abs(error).max())
    assert np.abs(np.abs(series.frames) - np.abs(z)).max() <= 1.0
    result = prf_thermometry(series.frames, series.frame_times_s, te_s=series.te_s, b0_t=series.b0_t, noise_sigma=1.0)
    k = abs(prf_phase_per_degree(te_s=series.te_s, b0_t=series.b0_t))
    assert np.allclose(result.temperature_c[:, HOT[0], HOT[1]], 37.0 + np.array(HEATING_C), atol=step / k + 1e-3)
    assert np.abs(result.temperature_c[:, 0, :] - 37.0).max() <= step / k + 1e-3


def test_philips_series_through_the_command(tmp_path: Path) -> None:
    philips_mrad(tmp_path / "dcm", truth_frames())
    result = run_cli("thermometry", tmp_path / "dcm", "--out", tmp_path / "o", "--noise-sigma", "1")
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "o" / "temperature.h5", "r") as h5:
        assert np.allclose(h5["temperature_c"][:, HOT[0], HOT[1]], [37.0, 47.0, 57.0, 67.0], atol=0.05)


def test_image_kinds() -> None:
    def ds(image_type: list[str], ge: int | None = None) -> Dataset:
        d = Dataset()
        d.ImageType = image_type
        if ge is not None:
            d.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x2F, "SS", ge)
        return d

    assert image_kind(ds(["ORIGINAL", "PRIMARY", "M", "ND", "NORM"])) == "magnitude"
    assert image_kind(ds(["ORIGINAL", "PRIMARY", "PHASE MAP", "P", "FFE"])) == "phase"
    assert image_kind(ds(["DERIVED", "PRIMARY", "PHASE"])) == "phase"
    assert image_kind(ds(["ORIGINAL", "PRIMARY", "R_FFE", "R", "FFE"])) == "real"
    assert image_kind(ds(["ORIGINAL", "PRIMARY", "IMAGINARY"])) == "imaginary"
    assert image_kind(ds(["ORIGINAL", "PRIMARY", "OTHER"], ge=1)) == "phase"
    assert image_kind(ds(["ORIGINAL", "PRIMARY", "OTHER"])) is None
    assert image_kind(ds(["ORIGINAL", "PRIMARY", "M", "P"])) is None  # two parts named: not guessed


def test_phase_units() -> None:
    rad = np.array([-math.pi, 0.5, math.pi])
    assert np.allclose(phase_to_radians(rad)[0], rad)
    assert np.allclose(phase_to_radians(rad * 1000)[0], rad)  # GE / Philips milliradians
    assert np.allclose(phase_to_radians(np.array([-3142.0, 500.0]), units="mrad")[0], [-3.142, 0.5])
    # Siemens 12-bit: by the manufacturer even where the values would fit milliradians, or by range
    siemens_half = phase_to_radians(np.array([-2048.0, 2048.0]), manufacturer="SIEMENS")[0]
    assert np.allclose(siemens_half, [-math.pi / 2, math.pi / 2])
    assert np.allclose(phase_to_radians(np.array([-4096.0, 4094.0]))[0], [-math.pi, 4094 * math.pi / 4096])
    with pytest.raises(InputError, match="neither radians"):
        phase_to_radians(np.array([0.0, 9000.0]))


def test_missing_part_and_two_series_of_one_part(tmp_path: Path) -> None:
    z = truth_frames()
    siemens(tmp_path / "s", z)
    for file in (tmp_path / "s" / "gre_P").iterdir():
        file.unlink()
    assert_input_error(run_cli("thermometry", tmp_path / "s", "--out", tmp_path / "o"), "1 magnitude, 0 phase")
    siemens(tmp_path / "two", z)
    write_series(
        tmp_path / "two",
        {"extra": np.round(np.abs(z)).astype(np.uint16)},
        extra={"folder": "again", "series_uid": "1.2.3.99", "image_type": ["ORIGINAL", "PRIMARY", "M", "ND"],
               "manufacturer": "SIEMENS"},
    )
    assert_input_error(run_cli("thermometry", tmp_path / "two", "--out", tmp_path / "o"), "2 magnitude series")
    assert not (tmp_path / "o").exists()
