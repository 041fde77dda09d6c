"""OpenIGTLink messages on the wire: header, CRC-64, and the TRANSFORM / IMAGE / STRING / STATUS /
POSITION bodies, checked before anything is believed.

Every OpenIGTLink message starts with a 58-byte big-endian header (header version 1, as in
protocol versions 1 and 2; header version 2, from protocol version 3, adds an extended header and
metadata inside the body: both are accepted)::

    uint16 version | char[12] type | char[20] device name | uint32 s + uint32 fraction (timestamp)
    | uint64 body size | uint64 CRC-64 (ECMA-182, polynomial 0x42F0E1EBA9EA3693) of the body

pyigtl's message classes pack and unpack the TRANSFORM and IMAGE bodies. The header is parsed
here instead, because pyigtl's ``parse_header`` believes every field (any body size; a name it
cannot decode raises) and never checks the CRC; STRING is packed here because pyigtl's text encoder catches the
wrong exception and fails on non-ASCII text; STATUS is missing from pyigtl, and pyigtl's
POSITION is not the OpenIGTLink POSITION body (which is ``x, y, z[, ox, oy, oz[, w]]``).

Coordinates. OpenIGTLink and 3D Slicer express positions in RAS (+x towards the patient's Right,
+y Anterior, +z Superior); ITK, DICOM and igikit's :class:`Image` use LPS (+x Left, +y Posterior,
+z Superior). The two differ by ``F = diag(-1, -1, 1)``. Images are sent with their index-to-RAS
matrix (``F @ index-to-LPS``) and the header's coordinate field set to RAS; a received image is
turned back into LPS geometry whichever field it carries. Transforms carry no coordinate field:
tracker poses (PLUS, a tracked tool) are sent and received unchanged, and
:func:`lps_to_ras_matrix` converts a transform between patient (LPS) frames when Slicer should
show it in its RAS world.

References: OpenIGTLink protocol v2 (openigtlink.org/developers/spec: header, IMAGE, TRANSFORM,
STRING, STATUS, POSITION); Tokuda et al., "OpenIGTLink: an open network protocol for image-guided
therapy environment", Int J Med Robot 2009;5(4):423-434.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from igikit.core.image import Image
from igikit.core.transform import Transform
from igikit.errors import InputError

HEADER_SIZE = 58
HEADER = struct.Struct(">H12s20sIIQQ")
EXTENDED_HEADER = struct.Struct(">HHII")

#: Message types this module decodes; any other type is skipped and counted as ``unknown_type``.
KNOWN_TYPES = ("TRANSFORM", "IMAGE", "STRING", "STATUS", "POSITION")

#: Largest body accepted by default (bytes): a 512 x 512 x 64 float32 volume is 64 MiB.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

#: Rejection reasons, as counted by servers and clients.
REASONS = ("bad_header", "bad_crc", "truncated", "oversized", "unknown_type", "malformed_body", "queue_full")

# ECMA-182 polynomial as used by OpenIGTLink (igtl_util.c), no reflection, zero init / xor-out.
_CRC64_POLY = 0x142F0E1EBA9EA3693
_RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_STATUS_HEAD = struct.Struct(">Hq20s")
_POSITION_SIZES = {12: 0, 24: 3, 28: 4}  # body bytes -> quaternion components sent


def _make_crc64() -> Any:
    # pyigtl builds it with crcmod, whose C extension checksums a 128 KiB frame in ~0.5 ms.
    from pyigtl.messages import CRC64

    return CRC64


_crc64_fn: Any = None


def crc64(data: bytes | bytearray | memoryview) -> int:
    """CRC-64 ECMA-182 of ``data`` as OpenIGTLink computes it (the header's CRC field)."""
    global _crc64_fn
    if _crc64_fn is None:
        _crc64_fn = _make_crc64()
    return int(_crc64_fn(bytes(data) if isinstance(data, memoryview) else data))


class IGTLProtocolError(InputError):
    """A message that breaks the protocol; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Header:
    """A parsed and checked OpenIGTLink header."""

    version: int
    type: str
    device: str
    timestamp_s: float
    body_size: int
    crc: int


def _decode_name(raw: bytes, what: str, *, allow_empty: bool) -> str:
    text = raw.split(b"\0", 1)[0]
    try:
        name = text.decode("ascii")
    except UnicodeDecodeError:
        raise IGTLProtocolError("bad_header", f"{what} is not ASCII: {text[:20]!r}") from None
    if not name.isprintable() or (not name and not allow_empty):
        raise IGTLProtocolError("bad_header", f"{what} is empty or has control characters: {name!r}")
    return name


def parse_header(data: bytes | bytearray, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Header:
    """Parse and check the 58-byte header.

    Raises
    ------
    IGTLProtocolError
        ``bad_header`` when the version is not 1 or 2 or the type / device name is not printable
        ASCII; ``oversized`` when the announced body exceeds ``max_body_bytes``.
    """
    if len(data) != HEADER_SIZE:
        raise IGTLProtocolError("truncated", f"header has {len(data)} bytes, expected {HEADER_SIZE}")
    version, raw_type, raw_name, seconds, fraction, body_size, crc = HEADER.unpack(data)
    if version not in (1, 2):
        raise IGTLProtocolError("bad_header", f"header version {version} (expected 1 or 2)")
    kind = _decode_name(raw_type, "message type", allow_empty=False)
    device = _decode_name(raw_name, "device name", allow_empty=True)
    if body_size > max_body_bytes:
        raise IGTLProtocolError(
            "oversized", f"{kind} body of {body_size} bytes exceeds the limit of {max_body_bytes} bytes"
        )
    return Header(version, kind, device, seconds + fraction / 2.0**32, body_size, crc)


def pack_header(kind: str, device: str, timestamp_s: float, body: bytes, *, version: int = 1) -> bytes:
    """The 58-byte header for ``body`` (CRC computed here)."""
    seconds = int(timestamp_s)
    fraction = min(int((timestamp_s - seconds) * 2.0**32), 0xFFFFFFFF)
    return HEADER.pack(version, kind.encode("ascii"), device.encode("ascii"), seconds, fraction, len(body), crc64(body))


def check_device_name(name: str) -> str:
    """``name`` if it fits the header's device field (1-20 printable ASCII characters)."""
    if not isinstance(name, str) or not name or len(name) > 20 or not name.isascii() or not name.isprintable():
        raise InputError(f"OpenIGTLink device name must be 1-20 printable ASCII characters, got {name!r}")
    return name


# ------------------------------------------------------------------ coordinates
def lps_to_ras_matrix(matrix: npt.ArrayLike) -> np.ndarray:
    """A 4x4 transform between LPS frames, expressed between RAS frames (``F M F``, F = diag(-1,-1,1,1)).

    The same function converts back (F is its own inverse).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise InputError(f"transform must be 4x4, got shape {m.shape}")
    out: np.ndarray = _RAS_FROM_LPS @ m @ _RAS_FROM_LPS
    return out


ras_to_lps_matrix = lps_to_ras_matrix


def image_to_ijk_to_ras(image: Image) -> tuple[np.ndarray, np.ndarray]:
    """The voxels in OpenIGTLink order ``(k, j, i)`` and the 4x4 index-to-RAS matrix of ``image``.

    A 2D image becomes a one-slice volume in the plane z = 0 (its third axis along +z, 1 mm).
    Pixel types OpenIGTLink cannot carry raise :class:`InputError`; booleans are sent as uint8.
    """
    if image.is_series:
        raise InputError("send the frames of a series one at a time (image.frame(t))")
    arr = np.asarray(image.array)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))  # pyigtl looks pixel types up in native order
    if arr.dtype.newbyteorder("=") not in _SCALAR_TYPES:
        raise InputError(
            f"OpenIGTLink images carry (u)int8/16/32, float32 or float64 pixels, not {arr.dtype}; convert first"
        )
    direction = np.eye(3)
    spacing = np.ones(3)
    origin = np.zeros(3)
    d = image.dim
    direction[:d, :d] = image.direction
    spacing[:d] = image.spacing_mm
    origin[:d] = image.origin_mm
    if d == 2:
        arr = arr[np.newaxis]
    if max(arr.shape) > 0xFFFF or min(arr.shape) < 1:
        raise InputError(f"OpenIGTLink image sizes must be 1-65535 per axis, got {arr.shape[::-1]}")
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction * spacing  # column k: index axis k, scaled by its spacing
    ijk_to_lps[:3, 3] = origin
    return np.ascontiguousarray(arr), _RAS_FROM_LPS @ ijk_to_lps


def image_from_ijk_to_world(
    voxels: np.ndarray, ijk_to_world: npt.ArrayLike, *, ras: bool, meta: Mapping[str, Any] | None = None
) -> Image:
    """An LPS :class:`Image` from OpenIGTLink voxels ``(k, j, i)`` and their index-to-world matrix.

    A single slice whose geometry lies in the plane z = 0 with its normal along +z comes back as
    a 2D image (the exact inverse of :func:`image_to_ijk_to_ras` for a 2D image).
    """
    m = np.asarray(ijk_to_world, dtype=np.float64)
    if ras:
        m = _RAS_FROM_LPS @ m
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    if not np.all(np.isfinite(m)) or np.any(spacing <= 0):
        raise IGTLProtocolError("malformed_body", "image matrix has a zero or non-finite axis")
    direction = m[:3, :3] / spacing
    origin = m[:3, 3]
    arr = np.asarray(voxels)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    else:
        arr = arr.copy()  # off the receive buffer, writable by its owner
    planar = (
        arr.ndim == 3
        and arr.shape[0] == 1
        and np.allclose(direction[2], [0, 0, 1], atol=1e-6)
        and np.allclose(direction[:2, 2], 0, atol=1e-6)
        and abs(origin[2]) < 1e-6
    )
    try:
        if planar:
            return Image(arr[0], tuple(spacing[:2]), tuple(origin[:2]), direction[:2, :2], meta=meta or {})
        return Image(arr, tuple(spacing), tuple(origin), direction, meta=meta or {})
    except InputError as exc:
        raise IGTLProtocolError("malformed_body", f"image geometry: {exc}") from None


_SCALAR_TYPES: dict[np.dtype[Any], int] = {
    np.dtype(np.int8): 2,
    np.dtype(np.uint8): 3,
    np.dtype(np.int16): 4,
    np.dtype(np.uint16): 5,
    np.dtype(np.int32): 6,
    np.dtype(np.uint32): 7,
    np.dtype(np.float32): 10,
    np.dtype(np.float64): 11,
}


# --------------------------------------------------------------------- packing
def pack_transform(device: str, matrix: Transform | npt.ArrayLike, timestamp_s: float) -> bytes:
    """A TRANSFORM message (the upper 3x4 of a 4x4 matrix, float32, column-major as the spec says)."""
    from pyigtl import TransformMessage

    m = matrix.matrix if isinstance(matrix, Transform) else np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise InputError(f"OpenIGTLink TRANSFORM needs a 3D (4x4) transform, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise InputError("transform contains non-finite values")
    msg = TransformMessage(m, timestamp=float(timestamp_s), device_name=check_device_name(device))
    return bytes(msg.pack())


def pack_image(device: str, image: Image, timestamp_s: float) -> bytes:
    """An IMAGE message with the index-to-RAS matrix (coordinate field: RAS)."""
    from pyigtl import ImageMessage

    voxels, ijk_to_ras = image_to_ijk_to_ras(image)
    msg = ImageMessage(
        voxels,
        ijk_to_world_matrix=ijk_to_ras,
        world_coordinate_system="ras",
        timestamp=float(timestamp_s),
        device_name=check_device_name(device),
    )
    # pyigtl stores the matrix as float32 (the wire format), keeping it as given otherwise.
    return bytes(msg.pack())


def pack_string(device: str, text: str, timestamp_s: float) -> bytes:
    """A STRING message (ASCII, or UTF-8 when the text needs it; at most 65535 bytes)."""
    try:
        data, encoding = text.encode("ascii"), 3  # IANA MIBenum: US-ASCII
    except UnicodeEncodeError:
        data, encoding = text.encode("utf-8"), 106  # UTF-8
    if len(data) > 0xFFFF:
        raise InputError(f"OpenIGTLink STRING holds at most 65535 bytes, got {len(data)}")
    body = struct.pack(">HH", encoding, len(data)) + data
    return pack_header("STRING", check_device_name(device), timestamp_s, body) + body


#: STATUS codes of the OpenIGTLink spec (the ``code`` field), by name.
STATUS_CODES = {
    "invalid": 0,
    "ok": 1,
    "unknown_error": 2,
    "panic": 3,
    "not_found": 4,
    "access_denied": 5,
    "busy": 6,
    "time_out": 7,
    "overflow": 8,
    "checksum_error": 9,
    "config_error": 10,
    "resource_error": 11,
    "illegal_instruction": 12,
    "not_ready": 13,
    "manual_mode": 14,
    "disabled": 15,
    "not_present": 16,
    "unknown_version": 17,
    "hardware_failure": 18,
    "shutdown": 19,
}


def pack_status(
    device: str, code: int | str, timestamp_s: float, *, subcode: int = 0, error_name: str = "", message: str = ""
) -> bytes:
    """A STATUS message: code (number or name from :data:`STATUS_CODES`), subcode, error name, text."""
    if isinstance(code, str):
        if code not in STATUS_CODES:
            raise InputError(f"unknown STATUS code {code!r}; use one of {', '.join(STATUS_CODES)}")
        code = STATUS_CODES[code]
    if not 0 <= int(code) <= 0xFFFF:
        raise InputError(f"STATUS code must be 0-65535, got {code}")
    if len(error_name) > 20 or not error_name.isascii():
        raise InputError(f"STATUS error name must be at most 20 ASCII characters, got {error_name!r}")
    body = _STATUS_HEAD.pack(int(code), int(subcode), error_name.encode("ascii")) + message.encode("utf-8") + b"\0"
    return pack_header("STATUS", check_device_name(device), timestamp_s, body) + body


def pack_position(
    device: str, position_mm: npt.ArrayLike, timestamp_s: float, quaternion_xyzw: npt.ArrayLike | None = None
) -> bytes:
    """A POSITION message: ``x, y, z`` and, if given, the orientation quaternion ``(ox, oy, oz, w)``."""
    p = np.asarray(position_mm, dtype=np.float64).reshape(-1)
    q = np.zeros(0) if quaternion_xyzw is None else np.asarray(quaternion_xyzw, dtype=np.float64).reshape(-1)
    if p.size != 3 or q.size not in (0, 4) or not np.all(np.isfinite(np.r_[p, q])):
        raise InputError("POSITION needs 3 finite coordinates and optionally a 4-component quaternion (x, y, z, w)")
    body = np.r_[p, q].astype(">f4").tobytes()
    return pack_header("POSITION", check_device_name(device), timestamp_s, body) + body


# -------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class IGTLStatus:
    """The content of a STATUS message."""

    code: int
    subcode: int
    error_name: str
    message: str

    @property
    def ok(self) -> bool:
        """True for code 1 (OK)."""
        return self.code == 1


@dataclass(frozen=True, eq=False)
class ReceivedMessage:
    """One message as it arrived, with when and from whom.

    Parameters
    ----------
    kind
        ``"TRANSFORM"``, ``"IMAGE"``, ``"STRING"``, ``"STATUS"`` or ``"POSITION"``.
    device
        The header's device name (e.g. ``"StylusToTracker"``).
    timestamp_s
        The sender's timestamp (Unix s; 0 when the sender left it unset).
    received_wall_s
        :data:`igikit.stream.message.wall_clock` time at which the last byte arrived.
    received_unix_s
        The same instant as Unix time (s).
    peer
        ``"host:port"`` of the sender.
    seq
        Arrival order over the whole endpoint (0, 1, ...): gaps mean a full queue dropped messages.
    matrix
        TRANSFORM / POSITION: 4x4 homogeneous pose (float64, as sent: no RAS/LPS change).
    image
        IMAGE: the image in LPS geometry (see the module notes).
    text
        STRING: the text.
    status
        STATUS: code, subcode, error name and message.
    metadata
        Header-version-2 metadata (key -> value).
    """

    kind: str
    device: str
    timestamp_s: float
    received_wall_s: float
    received_unix_s: float
    peer: str
    seq: int
    matrix: np.ndarray | None = None
    image: Image | None = None
    text: str | None = None
    status: IGTLStatus | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    nbytes: int = 0

    @property
    def transform(self) -> Transform:
        """The pose as a :class:`Transform` (raises :class:`InputError` for a singular matrix)."""
        if self.matrix is None:
            raise InputError(f"{self.kind} message from {self.device!r} carries no pose")
        return Transform(self.matrix)


@dataclass(frozen=True)
class DecodedBody:
    """What :func:`decode_body` found in a body (the fields of :class:`ReceivedMessage`)."""

    matrix: np.ndarray | None = None
    image: Image | None = None
    text: str | None = None
    status: IGTLStatus | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _split_extended(header: Header, body: bytes) -> tuple[bytes, dict[str, str]]:
    """The content of a header-version-2 body (extended header and metadata removed, sizes checked)."""
    if header.version == 1:
        return body, {}
    if len(body) < EXTENDED_HEADER.size:
        raise IGTLProtocolError("malformed_body", f"version-2 body of {len(body)} bytes has no extended header")
    ext_size, meta_header_size, meta_body_size, _msg_id = EXTENDED_HEADER.unpack_from(body)
    meta_size = meta_header_size + meta_body_size
    if ext_size < EXTENDED_HEADER.size or ext_size + meta_size > len(body):
        raise IGTLProtocolError(
            "malformed_body",
            f"extended header ({ext_size} bytes) and metadata ({meta_size} bytes) exceed the body ({len(body)} bytes)",
        )
    content = body[ext_size : len(body) - meta_size]
    metadata: dict[str, str] = {}
    if meta_size:
        meta = body[len(body) - meta_size :]
        try:
            (count,) = struct.unpack_from(">H", meta)
            offset = 2 + 8 * count
            if offset > meta_header_size:
                raise ValueError("metadata index larger than the metadata header")
            for i in range(count):
                key_size, _encoding, value_size = struct.unpack_from(">HHI", meta, 2 + 8 * i)
                if offset + key_size + value_size > len(meta):
                    raise ValueError("metadata entry past the end")
                key = meta[offset : offset + key_size].decode("utf-8")
                offset += key_size
                metadata[key] = meta[offset : offset + value_size].decode("utf-8")
                offset += value_size
        except (struct.error, ValueError) as exc:
            raise IGTLProtocolError("malformed_body", f"version-2 metadata: {exc}") from None
    return content, metadata


def decode_body(header: Header, body: bytes) -> DecodedBody:
    """Decode a body whose CRC was checked; raises :class:`IGTLProtocolError` (``malformed_body``)."""
    if header.type not in KNOWN_TYPES:
        raise IGTLProtocolError("unknown_type", f"message type {header.type!r} is not handled")
    content, metadata = _split_extended(header, body)
    meta = MappingProxyType(metadata)
    try:
        if header.type == "TRANSFORM":
            from pyigtl import TransformMessage

            if len(content) != 48:
                raise ValueError(f"TRANSFORM body has {len(content)} bytes, expected 48")
            transform = TransformMessage()
            transform.unpack(_pyigtl_fields(header), content)
            return DecodedBody(matrix=_finite(np.array(transform.matrix, dtype=np.float64)), metadata=meta)
        if header.type == "POSITION":
            if len(content) not in _POSITION_SIZES:
                raise ValueError(f"POSITION body has {len(content)} bytes, expected 12, 24 or 28")
            v = np.frombuffer(content, dtype=">f4").astype(np.float64)
            q = np.zeros(4)
            q[3] = 1.0
            if v.size == 6:  # ox, oy, oz; w implied (unit quaternion, w >= 0)
                q[:3] = v[3:]
                q[3] = np.sqrt(max(0.0, 1.0 - float(q[:3] @ q[:3])))
            elif v.size == 7:
                q = v[3:]
            m = np.eye(4)
            m[:3, :3] = _rotation_from_quaternion(q)
            m[:3, 3] = v[:3]
            return DecodedBody(matrix=_finite(m), metadata=meta)
        if header.type == "STRING":
            encoding, length = struct.unpack_from(">HH", content)
            if 4 + length != len(content):
                raise ValueError(f"STRING of {length} bytes in a {len(content) - 4}-byte field")
            data = content[4 : 4 + length]
            return DecodedBody(text=data.decode("ascii" if encoding == 3 else "utf-8"), metadata=meta)
        if header.type == "STATUS":
            code, subcode, raw_name = _STATUS_HEAD.unpack_from(content)
            message = content[_STATUS_HEAD.size :].split(b"\0", 1)[0].decode("utf-8")
            name = raw_name.split(b"\0", 1)[0].decode("ascii")
            return DecodedBody(status=IGTLStatus(code, subcode, name, message), metadata=meta)
        # IMAGE
        return DecodedBody(image=_decode_image(header, content), metadata=meta)
    except IGTLProtocolError:
        raise
    except Exception as exc:  # pyigtl and struct raise many kinds on a bad body
        raise IGTLProtocolError("malformed_body", f"{header.type} body: {type(exc).__name__}: {exc}") from None


def _decode_image(header: Header, content: bytes) -> Image:
    from pyigtl import ImageMessage

    head = struct.unpack_from(">HBBBBHHH", content)
    n_components, scalar_type, coordinates = head[1], head[2], head[4]
    size = head[5:8]
    if n_components != 1:
        raise ValueError(f"{n_components}-component (vector) images are not supported")
    dtype = next((d for d, code in _SCALAR_TYPES.items() if code == scalar_type), None)
    if dtype is None:
        raise ValueError(f"unknown scalar type {scalar_type}")
    expected = 72 + int(np.prod(size)) * dtype.itemsize
    if len(content) != expected:
        raise ValueError(f"image of size {size} {dtype} needs {expected} bytes, body has {len(content)}")
    msg = ImageMessage()
    msg.unpack(_pyigtl_fields(header), content)  # pyigtl's IMAGE decoder, on a body checked above
    return image_from_ijk_to_world(msg.image, msg.ijk_to_world_matrix, ras=coordinates == 1)


def _pyigtl_fields(header: Header) -> dict[str, Any]:
    # The extended header and metadata are already removed: pyigtl sees a version-1 body.
    return {
        "header_version": 1,
        "message_type": header.type,
        "device_name": header.device,
        "timestamp": header.timestamp_s,
    }


def _finite(m: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(m)):
        raise ValueError("non-finite values in the pose")
    m.setflags(write=False)
    return m


def _rotation_from_quaternion(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q / (np.linalg.norm(q) or 1.0)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
