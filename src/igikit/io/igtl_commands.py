"""``igikit igtl serve`` and ``igikit igtl record``: OpenIGTLink from the command line.

``serve`` replays a recorded session to 3D Slicer (frames as IMAGE, position-like results as
TRANSFORM, text and numbers as STRING); ``record`` stores every TRANSFORM a server (PLUS, a
tracker) sends, at full rate, as CSV (``t_s,device,m00..m33``, readable by ``igikit calibrate
pivot``) or HDF5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from igikit.io.igtl import IGTLClient, IGTLServer
    from igikit.stream.recorder import Session

#: Device names ``serve`` uses for the frames and for the per-frame numbers.
IMAGE_DEVICE = "Image"
RESULTS_DEVICE = "Results"
MATRIX_COLUMNS = tuple(f"m{r}{c}" for r in range(4) for c in range(4))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``igtl serve`` and ``igtl record``."""
    p = sub.add_parser(
        "igtl",
        help="OpenIGTLink: serve a recorded session to 3D Slicer, record poses from PLUS",
        description="OpenIGTLink (3D Slicer, PLUS, trackers): serve a session file or record poses.",
    )
    cmds = p.add_subparsers(dest="igtl_command", metavar="SUBCOMMAND", parser_class=type(p))
    cmds.required = True

    s = cmds.add_parser(
        "serve",
        help="stream a session file's frames (IMAGE) and results (TRANSFORM / STRING)",
        description="Serve a recorded session (igikit replay --record) over OpenIGTLink so 3D Slicer's "
        "OpenIGTLinkIF can watch it: each frame as IMAGE (device 'Image', geometry in RAS), each "
        "position-like result (a 2- or 3-vector named *_mm) as a translation TRANSFORM named after it "
        "(LPS converted to RAS), text results as STRING, numbers as one JSON STRING ('Results').",
    )
    s.add_argument("session", type=Path, metavar="SESSION.h5", help="session file to replay")
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=_port, default=18944, help="TCP port (default 18944; 0: any free port)")
    s.add_argument("--rate-hz", type=_positive_float, help="frame rate (default: the recorded frame times)")
    s.add_argument(
        "--wait-clients", type=_count, default=1, metavar="N", help="wait for N clients before streaming (default 1)"
    )
    s.add_argument("--wait-s", type=_positive_float, default=600.0, help="give up waiting after this (default 600)")
    s.add_argument("--loop", action="store_true", help="replay again and again until Ctrl-C")
    s.set_defaults(func=_cmd_serve)

    r = cmds.add_parser(
        "record",
        help="record every TRANSFORM from an OpenIGTLink server to CSV or HDF5",
        description="Connect to an OpenIGTLink server (e.g. PLUS) and record every TRANSFORM (and "
        "POSITION) it sends, at full rate, until --seconds pass, the server disconnects, or Ctrl-C. "
        "CSV columns: t_s (the sender's timestamp, Unix s), device, m00..m33 (4x4 row-major, as sent).",
    )
    r.add_argument("--connect", required=True, metavar="HOST:PORT", help="the server, e.g. 127.0.0.1:18944")
    r.add_argument("--out", required=True, type=Path, metavar="POSES.csv|.h5", help="output file (new)")
    r.add_argument("--seconds", type=_positive_float, help="stop after this long (default: until disconnect)")
    r.add_argument("--device", action="append", help="record only this device (repeatable)")
    r.add_argument(
        "--connect-timeout-s", type=_positive_float, default=5.0, help="keep trying to connect this long (default 5)"
    )
    r.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    r.set_defaults(func=_cmd_record)


