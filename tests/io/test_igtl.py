"""OpenIGTLink: pyigtl as the real peer on loopback, both directions; malformed input; the stream
source; the two commands."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyigtl
import pytest

from igikit.core.image import Image
from igikit.core.transform import Transform
from igikit.io.igtl import IGTLClient, IGTLServer, parse_address
from igikit.io.igtl_protocol import (
    HEADER,
    crc64,
    image_from_ijk_to_world,
    image_to_ijk_to_ras,
    lps_to_ras_matrix,
    pack_header,
    pack_position,
    pack_status,
    pack_transform,
    parse_header,
)
from igikit.io.igtl_source import DEVICE, IGTLSource
from igikit.stream import Application, CollectResults, Recorder, SyntheticSource, read_session
from tests.conftest import assert_input_error, run_cli

RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _wait(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def _pose(k: int) -> np.ndarray:
    """A distinct rigid pose per index (the index is in x, so order can be checked)."""
    a = 0.01 * k
    m = np.eye(4)
    m[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    m[:3, 3] = [float(k), 2.0, -3.5]
    return m


def _rotation(ax: float, az: float) -> np.ndarray:
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx


@pytest.fixture
def server():
    with IGTLServer() as s:
        yield s


@pytest.fixture
def pyigtl_client(server):
    client = pyigtl.OpenIGTLinkClient("127.0.0.1", server.port)
    assert server.wait_for_clients(1, 5.0)
    yield client
    client.stop()


# ------------------------------------------------------------------ protocol
def test_header_crc_and_timestamp_match_pyigtl():
    ours = pack_transform("Tool", _pose(3), 1_700_000_000.25)
    theirs = pyigtl.TransformMessage(_pose(3), timestamp=1_700_000_000.25, device_name="Tool").pack()
    assert ours == theirs
    # the header packed here (STRING / STATUS / POSITION) is byte for byte pyigtl's
    assert pack_header("TRANSFORM", "Tool", 1_700_000_000.25, theirs[58:]) == theirs[:58]
    header = parse_header(ours[:58])
    assert (header.type, header.device, header.body_size) == ("TRANSFORM", "Tool", 48)
    assert header.crc == crc64(ours[58:])
    assert header.timestamp_s == pytest.approx(1_700_000_000.25, abs=1e-6)
    # the CRC-64 ECMA-182 check value ("123456789")
    assert crc64(b"123456789") == 0x6C40DF5F0B497347


def test_image_geometry_lps_ras():
    """Index-to-RAS is F @ index-to-LPS; the inverse gives the image back, 2D and 3D."""
    rot = _rotation(0.3, -0.7)
    im3 = Image(np.zeros((4, 5, 6), np.int16), (0.7, 1.1, 2.5), (10.0, -20.0, 30.0), rot)
    voxels, ijk_to_ras = image_to_ijk_to_ras(im3)
    ijk = np.array([[1.0, 2.0, 3.0], [5.0, 0.0, 1.0]])
    ras = (ijk_to_ras @ np.c_[ijk, np.ones(2)].T).T[:, :3]
    lps = im3.index_to_physical(ijk)
    np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-9)
    back = image_from_ijk_to_world(voxels, ijk_to_ras, ras=True)
    assert back.same_grid(im3, tol=1e-9)
    im2 = Image(np.zeros((3, 4), np.uint8), (0.5, 2.0), (10.0, 20.0), _rotation(0, 0.4)[:2, :2])
    voxels2, m2 = image_to_ijk_to_ras(im2)
    assert voxels2.shape == (1, 3, 4)
    back2 = image_from_ijk_to_world(voxels2, m2, ras=True)
    assert back2.dim == 2 and back2.same_grid(im2, tol=1e-9)
    np.testing.assert_allclose(lps_to_ras_matrix(lps_to_ras_matrix(_pose(2))), _pose(2))


def test_parse_address():
    assert parse_address("localhost:18945") == ("localhost", 18945)
    assert parse_address("10.0.0.2") == ("10.0.0.2", 18944)
    for bad in ("host:port", ":18944", "host:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)


# ------------------------------------------------------ server -> pyigtl client
def test_server_sends_transform_image_string_to_pyigtl(server, pyigtl_client):
    pose = _pose(7)
    assert server.send_transform("ToolToRef", Transform(pose), 1_700_000_000.5) == 1
    got = pyigtl_client.wait_for_message("ToolToRef", timeout=5)
    assert got is not None
    np.testing.assert_allclose(got.matrix, pose, atol=1e-5)
    assert got.timestamp == pytest.approx(1_700_000_000.5, abs=1e-6)

    # 3D oblique volume: pyigtl's index-to-world (RAS) maps voxels where igikit's geometry (LPS) says
    rot = _rotation(0.25, 0.5)
    vol = Image(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6), (0.8, 1.2, 3.0), (-12.5, 40.0, 7.25), rot)
    server.send_image("Volume", vol)
    got = pyigtl_client.wait_for_message("Volume", timeout=5)
    assert got is not None and got.world_coordinate_system == "ras"
    np.testing.assert_array_equal(got.image, vol.array)
    ijk = np.array([[0, 0, 0], [5, 4, 3], [2.5, 1.0, 0.5]])
    ras = (np.asarray(got.ijk_to_world_matrix) @ np.c_[ijk, np.ones(3)].T).T[:, :3]
    np.testing.assert_allclose(ras * [-1, -1, 1], vol.index_to_physical(ijk), atol=1e-4)

    # 2D slice from an array with explicit geometry
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    server.send_image("Slice", frame, spacing_mm=(0.5, 2.0), origin_mm=(10.0, 20.0))
    got = pyigtl_client.wait_for_message("Slice", timeout=5)
    assert got is not None
    np.testing.assert_array_equal(got.image[0], frame)
    np.testing.assert_allclose(np.asarray(got.ijk_to_world_matrix)[:3, 3], [-10.0, -20.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(np.diag(got.ijk_to_world_matrix)[:3], [-0.5, -2.0, 1.0], atol=1e-6)

    server.send_string("Status", "tip 2.1 mm from the portal vein")
    got = pyigtl_client.wait_for_message("Status", timeout=5)
    assert got is not None and got.string == "tip 2.1 mm from the portal vein"


def test_our_client_receives_every_message_type(server):
    with IGTLClient("127.0.0.1", server.port) as client:
        assert server.wait_for_clients(1)
        vol = Image(np.random.default_rng(0).integers(0, 999, (3, 4, 5)).astype(np.int32), (1, 2, 3), (4, 5, 6))
        server.send_image("Volume", vol, 12.5)
        server.send_string("Note", "température 42 °C")  # non-ASCII: sent as UTF-8
        server.send_status("Tracker", "not_ready", subcode=-3, error_name="NoTool", message="stylus not seen")
        server.send_position("Tip", (1.0, 2.0, 3.0), (0.0, 0.0, np.sin(0.25), np.cos(0.25)))
        got = [client.get(5.0) for _ in range(4)]
    kinds = [g.kind for g in got if g is not None]
    assert kinds == ["IMAGE", "STRING", "STATUS", "POSITION"]
    image, note, status, tip = got
    assert image.image.same_grid(vol, tol=1e-5) and image.timestamp_s == pytest.approx(12.5)
    np.testing.assert_array_equal(image.image.array, vol.array)
    assert note.text == "température 42 °C"
    assert (status.status.code, status.status.subcode, status.status.error_name) == (13, -3, "NoTool")
    assert status.status.message == "stylus not seen" and not status.status.ok
    np.testing.assert_allclose(tip.matrix[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(tip.matrix[:3, :3], _rotation(0, 0.5), atol=1e-6)
    assert [g.seq for g in got] == [0, 1, 2, 3]


# ----------------------------------------------------- pyigtl -> us, full rate
def test_pyigtl_client_to_server_200hz_none_lost(server, pyigtl_client):
    n = 200
    t0 = time.perf_counter()
    for k in range(n):
        # pyigtl's own send queue keeps 100 messages and drops the oldest: let it drain now and then
        message = pyigtl.TransformMessage(_pose(k), device_name="StylusToTracker")
        pyigtl_client.send_message(message, wait=k % 50 == 49)
        delay = t0 + (k + 1) / n - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    received = [m for m in (server.get(5.0) for _ in range(n)) if m is not None]
    assert len(received) == n, server.rejected
    assert [m.seq for m in received] == list(range(n))
    xs = [m.matrix[0, 3] for m in received]
    assert xs == list(range(n))
    np.testing.assert_allclose(received[-1].matrix, _pose(n - 1), atol=1e-5)
    assert all(m.device == "StylusToTracker" for m in received)
    walls = np.array([m.received_wall_s for m in received])
    assert np.all(np.diff(walls) >= 0)
    assert server.dropped == 0 and sum(server.rejected.values()) == 0
    assert server.received_counts == {"TRANSFORM": n}


def test_our_client_receives_200hz_from_pyigtl_server():
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    pserver = pyigtl.OpenIGTLinkServer(port=0, local_server=True)  # installs signal handlers: restored below
    try:
        port = pserver.server_address[1]
        with IGTLClient("127.0.0.1", port) as client:
            assert _wait(pserver.is_connected)
            n = 200
            t0 = time.perf_counter()
            for k in range(n):
                pserver.send_message(pyigtl.TransformMessage(_pose(k), device_name="Probe"), wait=k % 50 == 49)
                delay = t0 + (k + 1) / n - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            received = [client.get(5.0) for _ in range(n)]
        assert all(m is not None for m in received)
        assert [m.matrix[0, 3] for m in received] == list(range(n))  # every pose, in order
    finally:
        pserver.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


# ------------------------------------------------------------- bad input
def _raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(3.0)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_malformed_messages_rejected_others_keep_going(caplog):
    good_pose = pack_transform("Good", _pose(1), 1.0)
    with IGTLServer(max_body_bytes=1 << 20, body_timeout_s=0.5) as server:
        watcher = pyigtl.OpenIGTLinkClient("127.0.0.1", server.port)  # a well-behaved receiver
        try:
            assert server.wait_for_clients(1)
            server.send_transform("Before", _pose(0))
            assert watcher.wait_for_message("Before", timeout=5) is not None

            # 1. wrong CRC: that message skipped, the connection keeps working
            bad_crc = bytearray(good_pose)
            bad_crc[-1] ^= 0xFF
            with _raw(server.port) as s:
                s.sendall(bytes(bad_crc) + good_pose)
                assert _wait(lambda: server.pending == 1)
            # 2. unknown type with a valid CRC: skipped; 3. malformed TRANSFORM body (40 bytes): skipped
            unknown = pack_header("FOOBAR", "X", 0.0, b"abc") + b"abc"
            short = pack_header("TRANSFORM", "Short", 0.0, b"\0" * 40) + b"\0" * 40
            with _raw(server.port) as s:
                s.sendall(unknown + short + good_pose)
                assert _wait(lambda: server.pending == 2)
            # 4. bad header (version 7): connection dropped
            with _raw(server.port) as s:
                s.sendall(HEADER.pack(7, b"TRANSFORM", b"X", 0, 0, 0, 0))
                assert _closed_by_server(s)
            # 5. garbage type name: connection dropped
            with _raw(server.port) as s:
                s.sendall(b"\x00\x01" + bytes(range(200, 256)))
                assert _closed_by_server(s)
            # 6. oversized body (announced 1 TiB): dropped before reading it
            with _raw(server.port) as s:
                s.sendall(HEADER.pack(1, b"IMAGE", b"Huge", 0, 0, 1 << 40, 0))
                assert _closed_by_server(s)
            # 7. truncated body: the peer closes mid-message
            with _raw(server.port) as s:
                s.sendall(good_pose[:70])
            # 8. stalled body: half a message, then silence longer than body_timeout_s
            with _raw(server.port) as s:
                s.sendall(good_pose[:80])
                assert _closed_by_server(s)

            assert _wait(lambda: server.rejected["truncated"] == 2)
            rejected = server.rejected
            assert rejected == {
                "bad_header": 2,
                "bad_crc": 1,
                "truncated": 2,
                "oversized": 1,
                "unknown_type": 1,
                "malformed_body": 1,
                "queue_full": 0,
            }
            assert [server.get(1).device for _ in range(2)] == ["Good", "Good"]
            assert "bad_crc" in caplog.text and "oversized" in caplog.text
            # the well-behaved client was served throughout
            assert _wait(lambda: len(server.peers) == 1)
            server.send_transform("After", _pose(5))
            got = watcher.wait_for_message("After", timeout=5)
            assert got is not None
            np.testing.assert_allclose(got.matrix, _pose(5), atol=1e-5)
        finally:
            watcher.stop()


def test_version2_metadata_and_bad_extended_header(server):
    msg = pyigtl.TransformMessage(_pose(4), device_name="V2")
    msg.header_version = 2
    msg.metadata = {"TransformStatus": "OK"}
    with _raw(server.port) as s:
        s.sendall(msg.pack())
        body = struct.pack(">HHII", 12, 500, 0, 0) + b"\0" * 48  # metadata larger than the body
        s.sendall(pack_header("TRANSFORM", "V2bad", 0.0, body, version=2) + body)
        got = server.get(5.0)
        assert _wait(lambda: server.rejected["malformed_body"] == 1)
    assert got is not None and got.metadata == {"TransformStatus": "OK"}
    np.testing.assert_allclose(got.matrix, _pose(4), atol=1e-5)


def test_full_queue_drops_new_messages_and_counts():
    with IGTLServer(max_queued=5) as server, _raw(server.port) as s:
        s.sendall(b"".join(pack_transform("T", _pose(k), 0.0) for k in range(8)))
        assert _wait(lambda: server.dropped == 3)
        assert [server.get(1).matrix[0, 3] for _ in range(5)] == [0, 1, 2, 3, 4]  # the oldest kept
        assert server.rejected["queue_full"] == 3


def test_server_serves_several_clients_at_once(server):
    clients = [IGTLClient("127.0.0.1", server.port).start() for _ in range(3)]
    try:
        assert server.wait_for_clients(3)
        assert server.send_status("igikit", "ok") == 3
        for c in clients:
            got = c.get(5.0)
            assert got is not None and got.status is not None and got.status.ok
        with _raw(server.port) as s:
            s.sendall(pack_position("P", (1, 2, 3), 0.0) + pack_status("S", 1, 0.0))
            assert _wait(lambda: server.pending == 2)
    finally:
        for c in clients:
            c.stop()
    assert _wait(lambda: server.peers == [])


# --------------------------------------------------------------- the source
class _Poses(Application):
    def __init__(self, source: IGTLSource, **kw) -> None:
        super().__init__(**kw)
        self.source = source
        self.sink = CollectResults((DEVICE,))

    def compose(self) -> None:
        self.add_flow(self.source, self.sink)


def test_igtl_source_delivers_every_pose_then_ends_on_disconnect(server):
    lost = []
    source = IGTLSource(server, device_filter="Stylus", end_on_disconnect=True, on_event=lost.append)
    app = _Poses(source, source_timeout_s=5.0)
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("report", app.run()))
    runner.start()
    client = pyigtl.OpenIGTLinkClient("127.0.0.1", server.port)
    assert server.wait_for_clients(1)
    for k in range(60):
        client.send_message(pyigtl.TransformMessage(_pose(k), device_name="Stylus"), wait=False)
        client.send_message(pyigtl.TransformMessage(_pose(k), device_name="Other"), wait=k % 20 == 19)
        time.sleep(0.004)
    assert _wait(lambda: server.received_counts.get("TRANSFORM", 0) == 120)
    client.stop()
    runner.join(10.0)
    assert not runner.is_alive()
    report = result["report"]
    assert report.frames_processed == 60 and report.frames_dropped == 0
    assert app.sink.column("frame_id").tolist() == list(range(60))
    assert [r[DEVICE] for r in app.sink.rows] == ["Stylus"] * 60
    assert source.skipped == 60
    assert [e.kind for e in lost] == ["source_lost"]


def test_igtl_source_lost_raised_by_watchdog_when_client_leaves(server):
    mine = []
    source = IGTLSource(server, on_event=mine.append)
    app = _Poses(source, source_timeout_s=0.3)
    runner = threading.Thread(target=app.run)
    runner.start()
    try:
        with _raw(server.port) as s:
            s.sendall(b"".join(pack_transform("Stylus", _pose(k), 0.0) for k in range(20)))
            assert _wait(lambda: source.delivered == 20)
        assert _wait(lambda: any(e.kind == "source_lost" for e in app.events), 3.0)
        assert mine and mine[0].kind == "source_lost" and mine[0].frame_id == 19
    finally:
        source.close()
        runner.join(5.0)
    assert not runner.is_alive()


def test_igtl_source_client_mode(server):
    source = IGTLSource(f"127.0.0.1:{server.port}", end_on_disconnect=True)
    app = _Poses(source)
    runner = threading.Thread(target=app.run)
    runner.start()
    assert server.wait_for_clients(1)
    for k in range(50):
        server.send_transform("Probe", _pose(k))
    assert server.flush(5.0)
    server.stop()
    runner.join(10.0)
    assert not runner.is_alive()
    assert [row["frame_id"] for row in app.sink.rows] == list(range(50))
    assert source.delivered == 50


def test_igtl_source_images_and_recording(server, tmp_path):
    out = tmp_path / "s.h5"

    class Record(Application):
        def compose(self) -> None:
            self.source = IGTLSource(server, kinds=("IMAGE",), max_messages=3)
            self.add_flow(self.source, Recorder(out, metadata=self.source.metadata()))

    app = Record()
    runner = threading.Thread(target=app.run)
    runner.start()
    with _raw(server.port) as s:
        from igikit.io.igtl_protocol import pack_image

        for k in range(3):
            s.sendall(pack_image("US", Image(np.full((6, 8), k, np.uint8), (0.3, 0.3)), 100.0 + k))
        runner.join(10.0)
    assert not runner.is_alive()
    session = read_session(out)
    assert session.frames.shape == (3, 6, 8) and session.frames[2, 0, 0] == 2
    np.testing.assert_allclose(session.acquisition_time_s, [100, 101, 102])
    np.testing.assert_allclose(session.results["spacing_mm"][0], [0.3, 0.3], atol=1e-6)


# ----------------------------------------------------------------- commands
def _session(tmp_path: Path) -> Path:
    path = tmp_path / "session.h5"

    class Rec(Application):
        def compose(self) -> None:
            src = SyntheticSource((16, 16), n_frames=5, realtime=False, pixel_spacing_mm=(1.5, 1.5))
            self.add_flow(src, Recorder(path, metadata=src.metadata()))

    Rec().run()
    return path


def test_cli_serve_streams_a_session(tmp_path):
    session = _session(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "igikit.cli", "igtl", "serve", str(session), "--port", "0", "--rate-hz", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        port = int(first.split(":")[1].split()[0])
        with IGTLClient("127.0.0.1", port) as client:
            got = list(client.received(idle_timeout_s=5.0))
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    images = [m for m in got if m.kind == "IMAGE"]
    assert len(images) == 5
    recorded = read_session(session)
    np.testing.assert_array_equal(images[4].image.array, recorded.frames[4])
    assert images[0].image.spacing_mm == (1.5, 1.5)
    shifts = [m for m in got if m.kind == "TRANSFORM" and m.device == "truth_shift_mm"]
    assert len(shifts) == 5
    truth = recorded.results["truth_shift_mm"][3]
    np.testing.assert_allclose(shifts[3].matrix[:2, 3], -truth, atol=1e-4)  # LPS shift sent in RAS
    assert got[-1].kind == "STATUS" and got[-1].status.ok
    assert "sent 5 frames" in out


def test_cli_record_writes_every_pose(tmp_path):
    out = tmp_path / "poses.csv"
    with IGTLServer() as server:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "igikit.cli",
                "igtl",
                "record",
                "--connect",
                f"127.0.0.1:{server.port}",
                "--out",
                str(out),
                "--seconds",
                "20",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.wait_for_clients(1, 15.0)
            for k in range(100):
                server.send_transform("StylusToTracker", _pose(k), 1000.0 + k / 100)
                time.sleep(0.002)
            server.send_string("Note", "not a pose")
            assert server.flush(5.0)
        finally:
            server.stop()  # the recorder ends when the server goes
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "t_s,device," + ",".join(f"m{r}{c}" for r in range(4) for c in range(4))
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 100 and {r[1] for r in rows} == {"StylusToTracker"}
    t = np.array([float(r[0]) for r in rows])
    np.testing.assert_allclose(t, 1000.0 + np.arange(100) / 100, atol=1e-6)
    m = np.array([[float(v) for v in r[2:]] for r in rows]).reshape(-1, 4, 4)
    np.testing.assert_allclose(m[57], _pose(57), atol=1e-5)
    assert "recorded 100 poses" in stdout


def test_cli_bad_input(tmp_path):
    assert_input_error(run_cli("igtl", "serve", tmp_path / "missing.h5", "--port", "0"), "missing.h5")
    assert_input_error(
        run_cli("igtl", "record", "--connect", "127.0.0.1:9", "--out", tmp_path / "p.txt"), "p.txt", ".csv"
    )
    assert_input_error(
        run_cli(
            "igtl", "record", "--connect", "127.0.0.1:1", "--out", tmp_path / "p.csv", "--connect-timeout-s", "0.2"
        ),
        "cannot connect",
    )
    assert not (tmp_path / "p.csv").exists()
