"""Per-pixel uncertainty and a per-frame confidence from an ensemble of predictions.

The members are the network's heads, each run on the frame and on its test-time augmentations
(mirror, small shifts; Wang et al., "Aleatoric uncertainty estimation with test-time
augmentation for medical image segmentation", Neurocomputing 2019), mapped back to the frame.
The uncertainty map is the members' standard deviation; the frame's agreement is how well each
member's mask matches the consensus mask (mean Dice), which falls when the members disagree on
where the target's outline is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: A test-time augmentation: (forward transform of a window, its inverse on a probability map).
Augmentation = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _flip(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[..., ::-1])


def _shifter(dr: int, dc: int) -> Augmentation:
    def fwd(a: np.ndarray) -> np.ndarray:
        return np.roll(a, (dr, dc), axis=(-2, -1))

    def inv(a: np.ndarray) -> np.ndarray:
        return np.roll(a, (-dr, -dc), axis=(-2, -1))

    return fwd, inv


def _compose(
    outer: Callable[[np.ndarray], np.ndarray], inner: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    def both(a: np.ndarray) -> np.ndarray:
        return outer(inner(a))

    return both


def augmentations(kind: str = "flip", shift_px: int = 3) -> list[Augmentation]:
    """``"none"``: identity; ``"flip"``: identity + left-right mirror; ``"full"``: also 4 shifts of each."""
    base: list[Augmentation] = [(_identity, _identity)]
    if kind == "none":
        return base
    base.append((_flip, _flip))
    if kind == "flip":
        return base
    if kind != "full":
        raise ValueError(f"unknown test-time augmentation {kind!r}")
    for dr, dc in ((shift_px, 0), (-shift_px, 0), (0, shift_px), (0, -shift_px)):
        fwd, inv = _shifter(dr, dc)
        base.append((fwd, inv))
        base.append((_compose(_flip, fwd), _compose(inv, _flip)))
    return base


def ensemble_probabilities(
    run: Callable[[np.ndarray], np.ndarray], window: np.ndarray, augs: Sequence[Augmentation]
) -> np.ndarray:
    """Member probabilities (M, H, W): every head on every augmentation, mapped back.

    ``window`` is (H, W) or (C, H, W); ``run`` maps a normalised batch (B, C, H, W) to logits
    (B, K, H, W).
    """
    window = window[None] if window.ndim == 2 else window
    batch = np.stack([fwd(window) for fwd, _ in augs])
    logits = run(batch.astype(np.float32))
    probs = 1.0 / (1.0 + np.exp(-logits))
    members = [inv(probs[i, k]) for i, (_, inv) in enumerate(augs) for k in range(probs.shape[1])]
    return np.stack(members).astype(np.float32)


@dataclass(frozen=True)
class EnsembleSummary:
    """Mean probability, per-pixel uncertainty (std of the members) and the frame's numbers."""

    mean: np.ndarray
    std: np.ndarray
    agreement: float
    uncertainty: float


def summarise(members: np.ndarray, mask: np.ndarray) -> EnsembleSummary:
    """Agreement of the members with ``mask`` (mean Dice) and mean std over the target's neighbourhood."""
    mean = members.mean(axis=0)
    std = members.std(axis=0)
    m = mask > 0
    dices = []
    for p in members:
        b = p >= 0.5
        denom = b.sum() + m.sum()
        dices.append(2.0 * np.logical_and(b, m).sum() / denom if denom else 1.0)
    union = np.logical_or(m, (members >= 0.5).any(axis=0))
    region = std[union] if union.any() else std.ravel()
    return EnsembleSummary(mean, std, float(np.mean(dices)), float(region.mean()))
