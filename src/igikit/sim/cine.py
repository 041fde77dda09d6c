"""Cine-MRI tracking cases with known truth, built from real anatomy and real breathing.

A tumour-like target (a sphere, brighter or darker than the tissue around it, with a little
internal texture) is placed into one real frame of ``../shared/data/cine`` (the Magdeburg liver
cine or the ETH thoracic 4D-MRI). The whole image then moves with a smooth breathing deformation
(:mod:`igikit.sim.deformation`) driven by a real, cleaned respiration trace
(:mod:`igikit.sim.breathing`), plus baseline drift; the sphere also moves through the slice, so its
cross-section grows and shrinks. Each frame is rendered by warping a 2x upsampled copy of the
background-with-target and area-downsampling it (realistic partial volume), then fresh Rician
noise is added, and optional corruptions (motion ghosts, noise bursts) hit stated frames. The
truth label of a frame is where the warped target covers at least half of a pixel.

Sources of the real data: OvGU Magdeburg liver cine and ETH Zurich 4D-MRI (via the public
repository pohl-michel/2D-MR-image-prediction), Krilavicius et al. 2013 respiration traces.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from igikit.errors import InputError
from igikit.io.trackrad import CineCase
from igikit.sim.breathing import breathing_waveform
from igikit.sim.deformation import breathing_motion_model, invert_displacement, smooth_random_field, warp_maps
from igikit.sim.noise import add_ghosting, add_rician_noise

BackgroundName = Literal["magdeburg_liver", "eth_thorax"]
CorruptionKind = Literal["ghosting", "noise_burst"]

#: Upsampling factor of the rendering grid (partial volume is integrated over factor^2 sub-pixels).
SUPERSAMPLE = 2
#: Output intensities are scaled so the source frame's 99th percentile lands here (12-bit range).
OUTPUT_P99 = 1000.0


@dataclass(frozen=True)
class FrameCorruption:
    """An acquisition artefact on one frame.

    Parameters
    ----------
    frame
        Frame index it hits.
    kind
        ``"ghosting"``: two faint copies of the image shifted along the phase-encode direction;
        ``"noise_burst"``: the noise standard deviation is multiplied for that frame.
    strength
        Ghosting: total ghost intensity relative to the image (e.g. 0.3); noise burst: the factor on
        the noise sigma (e.g. 4).
    shift_fraction
        Ghosting only: ghost displacement as a fraction of the field of view along phase encoding.
    """

    frame: int
    kind: CorruptionKind
    strength: float
    shift_fraction: float = 0.5


@dataclass(frozen=True)
class CinePhantomSpec:
    """Every parameter of one phantom case (all plain numbers and strings, so it is JSON).

    Positions are ``(x, y)`` in mm from the centre of the top-left pixel, x along columns (anterior
    to posterior), y along rows (superior to inferior). ``None`` for ``background_frame``,
    ``target_center_mm`` or ``trace_start_s`` means "draw from the seed"; :func:`make_case` records
    the values it drew in ``case.meta["phantom_spec"]``.

    Parameters
    ----------
    case_id
        Case folder / file stem.
    background, background_frame
        Which real cine (``"magdeburg_liver"`` or ``"eth_thorax"``) and which of its frames.
    target_center_mm, target_radius_mm
        Sphere centre in the slice at exhale (without drift), and its radius.
    target_contrast
        Target intensity relative to the median of the tissue around it, minus 1: +0.5 is 50 %
        brighter, -0.3 is 30 % darker, ±0.1 is a low-contrast target.
    target_texture
        Relative standard deviation of a smooth random texture inside the target (correlation
        length 1.5 mm).
    slice_offset_mm, out_of_plane_mm
        The sphere centre's distance from the slice plane at exhale, and how far breathing moves it
        further through the slice at the deepest inhale of the case. The in-slice radius is
        ``sqrt(R^2 - z^2)``; ``|z|`` must stay below ``0.95 R``.
    trace_file, trace_axis, trace_start_s
        Real respiration trace (a file name in ``DATA/respiration`` or a path), its axis
        (``"auto"`` = the one that moves most) and where in it the case starts (s).
    amplitude_si_mm
        Peak-to-peak SI motion of the target centre over the case (exhale to deepest inhale,
        drift excluded).
    ap_fraction
        AP motion of the target (anterior on inhale) as a fraction of the SI motion.
    rotation_deg
        In-plane rotation about the target at the deepest inhale (degrees).
    deformation_nonuniformity
        0: the whole image translates rigidly; 1: the full breathing pattern (see
        :func:`igikit.sim.deformation.breathing_motion_model`).
    breathing_rate_per_min
        Time-scale the trace to this rate; None keeps the volunteer's own rate.
    irregularity
        Extra irregularity on top of the real trace's own (0 none, 1 strong).
    drift_mm_per_min
        SI baseline drift of the target (positive = inferior).
    frame_rate_hz, duration_s
        Frame rate and length; ``round(duration_s * frame_rate_hz)`` frames.
    snr
        Tissue signal around the target divided by the per-channel noise sigma of the fresh
        Rician noise; None adds no noise. The source frame's own noise is frozen into the anatomy
        and moves with it.
    phase_encode
        Phase-encode direction, ``"ap"`` (along columns) or ``"si"`` (along rows): ghosts go this way.
    corruptions
        Artefacts on stated frames.
    profile
        Patient profile the breathing parameters were drawn from (recorded for breakdowns).
    seed
        Seeds every random draw of the case (trace start, irregularity, deformation texture,
        target texture, noise).
    """

    case_id: str = "SIM_000"
    background: BackgroundName = "magdeburg_liver"
    background_frame: int | None = None
    target_center_mm: tuple[float, float] | None = None
    target_radius_mm: float = 10.0
    target_contrast: float = 0.5
    target_texture: float = 0.1
    slice_offset_mm: float = 0.0
    out_of_plane_mm: float = 0.0
    trace_file: str = "201205181211-LAC-1-N-320-6.csv"
    trace_axis: str = "auto"
    trace_start_s: float | None = None
    amplitude_si_mm: float = 12.0
    ap_fraction: float = 0.3
    rotation_deg: float = 1.0
    deformation_nonuniformity: float = 1.0
    breathing_rate_per_min: float | None = None
    irregularity: float = 0.0
    drift_mm_per_min: float = 0.0
    frame_rate_hz: float = 6.0
    duration_s: float = 15.0
    snr: float | None = 20.0
    phase_encode: Literal["ap", "si"] = "ap"
    corruptions: tuple[FrameCorruption, ...] = ()
    profile: str = "adult"
    seed: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise InputError(f"phantom {self.case_id}: {what}")

        need(self.background in _BACKGROUNDS, f"background must be one of {sorted(_BACKGROUNDS)}")
        need(0 < self.target_radius_mm <= 40, f"target radius {self.target_radius_mm} mm not in (0, 40]")
        need(-1 <= self.target_contrast <= 5, f"target contrast {self.target_contrast} not in [-1, 5]")
        need(0 <= self.target_texture <= 1, f"target texture {self.target_texture} not in [0, 1]")
        z_max = max(abs(self.slice_offset_mm), abs(self.slice_offset_mm + self.out_of_plane_mm))
        need(
            z_max <= 0.95 * self.target_radius_mm,
            f"the sphere leaves the slice (|z| up to {z_max:.1f} mm, radius {self.target_radius_mm} mm)",
        )
        need(0 <= self.amplitude_si_mm <= 60, f"SI amplitude {self.amplitude_si_mm} mm not in [0, 60]")
        need(0 <= self.ap_fraction <= 2, f"AP fraction {self.ap_fraction} not in [0, 2]")
        need(abs(self.rotation_deg) <= 10, f"rotation {self.rotation_deg} deg not in [-10, 10]")
        need(0.2 <= self.frame_rate_hz <= 60, f"frame rate {self.frame_rate_hz} Hz not in [0.2, 60]")
        need(self.n_frames >= 2, f"{self.n_frames} frames; a cine needs at least 2")
        need(self.snr is None or self.snr > 0, f"SNR must be positive, got {self.snr}")
        need(self.phase_encode in ("ap", "si"), f"phase encode must be 'ap' or 'si', not {self.phase_encode!r}")
        need(
            self.breathing_rate_per_min is None or 2 <= self.breathing_rate_per_min <= 120,
            f"breathing rate {self.breathing_rate_per_min}/min not in [2, 120]",
        )
        for c in self.corruptions:
            need(0 <= c.frame < self.n_frames, f"corruption frame {c.frame} outside 0..{self.n_frames - 1}")
            need(c.kind in ("ghosting", "noise_burst"), f"unknown corruption {c.kind!r}")
            need(c.strength >= 0, f"corruption strength must be >= 0, got {c.strength}")

    @property
    def n_frames(self) -> int:
        return round(self.duration_s * self.frame_rate_hz)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CinePhantomSpec:
        """Inverse of :meth:`to_dict` (lists back to tuples); unknown keys are an error."""
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise InputError(f"unknown phantom parameters: {sorted(unknown)}")
        if d.get("target_center_mm") is not None:
            d["target_center_mm"] = tuple(float(v) for v in d["target_center_mm"])
        d["corruptions"] = tuple(FrameCorruption(**c) for c in d.get("corruptions", ()))
        return cls(**d)


@dataclass(frozen=True)
class _Background:
    """What the phantom needs to know about one real cine series."""

    region_default: str
    #: Diaphragm dome height and the posterior static wall (spine), fractions of H and W.
    diaphragm_row_frac: float
    spine_col_frac: float
    #: Where target centres may go: (region, row0, row1, col0, col1) as fractions of H and W,
    #: picked by looking at the frames: inside the liver or mediastinum, clear of its edges.
    target_boxes: tuple[tuple[str, float, float, float, float], ...] = field(default=())


_BACKGROUNDS: dict[str, _Background] = {
    "magdeburg_liver": _Background(
        region_default="liver",
        diaphragm_row_frac=50 / 176,
        spine_col_frac=115 / 140,
        target_boxes=(("liver", 62 / 176, 92 / 176, 66 / 140, 98 / 140),),
    ),
    "eth_thorax": _Background(
        region_default="thorax",
        diaphragm_row_frac=195 / 270,
        spine_col_frac=148 / 270,
        target_boxes=(
            ("liver", 208 / 270, 248 / 270, 78 / 270, 128 / 270),
            ("thorax", 120 / 270, 172 / 270, 95 / 270, 135 / 270),
        ),
    ),
}


@dataclass(frozen=True, eq=False)
class _Source:
    frames: np.ndarray  # (H, W, T) float32
    spacing_mm: tuple[float, float]
    b_field_t: float | None


@functools.lru_cache(maxsize=4)
def _load_background(folder: str) -> _Source:
    from igikit.io.trackrad import read_case

    case = read_case(folder)
    return _Source(case.frames.astype(np.float32), case.pixel_spacing_mm, case.b_field_t)


@functools.lru_cache(maxsize=32)
def _load_trace(path: str, axis: str) -> tuple[np.ndarray, np.ndarray]:
    """Cleaned trace (time s, position mm): read with igikit.io.respiration, glitches removed."""
    from igikit.io.respiration import clean_trace, read_trace

    trace = clean_trace(read_trace(path, axis=axis))  # type: ignore[arg-type]
    return np.asarray(trace.time_s, dtype=np.float64), np.asarray(trace.position_mm, dtype=np.float64)


def _trace_path(spec: CinePhantomSpec, data_dir: Path) -> Path:
    p = Path(spec.trace_file)
    return p if p.is_absolute() or p.exists() else data_dir / "respiration" / p


def _resolve(spec: CinePhantomSpec, source: _Source, rng: np.random.Generator) -> CinePhantomSpec:
    """Fill the spec's "draw from the seed" fields (background frame, target position)."""
    h, w, t = source.frames.shape
    frame = spec.background_frame
    if frame is None:
        frame = int(rng.integers(t))
    elif not 0 <= frame < t:
        raise InputError(f"background frame {frame} outside 0..{t - 1} of {spec.background}")
    center = spec.target_center_mm
    if center is None:
        boxes = _BACKGROUNDS[spec.background].target_boxes
        _, r0, r1, c0, c1 = boxes[int(rng.integers(len(boxes)))]
        dx, dy = source.spacing_mm
        # Keep the whole excursion in the field of view: breathing moves the target inferior by up
        # to the SI amplitude and anterior (towards x = 0) by the AP share; drift either way.
        drift = spec.drift_mm_per_min * spec.n_frames / spec.frame_rate_hz / 60.0
        reach = spec.target_radius_mm + 3.0
        y_lo = max(r0 * (h - 1) * dy, reach + max(-drift, 0.0))
        y_hi = min(r1 * (h - 1) * dy, (h - 1) * dy - reach - spec.amplitude_si_mm - max(drift, 0.0))
        x_lo = max(c0 * (w - 1) * dx, reach + spec.ap_fraction * spec.amplitude_si_mm)
        x_hi = min(c1 * (w - 1) * dx, (w - 1) * dx - reach)
        y = rng.uniform(y_lo, y_hi) if y_lo <= y_hi else 0.5 * (y_lo + y_hi)
        x = rng.uniform(x_lo, x_hi) if x_lo <= x_hi else 0.5 * (x_lo + x_hi)
        center = (float(x), float(y))
    return dataclasses.replace(spec, background_frame=frame, target_center_mm=center)


