"""Patient-specific segmentation: a small network trained on this patient's own first frames.

Before the beam turns on, an MR-linac images the patient for a while (set-up, the pre-beam cine).
Those first N frames, with the target propagated from the first-frame label by the registration
tracker, are enough to teach a small U-Net what *this* target looks like on *this* sequence. The
network sees a window (``roi_px`` square, native pixel spacing) around the target; augmentation
(shifts beyond the seen motion, small rotations, scaling and elastic deformation, gamma and
contrast, noise) keeps it from memorising the N frames. Training is bounded in wall time
(``time_limit_s``), the model is exported to ONNX with its card and run by ONNX Runtime.

Causality: only the frames handed to :func:`train_personal_model` are used (the learning phase);
nothing from later frames. torch is imported inside the functions.

References: Ronneberger et al., U-Net, MICCAI 2015; Milletari et al., V-Net (soft Dice loss), 3DV
2016; Lee et al., multi-head ensembles, arXiv:1511.06314; the patient-specific fine-tuning idea as
in TrackRAD2025 entries that adapt on the first labelled frame(s).
"""

from __future__ import annotations

import datetime
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from igikit.ai.runtime import ModelCard, OnnxModel
from igikit.errors import InputError

log = logging.getLogger(__name__)

MODEL_NAME = "igikit-personal-cine-unet"
MODEL_VERSION = "1.0"


@dataclass(frozen=True)
class PersonalizeConfig:
    """Network, augmentation and training budget of the patient-specific model.

    Defaults were chosen on the development phantom set (seed 0) only.
    """

    roi_px: int = 64
    target_radius_px: float = 9.0
    channels: tuple[int, int, int] = (6, 12, 24)
    heads: int = 3
    steps: int = 150
    batch: int = 16
    lr: float = 4e-3
    time_limit_s: float = 45.0
    max_shift_px: float = 12.0
    rotate_deg: float = 10.0
    scale: float = 0.12
    elastic_px: float = 2.0
    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: float = 0.2
    noise: float = 0.08
    frame0_fraction: float = 0.25
    dice_weight: float | None = None
    prior: bool = True
    prior_shift_px: float = 2.0
    prior_scale: float = 0.1
    prior_perturbed: float = 0.5
    #: Training threads: one, because PyTorch's OpenMP workers spin-wait; on the shared 2-core
    #: machine (load 5) a training step took 3-6x longer with 2 threads than with 1.
    threads: int = 1
    seed: int = 0


@dataclass(frozen=True)
class LearningSet:
    """The learning phase: frames (N, H, W), labels (N, H, W) in [0, 1] (frame 0 first) and spacing."""

    frames: np.ndarray
    labels: np.ndarray
    spacing_mm: tuple[float, float]
    window: tuple[float, float]

    def __post_init__(self) -> None:
        if self.frames.ndim != 3 or self.frames.shape != self.labels.shape:
            raise InputError(f"learning frames {self.frames.shape} and labels {self.labels.shape} must be (N, H, W)")
        if self.frames.shape[0] < 1 or not np.any(self.labels[0] > 0.5):
            raise InputError("the learning set needs frame 0 with a non-empty label")
        if not self.window[1] > self.window[0]:
            raise InputError(f"intensity window {self.window} must have high > low")


@dataclass(frozen=True, eq=False)
class PersonalModel:
    """A trained patient-specific model: ONNX bytes + card, the torch module (for saliency) and stats."""

    onnx: bytes
    card: ModelCard
    torch_model: Any = field(repr=False)
    train_time_s: float
    export_time_s: float
    steps: int
    final_loss: float

    def runtime(self, threads: int = 2) -> OnnxModel:
        return OnnxModel(self.onnx, self.card, threads=threads)


