"""TrackRAD2025 case folders: the challenge's own example and a real cine, round trips, bad cases.

Everything is compared with what SimpleITK itself reads from the same files: the layout is the
challenge's (NumPy (H, W, T) via ``GetArrayFromImage``, time last), not igikit's.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from igikit.errors import GeometryError, InputError
from igikit.io.trackrad import CineCase, read_case, read_frames, read_label, read_labels, write_case
from tests.conftest import assert_input_error, run_cli

Z001 = "trackrad_format_example"
LIVER = "cine/magdeburg_liver"
JSON_FILES = ("frame-rate.json", "b-field-strength.json", "scanned-region.json")


def _sitk(path: Path) -> tuple[np.ndarray, tuple, tuple, tuple]:
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(), img.GetDirection()


def _mha_files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*.mha"))


@pytest.fixture
def z001(data_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the challenge's example case Z_001, to damage."""
    return Path(shutil.copytree(data_dir / Z001, tmp_path / "Z_001"))


# ----------------------------------------------------------------------------------------- reading
def test_reads_the_challenge_example_as_simpleitk_does(data_dir: Path) -> None:
    folder = data_dir / Z001
    case = read_case(folder)
    frames, spacing, origin, direction = _sitk(folder / "images/Z_001_frames.mha")
    assert case.case_id == "Z_001"
    assert case.frames.shape == (125, 125, 10) and case.n_frames == 10  # (H, W, T), time last
    assert case.frames.dtype == frames.dtype == np.float32
    np.testing.assert_array_equal(case.frames, frames)
    np.testing.assert_array_equal(case.labels, _sitk(folder / "targets/Z_001_labels.mha")[0])
    np.testing.assert_array_equal(case.first_label, _sitk(folder / "targets/Z_001_first_label.mha")[0][:, :, 0])
    assert case.labels is not None and case.labels.dtype == np.uint8 and set(np.unique(case.labels)) == {0, 1}
    np.testing.assert_array_equal(case.first_label, case.labels[:, :, 0])
    assert case.frame_rate_hz == 8.0 and case.frame_interval_s == 0.125
    assert case.b_field_t == 0.35 and case.scanned_region == "abdomen"
    assert case.pixel_spacing_mm == (1.0, 1.0)  # ITK (T, W, H) spacing (5, 1, 1): pixels on axes 1, 2
    np.testing.assert_allclose(case.frame_times_s(), np.arange(10) / 8.0)
    assert case.geometry is not None
    assert (case.geometry.spacing, case.geometry.origin, case.geometry.direction) == (spacing, origin, direction)
    series = case.to_image()
    assert series.array.shape == (10, 125, 125) and series.n_frames == 10
    np.testing.assert_array_equal(series.frame(3).array, frames[:, :, 3])
    np.testing.assert_allclose(series.frame_times_s, np.arange(10) * 0.125)


def test_reads_the_real_liver_cine(data_dir: Path) -> None:
    folder = data_dir / LIVER
    case = read_case(folder)
    frames, spacing, _, _ = _sitk(folder / "images/magdeburg_liver_frames.mha")
    assert case.frames.shape == (176, 140, 498) and case.frames.dtype == np.uint16
    np.testing.assert_array_equal(case.frames, frames)
    assert case.pixel_spacing_mm == pytest.approx((1.818, 1.818)) and spacing[1:] == pytest.approx((1.818, 1.818))
    assert case.frame_rate_hz == pytest.approx(5.970149253731344)  # 167.5 ms per frame
    assert case.frame_interval_s == pytest.approx(0.1675)
    assert case.b_field_t == 3.0 and case.scanned_region == "liver"
    assert case.first_label is None and case.labels is None  # no tumour labels for this case
    assert case.meta["frames"] == 498
    # read_frames alone gives the same frames and spacing
    alone, dxdy = read_frames(folder / "images/magdeburg_liver_frames.mha")
    assert dxdy == case.pixel_spacing_mm and np.array_equal(alone, frames)