def _region_of(spec: CinePhantomSpec, shape_hw: tuple[int, int], spacing: tuple[float, float]) -> str:
    bg = _BACKGROUNDS[spec.background]
    assert spec.target_center_mm is not None  # resolved before this is called
    x, y = spec.target_center_mm
    rf = y / ((shape_hw[0] - 1) * spacing[1])
    cf = x / ((shape_hw[1] - 1) * spacing[0])
    for region, r0, r1, c0, c1 in bg.target_boxes:
        if r0 <= rf <= r1 and c0 <= cf <= c1:
            return region
    return bg.region_default


def _tissue_level(image: np.ndarray, center_px: tuple[float, float], radius_px: float) -> float:
    """Median intensity of the ring from 1 to 2 radii around the target: the tissue it sits in."""
    h, w = image.shape
    rows, cols = np.ogrid[:h, :w]
    d = np.hypot(cols - center_px[0], rows - center_px[1])
    ring = image[(d >= radius_px) & (d <= 2 * radius_px + 1)]
    return float(np.median(ring)) if ring.size else 0.0


def default_data_dir() -> Path:
    """The real-data folder (see :func:`igikit.core.paths.data_dir`); missing files are reported by the reader."""
    from igikit.core.paths import data_dir

    return data_dir(required=False)

