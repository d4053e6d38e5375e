"""A float32 exponential that LLVM can vectorise.

numba compiles ``np.exp`` to a call of the C library's ``expf``, one element at
a time (PyPI's llvmlite has no vector maths library). The SoftMax output pass
evaluates one exponential per output unit, so that call was its largest cost.
:func:`fast_exp` is Cephes' ``expf`` (range reduction by ln 2 in two parts, a
degree-6 polynomial, the power of two assembled in the exponent bits), written
in plain arithmetic so that a loop over it vectorises. Its error is under
2 float32 ulps (tested). For float64 it is the C library's ``exp``.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the low 32 bits of an integer."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = args[0]
        if bits.bitwidth > 32:
            low = builder.trunc(low, ir.IntType(32))
        return builder.bitcast(low, ir.FloatType())

    return types.float32(bits), codegen


@njit(inline="always")
def _exp32(x):
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - n * np.float32(0.693359375)
    r = r - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    return p * _float32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))


def fast_exp(x):
    """exp(x); vectorisable for float32 inside numba kernels."""
    return np.exp(x)


@overload(fast_exp)
def _fast_exp(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    return lambda x: np.exp(x)


@intrinsic
def _bits_from_float32(typingctx, x):
    """The IEEE bits of a float32, as an int32."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@njit(inline="always")
def _log32(x):
    """Cephes' logf for x > 0 (callers clamp away from 0 and infinity)."""
    bits = _bits_from_float32(x)
    e = np.float32(((bits >> 23) & 0xFF) - 126)
    m = _float32_from_bits((bits & np.int32(-2139095041)) | np.int32(0x3F000000))  # [0.5, 1)
    if m < np.float32(0.707106781186547524):
        e -= np.float32(1.0)
        m = m + m - np.float32(1.0)
    else:
        m = m - np.float32(1.0)
    z = m * m
    y = np.float32(7.0376836292e-2)
    y = y * m - np.float32(1.1514610310e-1)
    y = y * m + np.float32(1.1676998740e-1)
    y = y * m - np.float32(1.2420140846e-1)
    y = y * m + np.float32(1.4249322787e-1)
    y = y * m - np.float32(1.6668057665e-1)
    y = y * m + np.float32(2.0000714765e-1)
    y = y * m - np.float32(2.4999993993e-1)
    y = y * m + np.float32(3.3333331174e-1)
    y = y * m * z
    y += np.float32(-2.12194440e-4) * e
    y += np.float32(-0.5) * z
    return m + y + np.float32(0.693359375) * e


def fast_log(x):
    """log(x) for x > 0; vectorisable for float32 inside numba kernels."""
    return np.log(x)


@overload(fast_log)
def _fast_log(x):
    if x == types.float32:
        return lambda x: _log32(x)
    return lambda x: np.log(x)


@njit(inline="always")
def _sigmoid32(z):
    return np.float32(1.0) / (np.float32(1.0) + _exp32(-z))


def fast_sigmoid(z):
    """1 / (1 + exp(-z)); vectorisable for float32 inside numba kernels."""
    return 1.0 / (1.0 + np.exp(-z))


@overload(fast_sigmoid)
def _fast_sigmoid(z):
    if z == types.float32:
        return lambda z: _sigmoid32(z)

    def sigmoid64(z):
        if z >= 0.0:
            return 1.0 / (1.0 + np.exp(-z))
        e = np.exp(z)
        return e / (1.0 + e)

    return sigmoid64


@njit(inline="always")
def _tanh32(x):
    """Cephes' tanhf: an odd polynomial near 0, 1 - 2/(e^2|x| + 1) beyond."""
    ax = abs(x)
    z = x * x
    p = np.float32(-5.70498872745e-3)
    p = p * z + np.float32(2.06390887954e-2)
    p = p * z - np.float32(5.37397155531e-2)
    p = p * z + np.float32(1.33314422036e-1)
    p = p * z - np.float32(3.33332819422e-1)
    small = p * z * x + x
    big = np.float32(1.0) - np.float32(2.0) / (_exp32(ax + ax) + np.float32(1.0))
    big = big if x >= np.float32(0.0) else -big
    return small if ax < np.float32(0.625) else big


def fast_tanh(x):
    """tanh(x); vectorisable for float32 inside numba kernels."""
    return np.tanh(x)


@overload(fast_tanh)
def _fast_tanh(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: np.tanh(x)
