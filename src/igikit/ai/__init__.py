"""AI that runs on a treatment-room CPU: model runtime with cards, patient-specific networks,
uncertainty, calibration and explanations.

- :mod:`igikit.ai.runtime`: ONNX Runtime inference checked against the model card.
- :mod:`igikit.ai.personalize`: train a small network on this patient's learning-phase frames.
- :mod:`igikit.ai.tracker`: the ``ai`` tracking method (:class:`AITracker`) and :func:`ai_ensemble`.
- :mod:`igikit.ai.fusion`: ``ensemble_ai`` (:class:`AIEnsembleTracker`), template + registration + network.
- :mod:`igikit.ai.uncertainty`, :mod:`igikit.ai.calibration`, :mod:`igikit.ai.explain`.
- :mod:`igikit.ai.evidence`: explanations on request, logged as the tracker's decision record with its evidence.

Names are loaded on first use, so ``import igikit.ai`` never imports torch or onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelCard": "runtime",
    "OnnxModel": "runtime",
    "load_card": "runtime",
    "save_model": "runtime",
    "PersonalizeConfig": "personalize",
    "PersonalModel": "personalize",
    "LearningSet": "personalize",
    "Window": "personalize",
    "train_personal_model": "personalize",
    "AITracker": "tracker",
    "ai_ensemble": "tracker",
    "NetworkView": "tracker",
    "AIEnsembleTracker": "fusion",
    "FusionConfig": "fusion",
    "ExplanationService": "evidence",
    "find_ai_tracker": "evidence",
    "IsotonicCalibrator": "calibration",
    "expected_calibration_error": "calibration",
    "SaliencyMap": "explain",
    "occlusion_sensitivity": "explain",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"igikit.ai.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'igikit.ai' has no attribute {name!r}")
