"""The ``LD_PRELOAD`` time-quota gate (``hasim_hook.c``) and how to build it.

``python -m calibration.hook.build`` (or ``make -C calibration/hook``) compiles
``calibration/hook/build/libhasim_hook.so`` with gcc against CUDA's headers; see
``hasim_hook.c`` for the rule and the intercepted entry points,
:mod:`calibration.hook.build` for the build, and :mod:`calibration.gate` for the Python
side (the same arithmetic, and the ctypes control of a preloaded hook).
"""
