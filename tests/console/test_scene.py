"""The navigation scene's data objects, label-map surfaces, messages, and how the session and the
console carry them (scene on connect and on change, tool states latest-wins)."""

from __future__ import annotations

import base64
import json
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from igikit.console.app import create_app
from igikit.console.broadcast import Broadcaster
from igikit.console.scene import (
    Scene,
    SceneMesh,
    ToolState,
    encode_scene,
    encode_tool,
    meshes_from_labels,
    scene_message,
)
from igikit.console.users import UserStore, load_secret
from igikit.core.image import Image
from igikit.errors import InputError
from igikit.supervise import AuditLog, SupervisedSession

from .conftest import PASSWORDS
from .scene_data import ENTRY_MM, TARGET_MM, DistanceMaps, label_map, scene, tool_state

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TETRA = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
TETRA_FACES = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def tool(**changes: object) -> ToolState:
    fields: dict[str, object] = {
        "tip_mm": [1.0, 2.0, 3.0],
        "axis": [0.0, 0.0, 2.0],
        "target_distance_mm": 10.0,
        "angle_to_trajectory_deg": 3.0,
        "distances_mm": {"vessel": 4.5},
        "tre_mm": 1.2,
        "warnings": ["tip 4.5 mm from the vessel"],
        "time_s": 0.5,
    }
    fields.update(changes)
    return ToolState(**fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- data objects
def test_scene_mesh_keeps_read_only_copies_and_checks_its_inputs() -> None:
    vertices = TETRA.copy()
    mesh = SceneMesh("tetra", vertices, TETRA_FACES, color="#AABBCC", opacity=0.5)
    vertices[0, 0] = 99.0
    assert mesh.vertices_mm[0, 0] == 0.0 and mesh.faces.dtype == np.int64
    with pytest.raises(ValueError):
        mesh.vertices_mm[0, 0] = 1.0
    bad = [
        ({"vertices_mm": TETRA[:, :2]}, "vertices_mm must be"),
        ({"vertices_mm": np.where(TETRA == 1, np.nan, TETRA)}, "non-finite"),
        ({"faces": TETRA_FACES + 1}, "face indices must be in [0, 3]"),
        ({"faces": TETRA_FACES.astype(float)}, "integer vertex indices"),
        ({"color": "red"}, "CSS hex colour"),
        ({"opacity": 0.0}, "opacity must be in (0, 1]"),
        ({"name": " "}, "needs a name"),
    ]
    for change, message in bad:
        fields = {"name": "tetra", "vertices_mm": TETRA, "faces": TETRA_FACES, **change}
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            SceneMesh(**fields)  # type: ignore[arg-type]


def test_scene_checks_names_points_and_lengths() -> None:
    mesh = SceneMesh("tetra", TETRA, TETRA_FACES)
    s = Scene([mesh], [1, 2, 3], [1, 2, 50], tool_length_mm=120, title="t")
    assert s.meshes == (mesh,) and s.entry_mm is not None and s.entry_mm.tolist() == [1, 2, 50]
    assert Scene((), [0, 0, 0]).entry_mm is None
    with pytest.raises(InputError, match="unique; repeated: tetra"):
        Scene((mesh, mesh), [0, 0, 0])
    with pytest.raises(InputError, match="target_mm must be 3 finite numbers"):
        Scene((mesh,), [0, 0])
    with pytest.raises(InputError, match="same point"):
        Scene((mesh,), [0, 0, 0], [0, 0, 0])
    with pytest.raises(InputError, match="tool_length_mm must be a positive"):
        Scene((mesh,), [0, 0, 0], tool_length_mm=0)


def test_tool_state_normalises_the_axis_and_refuses_non_finite_numbers() -> None:
    state = tool()
    assert state.axis.tolist() == [0.0, 0.0, 1.0] and state.tip_mm.dtype == np.float64
    assert state.warnings == ("tip 4.5 mm from the vessel",) and state.published_wall_s == 0.0
    assert tool(angle_to_trajectory_deg=None, tre_mm=None).tre_mm is None
    for change, message in [
        ({"axis": [0, 0, 0]}, "non-zero vector"),
        ({"tip_mm": [0, np.inf, 0]}, "tip_mm must be 3 finite"),
        ({"target_distance_mm": np.nan}, "target_distance_mm must be finite"),
        ({"distances_mm": {"vessel": np.nan}}, "distances_mm\\['vessel'\\] must be finite"),
        ({"tre_mm": np.inf}, "tre_mm must be a finite number or None"),
    ]:
        with pytest.raises(InputError, match=message):
            tool(**change)


# --------------------------------------------------------------------------- label maps
def _volume(mesh: SceneMesh) -> float:
    a, b, c = (mesh.vertices_mm[mesh.faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def test_a_box_label_becomes_a_closed_outward_surface_in_physical_space() -> None:
    labels = np.zeros((12, 20, 30), np.uint8)  # z, y, x
    labels[3:9, 5:15, 6:26] = 4
    spacing, origin = (0.5, 1.0, 2.5), (100.0, -50.0, 7.0)
    (box,) = meshes_from_labels(labels, spacing_mm=spacing, origin_mm=origin, smoothing_voxels=0)
    assert box.name == "label 4" and box.opacity == 0.35
    # voxels 6..25 in x, 5..14 in y, 3..8 in z; the 0.5 level lies half a voxel outside the centres
    lo = np.array([origin[0] + 5.5 * spacing[0], origin[1] + 4.5 * spacing[1], origin[2] + 2.5 * spacing[2]])
    hi = np.array([origin[0] + 25.5 * spacing[0], origin[1] + 14.5 * spacing[1], origin[2] + 8.5 * spacing[2]])
    np.testing.assert_allclose(box.vertices_mm.min(axis=0), lo, atol=1e-6)
    np.testing.assert_allclose(box.vertices_mm.max(axis=0), hi, atol=1e-6)
    # closed (every edge in two triangles) with outward normals (positive volume = the box's)
    edges = np.sort(box.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert set(counts.tolist()) == {2}
    assert _volume(box) == pytest.approx(float(np.prod(hi - lo)), rel=0.02)


def test_an_image_places_meshes_with_its_direction() -> None:
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:5, 2:8, 4:6] = 1
    flipped = np.diag([-1.0, 1.0, 1.0])  # x index runs toward -x
    plain = Image(labels, spacing_mm=(2.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0))
    mirrored = Image(labels, spacing_mm=(2.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0), direction=flipped)
    (a,) = meshes_from_labels(plain, {1: "slab"})
    (b,) = meshes_from_labels(mirrored, {1: "slab"})
    np.testing.assert_allclose(b.vertices_mm * [-1, 1, 1], a.vertices_mm, atol=1e-9)
    assert _volume(a) > 0 and _volume(b) > 0  # winding follows the handedness
    with pytest.raises(InputError, match="come from the Image"):
        meshes_from_labels(plain, spacing_mm=(1, 1, 1))


def test_large_structures_are_coarsened_to_the_triangle_budget_and_thin_ones_survive() -> None:
    z, y, x = np.indices((90, 120, 120))
    labels = np.zeros((90, 120, 120), np.uint8)
    labels[((x - 60) / 50) ** 2 + ((y - 60) / 45) ** 2 + ((z - 45) / 38) ** 2 <= 1] = 1
    labels[((x - 20) ** 2 + (z - 45) ** 2 <= 1.0) & (y > 10) & (y < 110)] = 2  # a 3-voxel-wide vessel
    fine = meshes_from_labels(labels, {1: "organ"}, max_triangles=200_000)[0]
    organ, vessel = meshes_from_labels(labels, {1: "organ", 2: "vessel"}, max_triangles=1500)
    assert len(fine.faces) > 20_000 and 300 < len(organ.faces) <= 1500
    # coarse, but in the same place and about the same size
    np.testing.assert_allclose(organ.vertices_mm.mean(axis=0), fine.vertices_mm.mean(axis=0), atol=1.0)
    assert _volume(organ) == pytest.approx(_volume(fine), rel=0.1)
    assert len(vessel.faces) > 50
    assert vessel.vertices_mm[:, 1].min() < 15 and vessel.vertices_mm[:, 1].max() > 105


def test_bad_label_maps_are_refused() -> None:
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:6, 2:6, 2:6] = 1
    with pytest.raises(InputError, match=r"label 3 \(vein\) is not in the label map"):
        meshes_from_labels(labels, {3: "vein"})
    with pytest.raises(InputError, match="one 3D volume"):
        meshes_from_labels(labels[0])
    with pytest.raises(InputError, match="integer labels"):
        meshes_from_labels(labels.astype(float))


# ---------------------------------------------------------------------------- messages
def test_scene_and_tool_messages_carry_the_arrays_and_numbers() -> None:
    s = scene()
    msg = json.loads(encode_scene(s))
    assert msg["type"] == "scene" and msg["title"] == s.title and msg["target"] == TARGET_MM.tolist()
    assert msg["entry"] == ENTRY_MM.tolist() and msg["tool_length"] == 90.0
    assert [m["name"] for m in msg["meshes"]] == ["liver", "portal vein", "lesion"]
    for sent, mesh in zip(msg["meshes"], s.meshes, strict=True):
        vertices = np.frombuffer(base64.b64decode(sent["vertices"]), "<f4").reshape(-1, 3)
        faces = np.frombuffer(base64.b64decode(sent["faces"]), "<u4").reshape(-1, 3)
        np.testing.assert_allclose(vertices, mesh.vertices_mm, atol=1e-4)
        assert (faces == mesh.faces).all() and sent["n_faces"] == len(mesh.faces) <= 2500
    assert len(encode_scene(s)) < 400_000  # a scene stays a small message
    assert scene_message(s)["meshes"][0]["color"] == "#d08a6e"
    t = json.loads(encode_tool(tool(angle_to_trajectory_deg=None)))
    assert t["type"] == "tool" and t["tip"] == [1.0, 2.0, 3.0] and t["axis"] == [0.0, 0.0, 1.0]
    assert t["angle"] is None and t["distances"] == {"vessel": 4.5} and t["tre"] == 1.2
    assert t["warnings"] == ["tip 4.5 mm from the vessel"]


# ---------------------------------------------------------------------- session and console
@pytest.fixture()
def session(tmp_path: Path) -> Iterator[SupervisedSession]:
    audit = AuditLog(tmp_path / "audit.db")
    yield SupervisedSession(audit, workflow="surgery", level=1)
    audit.close()


def test_session_hands_scene_and_tool_over_and_a_failing_subscriber_stops_nothing(session) -> None:
    got: list[object] = []

    def broken(_: object) -> None:
        raise RuntimeError("viewer crashed")

    session.subscribe_tool(broken)
    leave = session.subscribe_tool(got.append)
    session.subscribe_scene(broken)
    session.subscribe_scene(got.append)
    s = Scene((), [0, 0, 0])
    assert session.publish_scene(s) is s and session.latest_scene is s
    before = time.time()
    published = session.publish_tool(tool())
    assert published.published_wall_s >= before and session.latest_tool is published
    assert got == [s, published]
    leave()
    session.publish_tool(tool())
    assert len(got) == 2
    stamped = tool(published_wall_s=123.0)
    assert session.publish_tool(stamped) is stamped


@pytest.fixture()
def client(session, users_path: Path, tmp_path: Path) -> Iterator[TestClient]:
    store = UserStore(users_path, create=False)
    app = create_app(session, store, secret=load_secret(tmp_path / "secret"), title="nav")
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        c.post("/api/login", json={"name": "oscar", "password": PASSWORDS["oscar"]})
        yield c
    store.close()


def receive_until(ws, kind: str, limit: int = 30) -> dict:  # type: ignore[no-untyped-def]
    for _ in range(limit):
        msg = json.loads(ws.receive_text())
        if msg["type"] == kind:
            return msg
    raise AssertionError(f"no {kind} message in {limit}")


def test_console_sends_the_scene_on_connect_and_on_change_and_tool_states(session, client) -> None:
    image = label_map()
    session.publish_scene(scene(image))
    maps = DistanceMaps.of(image)
    with client.websocket_connect("ws://127.0.0.1:8000/ws") as ws:
        first = receive_until(ws, "scene")  # published before this viewer connected
        assert len(first["meshes"]) == 3
        session.publish_tool(tool_state(maps, 0.5, 1.0))
        msg = receive_until(ws, "tool")
        assert msg["target_distance"] == pytest.approx(0.5 * float(np.linalg.norm(TARGET_MM - ENTRY_MM)))
        assert set(msg["distances"]) == {"liver", "portal vein", "lesion"} and msg["published"] > 0
        session.publish_scene(Scene(session.latest_scene.meshes[:1], TARGET_MM, title="changed"))
        changed = receive_until(ws, "scene")
        assert changed["title"] == "changed" and len(changed["meshes"]) == 1 and changed["entry"] is None
    with client.websocket_connect("ws://127.0.0.1:8000/ws") as ws:  # a late viewer: newest scene and tool
        assert receive_until(ws, "scene")["title"] == "changed"
        assert receive_until(ws, "tool")["t"] == 1.0


def test_tool_states_are_latest_wins_and_publishing_never_waits_for_the_console(session) -> None:
    """A burst of 600 tool states while the encoder is busy: publishing stays a hand-over, and
    the viewer is sent the newest state, not a backlog."""
    import asyncio

    broadcaster = Broadcaster(session)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    broadcaster.start(loop)
    try:
        from igikit.console.broadcast import Viewer

        viewer = Viewer("v", "observer")
        loop.call_soon_threadsafe(broadcaster.viewers.add, viewer)
        states = [tool(time_s=k / 60) for k in range(600)]
        for s in states:
            session.publish_tool(s)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            viewer.tool is None or json.loads(viewer.tool)["t"] != states[-1].time_s
        ):
            time.sleep(0.01)
        assert viewer.tool is not None and json.loads(viewer.tool)["t"] == states[-1].time_s
        assert 1 <= broadcaster.tools_encoded < 600
        assert not [m for m in viewer.queue if '"type":"tool"' in m]  # tool states are never queued
    finally:
        broadcaster.stop()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def test_console_serves_three_js_itself_with_one_copy_of_three(client) -> None:
    from igikit.console import vendor

    three = client.get("/vendor/three.module.js")
    assert three.status_code == 200 and three.headers["content-type"].startswith("text/javascript")
    assert "from './three.core.js'" in three.text and f"REVISION = '{vendor.three_version().split('.')[1]}'" in (
        client.get("/vendor/three.core.js").text
    )
    controls = client.get("/vendor/OrbitControls.js").text
    assert "from './three.module.js'" in controls and "from 'three'" not in controls
    assert client.get("/vendor/package.json").status_code == 404
    assert client.get("/vendor/..%2Fpackage.json").status_code == 404
    page = client.get("/static/scene3d.js")
    assert page.status_code == 200 and 'import("/vendor/three.module.js")' in page.text