# ------------------------------------------------------------------------ serve
def _cmd_serve(args: argparse.Namespace) -> int:
    import numpy as np

    from igikit.errors import InputError
    from igikit.io.igtl import IGTLServer
    from igikit.stream.recorder import read_session

    session = read_session(args.session)
    if session.n_frames == 0:
        raise InputError("holds no complete frame to serve", args.session)
    times = session.acquisition_time_s.astype(np.float64)
    if args.rate_hz is not None:
        times = np.arange(session.n_frames) / args.rate_hz
    elif session.n_frames > 1 and not np.all(np.diff(times) > 0):
        raise InputError("frame times are not increasing; give --rate-hz", args.session)
    geometry = _session_geometry(session, args.session)
    with IGTLServer(args.host, args.port) as server:
        print(f"OpenIGTLink server on {server.host}:{server.port}: {session.n_frames} frames", flush=True)
        if args.wait_clients:
            print(f"waiting for {args.wait_clients} client(s) (Slicer: OpenIGTLinkIF, client mode)", flush=True)
            if not server.wait_for_clients(args.wait_clients, args.wait_s):
                raise InputError(f"no client connected to port {server.port} within {args.wait_s:g} s")
        sent = 0
        try:
            while True:
                sent += _serve_once(server, session, times, geometry)
                if not args.loop:
                    break
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
        server.send_status("igikit", "ok", message=f"replay of {args.session.name} finished")
        server.flush(5.0)
        print(
            f"sent {sent} frames to {len(server.peers)} client(s); rejected from clients: "
            + (", ".join(f"{k} {v}" for k, v in server.rejected.items() if v) or "none")
        )
    return 0


def _session_geometry(session: Session, path: Path) -> dict[str, Any]:
    """Spacing / origin / direction of the frames from the session's metadata (defaults: 1 mm, 0, I)."""
    import numpy as np

    from igikit.errors import InputError

    dim = session.frames.ndim - 1
    if dim not in (2, 3):
        raise InputError(f"frames of shape {session.frames.shape[1:]} are not 2D or 3D images", path)
    attrs = session.attrs
    geometry: dict[str, Any] = {}
    for key, name in (("pixel_spacing_mm", "spacing_mm"), ("spacing_mm", "spacing_mm"), ("origin_mm", "origin_mm")):
        value = attrs.get(key)
        if value is not None and name not in geometry:
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
            if arr.size != dim:
                raise InputError(f"{key} has {arr.size} values for {dim}D frames", path)
            geometry[name] = tuple(arr)
    if attrs.get("direction") is not None:
        geometry["direction"] = np.asarray(attrs["direction"], dtype=np.float64).reshape(dim, dim)
    return geometry


def _serve_once(server: IGTLServer, session: Session, times: Any, geometry: dict[str, Any]) -> int:
    import json
    import time

    import numpy as np
    from rich.progress import Progress

    from igikit.core.image import Image

    base = Image(session.frames[0], **geometry)
    vectors, texts, scalars = _result_columns(session)
    start_wall, start_unix = time.perf_counter(), time.time()
    with Progress(transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("serving", total=session.n_frames)
        for k in range(session.n_frames):
            delay = start_wall + (times[k] - times[0]) - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            stamp = start_unix + float(times[k] - times[0])
            server.send_image(IMAGE_DEVICE, base.with_array(session.frames[k]), stamp)
            for name, values in vectors.items():
                v = values[k]
                if np.all(np.isfinite(v)):
                    position = np.zeros(3)
                    position[: v.size] = v
                    matrix = np.eye(4)
                    matrix[:3, 3] = position
                    server.send_transform(name[:20], matrix, stamp, lps_to_ras=True)
            for name, values in texts.items():
                if values[k]:
                    server.send_string(name[:20], values[k], stamp)
            numbers = {name: float(values[k]) for name, values in scalars.items() if np.isfinite(values[k])}
            if numbers:
                frame_id = int(session.frame_id[k])
                server.send_string(RESULTS_DEVICE, json.dumps({"frame_id": frame_id, **numbers}), stamp)
            progress.update(task, completed=k + 1)
    return int(session.n_frames)


def _result_columns(session: Session) -> tuple[dict[str, Any], dict[str, list[str]], dict[str, Any]]:
    """Position-like vectors (``*_mm`` with 2 or 3 values), text, and scalar results of a session."""
    import numpy as np

    vectors: dict[str, Any] = {}
    texts: dict[str, list[str]] = {}
    scalars: dict[str, Any] = {}
    for name, values in session.results.items():
        if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
            if values.ndim == 1:
                scalars[name] = values.astype(np.float64)
            elif values.ndim == 2 and values.shape[1] in (2, 3) and name.endswith("_mm"):
                vectors[name] = values.astype(np.float64)
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            texts[name] = values
    return vectors, texts, scalars


# ----------------------------------------------------------------------- record
def _cmd_record(args: argparse.Namespace) -> int:
    import time

    from igikit.errors import InputError
    from igikit.io.atomic import atomic_path
    from igikit.io.igtl import IGTLClient, parse_address

    out: Path = args.out
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".h5", ".hdf5"):
        raise InputError("output must end in .csv or .h5", out)
    if out.exists() and not args.overwrite:
        raise InputError("already exists; choose another name or give --overwrite", out)
    host, port = parse_address(args.connect)
    devices = set(args.device or ())
    client = IGTLClient(host, port, connect_timeout_s=args.connect_timeout_s)
    client.start()  # InputError (exit 2) when nothing listens there
    print(f"recording TRANSFORMs from {host}:{port}" + (f" for {args.seconds:g} s" if args.seconds else ""), flush=True)
    t0 = time.perf_counter()
    try:
        with atomic_path(out) as tmp:
            if suffix == ".csv":
                rows = _record_csv(client, tmp, devices, args.seconds, t0)
            else:
                rows = _record_h5(client, tmp, devices, args.seconds, t0, args.connect)
            if rows == 0:
                raise InputError(f"no TRANSFORM received from {host}:{port}; nothing written", out)
    finally:
        reason = client.close_reason
        client.stop()
    elapsed = time.perf_counter() - t0
    rejected = ", ".join(f"{k} {v}" for k, v in client.rejected.items() if v) or "none"
    print(
        f"recorded {rows} poses in {elapsed:.1f} s to {out}; rejected: {rejected}" + (f"; {reason}" if reason else "")
    )
    return 0


