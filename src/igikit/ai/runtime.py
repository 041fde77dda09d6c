"""ONNX Runtime (CPU) inference for 2D/3D segmentation models, checked against their model card.

A model is two files side by side: ``NAME.onnx`` and its card ``NAME.card.json`` (or
``.card.yaml``). The card says what the model may be given (modality, dimensionality, input
shape, pixel spacing and how far it may differ, the intensity normalisation), what it was trained
on and what it is for (Mitchell et al., "Model Cards for Model Reporting", FAT* 2019). Every
image passed to :meth:`OnnxModel.predict` is checked against the card first: a model is never run
on an image outside it, it refuses with an :class:`~igikit.errors.InputError` that says why.

onnxruntime is imported when a model is loaded, not when this module is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from igikit.errors import InputError

log = logging.getLogger(__name__)

#: Normalisations a card may name (``intensity["method"]``).
NORMALISATIONS = ("none", "window", "zscore")

_MODALITY_ALIASES = {"MRI": "MR", "MR": "MR", "CT": "CT", "PET": "PT", "PT": "PT", "SPECT": "NM", "NM": "NM",
                     "US": "US", "ULTRASOUND": "US"}


def _modality(name: str) -> str:
    key = name.strip().upper()
    return _MODALITY_ALIASES.get(key, key)


@dataclass(frozen=True)
class ModelCard:
    """What a segmentation model accepts and what it is for.

    Parameters
    ----------
    name, version
        Identify the model (they go into every decision record that uses it).
    modality
        DICOM-style modality the model was trained on (``"MR"``, ``"CT"``, ...).
    dimensionality
        2 for (H, W) images, 3 for (D, H, W) volumes.
    input_shape
        The network input (N, C, *spatial); ``None`` where any size is accepted.
    spacing_mm
        Pixel (voxel) spacing of the training images, NumPy axis order.
    spacing_tolerance
        Largest relative difference of the spacing along any axis that is still accepted.
    intensity
        ``{"method": "window", "low": L, "high": H}`` maps [L, H] to [0, 1];
        ``{"method": "zscore"}`` standardises each image; ``{"method": "none"}`` passes it through.
    output
        ``"logits"`` (sigmoid applied by :meth:`OnnxModel.predict`) or ``"probabilities"``.
    training_data, intended_use
        Plain-language statements; ``intended_use`` includes the limits of use.
    created
        ISO time of the export.
    extra
        Anything else worth keeping (training time, loss, hyper-parameters).
    """

    name: str
    version: str
    modality: str
    dimensionality: int
    input_shape: tuple[int | None, ...]
    spacing_mm: tuple[float, ...]
    intensity: Mapping[str, Any]
    training_data: str
    intended_use: str
    spacing_tolerance: float = 0.1
    output: str = "logits"
    created: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dimensionality not in (2, 3):
            raise InputError(f"model card {self.name!r}: dimensionality must be 2 or 3, got {self.dimensionality}")
        if len(self.input_shape) != self.dimensionality + 2:
            raise InputError(f"model card {self.name!r}: input_shape {self.input_shape} must be (N, C) + "
                             f"{self.dimensionality} spatial sizes")
        if len(self.spacing_mm) != self.dimensionality or not all(s > 0 for s in self.spacing_mm):
            raise InputError(f"model card {self.name!r}: spacing_mm {self.spacing_mm} must be "
                             f"{self.dimensionality} positive values")
        method = self.intensity.get("method")
        if method not in NORMALISATIONS:
            raise InputError(f"model card {self.name!r}: intensity method {method!r}; choose from {NORMALISATIONS}")
        if method == "window" and not float(self.intensity["high"]) > float(self.intensity["low"]):
            raise InputError(f"model card {self.name!r}: intensity window high must exceed low")
        if self.output not in ("logits", "probabilities"):
            raise InputError(f"model card {self.name!r}: output must be 'logits' or 'probabilities'")

    @property
    def spatial_shape(self) -> tuple[int | None, ...]:
        return self.input_shape[2:]

    def check(self, shape: Sequence[int], spacing_mm: Sequence[float], modality: str) -> None:
        """Refuse (InputError) an image whose dimensionality, size, spacing or modality is outside the card."""
        who = f"model {self.name!r} v{self.version}"
        if len(shape) != self.dimensionality:
            raise InputError(f"{who} takes {self.dimensionality}D images; got a {len(shape)}D image {tuple(shape)}")
        for axis, (got, want) in enumerate(zip(shape, self.spatial_shape, strict=True)):
            if want is not None and got != want:
                raise InputError(f"{who} takes images of size {self.spatial_shape}; got {tuple(shape)} "
                                 f"(axis {axis})")
        if len(spacing_mm) != self.dimensionality:
            raise InputError(f"{who}: spacing {tuple(spacing_mm)} must have {self.dimensionality} values")
        for axis, (got_s, want_s) in enumerate(zip(spacing_mm, self.spacing_mm, strict=True)):
            if not np.isfinite(got_s) or abs(float(got_s) - want_s) > self.spacing_tolerance * want_s:
                raise InputError(f"{who} was trained at {tuple(self.spacing_mm)} mm spacing (±"
                                 f"{100 * self.spacing_tolerance:.0f} %); this image has {tuple(spacing_mm)} mm "
                                 f"(axis {axis}): resample it first")
        if _modality(modality) != _modality(self.modality):
            raise InputError(f"{who} was trained on {self.modality} images; this image is {modality}")

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """The image as the network expects it (float32), following ``intensity``."""
        x = np.asarray(image, dtype=np.float32)
        method = self.intensity["method"]
        if method == "window":
            lo, hi = float(self.intensity["low"]), float(self.intensity["high"])
            return np.asarray((x - lo) / (hi - lo), dtype=np.float32)
        if method == "zscore":
            sd = float(x.std())
            return np.asarray((x - x.mean()) / (sd if sd > 0 else 1.0), dtype=np.float32)
        return x

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["spacing_mm"] = list(self.spacing_mm)
        d["intensity"] = dict(self.intensity)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | Path | None = None) -> ModelCard:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in d]
        if missing:
            raise InputError(f"model card lacks {', '.join(missing)}", source)
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"model card has unknown fields {', '.join(unknown)}", source)
        kw = dict(d)
        kw["input_shape"] = tuple(None if v is None or (isinstance(v, int) and v < 0) else int(v)
                                  for v in d["input_shape"])
        kw["spacing_mm"] = tuple(float(v) for v in d["spacing_mm"])
        kw["dimensionality"] = int(d["dimensionality"])
        kw["version"] = str(d["version"])
        try:
            return cls(**kw)
        except InputError as err:
            raise InputError(err.problem, source) from None

    def save(self, path: str | Path) -> Path:
        """Write the card as JSON (``.json``) or YAML (``.yaml``/``.yml``)."""
        path = Path(path)
        text = (yaml.safe_dump(self.to_dict(), sort_keys=False) if path.suffix in (".yaml", ".yml")
                else json.dumps(self.to_dict(), indent=1))
        path.write_text(text)
        return path


def card_path_for(model_path: str | Path) -> Path:
    """The card beside ``NAME.onnx``: the first of NAME.card.json, NAME.card.yaml, NAME.json, NAME.yaml."""
    model_path = Path(model_path)
    stem = model_path.with_suffix("")
    for suffix in (".card.json", ".card.yaml", ".card.yml", ".json", ".yaml", ".yml"):
        candidate = stem.parent / (stem.name + suffix)
        if candidate.is_file():
            return candidate
    raise InputError("no model card beside the model (expected NAME.card.json or NAME.card.yaml)", model_path)


def load_card(path: str | Path) -> ModelCard:
    """Read a model card from JSON or YAML."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(f"cannot read the model card ({err.strerror})", path) from None
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise InputError(f"the model card is not valid {path.suffix[1:].upper()}: {err}", path) from None
    if not isinstance(data, Mapping):
        raise InputError("the model card must be a mapping of fields", path)
    return ModelCard.from_dict(data, path)


