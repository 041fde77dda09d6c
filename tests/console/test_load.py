"""20 concurrent WebSocket viewers of a live 8 Hz loop on loopback (bench/console_load.py):
frame-to-screen latency p99 < 100 ms, every viewer sees (nearly) every frame, no deadline miss."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "console_load.py"


def _run(out: Path) -> tuple[dict, str]:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--viewers", "20", "--rate-hz", "8", "--seconds", "10", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.exists(), run.stdout + run.stderr
    return json.loads(out.read_text()), run.stdout + run.stderr


def _ok(numbers: dict) -> bool:
    return (
        numbers["viewers_connected_at_start"] == 20
        and numbers["latency_samples"] >= 20 * 70
        and numbers["latency_ms_p99"] < 100.0
        and numbers["loop_deadline_misses"] == 0
        # latest-wins may skip a frame for a viewer on a busy machine, but not many
        and numbers["frames_per_viewer_min"] >= 0.9 * numbers["frames_per_viewer_expected"]
    )


def test_twenty_viewers_at_8_hz_keep_latency_low_and_the_loop_on_time(tmp_path: Path) -> None:
    # One retry: on a shared 2-core machine another process can stall this one (the loop's audit
    # log fsyncs every decision), which misses a deadline even with no viewer at all.
    attempts = []
    for k in range(2):
        numbers, output = _run(tmp_path / f"load{k}.json")
        attempts.append(numbers)
        if _ok(numbers):
            return
    raise AssertionError(f"both attempts failed: {attempts}\n{output}")
