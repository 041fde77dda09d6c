"""Session recording: every frame and every result to an HDF5 file that survives a crash.

The file is written in HDF5's single-writer / multiple-reader (SWMR) mode, flushed after every
frame, in an order chosen so that a process killed at any instant (SIGKILL, a power cut of the
process rather than of the disk) leaves a file that opens and holds every frame up to the last
one flushed:

1. the frame's results, then the frame itself, are appended;
2. only then does ``frame_index`` (one row per frame: id, times, CRC-32, a ``complete`` flag)
   grow by one row: the frame count a reader trusts;
3. the file is flushed (the data reach the operating system, which keeps them after the process
   dies; surviving a machine crash would also need fsync, which is not done per frame).

:func:`read_session` returns only frames whose index row is complete and whose CRC matches, so
a frame interrupted half-way is never returned. Layout::

    /frames                  (n, H, W) frame pixels, one chunk per frame
    /frame_index             (n,) frame_id, acquisition_time_s, available_unix_s,
                             recorded_unix_s, crc32, complete
    /results/<name>          scalar results: (n,) float64 (NaN where a frame lacks it)
                             array results: (n, ...) (NaN / 0 where missing)
    /results/<name>/bytes, /results/<name>/end
                             text or JSON results, ragged: frame k is bytes[end[k-1]:end[k]]
    /extra/frame_id, /extra/bytes, /extra/end
                             JSON of results that did not fit the datasets made at frame 0
                             (or at the warm-up, from a synthetic frame of the same shape)
                             (a new name, a changed shape or type), for those frames only
    attributes               stream metadata (spacing, source, start time) written before
                             SWMR starts; ``closed_cleanly`` etc. added when the session ends

Reference: The HDF Group, "Single-Writer/Multiple-Reader (SWMR) User's Guide", HDF5 1.10.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from igikit.errors import InputError
from igikit.stream.message import Message, wall_clock
from igikit.stream.operator import OperatorSpec, Sink

log = logging.getLogger(__name__)

FORMAT = "igikit-session"
FORMAT_VERSION = 1

INDEX_DTYPE = np.dtype(
    [
        ("frame_id", "<i8"),
        ("acquisition_time_s", "<f8"),
        ("available_unix_s", "<f8"),
        ("recorded_unix_s", "<f8"),
        ("crc32", "<u4"),
        ("complete", "u1"),
    ]
)

Kind = Literal["scalar", "array", "text", "json"]
_ROWS_PER_CHUNK = 256
_BYTES_PER_CHUNK = 4096


def _kind_of(value: Any) -> Kind:
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating):
        return "scalar"
    if isinstance(value, np.ndarray | list | tuple):
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf" and arr.ndim >= 1:
            return "array"
    return "json"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _attr_value(value: Any) -> Any:
    """HDF5 attributes take numbers, strings and flat numeric lists; anything else as JSON."""
    if isinstance(value, str | int | float | bool | np.generic):
        return value
    if isinstance(value, list | tuple | np.ndarray):
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf":
            return arr
    return _to_json(value)


class _Appender:
    """Appends one row per frame to a chunked, resizable dataset with the low-level API.

    h5py's high-level indexing costs more per call than the write itself; a frame writes a
    handful of rows, so the selection is built directly.
    """

    def __init__(self, ds: Any) -> None:
        from h5py import h5s

        self._id = ds.id
        self._row_shape = tuple(ds.shape[1:])
        self._mem_space = h5s.create_simple((1, *self._row_shape))
        self._zeros = (0,) * len(self._row_shape)
        self._dtype = ds.dtype
        # The file's own type as the memory type: otherwise h5py rebuilds an HDF5 type from the
        # NumPy dtype on every write, which for the compound index row costs more than the write.
        self._mem_type = ds.id.get_type()
        # A dataset chunked one row per chunk, unfiltered (the frames): each row *is* a chunk and
        # is handed to the file as is, skipping HDF5's type conversion and chunk bookkeeping.
        self._direct = ds.chunks == (1, *self._row_shape) and not ds.compression and ds.dtype.isnative

    def append(self, n: int, row: np.ndarray) -> None:
        """Write ``row`` as row ``n`` (the dataset grows to ``n + 1`` rows first)."""
        self._id.set_extent((n + 1, *self._row_shape))
        row = np.ascontiguousarray(row)
        if self._direct:
            if row.shape != self._row_shape or row.dtype != self._dtype:
                raise InputError(
                    f"frame {n} is {row.shape} {row.dtype}; this session records {self._row_shape} {self._dtype}"
                )
            self._id.write_direct_chunk((n, *self._zeros), row.data)
            return
        file_space = self._id.get_space()
        file_space.select_hyperslab((n, *self._zeros), (1, *self._row_shape))
        self._id.write(
            self._mem_space,
            file_space,
            row.astype(self._dtype, copy=False).reshape(1, *self._row_shape),
            mtype=self._mem_type,
        )


class _RaggedAppender:
    """Appends variable-length byte strings: concatenated bytes plus cumulative end offsets."""

    def __init__(self, group: Any) -> None:
        self._bytes = group["bytes"].id
        self._byte_type = self._bytes.get_type()
        self._end = _Appender(group["end"])
        self._size = 0

    def append(self, n: int, data: bytes) -> None:
        """Write ``data`` as item ``n``: bytes first, then the offset that makes it visible."""
        from h5py import h5s

        if data:
            new_size = self._size + len(data)
            self._bytes.set_extent((new_size,))
            file_space = self._bytes.get_space()
            file_space.select_hyperslab((self._size,), (len(data),))
            self._bytes.write(
                h5s.create_simple((len(data),)), file_space, np.frombuffer(data, np.uint8), mtype=self._byte_type
            )
            self._size = new_size
        self._end.append(n, np.array([self._size], dtype=np.int64))


@dataclass
class _ResultColumn:
    kind: Kind
    shape: tuple[int, ...] = ()
    dtype: np.dtype | None = None
    writer: Any = None


class Recorder(Sink):
    """Write every frame and every result of a stream to an HDF5 session file, crash-safe.

    The file is created in :meth:`start`; the datasets at the warm-up or else the first frame
    (their shapes come from it). After a clean :meth:`stop` the file is marked ``closed_cleanly``. When a run fails
    and the session must not be kept, call :meth:`discard`.

    Parameters
    ----------
    path
        Session file to create (``.h5``); an existing file is never overwritten unless
        ``overwrite`` is set.
    metadata
        Stream facts stored as file attributes (e.g. ``source.metadata()``: spacing, source).
    exclude
        Result names not to record (e.g. large intermediate images).
    overwrite
        Replace an existing file at ``path``.
    name
        Name in the graph.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from igikit.stream import Application, SyntheticSource, Recorder, read_session
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.h5"
    >>> class Rec(Application):
    ...     def compose(self) -> None:
    ...         src = SyntheticSource((16, 16), n_frames=5, realtime=False)
    ...         self.add_flow(src, Recorder(path, metadata=src.metadata()))
    >>> _ = Rec().run()
    >>> read_session(path).frames.shape
    (5, 16, 16)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        metadata: Mapping[str, Any] | None = None,
        exclude: Sequence[str] = (),
        overwrite: bool = False,
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.metadata = dict(metadata or {})
        self.exclude = frozenset(exclude)
        self.overwrite = overwrite
        self.n_frames = 0
        self._file: Any = None
        self._columns: dict[str, _ResultColumn] = {}
        self._unix_offset = 0.0
        self._created = False
        self._datasets_ready = False
        super().__init__(name)

    def setup(self, spec: OperatorSpec) -> None:
        """Reads the frame (and whatever results arrive)."""
        spec.input("frame")

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Create the file and store the metadata (before SWMR starts, when attributes can be)."""
        import h5py

        if self.path.exists() and not self.overwrite:
            raise InputError("session file already exists; choose another name or delete it", self.path)
        if not self.path.parent.is_dir():
            raise InputError("output folder does not exist", self.path.parent)
        # Unix time of the engine's clock zero, so stored times are absolute and comparable.
        self._unix_offset = time.time() - wall_clock()
        self.n_frames = 0
        self._columns = {}
        self._datasets_ready = False
        # Frames bypass the chunk cache (direct chunk writes); the cache keeps the small per-frame
        # rows (index, results) in memory between flushes instead of re-reading their chunks.
        self._file = h5py.File(self.path, "w", libver="latest", rdcc_nbytes=1 << 20)
        self._created = True
        attrs = self._file.attrs
        attrs["format"] = FORMAT
        attrs["format_version"] = FORMAT_VERSION
        start = time.time()
        attrs["start_unix_s"] = start
        attrs["start_time_utc"] = _dt.datetime.fromtimestamp(start, _dt.UTC).isoformat()
        for key, value in self.metadata.items():
            attrs[key] = _attr_value(value)

    def warm_up(self, message: Message) -> Message:
        """Create the datasets from the synthetic message, so the first real frame need not.

        Creating a few dozen datasets takes 100-250 ms, enough to make the first frame miss its
        deadline. The engine hands this message over only when it carries every result the
        operators upstream declare, with the frame's shape and dtype; nothing is written into them.
        """
        if self._file is None or self._datasets_ready:
            return message
        self._create_datasets(message)
        return message

    def receive(self, message: Message) -> None:
        """Append ``message`` (frame and results) and flush."""
        if self._file is None:
            raise RuntimeError("Recorder.receive() before start()")
        if not self._datasets_ready:
            self._create_datasets(message)
        n = self.n_frames
        extra: dict[str, Any] = {}
        results = message.results
        for key, column in self._columns.items():
            value = results.get(key)
            if value is not None and not self._write_result(column, n, value):
                extra[key] = value
            elif value is None:
                self._write_missing(column, n)
        extra.update((k, v) for k, v in results.items() if k not in self._columns and k not in self.exclude)
        if extra:
            self._extra_frame.append(self._n_extra, np.array([message.frame_id], dtype=np.int64))
            self._extra_text.append(self._n_extra, _to_json(extra).encode())
            self._n_extra += 1
        frame = np.ascontiguousarray(message.frame)
        self._frames.append(n, frame)
        row = np.zeros(1, dtype=INDEX_DTYPE)
        row[0] = (
            message.frame_id,
            message.acquisition_time_s,
            message.available_wall_s + self._unix_offset,
            time.time(),
            zlib.crc32(frame.data),
            1,
        )
        # The frame count grows last: a reader never sees a row whose frame is not there.
        self._index.append(n, row)
        self._file.flush()
        self.n_frames = n + 1

    def stop(self) -> None:
        """Close the file and mark it as closed cleanly (with frame count and end time)."""
        import h5py

        if self._file is None:
            return
        self._file.close()
        self._file = None
        # Attributes cannot be added in SWMR mode; the file is reopened normally to add them.
        with h5py.File(self.path, "r+", libver="latest") as f:
            f.attrs["closed_cleanly"] = True
            f.attrs["n_frames"] = self.n_frames
            f.attrs["end_unix_s"] = time.time()

    def discard(self) -> None:
        """Close and delete the session file (after a failed run, so nothing half-made remains).

        Only a file this recorder created is deleted: a file that was already there (and made
        :meth:`start` refuse) is left alone.
        """
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        if self._created:
            self.path.unlink(missing_ok=True)
            self._created = False

    # ---------------------------------------------------------------- writing
    def _create_datasets(self, message: Message) -> None:
        f = self._file
        frame = np.asarray(message.frame)
        f.attrs["frame_shape"] = np.asarray(frame.shape, dtype=np.int64)
        f.attrs["frame_dtype"] = str(frame.dtype)
        frames = f.create_dataset(
            "frames",
            shape=(0, *frame.shape),
            maxshape=(None, *frame.shape),
            chunks=(1, *frame.shape),
            dtype=frame.dtype,
        )
        index = f.create_dataset(
            "frame_index", shape=(0,), maxshape=(None,), chunks=(_ROWS_PER_CHUNK,), dtype=INDEX_DTYPE
        )
        results = f.create_group("results")
        for key, value in message.results.items():
            if key in self.exclude:
                continue
            self._columns[key] = self._create_column(results, key, value)
        extra = f.create_group("extra")
        extra_frame = extra.create_dataset(
            "frame_id", shape=(0,), maxshape=(None,), chunks=(_ROWS_PER_CHUNK,), dtype=np.int64
        )
        _create_ragged(extra)
        # SWMR forbids creating objects from here on: every dataset exists before this line.
        f.swmr_mode = True
        self._frames, self._index = _Appender(frames), _Appender(index)
        self._extra_frame, self._extra_text = _Appender(extra_frame), _RaggedAppender(extra)
        self._n_extra = 0
        for column in self._columns.values():
            ds = column.writer
            column.writer = _RaggedAppender(ds) if column.kind in ("text", "json") else _Appender(ds)
        self._datasets_ready = True

    @staticmethod
    def _create_column(results: Any, key: str, value: Any) -> _ResultColumn:
        kind = _kind_of(value)
        if kind in ("text", "json"):
            group = results.create_group(key)
            group.attrs["kind"] = kind
            _create_ragged(group)
            return _ResultColumn(kind, writer=group)
        arr = np.asarray(value)
        dtype = np.dtype(np.float64) if kind == "scalar" else arr.dtype
        if dtype.kind == "b":
            dtype = np.dtype(np.uint8)
        shape = () if kind == "scalar" else arr.shape
        fill = np.nan if dtype.kind == "f" else 0
        ds = results.create_dataset(
            key,
            shape=(0, *shape),
            maxshape=(None, *shape),
            chunks=(max(1, min(_ROWS_PER_CHUNK, 65536 // max(1, int(np.prod(shape)) * dtype.itemsize))), *shape),
            dtype=dtype,
            fillvalue=fill,
        )
        ds.attrs["kind"] = kind
        return _ResultColumn(kind, shape, dtype, ds)

    @staticmethod
    def _write_result(column: _ResultColumn, n: int, value: Any) -> bool:
        """Write ``value`` into its column; False when it does not fit (it then goes to extra)."""
        if column.kind == "text":
            if not isinstance(value, str):
                return False
            column.writer.append(n, value.encode())
            return True
        if column.kind == "json":
            column.writer.append(n, _to_json(value).encode())
            return True
        if _kind_of(value) != column.kind:
            return False
        arr = np.asarray(value)
        if arr.shape != column.shape:
            return False
        assert column.dtype is not None
        column.writer.append(n, arr.astype(column.dtype, copy=False))
        return True

    @staticmethod
    def _write_missing(column: _ResultColumn, n: int) -> None:
        if column.kind in ("text", "json"):
            column.writer.append(n, b"")
        else:
            assert column.dtype is not None
            fill = np.nan if column.dtype.kind == "f" else 0
            column.writer.append(n, np.full(column.shape, fill, dtype=column.dtype))


def _create_ragged(group: Any) -> None:
    group.create_dataset("bytes", shape=(0,), maxshape=(None,), chunks=(_BYTES_PER_CHUNK,), dtype=np.uint8)
    group.create_dataset("end", shape=(0,), maxshape=(None,), chunks=(_ROWS_PER_CHUNK,), dtype=np.int64)


# -------------------------------------------------------------------- reading
@dataclass(frozen=True, eq=False)
class Session:
    """The complete frames of a session file and everything recorded with them.

    Parameters
    ----------
    path
        The file read.
    attrs
        File attributes: stream metadata, start time, and (after a clean end) ``closed_cleanly``.
    frames
        (n, H, W) frames, in recording order.
    index
        (n,) structured array: ``frame_id``, ``acquisition_time_s``, ``available_unix_s``,
        ``recorded_unix_s``, ``crc32``, ``complete``.
    results
        Per result name: an (n, ...) array for numbers (NaN where a frame lacked it), a list of
        n strings for text, a list of n decoded JSON values (None where missing) for the rest.
    extra
        Results that did not fit the columns, by frame id (decoded JSON).
    """

    path: Path
    attrs: dict[str, Any]
    frames: np.ndarray
    index: np.ndarray
    results: dict[str, Any]
    extra: dict[int, dict[str, Any]]

    @property
    def n_frames(self) -> int:
        """Number of complete frames."""
        return int(self.frames.shape[0])

    @property
    def frame_id(self) -> np.ndarray:
        """Source frame id of each recorded frame."""
        return np.asarray(self.index["frame_id"])

    @property
    def acquisition_time_s(self) -> np.ndarray:
        """Acquisition time of each recorded frame (stream clock, s)."""
        return np.asarray(self.index["acquisition_time_s"])

    @property
    def closed_cleanly(self) -> bool:
        """False when the recording process died (or is still running)."""
        return bool(self.attrs.get("closed_cleanly", False))

    def describe(self) -> str:
        """A few lines a person reads: where it came from, frames, timing, results, value range."""
        lines = [f"recorded session ({FORMAT} format {self.attrs.get('format_version', '?')})"]
        if "start_time_utc" in self.attrs:
            lines[0] += f", started {self.attrs['start_time_utc']}"
        if self.closed_cleanly:
            lines.append("closed cleanly: yes")
        else:
            lines.append(
                "closed cleanly: no (the recording process was killed or is still running); "
                f"{self.n_frames} complete frames read"
            )
        facts = {k: v for k, v in self.attrs.items() if k not in _FILE_ATTRS}
        if facts:
            lines.append("workflow / source metadata:")
            lines.extend(f"  {key}: {_short(value)}" for key, value in sorted(facts.items()))
        n = self.n_frames
        if n == 0:
            lines.append("frames: none complete")
            return "\n".join(lines)
        shape = " x ".join(str(v) for v in self.frames.shape[1:])
        layout = " (H x W)" if self.frames.ndim == 3 else ""
        lines.append(f"frames: {n} of {shape}{layout}, {self.frames.dtype}")
        ids = self.frame_id
        gaps = int(ids[-1] - ids[0] + 1 - n)
        lines.append(
            f"frame ids: {ids[0]} .. {ids[-1]}"
            + (f", {gaps} missing (dropped before recording)" if gaps else ", none missing")
        )
        t = self.acquisition_time_s
        if n > 1:
            interval = float(np.median(np.diff(t)))
            rate = f", {1.0 / interval:.4g} Hz (median interval {interval * 1e3:.4g} ms)" if interval > 0 else ""
            lines.append(f"acquisition times (s): {t[0]:.4f} .. {t[-1]:.4f}, span {t[-1] - t[0]:.4f} s{rate}")
            wall = self.index["recorded_unix_s"]
            lines.append(f"recorded over {float(wall[-1] - wall[0]):.3f} s of wall time")
        else:
            lines.append(f"acquisition time (s): {t[0]:.4f} (one frame)")
        if self.results:
            lines.append("results recorded per frame:")
            lines.extend(f"  {name}: {_result_summary(value, n)}" for name, value in sorted(self.results.items()))
        else:
            lines.append("results recorded per frame: none")
        if self.extra:
            names = sorted({key for values in self.extra.values() for key in values})
            count = len(self.extra)
            lines.append(f"extra results on {count} frame{'' if count == 1 else 's'}: {', '.join(names)}")
        lines.append(f"value range: {_value_range(self.frames)}")
        return "\n".join(lines)


#: Attributes the recorder itself writes (the rest came from the workflow or source).
_FILE_ATTRS = frozenset(
    {"format", "format_version", "start_unix_s", "start_time_utc", "closed_cleanly", "n_frames", "end_unix_s"}
    | {"frame_shape", "frame_dtype"}
)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=_json_default)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _result_summary(value: Any, n: int) -> str:
    """Kind, per-frame shape and how many frames carry a result column."""
    if isinstance(value, np.ndarray):
        per_frame = "a number" if value.ndim == 1 else f"{' x '.join(map(str, value.shape[1:]))} values"
        present = ~np.isnan(value).reshape(n, -1).all(axis=1) if value.dtype.kind == "f" else np.ones(n, bool)
        return f"{per_frame} ({value.dtype}), on {int(present.sum())} of {n} frames"
    kind = "text" if all(isinstance(v, str) for v in value) else "JSON"
    present_count = sum(1 for v in value if v not in (None, ""))
    return f"{kind}, on {present_count} of {n} frames"


def _value_range(frames: np.ndarray) -> str:
    finite = frames[np.isfinite(frames)] if frames.dtype.kind in "fc" else frames
    if not finite.size:
        return "no finite values"
    text = f"{finite.min():.6g} .. {finite.max():.6g}"
    return text if finite.size == frames.size else f"{text} ({frames.size - finite.size} non-finite values)"


def _read_ragged(group: Any, n: int) -> list[bytes]:
    ends = np.asarray(group["end"][:n], dtype=np.int64)
    data = np.asarray(group["bytes"][: int(ends[-1]) if n else 0], dtype=np.uint8).tobytes()
    starts = np.concatenate([[0], ends[:-1]])
    return [data[s:e] for s, e in zip(starts, ends, strict=True)]


def read_session(path: str | Path) -> Session:
    """Read the complete frames of a session file, also one whose writer was killed or still runs.

    A frame counts when its ``frame_index`` row is complete, its pixels and results are all
    present and its CRC-32 matches; a last frame that fails this was being written when the
    writer died and is left out. A failure before the last frame means the file was damaged
    afterwards, and raises.

    Raises
    ------
    InputError
        When the file is missing, not HDF5, not an igikit session, or damaged.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError("session file not found", path)
    try:
        # SWMR read mode opens a file whose writer is still running or was killed.
        f = h5py.File(path, "r", libver="latest", swmr=True)
    except OSError as exc:
        raise InputError(f"cannot be opened as an HDF5 session file ({exc})", path) from None
    with f:
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise InputError(
                f"is an HDF5 file but not an igikit session (format attribute {attrs.get('format')!r}, "
                f"expected {FORMAT!r})",
                path,
            )
        try:
            return _read_open_session(f, path, attrs)
        except InputError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            # an object the layout requires is missing or malformed: not a file the recorder wrote
            raise InputError(f"damaged igikit session file ({type(exc).__name__}: {exc})"[:200], path) from None


