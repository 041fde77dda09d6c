"""``igikit gate`` and ``igikit demo`` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from igikit.cli import main
from igikit.io.trackrad import write_case
from igikit.sim import CinePhantomSpec, make_case
from igikit.stream import read_session
from igikit.supervise import AuditLog
from tests.conftest import assert_input_error, run_cli


@pytest.fixture(scope="module")
def case_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = CinePhantomSpec(
        case_id="GCLI", background="magdeburg_liver", duration_s=8.0, frame_rate_hz=6.0, amplitude_si_mm=14.0,
        target_radius_mm=8.0, target_contrast=0.6, seed=2,
    )
    return write_case(tmp_path_factory.mktemp("cases"), make_case(spec, data_dir))


def _main(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """``igikit ARGS`` in this process (a subprocess start costs seconds on a busy machine)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_gate_reports_writes_files_and_json(case_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, js = tmp_path / "run", tmp_path / "gate.json"
    code, stdout, err = _main(capsys, "gate", case_dir, "--fast", "--out-dir", out, "--json", js, "--latency-ms", "250")
    assert code == 0, err
    for text in ("GCLI: 48 frames", "reference: truth labels", "duty cycle", "beam-off latency", "no motion management",
                 "gating", "tracking", "decisions: 48", "audit log:", "verified", "report:"):
        assert text in stdout, (text, stdout)
    assert stdout.strip().splitlines()[-1] == f"report: {out / 'report.html'}"
    assert sorted(p.name for p in out.iterdir()) == ["audit.db", "report.html", "session.h5"]
    facts = json.loads(js.read_text())
    m = facts["metrics"]
    assert m["reference"] == "truth" and 0 <= m["duty_cycle_pct"] <= 100
    assert facts["settings"]["latency_ms"] == 250 and facts["settings"]["margin_mm"] == 3.0  # profile default
    # one row per decision, after the supervised session's opening record
    assert facts["decisions"]["total"] == 48 == facts["audit_log"]["rows"] - 1 and facts["audit_log"]["verified"]
    sup = facts["supervision"]
    assert sup["headless"] and sup["level_start"] == 3 and sum(sup["modes"].values()) == 48
    assert "supervision: autonomy level 3 (conditional), headless" in stdout
    assert m["dose"]["gating"]["d98"] > m["dose"]["no motion management"]["d98"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "<script" not in page and "http" not in page.split("<body>")[1]
    for text in ("Duty cycle", "D98", "example explanation", "beam hold:", "gating boundary", "Headless run"):
        assert text in page
    assert read_session(out / "session.h5").n_frames == 48


def test_gate_without_truth_or_label_needs_a_target(
    case_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare"
    (bare / "images").mkdir(parents=True)
    frames = next((case_dir / "images").glob("*_frames.mha"))
    (bare / "images" / frames.name).write_bytes(frames.read_bytes())
    (bare / "frame-rate.json").write_text("6.0")
    out = tmp_path / "out"
    code, _, err = _main(capsys, "gate", bare, "--fast", "--out-dir", out)
    _one_line_error(code, err, str(bare), "--target")
    assert not out.exists()
    code, stdout, err = _main(capsys, "gate", bare, "--fast", "--max-frames", "24", "--out-dir", out,
                              "--target", "95,70,8", "--method", "template", "--predictor", "kalman")
    assert code == 0, err
    assert "reference: tracked positions (the case has no truth labels)" in stdout
    assert "has no true target" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["{missing}"], ["missing", "not found"]),
        (["{empty}"], ["empty", "no images/*_frames.mha"]),
        (["{case}", "--margin-mm", "-1"], ["--margin-mm", ">= 0"]),
        (["{case}", "--threshold-pct", "120"], ["--threshold-pct", "0..100"]),
        (["{case}", "--latency-ms", "0"], ["--latency-ms"]),
        (["{case}", "--target", "1,2"], ["--target", "ROW,COL,RADIUS_MM"]),
        (["{case}", "--max-frames", "1"], ["--max-frames"]),
        (["{case}", "--profile", "martian"], ["martian"]),
    ],
)
def test_gate_bad_input_is_one_line_exit_2_and_leaves_nothing(
    args: list[str], fragments: list[str], case_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "case": case_dir}
    out, js = tmp_path / "out" / "deep", tmp_path / "g.json"
    argv = [a.format(**names) for a in args]
    code, _, err = _main(capsys, "gate", *argv, "--fast", "--out-dir", out, "--json", js)
    _one_line_error(code, err, *fragments)
    assert not (tmp_path / "out").exists() and not js.exists()


def test_gate_refuses_to_overwrite_and_a_subprocess_sees_the_contract(case_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "audit.db").write_bytes(b"someone else's log")
    r = run_cli("gate", case_dir, "--fast", "--out-dir", out)
    assert_input_error(r, "audit.db", "already exists")
    assert sorted(p.name for p in out.iterdir()) == ["audit.db"]
    assert (out / "audit.db").read_bytes() == b"someone else's log"


# ------------------------------------------------------------------------------------- demo
def test_demo_without_data_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IGIKIT_DATA", str(tmp_path / "absent"))
    monkeypatch.chdir(tmp_path)
    code, _, err = _main(capsys, "demo", "--no-console", "--fast")
    _one_line_error(code, err, "absent", "IGIKIT_DATA")
    code, _, err = _main(capsys, "demo", "--fast")  # the console would start only once the data is found
    _one_line_error(code, err, "absent", "IGIKIT_DATA")
    assert not (tmp_path / "out").exists()


def test_demo_fast_short_writes_the_report(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("IGIKIT_DATA", raising=False)  # the default: ../shared/data beside the project
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(capsys, "demo", "--no-console", "--fast", "--max-frames", "30")
    assert code == 0, err
    assert "magdeburg_liver" in out and "row 90, col 78" in out and "tracked positions" in out
    (folder,) = (tmp_path / "out").glob("demo-*")
    report = folder / "report.html"
    assert out.strip().splitlines()[-1] == f"report: {report.relative_to(tmp_path)}"
    assert report.is_file() and "magdeburg_liver" in report.read_text()
    assert read_session(folder / "session.h5").n_frames == 30
    with AuditLog(folder / "audit.db", create=False) as audit:
        assert audit.verify().ok and len(audit) >= 31  # the session's start, 30 decisions, any alerts
    assert "frame 1/30" in err  # progress lines (stderr is not a terminal here)
