"""``igikit dose ... --report``: a self-contained HTML report with dose slices, DVHs and TAC fits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tests.conftest import run_cli


def _write(arr: np.ndarray, path: Path) -> str:
    im = sitk.GetImageFromArray(arr.astype(np.float32))
    im.SetSpacing((4.42,) * 3)
    sitk.WriteImage(im, str(path))
    return str(path)


def test_report_is_self_contained_with_all_sections(tmp_path: Path) -> None:
    z, y, x = np.mgrid[:20, :20, :20]
    blob = np.exp(-(((x - 9) / 3.0) ** 2 + ((y - 10) / 4.0) ** 2 + ((z - 11) / 5.0) ** 2))
    voi = _write((blob > 0.3).astype(np.uint8) + (blob > 0.8), tmp_path / "voi.nii.gz")
    ke, ku = math.log(2) / 50.0, math.log(2) / 2.0
    paths = [f"{_write(1e5 * blob * (np.exp(-ke * t) - np.exp(-ku * t)), tmp_path / f'a{t:g}.nii.gz')}@{t:g}"
             for t in (1.0, 4.0, 24.0, 96.0, 168.0)]
    rep = tmp_path / "report.html"
    r = run_cli("dose", *paths, "--nuclide", "Lu-177", "--voi", voi, "--out", tmp_path / "d.nii.gz",
                "--report", rep, "--no-register")
    assert r.returncode == 0, r.stderr
    text = rep.read_text()
    for heading in ("Volumes of interest", "Dose over the activity image", "dose-volume histograms",
                    "Time-activity curves with fits and uncertainty"):
        assert heading in text
    assert text.count("data:image/png;base64,") == 3
    assert "http://" not in text and "https://" not in text and "<script" not in text  # self-contained
    assert "bi</td>" in text  # the uptake-and-clearance fit was chosen and reported
