"""Console load test: N WebSocket viewers watching a live 8 Hz treatment loop on loopback.

Runs a live stream graph (synthetic 256 x 256 frames -> normalise -> rigid motion -> supervise ->
console) in this process, as a workflow and its console do, and N viewers in a separate process
(so that their decoding does not compete with the server for this process's interpreter). Reports

* frame-to-screen latency: from the moment the loop published a frame (``published``) to the
  moment a viewer received it, over every frame and viewer (p50 / p99 / max);
* frames each viewer received, of those the loop published;
* the treatment loop's end-to-end latency and deadline misses (deadline 100 ms).

    python bench/console_load.py [--viewers 20] [--rate-hz 8] [--seconds 10] [--json OUT.json]

Exit code 1 when p99 >= 100 ms or the loop missed a deadline.
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

P99_LIMIT_MS = 100.0


# ----------------------------------------------------------------------------- viewers
async def _viewer(url: str, cookie: str, origin: str, seconds: float, out: dict[str, Any]) -> None:
    import websockets

    latencies: list[float] = []
    frames = 0
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}, max_size=2**24) as ws:
        out["connected"] += 1
        end = None
        while True:
            timeout = 5.0 if end is None else max(0.01, end - time.monotonic())
            try:
                text = await asyncio.wait_for(ws.recv(), timeout)
            except (TimeoutError, websockets.ConnectionClosed):
                break
            now = time.time()
            if '"type":"frame"' not in text[:20]:
                continue
            msg = json.loads(text)
            if end is None:
                end = time.monotonic() + seconds
            latencies.append((now - float(msg["published"])) * 1e3)
            frames += 1
            if time.monotonic() >= end:
                break
    out["latencies_ms"].extend(latencies)
    out["frames"].append(frames)


async def _viewers(url: str, cookie: str, origin: str, n: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"connected": 0, "latencies_ms": [], "frames": []}
    await asyncio.gather(*(_viewer(url, cookie, origin, seconds, out) for _ in range(n)))
    return out


def client_main(args: argparse.Namespace) -> int:
    """The viewers' process: connect, print ``ready``, watch, print the numbers as JSON."""
    result = asyncio.run(_viewers(args.client, args.cookie, args.origin, args.viewers, args.seconds))
    print(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------ server
def run_load(*, viewers: int = 20, rate_hz: float = 8.0, seconds: float = 10.0, size: int = 256) -> dict[str, Any]:
    """Serve a live loop, watch it with ``viewers`` viewers for ``seconds``; return the numbers."""
    import httpx

    from igikit.console.app import create_app
    from igikit.console.feed import LiveFeed
    from igikit.console.server import ConsoleServer, free_port
    from igikit.console.users import UserStore, load_secret
    from igikit.stream import SyntheticSource
    from igikit.supervise import AuditLog, SupervisedSession

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = UserStore(folder / "users.db")
        store.add("viewer", "observer", "viewer-password")
        audit = AuditLog(folder / "audit.db")
        session = SupervisedSession(audit, workflow="load", level=3, safe_values={"beam": "hold"})
        n_frames = int(rate_hz * (seconds + 3))
        source = SyntheticSource((size, size), n_frames=n_frames, rate_hz=rate_hz, realtime=True, noise=0.01)
        feed = LiveFeed(source, session, deadline_ms=100.0)
        app = create_app(session, store, secret=load_secret(folder / "secret"), title="load test")
        server = ConsoleServer(app, port=free_port()).start()
        try:
            login = httpx.post(f"{server.url}/api/login", json={"name": "viewer", "password": "viewer-password"})
            login.raise_for_status()
            cookie = "; ".join(f"{k}={v}" for k, v in login.cookies.items())
            ws_url = server.url.replace("http://", "ws://") + "/ws"
            clients = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    ws_url,
                    "--cookie",
                    cookie,
                    "--origin",
                    server.url,
                    "--viewers",
                    str(viewers),
                    "--seconds",
                    str(seconds),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            # let the viewers connect before the loop starts, so that every one sees the whole run
            deadline = time.monotonic() + 20
            while len(server_viewers(app)) < viewers and time.monotonic() < deadline and clients.poll() is None:
                time.sleep(0.05)
            connected = len(server_viewers(app))
            feed.start()
            out, _ = clients.communicate(timeout=seconds + 60)
            feed.join(timeout=seconds + 30)
        finally:
            feed.stop()
            server.stop()
            audit.close()
            store.close()
    result = json.loads(out.strip().splitlines()[-1])
    lat = np.asarray(result["latencies_ms"], dtype=float)
    report = feed.report
    frames = result["frames"]
    published = report.frames_processed if report is not None else 0
    expected = round(seconds * rate_hz)
    return {
        "viewers": viewers,
        "viewers_connected_at_start": connected,
        "rate_hz": rate_hz,
        "seconds": seconds,
        "frame_size": [size, size],
        "frames_published": published,
        "frames_per_viewer_expected": expected,
        "frames_per_viewer_min": int(min(frames)) if frames else 0,
        "frames_per_viewer_median": float(np.median(frames)) if frames else 0.0,
        "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "latency_ms_p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "latency_ms_max": float(lat.max()) if lat.size else float("nan"),
        "latency_samples": int(lat.size),
        "loop_deadline_ms": 100.0,
        "loop_deadline_misses": report.deadline_misses if report is not None else -1,
        "loop_end_to_end_ms_p99": report.end_to_end.p99_ms if report is not None else float("nan"),
        "loop_frames_dropped": report.frames_dropped if report is not None else -1,
        "loop_operator_max_ms": {k: round(v.max_ms, 1) for k, v in report.per_operator.items()} if report else {},
    }


def server_viewers(app: Any) -> set[Any]:
    """The viewers connected to a console app now."""
    return app.state.broadcaster.viewers  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--rate-hz", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=256, help="frame size in pixels (square)")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--cookie", help=argparse.SUPPRESS)
    parser.add_argument("--origin", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        return client_main(args)
    numbers = run_load(viewers=args.viewers, rate_hz=args.rate_hz, seconds=args.seconds, size=args.size)
    for key, value in numbers.items():
        print(f"{key:30s} {value:.1f}" if isinstance(value, float) else f"{key:30s} {value}")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))
    ok = numbers["latency_ms_p99"] < P99_LIMIT_MS and numbers["loop_deadline_misses"] == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