def _read_open_session(f: Any, path: Path, attrs: dict[str, Any]) -> Session:
    """The body of :func:`read_session` on an opened file with the right format attribute."""
    import h5py

    if "frame_index" not in f:  # killed before the first frame was written
        empty = np.zeros((0,), dtype=INDEX_DTYPE)
        return Session(path, attrs, np.zeros((0, 0, 0)), empty, {}, {})  # shape unknown: no frame
    index = np.asarray(f["frame_index"][:])
    n = len(index)
    while n and not index["complete"][n - 1]:
        n -= 1
    lengths = [f["frames"].shape[0]]
    for obj in f["results"].values():
        lengths.append(obj["end"].shape[0] if isinstance(obj, h5py.Group) else obj.shape[0])
    n = min(n, *lengths)
    frames = np.asarray(f["frames"][:n])
    for k in range(n):
        if zlib.crc32(np.ascontiguousarray(frames[k]).data) != int(index["crc32"][k]):
            if k == n - 1:
                n -= 1  # interrupted mid-write: not a complete frame
                break
            raise InputError(f"frame {k} fails its CRC check: the file is damaged", path)
    frames, index = frames[:n], index[:n]
    results: dict[str, Any] = {}
    for name, obj in f["results"].items():
        kind = obj.attrs.get("kind")
        if isinstance(obj, h5py.Group):
            items = _read_ragged(obj, n)
            if kind == "json":
                results[name] = [json.loads(b) if b else None for b in items]
            else:
                results[name] = [b.decode() for b in items]
        else:
            results[name] = np.asarray(obj[:n])
    extra: dict[int, dict[str, Any]] = {}
    n_extra = min(f["extra/frame_id"].shape[0], f["extra/end"].shape[0])
    if n_extra:
        ids = np.asarray(f["extra/frame_id"][:n_extra])
        kept = set(index["frame_id"].tolist())
        for fid, blob in zip(ids, _read_ragged(f["extra"], n_extra), strict=True):
            if int(fid) in kept:
                extra[int(fid)] = json.loads(blob)
    return Session(path, attrs, frames, index, results, extra)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
