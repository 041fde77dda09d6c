"""``igikit console --case`` in a real browser: the real gating workflow runs live under the
console's supervision — frames update, the beam state is the real gate's (no stand-in), an
untrackable frame opens a handover alert that holds the beam until the operator acknowledges it.
Screenshots go to test-output/console/."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from igikit.io.trackrad import write_case
from igikit.sim import CinePhantomSpec, make_case
from igikit.supervise import AuditLog, HumanAction

from .conftest import ServedProcess, served_process
from .test_browser import SHOTS, browser, open_as, poll  # noqa: F401  (browser is a fixture)

DROPOUT_FRAME = 14  # a blank frame: tracking confidence falls, level 3 hands over to the human


@pytest.fixture(scope="module")
def live_case(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = CinePhantomSpec(
        case_id="LIVE", background="magdeburg_liver", duration_s=14.0, frame_rate_hz=6.0, amplitude_si_mm=8.0,
        target_radius_mm=8.0, target_contrast=0.6, snr=25.0, seed=3,
    )
    case = make_case(spec, data_dir)
    frames = case.frames.copy()
    frames[:, :, DROPOUT_FRAME] = 0
    return write_case(tmp_path_factory.mktemp("live"), dataclasses.replace(case, frames=frames))


@pytest.fixture(scope="module")
def served(live_case: Path, users_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    from igikit.console.server import free_port

    out_dir = tmp_path_factory.mktemp("served") / "run"
    argv = [
        sys.executable, "-m", "igikit.cli", "console", "--case", str(live_case), "--users", str(users_path),
        "--port", str(free_port()), "--out-dir", str(out_dir), "--margin-mm", "4",
    ]
    with served_process(argv, out_dir) as served:
        yield served


def test_live_case_runs_the_real_gate_and_an_alert_waits_for_the_operator(browser, served: ServedProcess) -> None:  # noqa: F811
    context, page = open_as(browser, served.url, "olivia")
    try:
        assert "live gating: LIVE" in page.inner_text("#title")
        first = page.evaluate("window.igikitStats.frames")
        page.wait_for_timeout(1200)
        assert page.evaluate("window.igikitStats.frames") >= first + 4  # 6 Hz
        assert page.inner_text("#beam") in ("BEAM ON", "BEAM HOLD")
        explanation = page.inner_text("#explanation")
        assert explanation.startswith("beam ") and "STAND-IN" not in explanation
        assert "gating boundary" in explanation or "prediction" in explanation
        legend = page.inner_text("#legend")
        assert "gating boundary" in legend and "target (tracked)" in legend
        page.screenshot(path=str(SHOTS / "live_case_frames.png"))

        card = page.wait_for_selector("#alerts li[data-alert-id]", timeout=20_000)
        alert_id = card.get_attribute("data-alert-id")
        assert "handover" in card.inner_text()
        poll(page, "document.getElementById('beam').textContent === 'BEAM HOLD'")
        page.wait_for_timeout(1500)  # the gate wants the beam on again; the open alert keeps it held
        assert page.inner_text("#beam") == "BEAM HOLD"
        assert "SAFE STATE" in page.inner_text("#safe")
        page.screenshot(path=str(SHOTS / "live_case_handover_alert.png"))

        page.fill("#reason", "one corrupted frame; target tracked again")
        page.click(f"#alerts li[data-alert-id='{alert_id}'] button.ack")
        entry = page.wait_for_selector("#log li[data-kind=acknowledged]", timeout=10_000)
        assert f"alert {alert_id} acknowledged by olivia (operator)" in entry.inner_text()
        poll(page, "document.getElementById('beam').textContent === 'BEAM ON'", timeout_s=20)
        page.screenshot(path=str(SHOTS / "live_case_acknowledged.png"))
    finally:
        context.close()
    with AuditLog(served.out_dir / "audit.db", create=False) as audit:
        assert audit.verify().ok
        records = [e.record for e in audit.records()]
    acks = [r for r in records if isinstance(r, HumanAction) and r.action == "acknowledge"]
    assert [a.operator for a in acks] == ["olivia"]
    beams = [r for r in records if getattr(r, "component", "") == "igikit.mrgrt.gate"]
    assert beams and len({r.input_frame_ids for r in beams}) == len(beams)  # one record per frame