@dataclass(frozen=True)
class Window:
    """A square window of ``size`` pixels, ``step`` frame pixels apart, centred at ``center_rc`` (frame px).

    ``step`` < 1 magnifies a small target, > 1 shrinks a large one, so the network always sees the
    target at about the same size in pixels (:func:`window_step`).
    """

    center_rc: tuple[float, float]
    size: int
    step: float = 1.0

    def _matrix(self) -> np.ndarray:
        # window (x=col, y=row) -> frame coordinates, pixel centres aligned
        half = (self.size - 1) / 2.0
        return np.array([[self.step, 0.0, self.center_rc[1] - self.step * half],
                         [0.0, self.step, self.center_rc[0] - self.step * half]], dtype=np.float64)

    def extract(self, image: np.ndarray) -> np.ndarray:
        """The window's pixels (bilinear, edge-replicated outside the frame), float32."""
        import cv2

        return np.asarray(cv2.warpAffine(np.asarray(image, dtype=np.float32), self._matrix(), (self.size, self.size),
                                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                         borderMode=cv2.BORDER_REPLICATE))

    def paste(self, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A window-grid map resampled onto a frame of ``shape`` (0 outside the window)."""
        import cv2

        return np.asarray(cv2.warpAffine(np.asarray(values, dtype=np.float32), self._matrix(), (shape[1], shape[0]),
                                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0))

    def to_window(self, point_rc: tuple[float, float]) -> tuple[float, float]:
        """A frame point in window pixel coordinates."""
        half = (self.size - 1) / 2.0
        return ((point_rc[0] - self.center_rc[0]) / self.step + half,
                (point_rc[1] - self.center_rc[1]) / self.step + half)


def window_step(label: np.ndarray, target_radius_px: float, limits: tuple[float, float] = (0.3, 2.5)) -> float:
    """Frame pixels per window pixel that show ``label`` with an equivalent radius of ``target_radius_px``."""
    radius = float(np.sqrt(max(float(np.count_nonzero(label)), 1.0) / np.pi))
    return float(np.clip(radius / target_radius_px, *limits))


def _centroid_px(label: np.ndarray) -> tuple[float, float]:
    w = np.clip(label, 0, None).astype(np.float64)
    total = w.sum()
    if total <= 0:
        raise InputError("cannot centre a window on an empty label")
    rows, cols = np.indices(label.shape)
    return float((rows * w).sum() / total), float((cols * w).sum() / total)


def _training_tensors(data: LearningSet, size: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Windows (N, 1, size, size) of normalised frames and labels, each centred on its label."""
    lo, hi = data.window
    xs, ys = [], []
    for frame, label in zip(data.frames, data.labels, strict=True):
        if not np.any(label > 0.5):
            continue  # a frame the registration lost: not a training example
        win = Window(_centroid_px(label), size, step)
        xs.append((win.extract(frame) - lo) / (hi - lo))
        ys.append(win.extract(label))
    return np.stack(xs)[:, None].astype(np.float32), np.stack(ys)[:, None].astype(np.float32)


def _augment(x: Any, y: Any, cfg: PersonalizeConfig, size: int, gen: Any) -> tuple[Any, Any, Any]:
    """Random shift, rotation, scale and elastic warp (shared by image and label), then intensity.

    The prior (the label as the registration tracker would hand it over) is the label warped once
    more by a small independent shift, scaling and elastic field: the network learns to correct a
    prior that is slightly off, from the image where the target is visible.
    """
    import torch
    import torch.nn.functional as F

    b, _, big, _ = x.shape
    u = lambda *shape: torch.rand(*shape, generator=gen) * 2 - 1  # noqa: E731
    angle = u(b) * np.deg2rad(cfg.rotate_deg)
    scale = 1 + u(b) * cfg.scale
    shift = u(b, 2) * cfg.max_shift_px * 2 / big  # grid units of the big window
    ratio = size / big  # the output window is the centre of the big one
    cos, sin = torch.cos(angle) * scale * ratio, torch.sin(angle) * scale * ratio
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, [b, 1, size, size], align_corners=False)

    def elastic(amp_px: float) -> Any:
        coarse = torch.randn(b, 2, 4, 4, generator=gen) * amp_px * 2 / big
        return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)

    grid = grid + elastic(cfg.elastic_px)
    xa = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    ya = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    prior = None
    if cfg.prior:
        # Perturb around the label's own centre in the output window, so scaling grows/shrinks it in place.
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        mass = ya.sum(dim=(1, 2, 3)).clamp(min=1e-6)
        cx = (ya[:, 0] * xx).sum(dim=(1, 2)) / mass
        cy = (ya[:, 0] * yy).sum(dim=(1, 2)) / mass
        centre = torch.stack([cx, cy], 1)[:, None, None, :]
        # Only some priors are perturbed: the registration tracker is usually right, and where the
        # image cannot show it wrong the network should learn to keep its answer.
        on = (torch.rand(b, generator=gen) < cfg.prior_perturbed).float()
        s_p = (1 + u(b) * cfg.prior_scale * on)[:, None, None, None]
        t_p = (u(b, 2) * cfg.prior_shift_px * 2 / size * on[:, None])[:, None, None, :]
        base = torch.stack([xx, yy], -1)[None].expand(b, -1, -1, -1)
        pgrid = centre + (base - centre) * s_p + t_p + elastic(cfg.elastic_px) * big / size * on[:, None, None, None]
        prior = F.grid_sample(ya, pgrid, mode="bilinear", padding_mode="zeros", align_corners=False)
    g_lo, g_hi = np.log(cfg.gamma[0]), np.log(cfg.gamma[1])
    gamma = torch.exp(g_lo + torch.rand(b, 1, 1, 1, generator=gen) * (g_hi - g_lo))
    xa = xa.clamp(min=0) ** gamma
    xa = xa * (1 + u(b, 1, 1, 1) * cfg.contrast) + u(b, 1, 1, 1) * cfg.contrast / 2
    xa = xa + torch.randn(xa.shape, generator=gen) * (torch.rand(b, 1, 1, 1, generator=gen) * cfg.noise)
    return xa, ya, prior


