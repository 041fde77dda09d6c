"""Image-guided surgery: tracked tools, calibration, registration with honest TRE, navigation (issue 8).

General algorithms live in :mod:`igikit.register` (points, pivot, hand-eye, surface); this package
holds the surgery workflow: its file formats and commands (``register``, ``calibrate``), and the
navigation loop (``igikit navigate``, ``igikit demo surgery``): :mod:`.navigation` (the numbers of
one tracker update), :mod:`.tracker` (pose sources), :mod:`.watchdog` (lost / frozen tool stream),
:mod:`.smoothing`, :mod:`.supervision` (warnings as decision records, alerts, the console),
:mod:`.navigate` (the stream graph and its summary), :mod:`.report`, :mod:`.demo`.
"""
