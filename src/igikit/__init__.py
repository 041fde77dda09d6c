"""igikit: real-time, AI-driven image-guided interventions under human supervision."""

from igikit.errors import IgikitError, InputError

__version__ = "0.1.0"

__all__ = ["IgikitError", "InputError", "__version__"]
