"""Read and write MR thermometry series: the public HDF5 contract, and DICOM magnitude + phase.

Input (issue 5, public contract): an HDF5 file with

* ``/frames`` complex64 ``(T, H, W)`` or ``(T, S, H, W)`` — or a group of one dataset per frame
  (named so that they sort in time order), or a real ``/frames`` (magnitude) beside ``/phase``
  (radians), or ``/magnitude`` + ``/phase``;
* ``/frame_times_s`` ``(T,)``;
* root attributes ``te_s``, ``b0_t``, ``spacing_mm`` (three values, x y z) and optionally
  ``alpha_ppm_per_c`` (default -0.01) and ``body_temperature_c`` (default 37).

Or a DICOM folder (or its sub-folders) holding magnitude and phase images, or real and imaginary
ones, as the vendors write them: separate series (Siemens) or interleaved in one (Philips, GE); the
part is read from ``ImageType`` (``M`` / ``P`` / ``R`` / ``I``, Philips' ``M_FFE`` / ``PHASE MAP``...)
or GE's private image type (0043,102F). The phase is rescaled (``RescaleSlope`` / ``Intercept``) and
mapped to radians by the vendor's convention (:func:`phase_to_radians`: radians, Philips and GE
milliradians, Siemens' 12-bit -4096..4095). TE and B0 come from ``EchoTime`` (ms) and
``MagneticFieldStrength`` (T).

Output ``DIR/temperature.h5``: ``/temperature_c`` float32 ``(T, [S,] H, W)`` absolute temperature,
``/uncertainty_c`` (same shape), ``/trusted`` uint8 (same shape), ``/cem43_min`` float32
``([S,] H, W)``, ``/lesion`` uint8, ``/frame_times_s``, ``/baseline_index``; root attributes name
the method and every parameter.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igikit.errors import InputError
from igikit.workflows.fus.thermometry import DEFAULT_ALPHA_PPM_PER_C, ThermometryResult

log = logging.getLogger(__name__)

OUTPUT_NAME = "temperature.h5"


@dataclass(frozen=True)
class ThermometrySeries:
    """Complex frames with everything thermometry needs to read them."""

    frames: np.ndarray
    frame_times_s: np.ndarray
    te_s: float
    b0_t: float
    spacing_mm: tuple[float, float, float]
    alpha_ppm_per_c: float = DEFAULT_ALPHA_PPM_PER_C
    body_temperature_c: float = 37.0
    source: str = ""


def read_series(path: str | Path, *, te_s: float | None = None, b0_t: float | None = None) -> ThermometrySeries:
    """Read an HDF5 thermometry series or a DICOM magnitude + phase folder, validating it.

    ``te_s`` / ``b0_t`` override (or supply) the file's values.

    Raises
    ------
    InputError
        Naming the file: missing TE or B0, frames that are not complex and have no phase, frames
        of different sizes, NaN or infinite values, times that do not match the frames.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", p)
    if p.is_dir():
        series = _read_dicom_folder(p, te_s, b0_t)
    else:
        series = _read_hdf5(p, te_s, b0_t)
    return series


def _number(value: Any, name: str, path: Path, *, positive: bool = True) -> float:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"attribute {name} is not a number ({value!r})", path) from None
    if arr.size != 1 or not math.isfinite(float(arr[0])) or (positive and float(arr[0]) <= 0):
        raise InputError(
            f"attribute {name} must be one {'positive ' if positive else ''}finite number, got {value!r}", path
        )
    return float(arr[0])