@dataclass(frozen=True, eq=False)
class CinePhantom:
    """A rendered phantom: the case, plus what only a simulation knows.

    Parameters
    ----------
    case
        The TrackRAD case (frames, first label, every-frame labels, meta).
    coverage
        (H, W, T) float32 fraction of each pixel covered by the target, before thresholding at 0.5
        into ``case.labels`` (a soft truth, exact up to interpolation).
    spec
        The fully resolved spec (every "draw from the seed" field filled in).
    """

    case: CineCase
    coverage: np.ndarray
    spec: CinePhantomSpec


def make_case(spec: CinePhantomSpec, data_dir: str | Path | None = None) -> CineCase:
    """Render one phantom case with its truth labels.

    Parameters
    ----------
    spec
        The case's parameters.
    data_dir
        The real data folder (``../shared/data``); default :func:`default_data_dir`.

    Returns
    -------
    CineCase
        ``frames`` uint16 (H, W, T), ``first_label`` and ``labels`` uint8, the source's pixel
        spacing, ``frame_rate_hz``; ``meta["phantom_spec"]`` holds the fully resolved spec and
        ``meta["truth"]`` per-frame target centre (mm), in-slice radius, through-slice offset and
        the breathing signal.

    Examples
    --------
    >>> case = make_case(CinePhantomSpec(duration_s=2, seed=1))  # doctest: +SKIP
    >>> case.frames.shape                                          # doctest: +SKIP
    (176, 140, 12)
    """
    return render_phantom(spec, data_dir).case


