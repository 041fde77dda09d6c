"""``igikit dose``, ``igikit bed``, ``igikit plan y90``: contracts and bad input, through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tests.conftest import assert_input_error, run_cli

SP = (4.42, 4.42, 4.42)


def _write(arr: np.ndarray, path: Path, spacing: tuple[float, ...] = SP, units: str | None = None) -> Path:
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(spacing)
    if units:
        im.SetMetaData("igikit_units", units)
    sitk.WriteImage(im, str(path))
    return path


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Path]:
    tmp = tmp_path_factory.mktemp("lu")
    a = np.zeros((20, 20, 20), np.float32)
    a[5:15, 5:15, 5:15] = 1e5
    k = math.log(2) / 60.0  # effective half-life 60 h
    times = (4.0, 24.0, 96.0, 168.0)
    paths = [f"{_write(a * np.exp(-k * t), tmp / f'a{i}.nii.gz')}@{t}" for i, t in enumerate(times)]
    voi = _write((a > 0).astype(np.uint8), tmp / "voi.nii.gz")
    return tmp, paths, voi


def test_dose_four_time_points_with_voi(series: tuple[Path, list[str], Path]) -> None:
    tmp, paths, voi = series
    r = run_cli("dose", *paths, "--nuclide", "Lu-177", "--voi", voi, "--out", tmp / "d.nii.gz",
                "--json", tmp / "d.json")
    assert r.returncode == 0, r.stderr
    v = json.loads((tmp / "d.json").read_text())["vois"]["1"]
    for key in ("tia_mbq_h", "mean_gy", "d2_gy", "d50_gy", "d98_gy", "min_gy", "max_gy", "volume_ml", "fit"):
        assert key in v
    assert v["volume_ml"] == pytest.approx(1000 * 0.442**3, rel=1e-6)
    a0_mbq = 1e5 * v["volume_ml"] / 1e6
    k = math.log(2) / 60.0
    assert v["tia_mbq_h"] == pytest.approx(a0_mbq * 60 / math.log(2), rel=1e-3)
    # four time points cannot judge an uptake model: trapezoid to 24 h, fitted mono-exponential tail (tac.py)
    assert v["fit"]["model"] == "hybrid"
    assert v["fit"]["params"]["k_per_h"] == pytest.approx(k, rel=1e-6)
    assert v["d98_gy"] <= v["d50_gy"] <= v["d2_gy"] <= v["max_gy"]
    d = sitk.ReadImage(str(tmp / "d.nii.gz"))
    assert d.GetSize() == (20, 20, 20) and d.GetSpacing() == pytest.approx(SP)


def test_dose_local_permanent_implant_y90(tmp_path: Path) -> None:
    # 1e5 Bq/mL of Y-90 in soft tissue: D = 1e5 * 1e3 (Bq/kg per g/mL) / 1.04 * 49.67 / 1e9 Gy per Bq/kg
    a = np.full((6, 6, 6), 1e5, np.float32)
    src = _write(a, tmp_path / "y.nii.gz", units="Bq/mL")
    r = run_cli("dose", src, "--nuclide", "Y-90", "--method", "local", "--out", tmp_path / "d.nii.gz")
    assert r.returncode == 0, r.stderr
    d = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "d.nii.gz")))
    assert float(d[3, 3, 3]) == pytest.approx(1e5 * 1e3 / 1.04 * 49.67 / 1e9, rel=1e-5)


def test_bed_and_plan_json(tmp_path: Path) -> None:
    r = run_cli("bed", "--dose-gy", "5,5", "--alpha-beta-gy", "2.5", "--repair-h", "2.8", "--effective-h", "50",
                "--json", tmp_path / "b.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "b.json").read_text())["bed_gy"] == pytest.approx(11.0606, abs=1e-4)
    r = run_cli("plan", "y90", "--normal-liver-gy", "40", "--tumour-kg", "0.2", "--normal-liver-kg", "1.3",
                "--tn", "4", "--lsf", "0.05", "--json", tmp_path / "y.json")
    assert r.returncode == 0, r.stderr
    j = json.loads((tmp_path / "y.json").read_text())
    assert j["activity_gbq"] == pytest.approx(1.780, abs=1e-3)
    assert j["tumour_gy"] == pytest.approx(160) and j["lung_gy"] == pytest.approx(4.42, abs=0.01)
    assert j["limits_ok"] is True and j["decision"]["proposal"] is True
    assert "1.78 GBq" in j["explanation"] and "adult" in j["explanation"]


def test_bad_inputs(series: tuple[Path, list[str], Path], tmp_path: Path) -> None:
    _, paths, _voi = series
    out = tmp_path / "d.nii.gz"
    assert_input_error(run_cli("dose", paths[0], "--nuclide", "Xx-999", "--out", out), "unknown nuclide")
    no_time = paths[1].rpartition("@")[0]
    assert_input_error(run_cli("dose", paths[0], no_time, "--nuclide", "Lu-177", "--out", out), "IMAGE@HOURS")
    neg = _write(np.full((5, 5, 5), -1.0, np.float32), tmp_path / "neg.nii.gz")
    assert_input_error(run_cli("dose", neg, "--nuclide", "Y-90", "--out", out), "negative", "neg.nii.gz")
    nan = np.ones((5, 5, 5), np.float32)
    nan[2, 2, 2] = np.nan
    assert_input_error(run_cli("dose", _write(nan, tmp_path / "nan.mha"), "--nuclide", "Y-90", "--out", out), "NaN")
    hu = _write(np.zeros((5, 5, 5), np.float32), tmp_path / "ct.mha", units="HU")
    assert_input_error(run_cli("dose", hu, "--nuclide", "Y-90", "--out", out), "not activity concentration")
    small_voi = _write(np.ones((8, 8, 8), np.uint8), tmp_path / "v8.nii.gz")
    assert_input_error(run_cli("dose", paths[0], "--nuclide", "Lu-177", "--voi", small_voi, "--out", out), "VOI")
    assert not out.exists()
    assert_input_error(run_cli("bed", "--dose-gy", "5,x", "--alpha-beta-gy", "2.5", "--repair-h", "2.8",
                               "--effective-h", "50"), "--dose-gy")
    assert_input_error(run_cli("plan", "y90", "--normal-liver-gy", "40", "--tumour-kg", "0.2", "--normal-liver-kg",
                               "1.3", "--tn", "4", "--lsf", "1.5"), "lung shunt")
