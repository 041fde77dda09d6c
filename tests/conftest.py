"""Shared test fixtures: where the real data lives, and a helper to run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("IGIKIT_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder (../shared/data); tests that need it fail loudly when it is missing."""
    if not DATA.is_dir():
        pytest.fail(f"real data not found at {DATA} (set IGIKIT_DATA)")
    return DATA


def run_cli(*args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run ``igikit ARGS`` as a user would (a separate process) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "igikit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def assert_input_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """The bad-input contract: exit 2, exactly one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
