"""In-place GEMM on C-ordered arrays through scipy's BLAS.

numpy's ``matmul(out=...)`` cannot accumulate (``C += A @ B``), which the
forward pass (bias already in C) and the backward pass (a layer feeding several
others) both need. BLAS can, but wants Fortran order; a C-ordered C is the
Fortran-ordered C^T, so we ask BLAS for ``C^T = op(B)^T op(A)^T`` instead.

OpenBLAS's worker threads spin for up to 2^28 cycles (about 0.1 s) after each
call, waiting for the next one. A training step alternates GEMMs with numba
kernels that want those same cores, so the spinning threads slowed every
kernel between two GEMMs (on 2 cores: the fused output pass 1.6 -> 0.8 ms, the
Adam updates 2.9 -> 2.0 ms once the workers sleep at once).
:func:`sleep_idle_openblas_threads` makes them sleep as soon as a call ends.
"""

import ctypes
import os

import numpy as np
from scipy.linalg import blas as _blas

# OpenBLAS's shortest wait before an idle worker sleeps: 2^4 cycles.
_THREAD_TIMEOUT = "4"

_GEMM = {np.dtype(np.float32): _blas.sgemm, np.dtype(np.float64): _blas.dgemm}


def gemm(a, b, c, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    """``c = alpha * op(a) @ op(b) + beta * c`` in place; all arrays C-contiguous.

    ``op(x)`` is ``x.T`` when the matching ``trans_*`` flag is set.
    """
    gemm_f = _GEMM[c.dtype]
    # In Fortran terms: c.T = alpha * op(b).T @ op(a).T + beta * c.T, where a
    # C-ordered x is the Fortran-ordered x.T, so "transposing" flips the flags.
    result = gemm_f(
        alpha, b.T, a.T, beta=beta, c=c.T, trans_a=int(trans_b), trans_b=int(trans_a),
        overwrite_c=1,
    )
    if not np.shares_memory(result, c):  # BLAS had to copy: write back.
        c[...] = result.T
    return c


def sleep_idle_openblas_threads():
    """Make every loaded OpenBLAS put its idle worker threads to sleep at once.

    OpenBLAS reads ``OPENBLAS_THREAD_TIMEOUT`` when its threads start. Where the
    library is already loaded (numpy loads one, scikit-learn's import of
    scipy.linalg another), its environment is read again and its threads are
    restarted, so the next call starts them with the short timeout. A timeout
    the user has set is left alone. Returns the paths of the libraries changed.
    Call it before BLAS work starts: restarting the threads while another
    thread is inside a BLAS call is not safe.
    """
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return []
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = _THREAD_TIMEOUT  # libraries loaded later read it
    changed = []
    for path in _loaded_openblas_paths():
        try:
            library = ctypes.CDLL(path)
            read_env, shutdown = library.openblas_read_env, library.blas_thread_shutdown_
        except (OSError, AttributeError):  # not a build we know how to restart
            continue
        read_env()
        shutdown()
        changed.append(path)
    return changed


def _loaded_openblas_paths():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # scikit-learn depends on it; be quiet if it is missing
        return []
    return [info["filepath"] for info in threadpool_info()
            if info.get("internal_api") == "openblas" and info.get("threading_layer") == "pthreads"]