def _loss(logits: Any, target: Any, weights: Any, dice_weight: float) -> Any:
    """Bootstrap-weighted BCE (+ soft Dice if weighted) per head: each head sees its own resampling of the batch.

    BCE alone by default: soft Dice pushes uncertain boundaries outwards (measured: +10 % area).
    """
    import torch.nn.functional as F

    t = target.expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean(dim=(2, 3))  # (B, K)
    p = logits.sigmoid()
    inter = (p * t).sum(dim=(2, 3))
    soft_dice = 1 - (2 * inter + 1) / (p.sum(dim=(2, 3)) + t.sum(dim=(2, 3)) + 1)
    per = bce + dice_weight * soft_dice
    return (per * weights).sum() / weights.sum().clamp(min=1e-6)


def export_onnx(model: Any, size: int, in_channels: int = 1, opset: int = 17) -> bytes:
    """The eval-mode network as ONNX bytes (TorchScript exporter, dynamic batch)."""
    import warnings

    import torch

    model.eval()
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice (no onnxscript here)
        torch.onnx.export(
            model, (torch.zeros(2, in_channels, size, size),), buf,  # type: ignore[arg-type]  # BytesIO works
            dynamo=False, opset_version=opset, input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    return buf.getvalue()


def train_personal_model(
    data: LearningSet,
    config: PersonalizeConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> PersonalModel:
    """Train the patient-specific network on a learning set and export it to ONNX with its card.

    Parameters
    ----------
    data
        Frames and labels of the learning phase (frame 0 carries the given label).
    config
        Network, augmentation and budget (defaults: :class:`PersonalizeConfig`).
    progress
        Called as ``progress(step, steps)``.

    Returns
    -------
    PersonalModel
        The ONNX model, its card, the torch module and the training statistics.
    """
    import torch

    from igikit.ai.nets import MultiHeadUNet

    cfg = config or PersonalizeConfig()
    if cfg.roi_px % 8:
        raise InputError(f"roi_px must be a multiple of 8, got {cfg.roi_px}")
    size = cfg.roi_px
    big = size + 2 * int(np.ceil(cfg.max_shift_px + cfg.elastic_px * 3)) + int(np.ceil(size * (cfg.scale + 0.2)))
    big += big % 2
    zoom = window_step(data.labels[0] > 0.5, cfg.target_radius_px)
    xs, ys = _training_tensors(data, big, zoom)
    n = xs.shape[0]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        in_channels = 2 if cfg.prior else 1
        # Soft Dice only without a prior: there it keeps the rare target class from being ignored.
        dice_weight = cfg.dice_weight if cfg.dice_weight is not None else (0.0 if cfg.prior else 1.0)
        model = MultiHeadUNet(cfg.channels, cfg.heads, in_channels)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15)
        x_all, y_all = torch.from_numpy(xs), torch.from_numpy(ys)
        # Frame 0 (the clinician's label) is drawn with probability frame0_fraction, the rest uniformly.
        p = np.full(n, (1 - cfg.frame0_fraction) / max(n - 1, 1))
        p[0] = cfg.frame0_fraction if n > 1 else 1.0
        probs = torch.from_numpy(p / p.sum())
        model.train()
        tic = time.perf_counter()
        step, loss_value = 0, float("nan")
        for step in range(1, cfg.steps + 1):
            idx = torch.multinomial(probs, cfg.batch, replacement=True, generator=gen)
            xb, yb, prior = _augment(x_all[idx], y_all[idx], cfg, size, gen)
            if prior is not None:
                xb = torch.cat([xb, prior], dim=1)
            weights = torch.poisson(torch.ones(cfg.batch, cfg.heads), generator=gen)
            loss = _loss(model(xb), yb, weights, dice_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_value = float(loss.detach())
            if step % 25 == 0:
                log.debug("step %d loss %.4f", step, loss_value)
            if progress is not None:
                progress(step, cfg.steps)
            if time.perf_counter() - tic > cfg.time_limit_s:
                log.warning("personal model: training stopped at the %.0f s budget after %d of %d steps",
                            cfg.time_limit_s, step, cfg.steps)
                break
        train_s = time.perf_counter() - tic
        tic = time.perf_counter()
        onnx_bytes = export_onnx(model, size, in_channels)
        export_s = time.perf_counter() - tic
    finally:
        torch.set_num_threads(previous_threads)
    area = float((data.labels[0] > 0.5).sum())
    card = ModelCard(
        name=MODEL_NAME,
        version=MODEL_VERSION,
        modality="MR",
        dimensionality=2,
        input_shape=(None, in_channels, size, size),
        spacing_mm=(data.spacing_mm[0] * zoom, data.spacing_mm[1] * zoom),
        spacing_tolerance=0.05,
        intensity={"method": "window", "low": data.window[0], "high": data.window[1]},
        output="logits",
        training_data=(f"This patient's own cine series, learning phase only: frames 0-{data.frames.shape[0] - 1} "
                       f"({n} used), frame 0 with the given target label, later frames with labels propagated "
                       "by the registration tracker; random shifts, rotations, scaling, elastic warps, "
                       "gamma, contrast and noise. No other data, no pretrained weights."),
        intended_use=("Segment the same target in later frames of the same cine series (same patient, slice, "
                      "sequence and session), "
                      + ("given the registration tracker's propagated label as a prior, " if cfg.prior else "")
                      + f"in a {size} x {size} px window ({zoom:.3f} frame px per window px) around its last position, "
                      "under supervision of the registration tracker. Not for other patients, slices, "
                      "sequences or sessions."),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        extra={"heads": cfg.heads, "channels": list(cfg.channels), "steps": step, "train_time_s": round(train_s, 2),
               "final_loss": round(loss_value, 4), "threads": cfg.threads, "label0_area_px": area,
               "learning_frames": int(data.frames.shape[0]), "seed": cfg.seed,
               "window_step": zoom, "frame_spacing_mm": list(data.spacing_mm),
               "input_channels": ["image, intensity window of frame 0"]
               + (["prior: the registration tracker's soft label, [0, 1]"] if cfg.prior else [])},
    )
    return PersonalModel(onnx_bytes, card, model.eval(), train_s, export_s, step, loss_value)


def personalize(
    frames_nhw: np.ndarray,
    label0: np.ndarray,
    spacing_mm: tuple[float, float],
    config: PersonalizeConfig | None = None,
) -> PersonalModel:
    """Propagate ``label0`` through the learning frames with the registration tracker, then train.

    ``frames_nhw`` are the learning-phase frames only, (N, H, W), frame 0 first.
    """
    from igikit.register.flow2d import intensity_window
    from igikit.workflows.mrgrt.tracking import RegistrationTracker

    frames = np.asarray(frames_nhw, dtype=np.float32)
    if frames.ndim != 3:
        raise InputError(f"learning frames must be (N, H, W), got {frames.shape}")
    reg = RegistrationTracker()
    reg.start(frames[0], label0, spacing_mm)
    labels = [reg.label0.astype(np.float32)]
    for frame in frames[1:]:
        r = reg.update(frame)
        labels.append(r.soft if r.soft is not None and r.details.get("corrupted", 0.0) < 0.5
                      else np.zeros(frame.shape, np.float32))
    data = LearningSet(frames, np.stack(labels), (float(spacing_mm[0]), float(spacing_mm[1])),
                       intensity_window(frames[0]))
    return train_personal_model(data, config)