def render_phantom(spec: CinePhantomSpec, data_dir: str | Path | None = None) -> CinePhantom:
    """Render one phantom case; like :func:`make_case`, also returning the soft coverage and resolved spec."""
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = data / "cine" / spec.background
    if not folder.is_dir():
        raise InputError("real cine background not found (is ../shared/data there?)", folder)
    source = _load_background(str(folder))
    rng_resolve, rng_breath, rng_field, rng_texture, rng_noise = np.random.default_rng(spec.seed).spawn(5)
    spec = _resolve(spec, source, rng_resolve)
    assert spec.target_center_mm is not None and spec.background_frame is not None
    h, w = source.frames.shape[:2]
    dx, dy = source.spacing_mm
    cx_mm, cy_mm = spec.target_center_mm
    radius = spec.target_radius_mm
    if not (radius <= cx_mm <= (w - 1) * dx - radius and radius <= cy_mm <= (h - 1) * dy - radius):
        raise InputError(
            f"phantom {spec.case_id}: target at {spec.target_center_mm} mm (radius {radius} mm) "
            f"does not fit in the {(w - 1) * dx:.0f} x {(h - 1) * dy:.0f} mm frame"
        )

    # --- breathing drive at the frame times -------------------------------------------------------
    trace_path = _trace_path(spec, data)
    if not trace_path.is_file():
        raise InputError("breathing trace not found", trace_path)
    t_s, pos_mm = _load_trace(str(trace_path), spec.trace_axis)
    times = np.arange(spec.n_frames) / spec.frame_rate_hz
    wave = breathing_waveform(
        t_s, pos_mm, times, rng=rng_breath, rate_per_min=spec.breathing_rate_per_min,
        irregularity=spec.irregularity, start_s=spec.trace_start_s,
    )
    spec = dataclasses.replace(spec, trace_start_s=wave.trace_start_s)
    b = wave.phase01
    si_mm = spec.amplitude_si_mm * b + spec.drift_mm_per_min * times / 60.0
    ap_mm = spec.ap_fraction * spec.amplitude_si_mm * b
    rot_rad = np.deg2rad(spec.rotation_deg) * b
    z_mm = spec.slice_offset_mm + spec.out_of_plane_mm * b
    r_slice = np.sqrt(np.maximum(radius**2 - z_mm**2, 0.0))

    # --- reference (exhale) image: real frame + target, on the fine grid -------------------------
    raw = source.frames[:, :, spec.background_frame]
    scale = OUTPUT_P99 / max(float(np.percentile(raw, 99)), 1e-6)
    bgf = raw * scale
    level = _tissue_level(bgf, (cx_mm / dx, cy_mm / dy), radius / math.sqrt(dx * dy))
    if level < 0.02 * OUTPUT_P99:
        raise InputError(f"phantom {spec.case_id}: target at {spec.target_center_mm} mm sits in air")
    f = SUPERSAMPLE
    fine = np.maximum(cv2.resize(bgf, (w * f, h * f), interpolation=cv2.INTER_CUBIC), 0.0)
    fy, fx = np.ogrid[: h * f, : w * f]
    # Fine pixel i is at coarse position (i + 0.5) / f - 0.5 (OpenCV's pixel-centre convention).
    dist_mm = np.hypot(((fx + 0.5) / f - 0.5) * dx - cx_mm, ((fy + 0.5) / f - 0.5) * dy - cy_mm)
    fine_px_mm = math.sqrt(dx * dy) / f
    texture = smooth_random_field((h * f, w * f), 1.5 / fine_px_mm, rng_texture)
    target_value = level * (1.0 + spec.target_contrast) * (1.0 + spec.target_texture * texture)
    target_value = np.maximum(target_value, 0.0).astype(np.float32)

    model = breathing_motion_model(
        (h, w), (dx, dy), (cx_mm, cy_mm),
        diaphragm_y_mm=_BACKGROUNDS[spec.background].diaphragm_row_frac * (h - 1) * dy,
        spine_x_mm=_BACKGROUNDS[spec.background].spine_col_frac * (w - 1) * dx,
        nonuniformity=spec.deformation_nonuniformity, rng=rng_field,
    )
    sigma = 0.0 if spec.snr is None else level / spec.snr
    hits: dict[int, list[FrameCorruption]] = {}
    for c in spec.corruptions:
        hits.setdefault(c.frame, []).append(c)

    frames = np.empty((h, w, spec.n_frames), dtype=np.uint16)
    labels = np.empty((h, w, spec.n_frames), dtype=np.uint8)
    coverage = np.empty((h, w, spec.n_frames), dtype=np.float32)
    for k in range(spec.n_frames):
        # Analytic partial volume of the disc edge on the fine grid, then the disc joins the tissue.
        occ = np.clip((r_slice[k] - dist_mm) / fine_px_mm + 0.5, 0.0, 1.0).astype(np.float32)
        composite = fine + occ * (target_value - fine)
        v = invert_displacement(model.displacement(si_mm[k], ap_mm[k], rot_rad[k]), (dx, dy))
        map_x, map_y = warp_maps(v, (dx, dy), f)
        warped = cv2.remap(composite, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        warped_occ = cv2.remap(occ, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        signal = cv2.resize(warped, (w, h), interpolation=cv2.INTER_AREA)
        coverage[:, :, k] = cv2.resize(warped_occ, (w, h), interpolation=cv2.INTER_AREA)
        labels[:, :, k] = coverage[:, :, k] >= 0.5
        sigma_k = sigma
        for c in hits.get(k, ()):
            if c.kind == "ghosting":
                axis = 1 if spec.phase_encode == "ap" else 0
                shift = max(1, round(c.shift_fraction * signal.shape[axis]))
                signal = add_ghosting(signal, c.strength, shift, axis)
            else:
                sigma_k = sigma_k * c.strength
        noisy = add_rician_noise(signal, sigma_k, rng_noise) if sigma_k > 0 else signal
        frames[:, :, k] = np.clip(np.rint(noisy), 0, np.iinfo(np.uint16).max)

    edge = labels[0].any(axis=0) | labels[-1].any(axis=0) | labels[:, 0].any(axis=0) | labels[:, -1].any(axis=0)
    if edge.any():
        raise InputError(
            f"phantom {spec.case_id}: the target reaches the edge of the field of view at frame "
            f"{int(np.argmax(edge))}; place it further from the edge or reduce the motion"
        )
    center = np.stack([cx_mm - ap_mm, cy_mm + si_mm], axis=1)
    truth = {
        "frame_time_s": _round(times),
        "target_center_mm": _round(center),
        "target_radius_in_slice_mm": _round(r_slice),
        "target_offset_from_slice_mm": _round(z_mm),
        "breathing_phase01": _round(b),
        "si_mm": _round(si_mm),
        "ap_mm": _round(ap_mm),
    }
    meta = {
        "generator": "igikit.sim.cine",
        "phantom_spec": spec.to_dict(),
        "derived": {
            "n_frames": spec.n_frames,
            "breathing_rate_per_min": round(wave.rate_per_min, 3),
            "tissue_level": round(level, 3),
            "noise_sigma": round(sigma, 3),
            "contrast_to_noise": None if spec.snr is None else round(abs(spec.target_contrast) * spec.snr, 3),
            "intensity_scale": round(scale, 6),
            "min_radius_in_slice_mm": round(float(r_slice.min()), 3),
            "corrupted_frames": sorted(hits),
            "sources": {
                "background": f"cine/{spec.background} frame {spec.background_frame}",
                "trace": f"respiration/{trace_path.name}",
            },
        },
        "truth": truth,
    }
    case = CineCase(
        case_id=spec.case_id,
        frames=frames,
        pixel_spacing_mm=(dx, dy),
        frame_rate_hz=spec.frame_rate_hz,
        b_field_t=source.b_field_t,
        scanned_region=_region_of(spec, (h, w), (dx, dy)),
        first_label=labels[:, :, 0].copy(),
        labels=labels,
        meta=meta,
    )
    return CinePhantom(case=case, coverage=coverage, spec=spec)


def _round(a: np.ndarray, decimals: int = 4) -> list[Any]:
    out: list[Any] = np.round(np.asarray(a, dtype=np.float64), decimals).tolist()
    return out
