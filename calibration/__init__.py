"""GPU (and CPU stand-in) latency calibration for hasim.

``python -m calibration.profile --help`` measures ``L(model, batch, SM %, quota)`` and
writes it in hasim's measurement schema; see ``calibration/README.md``. Nothing here is
imported by :mod:`hasim`; the package needs torch (the ``calibrate`` extra), pandas and
pyarrow, and runs without hasim installed (the GPU machine only has torch).
"""
