"""Test-session set-up.

The CUDA backend's tests run in numba's CUDA simulator (no GPU in CI): the
simulator must be chosen before numba.cuda is first imported, so it is chosen
here, for the whole session. It changes nothing for the CPU backend, and
``device="auto"`` never picks the simulator. Run with SPARSE_DEEP_REAL_GPU=1 to
test the same kernels on a real GPU instead.
"""

import os

if os.environ.get("SPARSE_DEEP_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    try:  # in case numba was imported (and read its configuration) already
        from numba.core import config

        config.reload_config()
    except ImportError:
        pass
