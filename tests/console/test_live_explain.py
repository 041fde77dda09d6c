"""Explanations in the live gating console (``serve_gating``, as ``igikit demo`` / ``igikit console --case``
run it): with ``--method ai`` the console explains the live tracker's answer on a stream frame, logs the
tracker's decision record with the occlusion PNG as evidence and serves it; the frame ids are the
stream's even though the real-time stream dropped frames while the network trained. With a method
that cannot be explained, the page is told why instead of offered a button.

The phantom is replayed at its native 15 Hz: the learning phase (30 frames, 2 s) ends long before
the network has trained, so the stream drops the frames that arrive meanwhile."""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from pathlib import Path

import pytest

from .conftest import PASSWORDS, ServedProcess, served_process

with warnings.catch_warnings():  # starlette suggests httpx2 over httpx; httpx works
    warnings.simplefilter("ignore")
    import httpx

RATE_HZ = 15.0
N_FRAMES = 60
GATE = "igikit.mrgrt.gate"

#: ``serve_gating`` on a case folder with a tracking method, as the commands call it.
SERVE = """
import sys
from pathlib import Path
from igikit.workflows.mrgrt.commands import load_gating_case, serve_gating
from igikit.workflows.mrgrt.workflow import GatingSettings, SupervisionSettings
case_dir, method, out_dir, port, users = sys.argv[1:]
case, label = load_gating_case(Path(case_dir), None)
settings = GatingSettings.from_profile("adult", tracking_method=method)
sys.exit(serve_gating(case, label, settings, SupervisionSettings(headless=False), out_dir=Path(out_dir),
                      fast=False, max_frames=None, port=int(port), users_path=Path(users)))
"""


@pytest.fixture(scope="module")
def phantom_case(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from igikit.io.trackrad import write_case
    from igikit.sim import CinePhantomSpec, make_case

    spec = CinePhantomSpec(
        case_id="EXPLAIN", background="magdeburg_liver", duration_s=N_FRAMES / RATE_HZ, frame_rate_hz=RATE_HZ,
        amplitude_si_mm=6.0, target_radius_mm=8.0, target_contrast=0.6, snr=25.0, seed=5,
    )
    return write_case(tmp_path_factory.mktemp("explain-case"), make_case(spec, data_dir))


def serving(
    case_dir: Path, method: str, out_dir: Path, users_path: Path
) -> contextlib.AbstractContextManager[ServedProcess]:
    """``serve_gating`` in its own process (as a user runs it); Ctrl-C at the end, which must exit 0."""
    from igikit.console.server import free_port

    argv = [sys.executable, "-c", SERVE, str(case_dir), method, str(out_dir), str(free_port()), str(users_path)]
    return served_process(argv, out_dir)


def login(url: str, name: str) -> tuple[httpx.Client, dict[str, str], dict[str, object]]:
    client = httpx.Client(base_url=url, timeout=180)
    r = client.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    return client, {"X-CSRF-Token": r.json()["csrf"]}, r.json()


def wait_for(lines: list[str], text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(text in line for line in list(lines)):
        assert time.monotonic() < deadline, "\n".join(lines)
        time.sleep(0.2)


def test_live_ai_tracker_is_explained_with_stream_frame_ids(phantom_case: Path, users_path: Path,
                                                            tmp_path: Path) -> None:
    import hashlib

    from igikit.supervise import AuditLog, DecisionRecord

    with serving(phantom_case, "ai", tmp_path / "run", users_path) as served:
        client, headers, me = login(served.url, "olivia")
        assert me["explain"] is True and me["explain_unavailable"] == ""
        # before the network has trained, the request is refused with the reason
        early = client.post("/api/evidence", json={}, headers=headers)
        assert early.status_code == 409 and ("no tracker yet" in early.text or "learning phase" in early.text)
        wait_for(served.lines, "the console keeps serving this session", 300)  # the replay (and report) is done
        with AuditLog(served.out_dir / "audit.db", create=False) as audit:
            gate = {r.input_frame_ids[0]: r for r in (e.record for e in audit.records())
                    if isinstance(r, DecisionRecord) and r.component == GATE and r.input_frame_ids}
        last = N_FRAMES - 1
        assert last in gate
        dropped = sorted(set(range(30, last)) - set(gate))
        assert dropped, "no frame was dropped while the network trained: the frame ids were not put to the test"
        r = client.post("/api/evidence", json={"frame_id": dropped[0]}, headers=headers)
        assert r.status_code == 409 and "not given to the tracker" in r.json()["detail"], r.text

        r = client.post("/api/evidence", json={"frame_id": last}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["frame_id"] == last
        png = client.get(body["url"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG")
        with AuditLog(served.out_dir / "audit.db", create=False) as audit:
            entry = next(e for e in audit.records() if e.seq == body["seq"])
            assert audit.verify().ok
    record = entry.record
    assert isinstance(record, DecisionRecord) and record.component == "igikit.ai.tracker"
    assert record.decision == "target" and record.input_frame_ids == (last,)
    assert record.data["requested_by"] == "olivia"
    assert record.evidence is not None and record.evidence.kind == "path"
    path = Path(record.evidence.ref)
    assert path.parent == (served.out_dir / "evidence").resolve() or path.parent == served.out_dir / "evidence"
    assert record.data["evidence_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.read_bytes() == png.content
    # the same frame as the gate decided on: the tracker's confidence on stream frame `last`
    # (method ai is not calibrated, so the gate saw the tracker's own confidence)
    assert record.confidence == pytest.approx(gate[last].confidence, abs=1e-6)


def test_a_method_without_explanations_says_why(phantom_case: Path, users_path: Path, tmp_path: Path) -> None:
    with serving(phantom_case, "template", tmp_path / "run", users_path) as served:
        client, headers, me = login(served.url, "olivia")
        assert me["explain"] is False
        assert "explanations need --method ai or ensemble_ai" in str(me["explain_unavailable"])
        assert client.get("/api/me").json()["explain_unavailable"] == me["explain_unavailable"]
        r = client.post("/api/evidence", json={}, headers=headers)
        assert r.status_code == 404 and "--method ai or ensemble_ai" in r.json()["detail"]
    assert not (served.out_dir / "evidence").exists()
