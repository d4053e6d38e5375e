"""Test-session set-up.

The CUDA backend's tests run in numba's CUDA simulator (no GPU in CI): the
simulator must be chosen before numba.cuda is first imported, so it is chosen
here, for the whole session. It changes nothing for the CPU backend, and
``device="auto"`` never picks the simulator. Run with SPARSE_DEEP_REAL_GPU=1 to
test the same kernels on a real GPU instead.
"""

import os

import pytest

if os.environ.get("SPARSE_DEEP_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    try:  # in case numba was imported (and read its configuration) already
        from numba.core import config

        config.reload_config()
    except ImportError:
        pass


def _allocate_simulated_shared_arrays_under_a_lock():
    """numba's CUDA simulator runs a block's threads as Python threads and
    creates each shared array when the first thread reaches it, with no lock:
    two threads can both find it missing and each make their own, and then
    one thread's writes never reach the others. This is the likeliest cause of
    the one wrong result test_gemm gave in a full run (one thread's outputs
    as if from an unfilled tile; not reproduced in 1,000 reruns). This is the
    simulator's method with the check and the insert under one lock. The
    caller is found the same way, so this must replace the method, not wrap it.
    """
    import sys
    import threading
    import traceback

    import numpy as np
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    from numba.core import types

    lock = threading.Lock()

    def array(self, shape, dtype):
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        if shape == 0:  # dynamic shared memory: one buffer for all
            count = self._dynshared_size // dtype.itemsize
            return np.frombuffer(self._dynshared.data, dtype=dtype, count=count)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    kernelapi.FakeCUDAShared.array = array


if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    _allocate_simulated_shared_arrays_under_a_lock()


@pytest.fixture(scope="session")
def shared_data():
    """The project's data folder (../shared/data, or $SPARSE_DEEP_DATA), for the
    tests that run the docs and examples as a user would; skipped without it."""
    from sparse_deep.datasets import _default_data_dirs

    for folder, _ in _default_data_dirs():
        if (folder / "ml-100k").is_dir():
            return folder.resolve()
    pytest.skip("needs the project's data folder (../shared/data), which is absent")
