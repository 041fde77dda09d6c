"""MR-linac motion management: latency-compensating respiratory motion prediction.

The package's public names are those of :mod:`igikit.workflows.mrgrt.prediction` (its ``__all__``).
"""

from igikit.workflows.mrgrt.prediction import *  # noqa: F403  (re-exported: the package's public names)
from igikit.workflows.mrgrt.prediction import __all__ as __all__
