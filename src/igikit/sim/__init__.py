"""Digital phantoms that produce image streams with known ground truth, for tests, demos and benchmarks.

``igikit.sim.cine``: cine-MRI tracking cases built from real anatomy and real breathing traces.
``igikit.sim.heating``: Pennes bioheat simulation of focused-ultrasound heating.
``igikit.sim.thermometry``: complex MR thermometry frames of a known temperature series.
``igikit.sim.spect``: multi-time-point Lu-177 SPECT scans of organs with known time-integrated activity.
``igikit.sim.liver``: a liver with vessels, a lesion and skin fiducials, for navigated needle insertion.

Public names are loaded on first use (PEP 562) so that ``igikit`` commands that do not simulate
anything start without importing SciPy's signal and statistics modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CinePhantom": "igikit.sim.cine",
    "CinePhantomSpec": "igikit.sim.cine",
    "FrameCorruption": "igikit.sim.cine",
    "make_case": "igikit.sim.cine",
    "render_phantom": "igikit.sim.cine",
    "make_phantom_set": "igikit.sim.phantom_set",
    "sample_specs": "igikit.sim.phantom_set",
    "spec_for_profile": "igikit.sim.phantom_set",
    "PennesSolver": "igikit.sim.heating",
    "TissueMaps": "igikit.sim.heating",
    "gaussian_heat_source": "igikit.sim.heating",
    "SyntheticThermometry": "igikit.sim.thermometry",
    "load_complex_background": "igikit.sim.thermometry",
    "synthesize_frames": "igikit.sim.thermometry",
    "SpectPhantom": "igikit.sim.spect",
    "lu177_spect_phantom": "igikit.sim.spect",
    "LiverPhantom": "igikit.sim.liver",
    "liver_phantom": "igikit.sim.liver",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'igikit.sim' has no attribute {name!r}")
