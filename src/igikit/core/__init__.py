"""Core data types: images with physical geometry, transforms, units."""

from igikit.core.image import Image
from igikit.core.transform import Transform

__all__ = ["Image", "Transform"]