def session_options(threads: int = 2, *, spinning: bool = False) -> Any:
    """ONNX Runtime session options for a small model on a shared 2-core CPU.

    Two intra-op threads, sequential execution, full graph optimisation, and ``spinning=False``:
    idle workers sleep instead of busy-waiting, which on a machine that also runs registration,
    the console and other jobs is what keeps a second thread useful (measured in
    docs/benchmarks.md: median 10 ms with 2 threads vs 23 ms with 1 at load 10).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3
    return so


class OnnxModel:
    """A segmentation model run by ONNX Runtime on the CPU, guarded by its card.

    Parameters
    ----------
    model
        Path of the ``.onnx`` file (its card is read from beside it unless ``card`` is given), or
        the serialised model bytes (then ``card`` is required).
    card
        The model card, when not read from beside the file.
    threads
        Intra-op threads (see :func:`session_options`).
    warmup
        Run the model this many times on zeros at load, so the first real frame does not pay for
        memory allocation and kernel selection.

    Examples
    --------
    >>> model = OnnxModel("liver.onnx")                                      # doctest: +SKIP
    >>> prob = model.predict(frame, spacing_mm=(1.0, 1.0), modality="MR")   # doctest: +SKIP
    """

    def __init__(self, model: str | Path | bytes, card: ModelCard | None = None, *, threads: int = 2,
                 warmup: int = 3) -> None:
        import onnxruntime as ort

        if isinstance(model, bytes):
            if card is None:
                raise InputError("a model given as bytes needs its model card")
            source = model
            self.path: Path | None = None
        else:
            self.path = Path(model)
            if not self.path.is_file():
                raise InputError("model file not found", self.path)
            card = card if card is not None else load_card(card_path_for(self.path))
            source = self.path.read_bytes()
        self.card = card
        try:
            self.session = ort.InferenceSession(source, session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for a bad file
            raise InputError(f"ONNX Runtime cannot load the model: {err}", self.path) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise InputError(f"expected a model with one input, it has {len(inputs)}", self.path)
        self.input_name = inputs[0].name
        self.warmup_ms = self._warmup(warmup)

    def _warmup(self, runs: int) -> float:
        shape = [1 if (s is None and i == 0) else (s if s is not None else 32)
                 for i, s in enumerate(self.card.input_shape)]
        zeros = np.zeros(shape, np.float32)
        tic = time.perf_counter()
        for _ in range(runs):
            self.run(zeros)
        return (time.perf_counter() - tic) * 1e3

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The raw network output for an already normalised batch (N, C, *spatial)."""
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(out[0])

    def predict(self, image: np.ndarray, *, spacing_mm: Sequence[float], modality: str,
                extra_channels: np.ndarray | None = None) -> np.ndarray:
        """Per-channel foreground probabilities (C_out, *spatial) of one image, after the card check.

        ``extra_channels`` (C - 1, *spatial) are further inputs the card lists after the image
        (e.g. a prior mask), passed through unnormalised.
        """
        image = np.asarray(image)
        self.card.check(image.shape, spacing_mm, modality)
        if not np.all(np.isfinite(image)):
            raise InputError("the image contains NaN or infinite values")
        channels = [self.card.normalise(image)[None]]
        if extra_channels is not None:
            channels.append(np.asarray(extra_channels, np.float32).reshape((-1, *image.shape)))
        want = self.card.input_shape[1]
        if want is not None and sum(c.shape[0] for c in channels) != want:
            raise InputError(f"model {self.card.name!r} takes {want} input channels (image + {want - 1} extra); "
                             f"got {sum(c.shape[0] for c in channels)}")
        out = self.run(np.concatenate(channels)[None])[0]
        if self.card.output == "logits":
            out = 1.0 / (1.0 + np.exp(-out))
        return np.asarray(out, dtype=np.float32)


def save_model(onnx_bytes: bytes, card: ModelCard, path: str | Path) -> Path:
    """Write ``NAME.onnx`` and ``NAME.card.json`` side by side; returns the model path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    tmp.write_bytes(onnx_bytes)
    os.replace(tmp, path)
    card.save(path.with_suffix("").with_name(path.stem + ".card.json"))
    return path