# ------------------------------------------------------------------------------------- round trips
def test_challenge_example_round_trip_is_byte_exact(data_dir: Path, tmp_path: Path) -> None:
    source = data_dir / Z001
    out = write_case(tmp_path / "out", read_case(source))
    assert out == tmp_path / "out" / "Z_001"
    assert _mha_files(out) == _mha_files(source)
    for rel in _mha_files(source):
        theirs, written = _sitk(source / rel), _sitk(out / rel)
        assert written[0].dtype == theirs[0].dtype and written[0].shape == theirs[0].shape, rel
        assert written[0].tobytes() == theirs[0].tobytes(), rel
        assert written[1:] == theirs[1:], rel  # spacing, origin and direction as the challenge wrote them
    for name in JSON_FILES:
        assert (out / name).read_bytes() == (source / name).read_bytes(), name
    meta = json.loads((out / "meta.json").read_text())
    assert meta["shape_numpy_HWT"] == [125, 125, 10] and meta["frame_rate_hz"] == 8.0
    back = read_case(out)
    assert back.geometry == read_case(source).geometry
    assert back.pixel_spacing_mm == (1.0, 1.0) and back.frame_rate_hz == 8.0


def test_real_cine_round_trip(data_dir: Path, tmp_path: Path) -> None:
    source = data_dir / LIVER
    case = read_case(source)
    out = write_case(tmp_path, case)
    rel = Path("images/magdeburg_liver_frames.mha")
    theirs, written = _sitk(source / rel), _sitk(out / rel)
    assert written[0].tobytes() == theirs[0].tobytes() and written[0].dtype == np.uint16
    assert written[1:] == theirs[1:]
    # Same JSON values; this source has no newline after them, the challenge's files do.
    for name in (*JSON_FILES, "meta.json"):
        assert json.loads((out / name).read_text()) == json.loads((source / name).read_text()), name
        assert (out / name).read_text().endswith("\n")
    back = read_case(out)
    assert back.frame_rate_hz == case.frame_rate_hz and back.pixel_spacing_mm == case.pixel_spacing_mm


def test_a_case_made_in_memory_gets_the_igikit_header(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 900, (20, 30, 4)).astype(np.uint16)
    out = write_case(tmp_path, CineCase("made", frames, (1.5, 2.0), frame_rate_hz=4.0))
    _, spacing, origin, _ = _sitk(out / "images/made_frames.mha")
    assert spacing == (1.0, 1.5, 2.0) and origin == (0.0, 0.0, 0.0)
    back = read_case(out)
    assert back.pixel_spacing_mm == (1.5, 2.0) and back.first_label is None
    np.testing.assert_array_equal(back.frames, frames)
    assert not (out / "b-field-strength.json").exists()


def test_changed_pixel_spacing_wins_over_the_header_read(data_dir: Path, tmp_path: Path) -> None:
    case = dataclasses.replace(read_case(data_dir / Z001), pixel_spacing_mm=(0.8, 0.9))
    out = write_case(tmp_path, case)
    _, spacing, origin, _ = _sitk(out / "images/Z_001_frames.mha")
    assert spacing == (1.0, 0.8, 0.9)
    assert origin == read_case(data_dir / Z001).geometry.origin  # type: ignore[union-attr]
    assert read_case(out).pixel_spacing_mm == (0.8, 0.9)


# ----------------------------------------------------------------------------------------- errors
def _error(folder: Path, cls: type[InputError] = InputError) -> InputError:
    with pytest.raises(cls) as info:
        read_case(folder)
    return info.value


