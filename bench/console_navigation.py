"""Console 3D navigation scene: what publishing costs the tracking loop, and tool-to-viewer latency.

What is timed:

* ``publish_frame`` (baseline, same run): handing a 256 x 256 cine :class:`FrameState` to a
  running console, the cost the treatment loop already pays per frame;
* ``publish_tool``: handing a :class:`ToolState` to the same running console (the navigation
  loop's cost per tracker update), and ``ToolState(...)``, building one (validation included);
* ``encode_tool`` / ``encode_scene``: the console thread's work per tool state / per scene, and
  the scene message's size; ``meshes_from_labels``: a label map (organ, vessel, lesion) to meshes;
* ``tool-to-viewer``: a 60 Hz tool stream watched by N WebSocket viewers on loopback (in a
  separate process), from ``published_wall_s`` to receipt (p50 / p99 / max), and the share of
  tool states each viewer received (latest-wins may skip some, never delay them).

    python bench/console_navigation.py [--repeats 5000] [--viewers 5] [--seconds 5] [--docs]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "console"))


def stats_us(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1e6
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99))}


def timed(fn: Any, repeats: int, *, rate_hz: float | None = None) -> list[float]:
    """Durations of ``repeats`` calls; paced at ``rate_hz`` like a live loop (else back to back)."""
    out = []
    start = time.perf_counter()
    for k in range(repeats):
        if rate_hz is not None:
            time.sleep(max(0.0, start + k / rate_hz - time.perf_counter()))
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ------------------------------------------------------------------------------ in process
def micro(repeats: int, publish_hz: float) -> dict[str, Any]:
    from scene_data import DistanceMaps, label_map, scene, tool_state  # tests/console/scene_data.py

    from igikit.console.broadcast import Broadcaster
    from igikit.console.scene import encode_scene, encode_tool
    from igikit.supervise import AuditLog, FrameState, SupervisedSession

    with tempfile.TemporaryDirectory() as tmp:
        audit = AuditLog(Path(tmp) / "audit.db")
        session = SupervisedSession(audit, workflow="bench", level=1)
        loop = asyncio.new_event_loop()
        broadcaster = Broadcaster(session)
        broadcaster.start(loop)  # encodes on its thread; nothing delivers (no viewer), as with none connected
        try:
            image = label_map()
            t0 = time.perf_counter()
            s = scene(image)
            mesh_s = time.perf_counter() - t0
            maps = DistanceMaps.of(image)
            states = [tool_state(maps, k / repeats, k / 60) for k in range(repeats)]
            frame = np.random.default_rng(0).random((256, 256)).astype(np.float32)
            frames = [FrameState(k, k / 8, frame) for k in range(repeats)]
            it_f, it_t = iter(frames), iter(states)
            n = min(repeats // 2, int(publish_hz * 4))
            publish_frame = timed(lambda: session.publish_frame(next(it_f)), n, rate_hz=publish_hz)
            publish_tool = timed(lambda: session.publish_tool(next(it_t)), n, rate_hz=publish_hz)
            frame_b2b = timed(lambda: session.publish_frame(next(it_f)), n)
            tool_b2b = timed(lambda: session.publish_tool(next(it_t)), n)
            build = timed(lambda: type(states[0])(**{k: getattr(states[0], k) for k in _fields(states[0])}), repeats)
            encode = timed(lambda: encode_tool(states[-1]), repeats)
            encode_s = timed(lambda: encode_scene(s), 20)
            size = len(encode_scene(s))
        finally:
            broadcaster.stop()
            loop.close()
            audit.close()
    return {
        "publish_frame": stats_us(publish_frame),
        "publish_tool": stats_us(publish_tool),
        "publish_frame, back to back": stats_us(frame_b2b),
        "publish_tool, back to back": stats_us(tool_b2b),
        "ToolState()": stats_us(build),
        "encode_tool": stats_us(encode),
        "encode_scene": stats_us(encode_s),
        "scene_bytes": size,
        "scene_triangles": sum(len(m.faces) for m in s.meshes),
        "meshes_from_labels_ms": mesh_s * 1e3,
        "label_map_shape": list(image.array.shape),
        "publish_hz": publish_hz,
        "publish_n": n,
    }


def _fields(state: Any) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(state)]


# ------------------------------------------------------------------------------- viewers
async def _viewer(url: str, cookie: str, origin: str, seconds: float, out: dict[str, Any]) -> None:
    import websockets

    latencies: list[float] = []
    tools = 0
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}, max_size=2**24) as ws:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                text = await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic()))
            except (TimeoutError, websockets.ConnectionClosed):
                break
            now = time.time()
            if '"type":"tool"' not in text[:20]:
                continue
            latencies.append((now - float(json.loads(text)["published"])) * 1e3)
            tools += 1
    out["latencies_ms"].extend(latencies)
    out["tools"].append(tools)


async def _viewers(url: str, cookie: str, origin: str, n: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"latencies_ms": [], "tools": []}
    await asyncio.gather(*(_viewer(url, cookie, origin, seconds, out) for _ in range(n)))
    return out


def live(viewers: int, seconds: float, rate_hz: float = 60.0) -> dict[str, Any]:
    import httpx
    from scene_data import DistanceMaps, ToolFeed, label_map, scene

    from igikit.console.app import create_app
    from igikit.console.server import ConsoleServer, free_port
    from igikit.console.users import UserStore, load_secret
    from igikit.supervise import AuditLog, SupervisedSession

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = UserStore(folder / "users.db")
        store.add("viewer", "observer", "viewer-password")
        audit = AuditLog(folder / "audit.db")
        session = SupervisedSession(audit, workflow="bench", level=1)
        image = label_map()
        session.publish_scene(scene(image))
        app = create_app(session, store, secret=load_secret(folder / "secret"), title="navigation bench")
        server = ConsoleServer(app, port=free_port()).start()
        maps = DistanceMaps.of(image)
        feed = ToolFeed(session, maps, rate_hz=rate_hz)
        try:
            login = httpx.post(f"{server.url}/api/login", json={"name": "viewer", "password": "viewer-password"})
            login.raise_for_status()
            cookie = "; ".join(f"{k}={v}" for k, v in login.cookies.items())
            args = ["--client", server.url.replace("http://", "ws://") + "/ws", "--cookie", cookie]
            args += ["--origin", server.url, "--viewers", str(viewers), "--seconds", str(seconds)]
            clients = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 20
            while len(app.state.broadcaster.viewers) < viewers and time.monotonic() < deadline:
                time.sleep(0.05)
            feed.start()
            out, _ = clients.communicate(timeout=seconds + 60)
            published = feed.published
        finally:
            feed.stop()
            server.stop()
            audit.close()
            store.close()
    result = json.loads(out.strip().splitlines()[-1])
    lat = np.asarray(result["latencies_ms"])
    return {
        "viewers": viewers,
        "rate_hz": rate_hz,
        "seconds": seconds,
        "tools_published": published,
        "received_share_min": min(result["tools"]) / max(1.0, rate_hz * seconds),
        "latency_ms": {
            "median": float(np.median(lat)),
            "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)),
            "max": float(lat.max()),
        },
    }


# ---------------------------------------------------------------------------------- report
def table(m: dict[str, Any], v: dict[str, Any]) -> str:
    rows = [
        "| what | median (µs) | p95 (µs) | p99 (µs) | median / `publish_frame` at the same pace |",
        "|---|---:|---:|---:|---:|",
    ]
    keys = ("publish_frame", "publish_tool", "publish_frame, back to back", "publish_tool, back to back")
    for key in (*keys, "ToolState()", "encode_tool", "encode_scene"):
        s = m[key]
        base = m["publish_frame, back to back" if "back" in key or not key.startswith("publish") else "publish_frame"]
        name = f"`{key.split(',')[0]}`{',' + key.split(',')[1] if ',' in key else ''}"
        ratio = f"{s['median'] / base['median']:.2f}" if key.startswith("publish") else "–"
        rows.append(f"| {name} | {s['median']:.1f} | {s['p95']:.1f} | {s['p99']:.1f} | {ratio} |")
    lat = v["latency_ms"]
    rows += [
        "",
        f"`publish_*`: {m['publish_n']} calls each, paced at {m['publish_hz']:.0f} Hz like a live loop (a call "
        "after a sleep runs on cold caches), then back to back; both to a running console with no viewer. "
        "The others back to back.",
        "",
        f"Scene: {m['scene_triangles']} triangles in {m['scene_bytes'] / 1024:.0f} KiB; `meshes_from_labels` on a "
        f"{' x '.join(map(str, m['label_map_shape']))} label map (3 structures): {m['meshes_from_labels_ms']:.0f} ms.",
        "",
        f"Tool-to-viewer, {v['rate_hz']:.0f} Hz tool stream, {v['viewers']} WebSocket viewers, {v['seconds']:.0f} s: "
        f"median {lat['median']:.1f} ms, p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms; "
        f"every viewer received at least {100 * v['received_share_min']:.0f}% of the tool states.",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5000)
    parser.add_argument("--publish-hz", type=float, default=200.0, help="pace of the publish_* timings")
    parser.add_argument("--viewers", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--docs", action="store_true", help="write the section of docs/benchmarks.md")
    parser.add_argument("--note", default="", help="a sentence added to the docs section (e.g. machine load)")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--cookie", help=argparse.SUPPRESS)
    parser.add_argument("--origin", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(asyncio.run(_viewers(args.client, args.cookie, args.origin, args.viewers, args.seconds))))
        return 0
    m = micro(args.repeats, args.publish_hz)
    v = live(args.viewers, args.seconds)
    text = table(m, v)
    print(text)
    if args.docs:
        from _docs import replace_section

        command = "python bench/console_navigation.py --docs"
        replace_section(
            "## Console: 3D navigation scene (`bench/console_navigation.py`)\n\n"
            "What the navigation loop pays to show the tool in the console, against the cine loop's "
            "`publish_frame` measured in the same run (both hand a reference to a running console; "
            "encoding happens on the console's thread, also timed), and the tool-to-viewer latency.\n\n"
            f"`{command}`" + (f" — {args.note}" if args.note else "") + "\n\n" + text + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
