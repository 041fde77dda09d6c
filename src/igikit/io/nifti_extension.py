"""igikit's key/value metadata in a NIfTI header extension, which ITK's NIfTI writer has no room for.

MetaImage and NRRD keep arbitrary key/value pairs (igikit stores a series' exact frame times,
modality and units there); ITK writes none into NIfTI. NIfTI-1 and NIfTI-2 provide header
extensions for such data: after the header, a 4-byte *extender* whose first byte is non-zero
announces extensions, each ``esize`` (int32, a multiple of 16, counting its own 8-byte head),
``ecode`` (int32) and ``esize - 8`` bytes of content; ``vox_offset`` moves past them.

igikit writes one extension with ``ecode`` 6 (``NIFTI_ECODE_COMMENT``, text) holding a JSON object
whose keys all start with ``igikit_``. Readers that do not know it (ITK, nibabel, FSL) skip it.

Written by hand rather than through nibabel: the extension is spliced into the bytes ITK wrote,
so ITK's header (qform, sform, pixel type, scaling) and the voxels stay exactly as SimpleITK made
and reads them; re-saving through a second NIfTI library would re-encode both, and add a
dependency for a few dozen lines of the format's simplest part.

Reference: NIfTI-1 data format, ``nifti1.h`` ("extensions"), https://nifti.nimh.nih.gov/nifti-1.
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Mapping
from pathlib import Path

from igikit.errors import InputError

#: NIFTI_ECODE_COMMENT: an extension holding text.
ECODE_COMMENT = 6
#: Every key igikit stores starts with this, which is how its extension is told from others.
KEY_PREFIX = "igikit_"

# Header size -> (offset, struct format) of vox_offset: a float32 in NIfTI-1, an int64 in NIfTI-2.
_VOX_OFFSET_FIELD = {348: (108, "f"), 540: (168, "q")}


def _layout(head: bytes, path: Path) -> tuple[str, int, int]:
    """Byte order (``"<"`` / ``">"``), header size and ``vox_offset`` of a NIfTI header."""
    if len(head) < 348:
        raise InputError("truncated: shorter than a NIfTI header", path)
    for endian in ("<", ">"):
        size = struct.unpack(endian + "i", head[:4])[0]
        if size in _VOX_OFFSET_FIELD:
            if len(head) < size + 4:
                raise InputError("truncated: shorter than a NIfTI header", path)
            at, fmt = _VOX_OFFSET_FIELD[size]
            vox_offset = int(struct.unpack(endian + fmt, head[at : at + struct.calcsize(fmt)])[0])
            return endian, size, max(vox_offset, size + 4)
    raise InputError("not a NIfTI file (header size field is neither 348 nor 540)", path)


def write_keys(path: str | Path, keys: Mapping[str, str], *, target: str | Path | None = None) -> None:
    """Store ``keys`` (names starting with ``igikit_``) in a header extension of NIfTI file ``path``.

    The result goes to ``target`` (default: ``path``, rewritten in place), gzip-compressed when its
    name ends in ``.gz``; call it on temporary files before moving the result into place. Writing
    an uncompressed ``path`` to a ``.nii.gz`` target compresses the data once instead of twice.
    Extensions already there are kept.
    """
    path = Path(path)
    target = path if target is None else Path(target)
    if any(not k.startswith(KEY_PREFIX) for k in keys):
        raise ValueError(f"igikit NIfTI keys must start with {KEY_PREFIX!r}: {sorted(keys)}")
    raw = path.read_bytes()
    data = gzip.decompress(raw) if path.name.lower().endswith(".gz") else raw
    endian, size, vox_offset = _layout(data, path)
    content = json.dumps(dict(keys), ensure_ascii=True, sort_keys=True).encode("ascii")
    esize = 8 + len(content) + (-(8 + len(content)) % 16)
    extension = struct.pack(endian + "ii", esize, ECODE_COMMENT) + content.ljust(esize - 8, b"\0")
    new_offset = vox_offset + esize
    header = bytearray(data[:size])
    at, fmt = _VOX_OFFSET_FIELD[size]
    header[at : at + struct.calcsize(fmt)] = struct.pack(endian + fmt, new_offset)
    if fmt == "f" and int(struct.unpack(endian + "f", header[at : at + 4])[0]) != new_offset:
        raise InputError("header extension would put the voxels past what NIfTI-1 can address", path)
    extender = b"\x01\0\0\0"
    existing = data[size + 4 : vox_offset]  # earlier extensions (none from ITK)
    out = bytes(header) + extender + existing + extension + data[vox_offset:]
    target.write_bytes(gzip.compress(out, compresslevel=6, mtime=0) if target.name.lower().endswith(".gz") else out)


def read_keys(path: str | Path) -> dict[str, str]:
    """The igikit keys stored by :func:`write_keys` in NIfTI file ``path`` ({} when there are none)."""
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(544)
        endian, size, vox_offset = _layout(head, path)
        if head[size : size + 1] in (b"", b"\0") or vox_offset <= size + 4:
            return {}
        block = head + fh.read(max(0, vox_offset - len(head)))
    keys: dict[str, str] = {}
    pos = size + 4
    while pos + 8 <= min(vox_offset, len(block)):
        esize, ecode = struct.unpack(endian + "ii", block[pos : pos + 8])
        if esize < 16 or esize % 16 or pos + esize > vox_offset:
            break  # not a valid extension list: nothing more can be located safely
        if ecode == ECODE_COMMENT:
            keys.update(_igikit_keys(block[pos + 8 : pos + esize]))
        pos += esize
    return keys


def _igikit_keys(content: bytes) -> dict[str, str]:
    try:
        value = json.loads(content.rstrip(b"\0 ").decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}  # someone else's comment
    if not isinstance(value, dict) or not value or not all(str(k).startswith(KEY_PREFIX) for k in value):
        return {}
    return {str(k): str(v) for k, v in value.items()}
