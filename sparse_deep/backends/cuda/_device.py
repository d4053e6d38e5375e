"""Device functions shared by the CUDA kernels.

The per-element maths (:mod:`sparse_deep.core.scalar`) and the counter RNG
(:mod:`sparse_deep.core.rng`) are the CPU backend's own definitions, compiled
a second time with ``numba.cuda.jit(device=True)``: one source, so dropout and
denoising masks are bit-identical across backends and activations/errors
follow the same formulas. The block reductions below use a fixed tree, so a
sum over a block's threads is the same on every run.
"""

import functools
import threading

import numpy as np
from numba import cuda
from numba.core import config

from ...core import rng, scalar
from ...core.activations import compiled_functions
from ...core.errors import compiled_error

#: True when numba runs CUDA kernels in its Python simulator (NUMBA_ENABLE_CUDASIM=1).
#: (The second test covers a numba.cuda that keeps its own copy of the setting.)
SIMULATED = bool(config.ENABLE_CUDASIM) or "simulator" in getattr(cuda.jit, "__module__", "")


def _quiet(f):
    """The simulator runs device functions as Python on numpy scalars, where a
    wrapping uint64 product (which the hash relies on, as the GPU does) raises
    an overflow warning; silence it there. Compiled code never warns."""
    if not SIMULATED:
        return f

    @functools.wraps(f)
    def quiet(*args):
        with np.errstate(over="ignore"):
            return f(*args)

    return quiet


_math = scalar.compile_with(cuda.jit(device=True))
_rng = rng.compile_with(lambda f: cuda.jit(device=True)(_quiet(f)))

sigmoid_delta = _math.sigmoid_delta
multinomial_error = _math.multinomial_error
output_element = _math.output_element
kl_sparseness = _math.kl_sparseness
regularised_gradient = _math.regularised_gradient
uniform = _rng.uniform
_ACTIVATIONS = {}


def activation_functions(code):
    """``(forward, derivative, tag)`` of the activation ``code`` as device
    functions (see :func:`sparse_deep.core.activations.compiled_functions`)."""
    return compiled_functions(code, cuda.jit(device=True), _ACTIVATIONS)


_ERRORS = {}


def error_function(code):
    """``(error, tag)`` of the error function ``code`` as a device function
    (see :func:`sparse_deep.core.errors.compiled_error`)."""
    return compiled_error(code, cuda.jit(device=True), _ERRORS)


def _simulated_syncthreads():
    threading.current_thread().syncthreads()


# The simulator swaps the ``cuda`` global of a device function's module for its
# fake module while the function runs, and puts the real one back on return:
# with many threads in the same device function, one thread's return pulls
# ``cuda.syncthreads`` from under the others. Device functions here that meet
# at a barrier therefore call ``syncthreads`` through a name of their own.
syncthreads = _simulated_syncthreads if SIMULATED else cuda.syncthreads


@cuda.jit(device=True)
def block_sum(buf, value, tid, threads):
    """Sum of ``value`` over the block's ``threads`` (a power of two) threads.

    ``buf`` is a shared array of at least ``threads`` entries. Every thread of
    the block must call this (it synchronises) and gets the total.
    """
    buf[tid] = value
    syncthreads()
    stride = threads // 2
    while stride > 0:
        if tid < stride:
            buf[tid] += buf[tid + stride]
        syncthreads()
        stride //= 2
    total = buf[0]
    syncthreads()
    return total


@cuda.jit(device=True)
def block_max(buf, value, tid, threads):
    """Largest ``value`` over the block's threads; as :func:`block_sum`."""
    buf[tid] = value
    syncthreads()
    stride = threads // 2
    while stride > 0:
        if tid < stride and buf[tid + stride] > buf[tid]:
            buf[tid] = buf[tid + stride]
        syncthreads()
        stride //= 2
    best = buf[0]
    syncthreads()
    return best


@cuda.jit(device=True)
def column_sum(x, j, zero):
    """``sum_i x[i, j]``, rows added in order from ``zero`` (its type the sum's)."""
    s = zero
    for i in range(x.shape[0]):
        s += x[i, j]
    return s


@cuda.jit(device=True)
def first_at_least(sorted_values, lo, hi, value):
    """The first position in ``sorted_values[lo:hi]`` holding at least
    ``value`` (``hi`` if none does)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_values[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit(device=True)
def row_of(indptr, n_rows, p):
    """The row of CSR position ``p``: the last r < n_rows with indptr[r] <= p."""
    lo = 0
    hi = n_rows - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if indptr[mid] <= p:
            lo = mid
        else:
            hi = mid - 1
    return lo


sampled_positive = _math.sampled_positive
sampled_negative = _math.sampled_negative
bpr_pair = _math.bpr_pair