def _write(path: Path, array: np.ndarray, spacing: tuple[float, ...] | None = None) -> None:
    img = sitk.GetImageFromArray(array)
    if spacing is not None:
        img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def test_missing_frames_file_names_the_folder(z001: Path, tmp_path: Path) -> None:
    (z001 / "images/Z_001_frames.mha").unlink()
    err = _error(z001)
    assert err.path == z001 and "no images/*_frames.mha" in err.problem
    assert _error(tmp_path / "nowhere").path == tmp_path / "nowhere"
    with pytest.raises(InputError, match="file not found") as info:
        read_frames(z001 / "images/Z_001_frames.mha")
    assert info.value.path == z001 / "images/Z_001_frames.mha"


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("frame-rate.json", "8.0,,\n", "not valid JSON"),
        ("frame-rate.json", '"fast"\n', "frame rate (Hz) must be a positive number"),
        ("frame-rate.json", "-8\n", "must be a positive number, got -8"),
        ("b-field-strength.json", "[0.35]\n", "field strength (T) must be a positive number"),
        ("scanned-region.json", "5\n", "must hold a JSON string"),
        ("meta.json", "[1, 2]\n", "must hold a JSON object"),
        ("meta.json", '{"pixel_spacing_mm": [1, 2, 3]}\n', "pixel_spacing_mm must be one or two numbers"),
        ("meta.json", '{"pixel_spacing_mm": "wide"}\n', "pixel_spacing_mm must be a positive number"),
    ],
)
def test_bad_json_names_the_file(z001: Path, name: str, text: str, fragment: str) -> None:
    (z001 / name).write_text(text)
    err = _error(z001)
    assert err.path == z001 / name and fragment in err.problem, str(err)


def test_labels_that_do_not_match_the_frames_name_the_file(z001: Path) -> None:
    labels = z001 / "targets/Z_001_labels.mha"
    _write(labels, np.zeros((125, 125, 9), np.uint8))  # one frame short
    err = _error(z001, GeometryError)
    assert err.path == labels and "(125, 125, 9)" in err.problem and "(125, 125, 10)" in err.problem
    first = z001 / "targets/Z_001_first_label.mha"
    _write(first, np.ones((100, 100, 1), np.uint8))
    labels.unlink()
    err = _error(z001, GeometryError)
    assert err.path == first and "(100, 100)" in err.problem
    with pytest.raises(GeometryError) as info:
        read_labels(z001 / "images/Z_001_frames.mha", (125, 125, 11))
    assert info.value.path == z001 / "images/Z_001_frames.mha"


def test_a_2d_file_where_h_w_t_is_needed_names_the_file(z001: Path) -> None:
    frames = z001 / "images/Z_001_frames.mha"
    labels = z001 / "targets/Z_001_labels.mha"
    _write(labels, np.ones((125, 125), np.uint8))
    with pytest.raises(InputError, match=r"2D image \(125, 125\); labels must be 3D") as info:
        read_labels(labels)
    assert info.value.path == labels
    _write(frames, np.zeros((125, 125), np.float32))
    err = _error(z001)
    assert err.path == frames and "is a 2D image; cine frames must be 3D (H, W, T)" in err.problem
    three = z001 / "targets/three_frames.mha"  # a first label must be one frame
    _write(three, np.ones((125, 125, 3), np.uint8))
    with pytest.raises(InputError, match=r"label must be \(H, W\) or \(H, W, 1\)") as info:
        read_label(three, (125, 125))
    assert info.value.path == three


def test_truncated_frames_file_names_the_file(z001: Path) -> None:
    frames = z001 / "images/Z_001_frames.mha"
    data = frames.read_bytes()
    frames.write_bytes(data[: len(data) // 2])
    err = _error(z001)
    assert err.path == frames and "truncated" in err.problem


def test_bad_cases_through_the_command_line(z001: Path, tmp_path: Path) -> None:
    """``igikit info`` and ``igikit replay`` on broken cases: one line naming the file, exit 2."""
    (z001 / "frame-rate.json").write_text("8.0,,\n")
    results: dict[str, subprocess.CompletedProcess] = {"json": run_cli("info", z001)}
    (z001 / "frame-rate.json").write_text("8.0\n")
    frames = z001 / "images/Z_001_frames.mha"
    data = frames.read_bytes()
    frames.write_bytes(data[: len(data) // 2])
    session = tmp_path / "s.h5"
    results["truncated"] = run_cli("replay", z001, "--fast", "--record", session)
    assert_input_error(results["json"], str(z001 / "frame-rate.json"), "not valid JSON")
    assert_input_error(results["truncated"], str(frames), "truncated")
    assert not session.exists()
