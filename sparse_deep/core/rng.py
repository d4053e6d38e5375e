"""Counter-based random numbers shared by every backend.

Dropout and denoising draw one uniform number per (step, layer, example, unit).
A counter-based generator computes that number from those coordinates alone, so:

* the CPU and CUDA kernels produce the same masks without sharing any state;
* a dropout mask can be recomputed in the backward pass instead of stored;
* the mask of an input feature does not depend on how features are split across
  MPI ranks, because it is keyed by the global example and feature ids.

The mixing function is splitmix64's finaliser (Steele, Lea & Flood, 2014), which
passes BigCrush when fed a counter. The functions below are plain Python written
in the subset that both ``numba.njit`` and ``numba.cuda.jit(device=True)`` accept.
"""

import functools

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S40 = np.uint64(40)
_TWO_POW_MINUS_24 = 1.0 / 16777216.0


def _mix64_py(x):
    x = (x ^ (x >> _S30)) * _MUL1
    x = (x ^ (x >> _S27)) * _MUL2
    return x ^ (x >> _S31)


mix64 = njit(inline="always")(_mix64_py)


def _stream_key_py(seed, step, layer):
    """Key of one random stream: a (seed, training step, layer) triple."""
    key = mix64(np.uint64(seed) + _GOLDEN)
    key = mix64(key ^ (np.uint64(step) * _GOLDEN))
    return mix64(key ^ (np.uint64(layer) + _MUL1))


stream_key = njit(inline="always")(_stream_key_py)


def _uniform_py(key, counter):
    """Uniform float in [0, 1) for position ``counter`` of stream ``key``.

    24 bits are kept so that the value is exact in float32 as well as float64,
    which keeps CPU and GPU masks identical.
    """
    bits = mix64(key ^ (np.uint64(counter) * _GOLDEN))
    return float(bits >> _S40) * _TWO_POW_MINUS_24


uniform = njit(inline="always")(_uniform_py)


def stream_key_host(seed, step, layer):
    """Host-side :func:`stream_key`, for passing a key into a kernel.

    Plain Python on numpy scalars (wrapping as uint64 arithmetic does), so
    that no process compiles it: a step computes a handful of keys.
    """
    with np.errstate(over="ignore"):
        return np.uint64(_host().stream_key(np.uint64(seed), np.uint64(step), np.uint64(layer)))


@functools.cache
def _host():
    return compile_with(lambda f: f)


def compile_with(jit):
    """Compile :func:`mix64`, :func:`stream_key` and :func:`uniform` with ``jit``
    (e.g. ``numba.cuda.jit(device=True)``); returns them as a namespace.

    As in :func:`sparse_deep.core.scalar.compile_with`, each copy gets private
    globals in which ``mix64`` names the compiled copy, so the CUDA kernels draw
    exactly the numbers the CPU kernels draw.
    """
    import types

    namespace = dict(globals())
    compiled = {}
    for name, f in (("mix64", _mix64_py), ("stream_key", _stream_key_py),
                    ("uniform", _uniform_py)):
        clone = types.FunctionType(f.__code__, namespace, name, f.__defaults__, f.__closure__)
        clone.__module__ = f.__module__
        clone.__qualname__ = name
        compiled[name] = jit(clone)
    namespace.update(compiled)
    return types.SimpleNamespace(**compiled)
