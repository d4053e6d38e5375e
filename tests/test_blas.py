"""The cuBLAS calls of the CUDA backend, against cuBLAS's documented definition.

cuBLAS needs a GPU; here its calls go to tests/naive.py's EmulatedCuBLAS,
which computes each GEMM from the buffers at the addresses it is given, as
cuBLAS's column-major definition says, and refuses leading dimensions cuBLAS
refuses. So the row-major to column-major translation (the operand order, the
transpose flags, the leading dimensions of strided views) and the scalars'
addresses are checked without a GPU; tests/test_kernels_cuda.py runs the same
products through the real cuBLAS where there is one.
"""

import gc
import itertools
import sys
import types

import numpy as np
import pytest

from sparse_deep.backends.cuda import blas

from . import naive


def emulated():
    library = naive.EmulatedCuBLAS()
    return blas.CuBLAS(library, stream=1234), library


def view(rng, rows, cols, dtype, padded):
    """A rows x cols matrix; with ``padded``, a view into a wider and taller
    buffer (row stride past its columns), returned with that buffer."""
    if not padded:
        x = rng.normal(0, 1, (rows, cols)).astype(dtype)
        return x, x
    buffer = rng.normal(0, 1, (rows + 2, cols + 3)).astype(dtype)
    return buffer[1: rows + 1, 2: cols + 2], buffer


SHAPES = [(5, 7, 9), (1, 6, 3), (4, 1, 2), (3, 5, 1), (1, 1, 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("padded", [False, True], ids=["contiguous", "strided-views"])
def test_cublas_computes_the_row_major_product(dtype, trans_a, trans_b, padded):
    """Every transpose pair, one-row and one-column operands, views whose row
    stride exceeds their width; beta 0 ignores NaN in C, cells outside the
    view of C stay as they were."""
    cublas, library = emulated()
    rng = np.random.default_rng(int(trans_a) * 2 + int(trans_b))
    for (m, n, k), (alpha, beta) in zip(SHAPES, itertools.cycle([(1.0, 0.0), (-0.5, 0.3)])):
        a, _ = view(rng, *((k, m) if trans_a else (m, k)), dtype, padded)
        b, _ = view(rng, *((n, k) if trans_b else (k, n)), dtype, padded)
        c, c_buffer = view(rng, m, n, dtype, padded)
        if beta == 0:
            c[...] = np.nan
        before = c_buffer.copy()
        assert cublas.gemm(a, b, c, alpha, beta, trans_a, trans_b)
        want = alpha * ((a.T if trans_a else a).astype(np.float64)
                        @ (b.T if trans_b else b).astype(np.float64))
        if beta:
            want += beta * before[1: m + 1, 2: n + 2] if padded else beta * before
        np.testing.assert_allclose(c, want, rtol=1e-6 if dtype == np.float32 else 1e-12)
        outside = np.ones(c_buffer.shape, bool)
        outside[(slice(1, m + 1), slice(2, n + 2)) if padded else ...] = False
        assert np.array_equal(c_buffer[outside], before[outside])
        routine = "sgemm" if dtype == np.float32 else "dgemm"
        assert library.calls[-1] == (routine, 1, n, m, k)  # C^T = op(B)^T op(A)^T


def test_cublas_declines_what_it_cannot_take():
    """Columns not contiguous, mixed or other dtypes, an empty product: False,
    and C untouched (the backend's own kernel computes those)."""
    cublas, library = emulated()
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (3, 8))
    b = rng.normal(0, 1, (4, 5))
    c = np.zeros((3, 5))
    for args in [(a[:, ::2], b, c), (a[:, :4].astype(np.float32), b, c),
                 (a[:, :4].astype(np.float16), b.astype(np.float16), c.astype(np.float16)),
                 (a[:, :0], b[:0], c)]:
        assert not cublas.gemm(*args, 1.0, 0.0, False, False)
    assert not library.calls and not c.any()


def test_leading_dimension():
    x = np.zeros((4, 6), np.float32)
    assert blas.leading_dimension(x) == 6
    assert blas.leading_dimension(x[1:3, 2:5]) == 6
    assert blas.leading_dimension(x[:1, :3]) == 3  # one row: its stride is never read
    assert blas.leading_dimension(x[:, :1]) == 6
    assert blas.leading_dimension(x[:, ::2]) is None
    assert blas.leading_dimension(x[::2, :]) == 12
    assert blas.leading_dimension(np.zeros((3, 0))) == 1


def test_sizes_past_cublas_32_bit_api_are_declined():
    """No silent narrowing: a product with a side or a leading dimension of
    2**31 or more is left to the backend's own kernel."""
    def matrix(rows, cols, row_stride=None):
        return types.SimpleNamespace(shape=(rows, cols), dtype=np.dtype(np.float32),
                                     strides=(4 * (row_stride or cols), 4))

    huge = blas.INT32_MAX + 1
    small = matrix(2, 3)
    assert blas.column_major_call(small, matrix(3, 4), matrix(2, 4), False, False) is not None
    assert blas.column_major_call(small, matrix(3, huge), matrix(2, huge), False, False) is None
    assert blas.column_major_call(matrix(2, 3, huge), matrix(3, 4), matrix(2, 4),
                                  False, False) is None


def test_the_handle_takes_the_stream_and_goes_with_its_owner():
    cublas, library = emulated()
    assert library.streams == {1: 1234}
    assert cublas.version() == naive.EmulatedCuBLAS.VERSION
    del cublas
    gc.collect()
    assert library.destroyed == [1]


def test_load_cublas_says_why_not(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvmath", None)
    found, report = blas.load_cublas(0)
    assert found is None and report.startswith("nvmath-python is not installed (")

    def no_library():
        raise RuntimeError("CUDA driver is not found\n(libcuda.so.1)")

    library = naive.EmulatedCuBLAS()
    library.create = no_library
    nvmath = types.ModuleType("nvmath")
    nvmath.bindings = types.ModuleType("nvmath.bindings")
    nvmath.bindings.cublas = library
    monkeypatch.setitem(sys.modules, "nvmath", nvmath)
    monkeypatch.setitem(sys.modules, "nvmath.bindings", nvmath.bindings)
    assert blas.load_cublas(0) == (None, "nvmath-python could not start cuBLAS (CUDA driver is "
                                         "not found (libcuda.so.1))")
    library.create = naive.EmulatedCuBLAS().create
    found, report = blas.load_cublas(7)
    assert found is not None and report == "cuBLAS 13.1.1" and library.streams == {1: 7}