def _read_hdf5(path: Path, te_override: float | None, b0_override: float | None) -> ThermometrySeries:
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file ({exc})"[:200], path) from None
    with h5:
        attrs = dict(h5.attrs)
        missing = [
            k for k in ("te_s", "b0_t") if k not in attrs and {"te_s": te_override, "b0_t": b0_override}[k] is None
        ]
        if missing:
            raise InputError(f"missing attribute(s) {', '.join(missing)} (echo time in s, field strength in T)", path)
        te = te_override if te_override is not None else _number(attrs["te_s"], "te_s", path)
        b0 = b0_override if b0_override is not None else _number(attrs["b0_t"], "b0_t", path)
        if "spacing_mm" not in attrs:
            raise InputError("missing attribute spacing_mm (three voxel sizes x, y, z in mm)", path)
        spacing = np.asarray(attrs["spacing_mm"], dtype=np.float64).reshape(-1)
        if spacing.size != 3 or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise InputError(f"spacing_mm must be three positive numbers, got {spacing.tolist()}", path)
        alpha = _number(attrs.get("alpha_ppm_per_c", DEFAULT_ALPHA_PPM_PER_C), "alpha_ppm_per_c", path, positive=False)
        if alpha == 0:
            raise InputError("alpha_ppm_per_c must not be 0", path)
        body = _number(attrs.get("body_temperature_c", 37.0), "body_temperature_c", path, positive=False)
        frames = _hdf5_frames(h5, path)
        if "frame_times_s" not in h5:
            raise InputError("missing dataset /frame_times_s (acquisition time of each frame, s)", path)
        times = np.asarray(h5["frame_times_s"][()], dtype=np.float64).reshape(-1)
    _check_frames(frames, times, path)
    return ThermometrySeries(
        frames=frames,
        frame_times_s=times,
        te_s=float(te),
        b0_t=float(b0),
        spacing_mm=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        alpha_ppm_per_c=alpha,
        body_temperature_c=body,
        source=str(path),
    )