def _poses(client: IGTLClient, devices: set[str], seconds: float | None, t0: float) -> Any:
    """Every pose (TRANSFORM or POSITION) until time is up, the server leaves, or Ctrl-C."""
    import time

    try:
        while seconds is None or time.perf_counter() - t0 < seconds:
            rx = client.get(0.1)
            if rx is None:
                if not client.connected and client.pending == 0:
                    return
                continue
            if rx.matrix is not None and (not devices or rx.device in devices):
                yield rx
    except KeyboardInterrupt:
        print("stopped (Ctrl-C); keeping what was recorded", file=sys.stderr)


def _record_csv(client: IGTLClient, path: Path, devices: set[str], seconds: float | None, t0: float) -> int:
    import time

    rows = 0
    last_flush = time.perf_counter()
    with open(path, "w", newline="") as f:
        f.write("t_s,device," + ",".join(MATRIX_COLUMNS) + "\n")
        for rx in _poses(client, devices, seconds, t0):
            assert rx.matrix is not None
            t = rx.timestamp_s if rx.timestamp_s > 0 else rx.received_unix_s
            # Device names are printable ASCII (checked on receipt); a comma would break the CSV.
            device = rx.device.replace(",", "_")
            f.write(f"{t:.6f},{device}," + ",".join(f"{v:.9g}" for v in rx.matrix.reshape(-1)) + "\n")
            rows += 1
            if time.perf_counter() - last_flush > 0.5:
                f.flush()
                last_flush = time.perf_counter()
    return rows


def _record_h5(client: IGTLClient, path: Path, devices: set[str], seconds: float | None, t0: float, source: str) -> int:
    import h5py
    import numpy as np

    t_s: list[float] = []
    received: list[float] = []
    names: list[str] = []
    matrices: list[Any] = []
    for rx in _poses(client, devices, seconds, t0):
        t_s.append(rx.timestamp_s if rx.timestamp_s > 0 else rx.received_unix_s)
        received.append(rx.received_unix_s)
        names.append(rx.device)
        matrices.append(rx.matrix)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "igikit-poses"
        f.attrs["source"] = f"openigtlink:{source}"
        f.attrs["matrix"] = "4x4 tool-to-tracker (as sent), row-major, mm"
        f["t_s"] = np.asarray(t_s, dtype=np.float64)
        f["received_unix_s"] = np.asarray(received, dtype=np.float64)
        f["device"] = np.asarray(names, dtype=h5py.string_dtype())
        f["matrix"] = np.asarray(matrices, dtype=np.float64).reshape(-1, 4, 4)
    return len(t_s)


# ----------------------------------------------------------------- arg parsing
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value
