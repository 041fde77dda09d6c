"""A small recorded session shaped like a gating workflow's, users of each role, a running console, and
a console served by a command in its own process."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from igikit.stream import Message, Recorder, SyntheticSource

ROOT_OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
N_FRAMES = 48
RATE_HZ = 8.0
LOW_CONFIDENCE_FRAMES = range(12, 16)
PASSWORDS = {"olivia": "operator-pass-1", "paul": "physicist-pass-1", "oscar": "observer-pass-1"}
ROLES = {"olivia": "operator", "paul": "physicist", "oscar": "observer"}


def make_recording(path: Path, n: int = N_FRAMES) -> Path:
    """A session file with the results a gating workflow records: beam, confidence, masks, centroids.

    The target (a disc) follows the synthetic breathing motion; frames 12-15 have a confidence of
    0.3, as when the tracker loses the target, which must raise an alert.
    """
    source = SyntheticSource((96, 96), n_frames=n, rate_hz=RATE_HZ, amplitude_mm=12.0, period_s=4.0, noise=0.02)
    yy, xx = np.mgrid[0:96, 0:96]
    boundary = ((yy - 40) ** 2 + (xx - 48) ** 2) <= 13**2
    recorder = Recorder(path, metadata={**source.metadata(), "boundary_mask": boundary.astype(np.uint8)})
    recorder.start()
    try:
        for k in range(n):
            t = k / RATE_HZ
            dy = source.truth_shift_mm(t)[1]
            cy = 34 + dy
            mask = ((yy - cy) ** 2 + (xx - 48) ** 2) <= 8**2
            pcy = 34 + source.truth_shift_mm(t + 0.5)[1]
            low = k in LOW_CONFIDENCE_FRAMES
            confidence = 0.3 if low else 0.9
            inside = abs(cy - 40) <= 5
            if low:
                beam, why = "hold", f"beam hold: tracking confidence {confidence:.2f} below 0.50"
            else:
                beam = "on" if inside else "hold"
                why = (
                    f"beam {beam}: target {abs(cy - 40):.1f} mm from the boundary centre (limit 5.0 mm); "
                    f"confidence {confidence:.2f}"
                )
            message = Message(k, t, 0.0, source.frame(k)).with_results(
                beam=beam,
                confidence=confidence,
                explanation=why,
                safety=low,
                tracked_mask=mask.astype(np.uint8),
                predicted_centroid_px=np.array([48.0, pcy]),
                tracked_si_mm=float(dy),
                predicted_si_mm=float(source.truth_shift_mm(t + 0.5)[1]),
            )
            recorder.receive(message)
    finally:
        recorder.stop()
    return path


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_recording(tmp_path_factory.mktemp("recording") / "session.h5")


@pytest.fixture(scope="session")
def users_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from igikit.console.users import UserStore

    path = tmp_path_factory.mktemp("users") / "users.db"
    store = UserStore(path)
    for name, role in ROLES.items():
        store.add(name, role, PASSWORDS[name])
    store.close()
    return path


@dataclass
class RunningConsole:
    url: str
    audit_path: Path
    session: object
    feed: object


@pytest.fixture(scope="module")
def running_console(
    recording: Path, users_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningConsole]:
    """The console serving a looping replay of the recording, on a free loopback port."""
    from igikit.console.app import create_app
    from igikit.console.feed import ReplayFeed
    from igikit.console.server import ConsoleServer, free_port
    from igikit.console.users import UserStore, load_secret
    from igikit.supervise import AuditLog, AutonomyPolicy, SupervisedSession

    folder = tmp_path_factory.mktemp("console")
    audit = AuditLog(folder / "audit.db")
    session = SupervisedSession(
        audit,
        workflow="mrgrt",
        session_id="test",
        level=2,
        policy=AutonomyPolicy(veto_window_s=3.0),
        safe_values={"beam": "hold"},
    )
    store = UserStore(users_path, create=False)
    feed = ReplayFeed(recording, session, loop=True)
    app = create_app(session, store, secret=load_secret(folder / "secret"), title="test replay")
    server = ConsoleServer(app, port=free_port()).start()
    feed.start()
    try:
        yield RunningConsole(server.url, audit.path, session, feed)
    finally:
        feed.stop()
        server.stop()
        audit.close()
        store.close()


@dataclass
class ServedProcess:
    """A console served by a command in its own process: its address, output folder and printed lines so far."""

    url: str
    out_dir: Path
    lines: list[str]


@contextlib.contextmanager
def served_process(argv: Sequence[str], out_dir: Path, *, start_timeout_s: float = 60.0,
                   stop_timeout_s: float = 60.0) -> Iterator[ServedProcess]:
    """Run ``argv`` (a command that serves the console) as a user runs it; yield once the console accepts connections.

    The address comes from the command's ``igikit console: URL`` line, printed just before the server
    binds its port, so the port is then polled until it accepts a connection. At the end: Ctrl-C
    (SIGINT), after which the command must exit with code 0.
    """
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(x.rstrip("\n") for x in proc.stdout), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        url = _wait_until_served(proc, lines, time.monotonic() + start_timeout_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    try:
        yield ServedProcess(url, out_dir, lines)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(timeout=5)
    assert code == 0, "\n".join(lines)


def _wait_until_served(proc: subprocess.Popen[str], lines: list[str], deadline: float) -> str:
    """The console's URL once its port accepts a connection (fails if the command ends or the deadline passes)."""
    url = None
    while url is None:
        assert proc.poll() is None and time.monotonic() < deadline, "\n".join(lines)
        found = [re.search(r"igikit console: (http://\S+)", line) for line in list(lines)]
        url = next((m.group(1) for m in found if m), None)
        time.sleep(0.1)
    where = urlsplit(url)
    assert where.hostname is not None and where.port is not None, url
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "\n".join(lines)
        try:
            socket.create_connection((where.hostname, where.port), timeout=1.0).close()
            return url
        except OSError:
            time.sleep(0.1)
