"""Reading and writing images, DICOM / DICOM-RT, TrackRAD case folders and session files."""

from igikit.io.atomic import atomic_path

__all__ = ["atomic_path"]
