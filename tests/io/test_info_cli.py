"""``igikit info`` through the command line, as a user runs it: real files and every bad input.

Each case is a separate ``igikit`` process. They are started together by one module fixture
(the interpreter start-up dominates), then each test checks its own results.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

from igikit.core.image import Image
from igikit.io import write_dicom_series, write_image
from tests.conftest import DATA, assert_input_error, run_cli

MAGDEBURG = DATA / "cine/magdeburg_liver/images/magdeburg_liver_frames.mha"
UNITY = DATA / "cine/unity"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess]:
    """Run every ``igikit info`` case of this module at once; results by case name."""
    if not DATA.is_dir():
        pytest.fail(f"real data not found at {DATA} (set IGIKIT_DATA)")
    tmp = tmp_path_factory.mktemp("info")
    # A CT series written as DICOM, with a NIfTI mask on its grid.
    ct = Image(np.full((4, 10, 12), 40, np.int16), spacing_mm=(1.0, 2.0, 2.5), origin_mm=(5.0, 6.0, 7.0))
    write_dicom_series(ct, tmp / "ct")
    mask = np.zeros(ct.array.shape, np.uint8)
    mask[1:3, 2:6, 3:7] = 1  # 2 x 4 x 4 voxels of 5 mm^3
    write_image(ct.with_array(mask), tmp / "mask.nii.gz")
    # Bad inputs: a real file cut in half, text posing as an image, masks off the image grid.
    data = (UNITY / "coronal_image.mha").read_bytes()
    (tmp / "half.mha").write_bytes(data[: len(data) // 2])
    (tmp / "notes.nii.gz").write_text("not an image")
    base = Image(np.pad(np.ones((4, 4), np.uint8), 166), spacing_mm=(1.298, 1.298), origin_mm=(-160.215, 51.2))
    write_image(base.with_array(np.ones((100, 100), np.uint8)), tmp / "small.mha")
    write_image(base.with_array(base.array, spacing_mm=(1.0, 1.0)), tmp / "spacing.mha")
    write_image(base.with_array(base.array, origin_mm=(0.0, 0.0)), tmp / "origin.mha")
    coronal = UNITY / "coronal_image.mha"
    # One of every image format, each with something only that file says.
    frames = np.arange(3 * 6 * 7, dtype=np.float32).reshape(3, 6, 7) - 20.5
    cine = Image(frames, (1.25, 1.5), (3.0, 4.0), frame_times_s=[0.0, 0.125, 0.3], modality="MR", units="degC")
    write_image(cine, tmp / "series.nii.gz")
    turned = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    write_image(ct.with_array(ct.array - 1040, direction=turned, modality="CT", units="HU"), tmp / "ct.nrrd")
    # A session as a user records one, then the same file as a killed recorder leaves it.
    session = tmp / "session.h5"
    record = run_cli("replay", DATA / "cine/magdeburg_liver", "--fast", "--max-frames", "20", "--record", session)
    assert record.returncode == 0, record.stderr
    shutil.copy(session, tmp / "killed.h5")
    with h5py.File(tmp / "killed.h5", "r+") as f:
        for key in ("closed_cleanly", "n_frames", "end_unix_s"):
            del f.attrs[key]
    with h5py.File(tmp / "other.h5", "w") as f:
        f["temperature_c"] = np.zeros((2, 3, 3), np.float32)
    (tmp / "junk.h5").write_bytes(b"not HDF5 at all\n" * 8)
    cases = {
        "nifti": ("info", tmp / "series.nii.gz"),
        "nrrd": ("info", tmp / "ct.nrrd"),
        "mha": ("info", coronal),
        "trackrad-folder": ("info", DATA / "trackrad_format_example"),
        "session": ("info", session),
        "killed-session": ("info", tmp / "killed.h5"),
        "other-h5": ("info", tmp / "other.h5"),
        "junk-h5": ("info", tmp / "junk.h5"),
        "session-mask": ("info", session, "--mask", tmp / "small.mha"),
        "cine": ("info", MAGDEBURG),
        "dicom-file": ("info", UNITY / "transversal_frame.dcm"),
        "dicom-folder": ("info", tmp / "ct", "--mask", tmp / "mask.nii.gz"),
        "missing": ("info", tmp / "nope.mha"),
        "truncated": ("info", tmp / "half.mha"),
        "not-image": ("info", tmp / "notes.nii.gz"),
        "mask-size": ("info", coronal, "--mask", tmp / "small.mha"),
        "mask-spacing": ("info", coronal, "--mask", tmp / "spacing.mha"),
        "mask-origin": ("info", coronal, "--mask", tmp / "origin.mha"),
        "cine-mask": ("info", DATA / "trackrad_format_example", "--mask", tmp / "small.mha"),
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_cli, *args, timeout=300) for name, args in cases.items()}
        return {name: f.result() for name, f in futures.items()}


def test_info_on_a_real_cine_file(runs: dict[str, subprocess.CompletedProcess]) -> None:
    result = runs["cine"]
    assert result.returncode == 0, result.stderr
    assert "498 frames of 176 x 140 (H x W)" in result.stdout and "1.818" in result.stdout
    assert "5.97 Hz" in result.stdout and "value range" in result.stdout


def test_info_on_a_dicom_file(runs: dict[str, subprocess.CompletedProcess]) -> None:
    result = runs["dicom-file"]
    assert result.returncode == 0, result.stderr
    assert "modality: MR" in result.stdout and "(336, 336, 1)" in result.stdout
    assert "1.298" in result.stdout and "value range: 0 .. 2706" in result.stdout


def test_info_on_a_dicom_folder_with_a_3d_mask(runs: dict[str, subprocess.CompletedProcess]) -> None:
    result = runs["dicom-folder"]
    assert result.returncode == 0, result.stderr
    assert "modality: CT" in result.stdout and "value range: 40 .. 40 HU" in result.stdout
    assert "32 voxels, volume 0.16 mL" in result.stdout
    assert "mask centroid (mm): (9.5000, 13.0000, 10.7500)" in result.stdout


def test_missing_truncated_and_non_image_files(runs: dict[str, subprocess.CompletedProcess]) -> None:
    assert_input_error(runs["missing"], "nope.mha", "not found")
    assert_input_error(runs["truncated"], "half.mha", "truncated")
    assert_input_error(runs["not-image"], "notes.nii.gz", "not an image")


def test_masks_off_the_image_grid(runs: dict[str, subprocess.CompletedProcess]) -> None:
    assert_input_error(runs["mask-size"], "small.mha", "size")
    assert_input_error(runs["mask-spacing"], "spacing.mha", "spacing")
    assert_input_error(runs["mask-origin"], "origin.mha", "origin")
    assert_input_error(runs["cine-mask"], "small.mha", "label is (100, 100)")


def test_info_on_every_image_format(runs: dict[str, subprocess.CompletedProcess]) -> None:
    for name in ("nifti", "nrrd", "mha", "trackrad-folder"):
        assert runs[name].returncode == 0, (name, runs[name].stderr)
        assert "value range" in runs[name].stdout and "modality" in runs[name].stdout, name
    nifti = runs["nifti"].stdout
    assert "2D series of 3 frames" in nifti and "spacing (mm): (1.25, 1.5)" in nifti
    assert "frame times (s): 0 .. 0.3" in nifti and "modality: MR" in nifti
    assert "value range: -20.5 .. 104.5 degC" in nifti
    nrrd = runs["nrrd"].stdout
    assert "size (x, y, z): (12, 10, 4)" in nrrd and "origin (mm): (5, 6, 7)" in nrrd
    assert "direction: (0, -1, 0, 1, 0, 0, 0, 0, 1)" in nrrd and "modality: CT" in nrrd
    assert "value range: -1000 .. -1000 HU" in nrrd
    mha = runs["mha"].stdout
    assert "size (x, y): (336, 336)" in mha and "spacing (mm): (1.298, 1.298)" in mha
    assert "value range: 0 .. 2478" in mha
    case = runs["trackrad-folder"].stdout
    assert "10 frames of 125 x 125 (H x W)" in case and "frame rate: 8 Hz" in case
    assert "field strength: 0.35 T" in case and "labels: every frame (10)" in case and "value range: 0 .. 1" in case
    assert "frames file header (ITK axes T, W, H): spacing (5, 1, 1), origin (0.1053, 0.4946, 38.5)" in case


def test_info_on_a_recorded_session(runs: dict[str, subprocess.CompletedProcess]) -> None:
    result = runs["session"]
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "recorded session (igikit-session format 1)" in out and "closed cleanly: yes" in out
    assert "case_id: magdeburg_liver" in out and "source: replay:ReplaySource" in out
    assert "pixel_spacing_mm: [1.818, 1.818]" in out
    assert "frames: 20 of 176 x 140 (H x W), uint16" in out and "frame ids: 0 .. 19, none missing" in out
    # 20 frames of the real cine, 167.5 ms apart: 19 intervals
    assert "acquisition times (s): 0.0000 .. 3.1825, span 3.1825 s, 5.97 Hz (median interval 167.5 ms)" in out
    assert "shift_mm: 2 values (float64), on 20 of 20 frames" in out
    assert "response: a number (float64), on 20 of 20 frames" in out
    assert "value range: 0 .. " in out
    killed = runs["killed-session"]
    assert killed.returncode == 0, killed.stderr
    assert "closed cleanly: no (the recording process was killed or is still running); 20 complete frames" in (
        killed.stdout
    )


def test_h5_files_that_are_not_sessions(runs: dict[str, subprocess.CompletedProcess]) -> None:
    assert_input_error(runs["other-h5"], "other.h5", "is an HDF5 file but not an igikit session")
    assert_input_error(runs["junk-h5"], "junk.h5", "cannot be opened as an HDF5 session file")
    assert_input_error(runs["session-mask"], "session.h5", "--mask applies to images")
