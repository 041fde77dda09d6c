"""``igikit demo`` with its console: serves the page, prints a login that works, replays the cine
through the supervised workflow, writes the report, keeps serving, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


class _Lines:
    """Collects a process's output lines in a thread (so the test can wait for one)."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def join(self) -> None:
        self._thread.join(timeout=10)


def test_demo_serves_the_console_prints_a_login_and_stops_on_ctrl_c(data_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "IGIKIT_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "igikit.cli", "demo", "--fast", "--max-frames", "40", "--port", "0"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    out = _Lines(proc.stdout)
    try:
        url = out.wait_for(r"igikit console: (http://127\.0\.0\.1:\d+)", 60).group(1)
        login = out.wait_for(r"log in as: (\S+) / (\S+)\s+\((physicist|operator)", 10)
        name, password = login.group(1), login.group(2)
        report = out.wait_for(r"^report: (\S+)", 90).group(1)
        out.wait_for("the console keeps serving", 10)
        with urllib.request.urlopen(f"{url}/", timeout=10) as page:
            assert page.status == 200 and "igikit console" in page.read().decode()
        with urllib.request.urlopen(f"{url}/api/health", timeout=10) as health:
            assert json.loads(health.read())["frames"] >= 1  # the workflow published its frames
        request = urllib.request.Request(
            f"{url}/api/login", data=json.dumps({"name": name, "password": password}).encode(),
            headers={"Content-Type": "application/json", "Origin": url}, method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200 and json.loads(answer.read())["name"] == name
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out.join()
    text = "\n".join(out.lines)
    assert "console stopped" in text and "Traceback" not in text
    assert "supervision: autonomy level 3 (conditional), in the console" in text
    (folder,) = (tmp_path / "out").glob("demo-*")
    assert (tmp_path / report) == folder / "report.html"
    assert sorted(p.name for p in folder.iterdir()) == [
        "audit.db", "console.secret", "report.html", "session.h5", "users.db"
    ]
