"""NIfTI, MetaImage (MHA / MHD) and NRRD files, read and written through SimpleITK.

Geometry (spacing, origin, direction) passes through unchanged: MetaImage and NRRD keep it to full
double precision, NIfTI to single precision (its header stores float32; about 1e-7 relative).

A series (:attr:`Image.frame_times_s`) is written with time as one more ITK axis: spacing is the
median frame interval and origin the first frame time. Frame intervals need not be regular, so the
exact times are also stored as the key ``igikit_frame_times_s``, beside ``igikit_modality`` and
``igikit_units``: in the key/value metadata of MetaImage and NRRD, and in a header extension of
NIfTI, whose ITK writer keeps no metadata (:mod:`igikit.io.nifti_extension`).

:func:`read_image` also accepts DICOM files and folders, handing them to :mod:`igikit.io.dicom`,
so that one call reads any image a user points at.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from igikit.core.image import Image
from igikit.errors import InputError
from igikit.io import nifti_extension
from igikit.io.atomic import atomic_path

log = logging.getLogger(__name__)

#: File name endings read and written through SimpleITK.
IMAGE_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")
#: Endings taken as DICOM without looking inside.
DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom", ".ima")

FRAME_TIMES_KEY = "igikit_frame_times_s"
MODALITY_KEY = "igikit_modality"
UNITS_KEY = "igikit_units"

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def image_suffix(path: str | Path) -> str:
    """The format-defining ending of ``path`` (``".nii.gz"``, ``".mha"``...), lower case.

    Raises
    ------
    InputError
        When the ending is not one igikit reads or writes as an image file.
    """
    name = Path(path).name.lower()
    for suffix in sorted(IMAGE_SUFFIXES + DICOM_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    ending = "".join(Path(path).suffixes) or "no extension"
    raise InputError(
        f"unsupported file type ({ending}); images must be .nii, .nii.gz, .mha, .mhd, .nrrd, .nhdr "
        "or DICOM (.dcm, or a DICOM folder)",
        path,
    )


def is_dicom_path(path: str | Path) -> bool:
    """True for a folder, a ``.dcm``-like name, or a file with the DICOM ``DICM`` marker."""
    p = Path(path)
    if p.is_dir():
        return True
    if p.name.lower().endswith(DICOM_SUFFIXES):
        return True
    if p.name.lower().endswith(IMAGE_SUFFIXES) or not p.is_file():
        return False
    with p.open("rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


@contextlib.contextmanager
def _native_output_captured() -> Iterator[list[str]]:
    """Catch what C++ libraries print on file descriptors 1 and 2 while the block runs.

    ITK's MetaImage and NIfTI readers report problems with ``fprintf(stderr)`` besides (or instead
    of) raising, which would break the command line's one-line error contract and says nothing a
    Python caller can use. The text is handed back (the yielded list gets it on exit) so that it can
    go into an error message or the debug log. File descriptors are process-wide: output of other
    threads during the read lands here too, and is logged rather than lost.
    """
    captured: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile() as sink:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("native output while reading: %s", text)
                captured.append(text)


def _nifti_data_problem(path: Path) -> str | None:
    """Why a NIfTI file's voxel data is incomplete, or None when it is complete.

    ITK reads a truncated NIfTI without complaint and fills the missing voxels, so the header's
    promise (``vox_offset`` + ``prod(dim) * bitpix / 8`` bytes, NIfTI-1 or NIfTI-2) is checked here.
    For ``.nii.gz`` the stream is decompressed once to count its bytes and catch a cut-off stream.
    """
    gz = path.name.lower().endswith(".gz")
    if gz:
        with path.open("rb") as raw:
            if raw.read(2) != b"\x1f\x8b":
                return "not an image file igikit can read (named .gz but not gzip-compressed)"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(540)
            if len(head) < 348:
                return "truncated: shorter than a NIfTI header"
            for endian in ("<", ">"):
                sizeof_hdr = struct.unpack(endian + "i", head[:4])[0]
                if sizeof_hdr in (348, 540):
                    break
            else:
                return "not a NIfTI file (header size field is neither 348 nor 540)"
            if sizeof_hdr == 348:
                dims = struct.unpack(endian + "8h", head[40:56])
                bitpix = struct.unpack(endian + "h", head[72:74])[0]
                offset = int(struct.unpack(endian + "f", head[108:112])[0])
            else:
                if len(head) < 540:
                    return "truncated: shorter than a NIfTI-2 header"
                bitpix = struct.unpack(endian + "h", head[14:16])[0]
                dims = struct.unpack(endian + "8q", head[16:80])
                offset = int(struct.unpack(endian + "q", head[168:176])[0])
            ndim = int(dims[0])
            if not 1 <= ndim <= 7 or bitpix <= 0:
                return f"corrupt NIfTI header (dim[0]={ndim}, bitpix={bitpix})"
            count = int(np.prod([max(int(d), 1) for d in dims[1 : ndim + 1]]))
            needed = max(offset, sizeof_hdr) + count * bitpix // 8
            if gz:
                total = len(head)
                while chunk := fh.read(1 << 22):
                    total += len(chunk)
            else:
                total = path.stat().st_size
    except (EOFError, OSError, zlib.error) as exc:
        return f"truncated or corrupt compressed data ({exc})"
    if total < needed:
        return f"truncated: the header promises {needed} bytes of image, the file holds {total}"
    return None


def _read_failure(detail: str, native: list[str]) -> str:
    """Turn ITK's multi-line exception text into a short reason a user can act on."""
    text = detail + "\n" + "\n".join(native)
    if "Unable to determine ImageIO reader" in text:
        return "not an image file igikit can read (no NIfTI, MetaImage or NRRD header)"
    if any(s in text for s in ("not read completely", "fread got only", "unexpected end", "truncat")):
        return "truncated: the image data is shorter than its header says"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "rror" in ln and "Exception thrown" not in ln]
    reason = (errors or lines or ["unknown error"])[-1]
    return f"cannot be read as an image ({reason[:160]})"


