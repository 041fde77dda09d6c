"""Reading and writing images, DICOM / DICOM-RT, TrackRAD case folders and session files."""

from igikit.io.atomic import atomic_path
from igikit.io.dicom import read_dataset, read_dicom, write_dicom_series
from igikit.io.dicomrt import fill_polygons, read_rtdose, read_rtstruct, write_rtdose
from igikit.io.igtl import IGTLClient, IGTLServer, ReceivedMessage
from igikit.io.image import read_image, write_image
from igikit.io.respiration import RespirationTrace, clean_trace, read_trace
from igikit.io.trackrad import CineCase, CineGeometry, read_case, read_frames, read_label, read_labels, write_case

__all__ = [
    "CineCase",
    "CineGeometry",
    "IGTLClient",
    "IGTLServer",
    "IGTLSource",
    "ReceivedMessage",
    "RespirationTrace",
    "atomic_path",
    "clean_trace",
    "fill_polygons",
    "read_case",
    "read_dataset",
    "read_dicom",
    "read_frames",
    "read_image",
    "read_label",
    "read_labels",
    "read_rtdose",
    "read_rtstruct",
    "read_trace",
    "write_case",
    "write_dicom_series",
    "write_image",
    "write_rtdose",
]


def __getattr__(name: str) -> object:
    # IGTLSource is a stream Source: importing igikit.stream here would load the engine (and
    # its import of igikit.io) for every user of igikit.io.
    if name == "IGTLSource":
        from igikit.io.igtl_source import IGTLSource

        return IGTLSource
    raise AttributeError(f"module 'igikit.io' has no attribute {name!r}")
