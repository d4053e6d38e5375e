"""numba's thread pool, started with the OpenMP settings the CPU engine wants.

A training step runs about a dozen parallel regions, GEMMs included, all on
numba's OpenMP threads (see ``blas.py``). A worker that sleeps between regions
must be woken, which cost 13-27 us a region here and far more after the
process had idled (an ML-100K epoch: 20 ms back to back, 48 ms after a 0.1 s
pause); one that spins for about 0.3 ms (10,000 turns of libgomp's wait loop)
is there for the next region and sleeps soon after the fit. GNU OpenMP reads
these settings once, when numba's threading layer loads it, so they are put in
the environment only for that moment: ``os.environ`` is left as it was, and a
value the user has set wins.
"""

import os
import threading

OPENMP_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}

_lock = threading.Lock()
_started = False


def start_thread_pool():
    """Start numba's threads (once per process) under :data:`OPENMP_SETTINGS`.

    If numba's threads, or another library's GNU OpenMP runtime that numba
    then shares (torch imported first, say), already started, the settings
    they started with stay: set the two variables in the environment to choose.
    """
    global _started
    if _started:
        return
    import numba

    with _lock:
        if _started:
            return
        saved = {name: os.environ.get(name) for name in OPENMP_SETTINGS}
        try:
            for name, value in OPENMP_SETTINGS.items():
                os.environ.setdefault(name, value)
            numba.get_num_threads()  # launches the threading layer
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        _started = True
