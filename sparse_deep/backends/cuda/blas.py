"""Dense products on a GPU through cuBLAS, called by NVIDIA's nvmath-python.

Why nvmath-python: ``nvmath.bindings.cublas`` calls cuBLAS with plain integer
device pointers, so numba's device arrays pass as they are: no copy, no second
array type or memory pool (CuPy would bring both). It is NVIDIA's maintained
binding, a 6 MB wheel, and it loads the cuBLAS of the CUDA toolkit or of
NVIDIA's cuBLAS wheels.

cuBLAS reads matrices column by column; the engine's arrays are row-major. A
row-major m x n C is, in the same memory, the column-major n x m C^T, so
``C = op(A) op(B)`` is asked of cuBLAS as ``C^T = op(B)^T op(A)^T``: B first,
each operand's transpose flag as given, each leading dimension the array's
row stride (:func:`column_major_call`).

Determinism: cuBLAS gives the same bits on every run for one cuBLAS version
on GPUs of one architecture and number of multiprocessors, while one stream
is active. A backend makes all its products on its one stream, through its
own handle, in the default math mode (float32 products in float32: no TF32).
Results differ from the CPU's in the last bits (another summation order,
fused multiply-adds).
"""

import weakref
from typing import NamedTuple

import numpy as np

#: The largest size, leading dimension included, of cuBLAS's 32-bit API.
INT32_MAX = 2**31 - 1

#: The workspace cuBLAS allocates for a handle's stream on itself: its
#: documentation recommends 32 MiB on Hopper GPUs and 4 MiB on earlier ones.
CUBLAS_WORKSPACE_BYTES = 32 << 20


class GemmCall(NamedTuple):
    """The arguments of one column-major cuBLAS GEMM (``*gemm``'s order)."""

    trans_first: bool
    trans_second: bool
    m: int
    n: int
    k: int
    first: object
    ld_first: int
    second: object
    ld_second: int
    ldc: int


def leading_dimension(x):
    """Elements from one row of a row-major matrix to the next, at least its
    columns and 1; None when its rows are not each contiguous."""
    rows, cols = x.shape
    item = x.dtype.itemsize
    if cols > 1 and x.strides[1] != item:
        return None
    if rows <= 1:  # the row stride is never used, and numpy may set it to anything
        return max(cols, 1)
    stride, rest = divmod(x.strides[0], item)
    if rest or stride < cols:
        return None
    return max(stride, 1)


def column_major_call(a, b, c, trans_a, trans_b):
    """cuBLAS's arguments for the row-major ``c = op(a) @ op(b)``, or None
    where cuBLAS cannot take these arrays as they are: rows that are not
    contiguous, a size past the 32-bit API, or an empty product (the
    hand-written kernel then computes it)."""
    lds = [leading_dimension(x) for x in (a, b, c)]
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if None in lds or 0 in (m, n, k) or max(m, n, k, *lds) > INT32_MAX:
        return None
    ld_a, ld_b, ld_c = lds
    return GemmCall(bool(trans_b), bool(trans_a), n, m, k, b, ld_b, a, ld_a, ld_c)


def device_address(x):
    """Where ``x``'s first element is. The simulator's device arrays are numpy
    arrays, in host memory, and have no CUDA array interface."""
    interface = getattr(x, "__cuda_array_interface__", None)
    return (interface or x.__array_interface__)["data"][0]


class CuBLAS:
    """One cuBLAS handle whose work goes to one stream.

    ``library`` is ``nvmath.bindings.cublas`` (or a stand-in with its
    ``create``, ``set_stream``, ``destroy``, ``get_version``, ``sgemm``,
    ``dgemm`` and ``Operation``); ``stream`` is the stream's address.
    """

    def __init__(self, library, stream):
        self._library = library
        self._handle = library.create()
        finalizer = weakref.finalize(self, library.destroy, self._handle)
        finalizer.atexit = False  # at exit the CUDA context may be gone before it
        library.set_stream(self._handle, stream)
        self._routines = {np.dtype(np.float32): library.sgemm,
                          np.dtype(np.float64): library.dgemm}
        # alpha and beta, read from host memory while the call runs (cuBLAS's
        # default pointer mode), so one pair per dtype serves every call.
        self._scalars = {dtype: np.zeros(2, dtype) for dtype in self._routines}

    def version(self):
        """cuBLAS's version number: major * 10000 + minor * 100 + patch."""
        return self._library.get_version(self._handle)

    def gemm(self, a, b, c, alpha, beta, trans_a, trans_b):
        """``c = alpha * op(a) @ op(b) + beta * c`` queued on the stream; False,
        with nothing done, where cuBLAS cannot take these arrays."""
        routine = self._routines.get(c.dtype)
        call = column_major_call(a, b, c, trans_a, trans_b)
        if routine is None or a.dtype != c.dtype or b.dtype != c.dtype or call is None:
            return False
        scalars = self._scalars[c.dtype]
        scalars[0], scalars[1] = alpha, beta
        operation = self._library.Operation
        routine(self._handle,
                operation.T if call.trans_first else operation.N,
                operation.T if call.trans_second else operation.N,
                call.m, call.n, call.k, scalars.ctypes.data,
                device_address(call.first), call.ld_first,
                device_address(call.second), call.ld_second,
                scalars.ctypes.data + scalars.itemsize, device_address(c), call.ldc)
        return True


def load_cublas(stream):
    """``(CuBLAS on that stream, report)``, or ``(None, why not)`` where
    nvmath-python is not installed or cannot load cuBLAS. ``stream`` is a
    numba stream, or its address."""
    try:
        from nvmath.bindings import cublas
    except ImportError as exc:
        return None, f"nvmath-python is not installed ({exc})"
    try:
        blas = CuBLAS(cublas, int(stream))
        version = blas.version()
    except Exception as exc:  # no cuBLAS library found, or it cannot start here
        return None, f"nvmath-python could not start cuBLAS ({' '.join(str(exc).split())})"
    return blas, f"cuBLAS {version // 10000}.{version // 100 % 100}.{version % 100}"
