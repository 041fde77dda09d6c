"""MR-guided focused ultrasound in the console, in a real browser (Debian's headless Chromium driven by
Playwright): ``igikit fus run PLAN --console`` is started as a user would, and a physicist watches the
temperature map with its colour scale, the temperature and power curves, the sonication state, and the
decisions in the log; a second run, whose organ at risk overheats, shows the safety stop as an alert
and in the log with its explanation. Screenshots go to test-output/console/fus_*.png."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from igikit.console.server import free_port

from .test_browser import SHOTS, browser, open_as, poll  # noqa: F401 (browser: the module's fixture)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fus" / "ablation.yaml"
#: 2 s frames every 80 ms: the 300 s ablation plays in about 12 s.
SPEED = 25.0


class RunningFus:
    """``igikit fus run ... --console`` in a subprocess, until :meth:`stop`."""

    def __init__(self, plan: Path, out: Path, users: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = out
        self.log = out.parent / f"{out.name}.log"
        command = [sys.executable, "-m", "igikit.cli", "fus", "run", str(plan), "--console", "--port", str(self.port),
                   "--users", str(users), "--speed", str(SPEED), "--out", str(out), *extra]
        self.process = subprocess.Popen(command, stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/health", timeout=1) as response:
                    if json.load(response)["ok"]:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the FUS console did not start: {self.log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> str:
        """Ctrl-C, as a user ends it; returns everything the command printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log.read_text()


def plan_file(folder: Path, **changes: object) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(changes)
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def ablation(tmp_path: Path, users_path: Path) -> Iterator[RunningFus]:
    run = RunningFus(plan_file(tmp_path), tmp_path / "run", users_path)
    try:
        yield run
    finally:
        run.stop()


def test_physicist_watches_an_ablation(browser, ablation: RunningFus) -> None:  # noqa: F811
    context, page = open_as(browser, ablation.url, "paul")
    try:
        assert "MR-guided FUS: ablation demo" in page.inner_text("#title")
        # the colour scale of the temperature map
        poll(page, "window.igikitStats.heatLegend !== undefined && window.igikitStats.heatLegend !== null")
        legend = page.evaluate("window.igikitStats.heatLegend")
        assert (legend["low"], legend["high"], legend["transparent_below"]) == (37.0, 90.0, 40.0)
        text = page.inner_text("#heat-legend")
        assert "temperature (°C)" in text and "clear below 40 °C" in text and "37" in text and "90" in text
        overlays = page.inner_text("#legend")
        assert "target (planned)" in overlays and "nerve (limit 43 °C)" in overlays
        assert page.text_content("#trace-title") == "Temperature and power"
        # the curves follow the heating: the focus rises while the power is on
        first = page.evaluate("window.igikitStats.lastTrace")
        assert set(first) == {"focus (°C)", "nerve max (°C)", "power (W)"}
        poll(page, "window.igikitStats.lastTrace['power (W)'] > 0", timeout_s=20)
        assert page.inner_text("#beam").startswith("SONICATION ON")
        poll(page, "window.igikitStats.lastTrace['focus (°C)'] > 54", timeout_s=30)
        later = page.evaluate("window.igikitStats.lastTrace")
        assert later["focus (°C)"] > first["focus (°C)"] + 10
        assert 37.0 < later["nerve max (°C)"] < 43.0
        page.wait_for_timeout(1500)  # the lesion grows at the set point
        page.screenshot(path=str(SHOTS / "fus_live.png"))
        # the goal reached: the lesion contour, the decision in the log, the power off
        entry = page.wait_for_selector("#log li[data-kind=decision] >> text=sonication complete", timeout=30_000)
        assert "of the target reached CEM43 >= 240 min" in entry.inner_text()
        assert "lesion (CEM43 ≥ 240 min)" in page.inner_text("#legend")
        poll(page, "document.getElementById('beam').textContent === 'SONICATION OFF'")
        page.screenshot(path=str(SHOTS / "fus_complete.png"))
    finally:
        context.close()
    printed = ablation.stop()
    assert "lesion DSC vs target" in printed and "console stopped" in printed
    assert (ablation.out / "report.html").exists() and (ablation.out / "metrics.json").exists()


def test_safety_stop_shows_as_an_alert_and_in_the_log(browser, tmp_path: Path, users_path: Path) -> None:  # noqa: F811
    # the nerve right beside the focus, with a low limit: the safety supervisor must stop the sonication
    # (--near-limit-c 0: no level-3 handover before the limit itself)
    data = yaml.safe_load(EXAMPLE.read_text())
    organs = [{"name": "nerve", "center_mm": [20.5, 16.0], "radii_mm": [1.0, 3.0], "limit_c": 41.0}]
    run = RunningFus(plan_file(tmp_path, organs_at_risk=organs, name=data["name"]), tmp_path / "run", users_path,
                     "--near-limit-c", "0")
    try:
        context, page = open_as(browser, run.url, "paul")
        try:
            card = page.wait_for_selector("#alerts li[data-alert-id]", timeout=40_000)
            assert "sonication stop: organ at risk 'nerve' reached" in card.inner_text()
            entry = page.wait_for_selector("#log li[data-kind=decision] >> text=sonication stop", timeout=10_000)
            assert "(limit 41.0 °C)" in entry.inner_text() and "[applied]" in entry.inner_text()
            poll(page, "document.getElementById('beam').textContent === 'SONICATION STOPPED'")
            assert "organ at risk 'nerve' reached" in page.inner_text("#explanation")
            page.screenshot(path=str(SHOTS / "fus_safety_stop.png"))
        finally:
            context.close()
    finally:
        printed = run.stop()
    assert "outcome: sonication stop: organ at risk 'nerve'" in printed