def _natural_key(name: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _stack(parts: list[np.ndarray], names: list[str], what: str, path: Path) -> np.ndarray:
    if not parts:
        raise InputError(f"{what} holds no frames", path)
    for name, part in zip(names, parts, strict=True):
        if part.shape != parts[0].shape:
            raise InputError(
                f"frames of different sizes: {what}/{name} is {part.shape}, {what}/{names[0]} is {parts[0].shape}", path
            )
    return np.stack(parts)


def _dataset(h5: Any, name: str, path: Path) -> np.ndarray:
    import h5py

    node = h5[name]
    if isinstance(node, h5py.Group):
        names = sorted(node.keys(), key=_natural_key)
        return _stack([np.asarray(node[n][()]) for n in names], names, f"/{name}", path)
    return np.asarray(node[()])


def _hdf5_frames(h5: Any, path: Path) -> np.ndarray:
    has = {name: name in h5 for name in ("frames", "magnitude", "phase")}
    if has["frames"]:
        frames = _dataset(h5, "frames", path)
        if np.iscomplexobj(frames):
            return frames.astype(np.complex64)
        if not has["phase"]:
            raise InputError(
                f"/frames are {frames.dtype}, not complex, and there is no /phase: PRF thermometry needs the phase",
                path,
            )
        magnitude = frames
    elif has["magnitude"] and has["phase"]:
        magnitude = _dataset(h5, "magnitude", path)
    else:
        raise InputError("no /frames (complex) and no /magnitude + /phase datasets", path)
    phase = _dataset(h5, "phase", path)
    if magnitude.shape != phase.shape:
        raise InputError(f"frames of different sizes: magnitude {magnitude.shape}, phase {phase.shape}", path)
    if not np.all(np.isfinite(phase)):
        raise InputError(f"phase holds {int(np.count_nonzero(~np.isfinite(phase)))} NaN or infinite values", path)
    return (magnitude.astype(np.float64) * np.exp(1j * phase.astype(np.float64))).astype(np.complex64)


def _check_frames(frames: np.ndarray, times: np.ndarray, path: Path) -> None:
    if frames.ndim not in (3, 4):
        raise InputError(f"frames must be (T, H, W) or (T, S, H, W), got shape {frames.shape}", path)
    if not np.iscomplexobj(frames):
        raise InputError(f"frames are {frames.dtype}, not complex", path)
    bad = ~np.isfinite(frames)
    if bad.any():
        first = int(np.argwhere(bad.reshape(bad.shape[0], -1).any(axis=1))[0, 0])
        raise InputError(
            f"frames hold {int(bad.sum())} NaN or infinite values (NaN phase?), first in frame {first}", path
        )
    if times.size != frames.shape[0]:
        raise InputError(f"{times.size} frame times for {frames.shape[0]} frames", path)
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise InputError("frame_times_s must be finite and strictly increasing", path)


# ------------------------------------------------------------------------------------- DICOM
#: ``ImageType`` values naming each part of a complex image, as the vendors write them: Siemens
#: ``M`` / ``P`` / ``R`` / ``I`` (value 3), Philips ``M_FFE`` / ``PHASE MAP`` / ``R_FFE`` / ``I_FFE``
#: (and ``M`` / ``P`` / ``R`` / ``I``), the standard's ``MAGNITUDE`` / ``PHASE`` / ``REAL`` / ``IMAGINARY``.
IMAGE_TYPE_KINDS: dict[str, frozenset[str]] = {
    "magnitude": frozenset({"M", "MAGNITUDE", "M_FFE", "M_SE", "M_IR", "M_PCA", "MAG"}),
    "phase": frozenset({"P", "PHASE", "PHASE MAP", "P_FFE", "P_SE", "P_IR", "P_PCA", "PHA"}),
    "real": frozenset({"R", "REAL", "R_FFE", "R_SE", "R_IR"}),
    "imaginary": frozenset({"I", "IMAGINARY", "I_FFE", "I_SE", "I_IR"}),
}
#: GE writes ``ORIGINAL\PRIMARY\OTHER`` and says which part an image is in the private tag
#: (0043,102F): 0 magnitude, 1 phase, 2 real, 3 imaginary.
GE_IMAGE_TYPE_TAG = (0x0043, 0x102F)
GE_IMAGE_TYPES = {0: "magnitude", 1: "phase", 2: "real", 3: "imaginary"}
#: Siemens stores phase as 12 bits, 0..4095 rescaled (slope 2, intercept -4096) to -4096..4094 for -pi..pi.
SIEMENS_PHASE_FULL_SCALE = 4096.0


def image_kind(ds: Any) -> str | None:
    """Which part of a complex image a DICOM image holds: magnitude, phase, real, imaginary (None: unknown).

    GE's private image type (0043,102F) first, then ``ImageType``; an image whose values name two
    parts is not guessed at.
    """
    ge = _ge_image_type(ds)
    if ge is not None:
        return GE_IMAGE_TYPES.get(ge)
    values = ds.get("ImageType") or []
    tokens = {str(v).strip().upper() for v in ([values] if isinstance(values, str) else values)}
    kinds = [kind for kind, names in IMAGE_TYPE_KINDS.items() if tokens & names]
    return kinds[0] if len(kinds) == 1 else None


def _ge_image_type(ds: Any) -> int | None:
    element = ds.get(GE_IMAGE_TYPE_TAG)
    if element is None:
        return None
    value = element.value
    if isinstance(value, bytes | bytearray):  # implicit VR without GE's private dictionary: raw SS
        return int.from_bytes(value[:2], "little", signed=True) if len(value) >= 2 else None
    try:
        return int(value[0] if isinstance(value, list | tuple) else value)
    except (TypeError, ValueError):
        return None


def phase_to_radians(values: np.ndarray, *, units: str | None = None, manufacturer: str = "") -> tuple[np.ndarray, str]:
    """Stored (rescaled) phase values in radians, by the vendor's convention; and that convention in words.

    * ``RescaleType`` ``rad`` / ``mrad`` (Philips writes ``mrad``) is followed;
    * values within [-pi, pi] are radians (Philips real-world values, igikit, most research tools);
    * Siemens: 12-bit integers, after the rescale (slope 2, intercept -4096) -4096..4094 for [-pi, pi)
      (``value * pi / 4096``) — also assumed for any values beyond the milliradian range;
    * otherwise (GE, Philips without ``RescaleType``) milliradians, -3142..3142.

    Raises
    ------
    InputError
        For values beyond every convention (above 4096 in magnitude).
    """
    v = np.asarray(values, dtype=np.float64)
    unit = (units or "").strip().lower()
    largest = float(np.max(np.abs(v))) if v.size else 0.0
    if unit in ("rad", "radian", "radians"):
        return v, "radians (RescaleType)"
    if unit in ("mrad", "milliradian", "milliradians"):
        return v / 1000.0, "milliradians (RescaleType)"
    if largest <= math.pi * (1 + 1e-4):
        return v, "radians (values within [-pi, pi])"
    siemens = "SIEMENS" in manufacturer.upper()
    if siemens or largest > 1000.0 * math.pi + 2.0:
        if largest > SIEMENS_PHASE_FULL_SCALE + 0.5:
            raise InputError(
                f"phase values up to {largest:g}: neither radians, milliradians (-3142..3142) nor Siemens' "
                "12-bit phase (-4096..4095)"
            )
        return v * (math.pi / SIEMENS_PHASE_FULL_SCALE), "Siemens 12-bit (-4096..4095 for -pi..pi)"
    return v / 1000.0, "milliradians (-3142..3142)"


def _read_part(files: list[Path], folder: Path) -> Any:
    """One part (magnitude, phase...) of a series from its files, rescaled, as an Image over time."""
    # io.dicom reads a folder per SeriesInstanceUID; a Philips or GE series interleaves the parts
    # under one UID, so the files of one part are assembled here with its frame reader
    from igikit.io.dicom import _assemble, _frames_of, read_dataset

    frames: list[Any] = []
    first = None
    for file in files:
        ds = read_dataset(file)
        if int(ds.get("NumberOfFrames") or 1) > 1:
            raise InputError(f"{file.name} is multi-frame; thermometry reads single-frame series", folder)
        first = first or ds
        try:
            frames.extend(_frames_of(ds, file)[0])
        except InputError as exc:
            raise InputError(f"{file.name}: {exc.problem}", folder) from None
    assert first is not None
    return _assemble(frames, first, folder, {"files": len(files)})


def _read_dicom_folder(folder: Path, te_override: float | None, b0_override: float | None) -> ThermometrySeries:
    """Magnitude + phase (or real + imaginary) DICOM images in ``folder`` or its sub-folders.

    Files are grouped by ``SeriesInstanceUID`` and part (:func:`image_kind`), so the parts may be
    separate series (Siemens) or interleaved in one (Philips, GE). Magnitude + phase is used when
    both are there, otherwise real + imaginary.
    """
    from igikit.io.dicom import read_dataset

    groups: dict[tuple[str, str], list[Path]] = {}
    headers: dict[tuple[str, str], Any] = {}
    unknown = 0
    for directory in [folder, *sorted(d for d in folder.iterdir() if d.is_dir())]:
        for file in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
            try:
                ds = read_dataset(file, stop_before_pixels=True)
            except InputError:
                continue
            if "Rows" not in ds:
                continue
            kind = image_kind(ds)
            if kind is None:
                unknown += 1
                continue
            key = (str(ds.get("SeriesInstanceUID", "")), kind)
            groups.setdefault(key, []).append(file)
            headers.setdefault(key, ds)
    by_kind: dict[str, list[tuple[str, str]]] = {kind: [] for kind in IMAGE_TYPE_KINDS}
    for key in groups:
        by_kind[key[1]].append(key)
    counts = ", ".join(f"{len(v)} {k}" for k, v in by_kind.items())
    for kind, keys in by_kind.items():
        if len(keys) > 1:
            raise InputError(f"{len(keys)} {kind} series (ImageType); keep one series per part in the folder", folder)
    if by_kind["magnitude"] and by_kind["phase"]:
        first_key, second_key = by_kind["magnitude"][0], by_kind["phase"][0]
    elif by_kind["real"] and by_kind["imaginary"]:
        first_key, second_key = by_kind["real"][0], by_kind["imaginary"][0]
    else:
        why = f"; {unknown} images of no known part were ignored" if unknown else ""
        raise InputError(
            "expected a magnitude and a phase series, or a real and an imaginary one (ImageType M / P / R / I, or "
            f"GE's image type 0043,102F), found {counts}{why}",
            folder,
        )
    first = _read_part(groups[first_key], folder)
    second = _read_part(groups[second_key], folder)
    a = np.asarray(first.array, dtype=np.float64)
    b = np.asarray(second.array, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"frames of different sizes: {first_key[1]} {a.shape}, {second_key[1]} {b.shape}", folder)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise InputError(f"the {second_key[1]} images hold NaN or infinite values", folder)
    ds = headers[first_key]
    if second_key[1] == "phase":
        manufacturer = str(ds.get("Manufacturer") or headers[second_key].get("Manufacturer") or "")
        phase, convention = phase_to_radians(b, units=second.units, manufacturer=manufacturer)
        log.info("%s: phase read as %s", folder, convention)
        frames = (a * np.exp(1j * phase)).astype(np.complex64)
    else:
        frames = (a + 1j * b).astype(np.complex64)
    if not first.is_series:
        raise InputError(
            f"the {first_key[1]} series has no time axis (one frame per position needed over time)", folder
        )
    assert first.frame_times_s is not None
    te = te_override if te_override is not None else _dicom_number(ds, "EchoTime", 1e-3)
    b0 = b0_override if b0_override is not None else _dicom_number(ds, "MagneticFieldStrength", 1.0)
    if te is None or b0 is None:
        which = [n for n, v in (("EchoTime (TE)", te), ("MagneticFieldStrength (B0)", b0)) if v is None]
        raise InputError(f"DICOM headers lack {', '.join(which)}; give --te-s / --b0-t", folder)
    if frames.ndim == 4 and frames.shape[1] == 1:
        frames = frames[:, 0]
    spacing = tuple(first.spacing_mm) + (1.0,) * (3 - first.dim)
    times = np.asarray(first.frame_times_s, dtype=np.float64)
    _check_frames(frames, times, folder)
    return ThermometrySeries(
        frames=frames,
        frame_times_s=times,
        te_s=float(te),
        b0_t=float(b0),
        spacing_mm=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        source=str(folder),
    )


def _dicom_number(ds: Any, keyword: str, scale: float) -> float | None:
    value = ds.get(keyword)
    try:
        number = float(value) * scale
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


# ------------------------------------------------------------------------------------- masks
def read_mask(path: str | Path, shape: tuple[int, ...]) -> np.ndarray:
    """A reference mask of ``shape`` (``([S,] H, W)``) from ``.npy``, HDF5 (``/mask``) or an image file."""
    p = Path(path)
    if not p.is_file():
        raise InputError("reference mask not found", p)
    if p.suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read the mask ({exc})", p) from None
    elif p.suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(p, "r") as h5:
                names = list(h5.keys())
                name = "mask" if "mask" in h5 else (names[0] if len(names) == 1 else None)
                if name is None:
                    raise InputError(f"holds {names}; name the mask dataset /mask", p)
                arr = np.asarray(h5[name][()])
        except OSError as exc:
            raise InputError(f"not a readable HDF5 file ({exc})"[:200], p) from None
    else:
        from igikit.io.image import read_image

        arr = np.asarray(read_image(p).array)
    if arr.shape != shape and arr.squeeze().shape == tuple(n for n in shape if n != 1):
        arr = arr.reshape(shape)
    if arr.shape != shape:
        raise InputError(f"mask of shape {arr.shape}, the frames are {shape}", p)
    return arr != 0


def write_result(result: ThermometryResult, series: ThermometrySeries, out_dir: str | Path) -> Path:
    """Write ``OUT/temperature.h5`` atomically (nothing is left behind on failure)."""
    import h5py

    from igikit import __version__
    from igikit.io.atomic import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / OUTPUT_NAME
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as h5:
        opts: dict[str, Any] = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
        h5.create_dataset("temperature_c", data=result.temperature_c.astype(np.float32), **opts)
        h5.create_dataset("uncertainty_c", data=result.uncertainty_c.astype(np.float32), **opts)
        h5.create_dataset("trusted", data=result.trusted.astype(np.uint8), **opts)
        h5.create_dataset("cem43_min", data=result.cem43_min.astype(np.float32), **opts)
        h5.create_dataset("lesion", data=result.lesion.astype(np.uint8), **opts)
        h5.create_dataset("frame_times_s", data=series.frame_times_s)
        h5.create_dataset("baseline_index", data=result.baseline_index)
        h5["temperature_c"].attrs["units"] = "degC (absolute)"
        h5["uncertainty_c"].attrs["units"] = "degC (one standard deviation; 999 = no signal)"
        h5["trusted"].attrs["meaning"] = "1 where uncertainty_c <= max_uncertainty_c"
        h5["cem43_min"].attrs["units"] = "minutes at 43 degC (Sapareto-Dewey, exact for piecewise-linear T)"
        h5["lesion"].attrs["meaning"] = "1 where cem43_min >= lesion_threshold_min and trusted in >= half the frames"
        for key, value in result.parameters.items():
            h5.attrs[key] = value
        h5.attrs["spacing_mm"] = np.asarray(series.spacing_mm)
        h5.attrs["source"] = series.source
        h5.attrs["igikit_version"] = __version__
    return target
