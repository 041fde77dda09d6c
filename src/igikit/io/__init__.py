"""Reading and writing images, DICOM / DICOM-RT, TrackRAD case folders and session files."""

from igikit.io.atomic import atomic_path
from igikit.io.dicom import read_dataset, read_dicom, write_dicom_series
from igikit.io.dicomrt import fill_polygons, read_rtdose, read_rtstruct, write_rtdose
from igikit.io.image import read_image, write_image

__all__ = [
    "atomic_path",
    "fill_polygons",
    "read_dataset",
    "read_dicom",
    "read_image",
    "read_rtdose",
    "read_rtstruct",
    "write_dicom_series",
    "write_image",
    "write_rtdose",
]
