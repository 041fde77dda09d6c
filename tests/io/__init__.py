"""Tests of igikit.io: images, DICOM, DICOM-RT and the info command."""
