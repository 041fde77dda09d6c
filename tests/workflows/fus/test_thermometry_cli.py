"""``igikit thermometry``: the public contract, DICOM magnitude + phase, and every bad input."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from igikit.workflows.fus import prf_phase_per_degree
from tests.conftest import assert_input_error, run_cli


def _write(path: Path, frames: object = None, *, attrs: dict | None = None, times: object = None, **datasets) -> Path:
    rng = np.random.default_rng(0)
    if frames is None:
        frames = (1000 + rng.normal(0, 10, (4, 32, 32)) + 1j * rng.normal(0, 10, (4, 32, 32))).astype(np.complex64)
    with h5py.File(path, "w") as h5:
        if frames is not False:
            h5["frames"] = frames
        h5["frame_times_s"] = np.arange(4) * 3.0 if times is None else times
        for name, data in datasets.items():
            h5[name] = data
        base = {"te_s": 0.016, "b0_t": 1.5, "spacing_mm": [1.5, 1.5, 5.0]}
        for key, value in {**base, **(attrs or {})}.items():
            if value is not None:
                h5.attrs[key] = value
    return path


def test_public_contract(tmp_path: Path) -> None:
    src = _write(tmp_path / "series.h5")
    out = tmp_path / "out"
    result = run_cli("thermometry", src, "--out", out)
    assert result.returncode == 0, result.stderr
    with h5py.File(out / "temperature.h5", "r") as h5:
        assert h5["temperature_c"].shape == (4, 32, 32) and h5["temperature_c"].dtype == np.float32
        assert h5["cem43_min"].shape == (32, 32)
        assert h5["lesion"].shape == (32, 32) and h5["lesion"].dtype == np.uint8
        assert h5["uncertainty_c"].shape == (4, 32, 32) and h5["trusted"].shape == (4, 32, 32)
        assert abs(float(np.mean(h5["temperature_c"][()])) - 37.0) < 0.5
        assert h5.attrs["method"] == "baseline" and h5.attrs["te_s"] == pytest.approx(0.016)
    assert "written" in result.stdout


def test_heating_from_magnitude_and_phase_with_a_reference_mask(tmp_path: Path) -> None:
    k = prf_phase_per_degree(te_s=0.02, b0_t=3.0)
    delta = np.zeros((4, 2, 16, 16))
    delta[:, :, 8, 8] = np.array([0.0, 10.0, 20.0, 20.0])[:, None]
    drift = 0.05 * np.arange(4).reshape(-1, 1, 1, 1)
    phase = np.angle(np.exp(1j * (k * delta + drift + 1.0)))
    mask = np.ones((2, 16, 16), bool)
    mask[:, 6:11, 6:11] = False
    np.save(tmp_path / "ref.npy", mask)
    src = _write(
        tmp_path / "mp.h5",
        frames=False,
        attrs={"te_s": 0.02, "b0_t": 3.0},
        magnitude=np.full((4, 2, 16, 16), 500.0),
        phase=phase,
    )
    result = run_cli(
        "thermometry", src, "--out", tmp_path / "o", "--reference-mask", tmp_path / "ref.npy", "--noise-sigma", "1"
    )
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "o" / "temperature.h5", "r") as h5:
        temp = h5["temperature_c"][()]
        assert temp.shape == (4, 2, 16, 16)
        assert np.allclose(temp[:, 0, 8, 8], [37.0, 47.0, 57.0, 57.0], atol=1e-3)
        assert np.abs(temp[:, :, 0, 0] - 37.0).max() < 1e-3
        assert h5.attrs["drift_order"] == 1


def _write_dicom(folder: Path, frames: np.ndarray, *, te_ms: float | None = 16.0) -> None:
    from igikit.io.dicom import MR_IMAGE_STORAGE, new_dataset

    folder.mkdir()
    mag_ds, phase_ds = new_dataset(MR_IMAGE_STORAGE, "MR"), None
    phase_ds = new_dataset(MR_IMAGE_STORAGE, "MR", reference=mag_ds)
    for kind, template, values in (
        ("M", mag_ds, np.abs(frames)),
        ("P", phase_ds, np.round(np.angle(frames) / np.pi * 4096).clip(-4096, 4095)),
    ):
        sub = folder / ("magnitude" if kind == "M" else "phase")
        sub.mkdir()
        for t, image in enumerate(values):
            ds = new_dataset(MR_IMAGE_STORAGE, "MR", reference=template)
            ds.SeriesInstanceUID = template.SeriesInstanceUID
            ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "ND"]
            ds.InstanceNumber = t + 1
            ds.AcquisitionTime = f"1200{t * 2:02d}.000000"
            ds.AcquisitionDate = "20240101"
            if te_ms is not None:
                ds.EchoTime = te_ms
            ds.MagneticFieldStrength = 1.5
            ds.Manufacturer = "SIEMENS"  # its phase convention: -4096..4095 for -pi..pi
            ds.ImagePositionPatient = [0, 0, 0]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing = [1.5, 1.5]
            ds.SliceThickness = 5
            ds.Rows, ds.Columns = image.shape
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.PixelData = image.astype(np.int16).tobytes()
            ds.save_as(sub / f"{t:03d}.dcm", enforce_file_format=True)


def test_dicom_magnitude_and_phase_folder(tmp_path: Path) -> None:
    k = prf_phase_per_degree(te_s=0.016, b0_t=1.5)
    delta = np.zeros((4, 16, 16))
    delta[:, 5, 5] = [0.0, 10.0, 20.0, 30.0]
    frames = 2000 * np.exp(1j * (k * delta + 0.5))
    _write_dicom(tmp_path / "dcm", frames)
    result = run_cli("thermometry", tmp_path / "dcm", "--out", tmp_path / "o", "--noise-sigma", "1")
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "o" / "temperature.h5", "r") as h5:
        temp = h5["temperature_c"][()]
        assert temp.shape == (4, 16, 16)
        assert np.allclose(temp[:, 5, 5], [37.0, 47.0, 57.0, 67.0], atol=0.1)  # 13-bit phase quantisation
        assert np.allclose(h5["frame_times_s"][()], [0.0, 2.0, 4.0, 6.0])
    _write_dicom(tmp_path / "no_te", frames, te_ms=None)
    bad = run_cli("thermometry", tmp_path / "no_te", "--out", tmp_path / "o2")
    assert_input_error(bad, "EchoTime")
    assert not (tmp_path / "o2" / "temperature.h5").exists()


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("no_te", ("te_s",)),
        ("no_b0", ("b0_t",)),
        ("real_frames", ("not complex", "/phase")),
        ("different_sizes", ("different sizes",)),
        ("nan_phase", ("NaN",)),
        ("nan_complex", ("NaN",)),
        ("times", ("frame_times_s",)),
        ("bad_mask", ("mask of shape",)),
        ("multibaseline_without_library", ("multibaseline",)),
    ],
)
def test_bad_inputs_one_line_exit_2_no_output(tmp_path: Path, case: str, fragments: tuple[str, ...]) -> None:
    src = tmp_path / "series.h5"
    extra: list[str] = []
    rng = np.random.default_rng(0)
    frames = (1000 + rng.normal(0, 10, (4, 32, 32)) + 1j * rng.normal(0, 10, (4, 32, 32))).astype(np.complex64)
    if case == "no_te":
        _write(src, attrs={"te_s": None})
    elif case == "no_b0":
        _write(src, attrs={"b0_t": None})
    elif case == "real_frames":
        _write(src, frames=np.abs(frames))
    elif case == "different_sizes":
        _write(src, frames=False)
        with h5py.File(src, "a") as h5:
            group = h5.create_group("frames")
            for t in range(4):
                group[f"{t}"] = frames[t] if t != 2 else frames[t, :, :30]
    elif case == "nan_phase":
        phase = np.angle(frames)
        phase[1, 3, 3] = np.nan
        _write(src, frames=False, magnitude=np.abs(frames), phase=phase)
    elif case == "nan_complex":
        frames[2, 4, 4] = np.nan
        _write(src, frames=frames)
    elif case == "times":
        _write(src, times=np.array([0.0, 3.0, 3.0, 6.0]))
    elif case == "bad_mask":
        _write(src)
        np.save(tmp_path / "m.npy", np.ones((16, 16), bool))
        extra = ["--reference-mask", str(tmp_path / "m.npy")]
    elif case == "multibaseline_without_library":
        _write(src)
        extra = ["--method", "multibaseline"]
    out = tmp_path / "out"
    result = run_cli("thermometry", src, "--out", out, *extra)
    assert_input_error(result, str(src) if case != "bad_mask" else "m.npy", *fragments)
    assert not (out / "temperature.h5").exists()
    assert not list(out.glob("*partial*")) if out.exists() else True
