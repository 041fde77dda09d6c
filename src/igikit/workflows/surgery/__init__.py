"""Image-guided surgery: tracked tools, calibration, registration with honest TRE (see issue 8).

General algorithms live in :mod:`igikit.register` (points, pivot); this package holds the surgery
workflow's file formats and its commands.
"""
