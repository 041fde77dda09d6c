"""MR-guided focused ultrasound: PRF thermometry, thermal dose (CEM43), and the thermometry command.

Algorithms are plain functions on arrays (:mod:`.thermometry`, :mod:`.thermal_dose`);
:class:`RealtimeThermometry` holds the state that lives across frames for real-time use.

Public names are loaded on first use (PEP 562), so that registering the ``igikit thermometry``
command does not import NumPy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BREAKPOINT_C": "igikit.workflows.fus.thermal_dose",
    "DEFAULT_ALPHA_PPM_PER_C": "igikit.workflows.fus.thermometry",
    "GAMMA_HZ_PER_T": "igikit.workflows.fus.thermometry",
    "LESION_THRESHOLD_MIN": "igikit.workflows.fus.thermal_dose",
    "METHODS": "igikit.workflows.fus.thermometry",
    "DoseAccumulator": "igikit.workflows.fus.thermal_dose",
    "RealtimeThermometry": "igikit.workflows.fus.thermometry",
    "ThermometryFrame": "igikit.workflows.fus.thermometry",
    "ThermometryResult": "igikit.workflows.fus.thermometry",
    "cem43": "igikit.workflows.fus.thermal_dose",
    "cem43_increment": "igikit.workflows.fus.thermal_dose",
    "estimate_noise_sigma": "igikit.workflows.fus.thermometry",
    "fit_background_phase": "igikit.workflows.fus.thermometry",
    "lesion_mask": "igikit.workflows.fus.thermal_dose",
    "noise_sigma_for_uncertainty": "igikit.workflows.fus.thermometry",
    "phase_difference": "igikit.workflows.fus.thermometry",
    "phase_to_temperature_change": "igikit.workflows.fus.thermometry",
    "polynomial_basis": "igikit.workflows.fus.thermometry",
    "prf_phase_per_degree": "igikit.workflows.fus.thermometry",
    "prf_thermometry": "igikit.workflows.fus.thermometry",
    "referenceless_background_phase": "igikit.workflows.fus.thermometry",
    "select_baselines": "igikit.workflows.fus.thermometry",
    "temperature_change_to_phase": "igikit.workflows.fus.thermometry",
    "temperature_uncertainty": "igikit.workflows.fus.thermometry",
    "unwrap_in_time": "igikit.workflows.fus.thermometry",
    "load_plan": "igikit.workflows.fus.plan",
    "SonicationPlan": "igikit.workflows.fus.plan",
    "ThermalModel": "igikit.workflows.fus.control",
    "identify_thermal_model": "igikit.workflows.fus.control",
    "PIDController": "igikit.workflows.fus.control",
    "ModelPredictiveController": "igikit.workflows.fus.control",
    "SafetySupervisor": "igikit.workflows.fus.control",
    "SafetyLimits": "igikit.workflows.fus.control",
    "OrganLimit": "igikit.workflows.fus.control",
    "run_sonication": "igikit.workflows.fus.loop",
    "sonication_metrics": "igikit.workflows.fus.loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'igikit.workflows.fus' has no attribute {name!r}")
