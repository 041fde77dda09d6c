"""``igikit info`` through the command line, as a user runs it: real files and every bad input.

Each case is a separate ``igikit`` process. They are started together by one module fixture
(the interpreter start-up dominates), then each test checks its own results.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

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
    cases = {
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
