"""Read and write MR thermometry series: the public HDF5 contract, and DICOM magnitude + phase.

Input (issue 5, public contract): an HDF5 file with

* ``/frames`` complex64 ``(T, H, W)`` or ``(T, S, H, W)`` — or a group of one dataset per frame
  (named so that they sort in time order), or a real ``/frames`` (magnitude) beside ``/phase``
  (radians), or ``/magnitude`` + ``/phase``;
* ``/frame_times_s`` ``(T,)``;
* root attributes ``te_s``, ``b0_t``, ``spacing_mm`` (three values, x y z) and optionally
  ``alpha_ppm_per_c`` (default -0.01) and ``body_temperature_c`` (default 37).

Or a DICOM folder holding a magnitude series and a phase series (``ImageType`` ``M`` / ``P``, in
the folder or in two sub-folders); the phase's stored values are mapped to radians by its rescale
and, for Siemens-style integers in [-4096, 4095], ``value * pi / 4096``. TE and B0 come from
``EchoTime`` (ms) and ``MagneticFieldStrength`` (T).

Output ``DIR/temperature.h5``: ``/temperature_c`` float32 ``(T, [S,] H, W)`` absolute temperature,
``/uncertainty_c`` (same shape), ``/trusted`` uint8 (same shape), ``/cem43_min`` float32
``([S,] H, W)``, ``/lesion`` uint8, ``/frame_times_s``, ``/baseline_index``; root attributes name
the method and every parameter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igikit.errors import InputError
from igikit.workflows.fus.thermometry import DEFAULT_ALPHA_PPM_PER_C, ThermometryResult

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
def _image_kind(ds: Any) -> str | None:
    kinds = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if any(v in ("P", "PHASE", "PHASE MAP") for v in kinds):
        return "phase"
    if any(v in ("M", "MAGNITUDE", "M_FFE", "M_SE") for v in kinds):
        return "magnitude"
    return None


def _read_dicom_folder(folder: Path, te_override: float | None, b0_override: float | None) -> ThermometrySeries:
    from igikit.io.dicom import read_dataset, read_dicom

    found: dict[str, tuple[Path, str, Any]] = {}
    for directory in [folder, *sorted(d for d in folder.iterdir() if d.is_dir())]:
        for file in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
            try:
                ds = read_dataset(file, stop_before_pixels=True)
            except InputError:
                continue
            if "Rows" not in ds:
                continue
            uid = str(ds.get("SeriesInstanceUID", ""))
            kind = _image_kind(ds)
            if kind is not None and uid not in found:
                found[uid] = (directory, kind, ds)
    by_kind: dict[str, list[tuple[str, Path, Any]]] = {"magnitude": [], "phase": []}
    for uid, (directory, kind, ds) in found.items():
        by_kind[kind].append((uid, directory, ds))
    if len(by_kind["magnitude"]) != 1 or len(by_kind["phase"]) != 1:
        raise InputError(
            f"expected one magnitude and one phase series (ImageType M / P), found "
            f"{len(by_kind['magnitude'])} magnitude and {len(by_kind['phase'])} phase",
            folder,
        )
    (m_uid, m_dir, m_ds), (p_uid, p_dir, _) = by_kind["magnitude"][0], by_kind["phase"][0]
    magnitude = read_dicom(m_dir, series_uid=m_uid)
    phase_img = read_dicom(p_dir, series_uid=p_uid)
    mag, phase = np.asarray(magnitude.array, dtype=np.float64), np.asarray(phase_img.array, dtype=np.float64)
    if mag.shape != phase.shape:
        raise InputError(f"frames of different sizes: magnitude {mag.shape}, phase {phase.shape}", folder)
    if not np.all(np.isfinite(phase)):
        raise InputError("phase holds NaN or infinite values", folder)
    if np.nanmax(np.abs(phase)) > 2 * math.pi + 1e-6:
        # Siemens stores the phase as integers -4096..4095 for -pi..pi (after its rescale)
        phase = phase * math.pi / 4096.0
    if not magnitude.is_series:
        raise InputError("the magnitude series has no time axis (one frame per position needed over time)", folder)
    assert magnitude.frame_times_s is not None
    te = te_override if te_override is not None else _dicom_number(m_ds, "EchoTime", 1e-3)
    b0 = b0_override if b0_override is not None else _dicom_number(m_ds, "MagneticFieldStrength", 1.0)
    if te is None or b0 is None:
        which = [n for n, v in (("EchoTime (TE)", te), ("MagneticFieldStrength (B0)", b0)) if v is None]
        raise InputError(f"DICOM headers lack {', '.join(which)}; give --te-s / --b0-t", folder)
    frames = (mag * np.exp(1j * phase)).astype(np.complex64)
    if frames.ndim == 4 and frames.shape[1] == 1:
        frames = frames[:, 0]
    spacing = tuple(magnitude.spacing_mm) + (1.0,) * (3 - magnitude.dim)
    times = np.asarray(magnitude.frame_times_s, dtype=np.float64)
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