def read_image(path: str | Path, *, series: bool | None = None) -> Image:
    """Read a NIfTI, MetaImage, NRRD or DICOM image with its geometry.

    Parameters
    ----------
    path
        ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``; a DICOM file or folder is
        read by :func:`igikit.io.dicom.read_dicom`.
    series
        True: the last ITK axis is time (a 3D file is 2D + t, a 4D file 3D + t). False: a plain
        image. None (default): a series exactly when the file was written as one by
        :func:`write_image` (it carries ``igikit_frame_times_s``).

    Returns
    -------
    Image
        Array in NumPy order; modality and units when the file records them.

    Raises
    ------
    InputError
        Naming the file: missing, unsupported type, not an image, truncated, or not a series.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if is_dicom_path(path):
        from igikit.io.dicom import read_dicom

        image = read_dicom(path)
        if series and not image.is_series:
            raise InputError("holds a single image, not a series over time", path)
        return image
    suffix = image_suffix(path)
    if suffix in _NIFTI_SUFFIXES and (problem := _nifti_data_problem(path)):
        raise InputError(problem, path)

    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _native_output_captured() as native:
            reader.ReadImageInformation()
            img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(_read_failure(str(exc), native), path) from None
    stored = {k: img.GetMetaData(k) for k in img.GetMetaDataKeys()}
    if suffix in _NIFTI_SUFFIXES:
        stored.update(nifti_extension.read_keys(path))
    meta = {"source": str(path)}
    modality = stored.get(MODALITY_KEY) or None
    if modality is None and "Modality" in stored:
        # MetaImage's own field: MET_MOD_MR, MET_MOD_CT, ... or MET_MOD_UNKNOWN.
        code = stored["Modality"].removeprefix("MET_MOD_")
        modality = None if code in ("UNKNOWN", "") else code
    units = stored.get(UNITS_KEY) or None
    times = _parse_times(stored[FRAME_TIMES_KEY], path) if FRAME_TIMES_KEY in stored else None
    as_series = times is not None if series is None else series
    if as_series and img.GetDimension() < 3:
        raise InputError(
            f"is a {img.GetDimension()}D image; a series needs a time axis (3D for 2D + t, 4D for 3D + t)",
            path,
        )
    try:
        image = Image.from_sitk(img, series=as_series, modality=modality, units=units, meta=meta)
        if as_series and times is not None:
            if times.size != image.n_frames:
                raise InputError(f"{FRAME_TIMES_KEY} lists {times.size} times for {image.n_frames} frames")
            image = image.with_array(image.array, frame_times_s=times)
    except InputError as exc:
        # e.g. a 4D file read as one image, or frame times that do not increase: name the file
        raise InputError(exc.problem, path) from None
    return image


def _parse_times(text: str, path: Path) -> np.ndarray:
    try:
        return np.array([float(v) for v in text.split()], dtype=np.float64)
    except ValueError:
        raise InputError(f"{FRAME_TIMES_KEY} is not a list of numbers: {text[:80]!r}", path) from None


def write_image(image: Image, path: str | Path, *, compress: bool = True) -> None:
    """Write ``image`` as NIfTI, MetaImage or NRRD (chosen by the file name), atomically.

    Parameters
    ----------
    image
        A 2D / 3D image or a series; a series gets one more axis (time) in the file, and its
        exact frame times, modality and units go into the file's key/value metadata (a header
        extension for NIfTI).
    path
        Output file; ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd`` or ``.nhdr``.
    compress
        Compress the voxel data (MHA / NRRD; ``.nii.gz`` is always compressed, ``.nii`` never).

    Raises
    ------
    InputError
        For an unsupported ending (DICOM is written by :mod:`igikit.io.dicom`), a missing output
        folder, or a pixel type the format cannot hold. No file is left behind on failure.
    """
    import SimpleITK as sitk

    suffix = image_suffix(path)
    if suffix in DICOM_SUFFIXES:
        raise InputError("write DICOM with igikit.io.dicom (write_dicom_series, write_rtdose)", path)
    if image.array.dtype == np.float16:
        # SimpleITK has no half-float pixel type; float32 holds every float16 value exactly.
        image = image.with_array(image.array.astype(np.float32))
    img = image.to_sitk()
    keys: dict[str, str] = {}
    if image.is_series:
        assert image.frame_times_s is not None
        keys[FRAME_TIMES_KEY] = " ".join(repr(float(t)) for t in image.frame_times_s)
    if image.modality:
        keys[MODALITY_KEY] = image.modality
    if image.units:
        keys[UNITS_KEY] = image.units
    for key, value in keys.items():
        img.SetMetaData(key, value)
    nifti_keys = suffix in _NIFTI_SUFFIXES and bool(keys)
    with atomic_path(path) as tmp:
        # NIfTI with keys: ITK writes it uncompressed, the extension is added and gzip applied once.
        itk_out = tmp.with_name(tmp.name.removesuffix(".gz")) if nifti_keys and suffix == ".nii.gz" else tmp
        try:
            sitk.WriteImage(img, str(itk_out), useCompression=compress and suffix != ".nii" and itk_out == tmp)
            if nifti_keys:
                nifti_extension.write_keys(itk_out, keys, target=tmp)
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            raise InputError(f"cannot be written ({lines[-1][:160] if lines else exc})", path) from None
        finally:
            if itk_out != tmp:
                itk_out.unlink(missing_ok=True)
        if suffix in (".mhd", ".nhdr"):
            _move_detached_data(tmp, Path(path))


def _move_detached_data(tmp: Path, final: Path) -> None:
    """Give a detached header's data file its final name and point the header at it.

    ``.mhd`` / ``.nhdr`` keep voxels in a separate file named after the header; written under the
    temporary name, that file must be renamed too or the final header would point at nothing.
    """
    header = tmp.read_text(encoding="latin-1")
    for data in sorted(tmp.parent.glob(tmp.name.rsplit(".", 1)[0] + ".*")):
        if data == tmp:
            continue
        new = final.with_name(final.name.rsplit(".", 1)[0] + data.name[len(tmp.name.rsplit(".", 1)[0]) :])
        os.replace(data, new)
        header = header.replace(data.name, new.name)
    tmp.write_text(header, encoding="latin-1")
