"""In-place GEMM on row-major arrays, run on numba's threads.

numpy's ``matmul(out=...)`` cannot accumulate (``C += A @ B``), which the
forward pass (bias already in C) and the backward pass (a layer feeding several
others) both need. BLAS can, but wants Fortran order; a row-major C is the
Fortran-ordered C^T, so we ask BLAS for ``C^T = op(B)^T op(A)^T`` instead.

Why not let BLAS thread its own calls: a training step alternates GEMMs with
numba kernels, and the two thread pools handed the cores to each other a
dozen times a step. A pool's worker that spins after its work steals the core
the other pool needs; one that sleeps must be woken, which costs 15-25 us here
and far more after the process has idled (an ML-100K epoch: 21 ms back to
back, 48 ms after a 0.1 s pause). So :func:`gemm` splits C into one block of
rows or columns and numba's threads share the blocks out, each block one
single-threaded BLAS call: every parallel region of a step is then numba's,
and its workers may spin between them (``GOMP_SPINCOUNT``, see
``threads.py``).

Which BLAS: the OpenBLAS that numpy's wheels bundle (64-bit integers, its
CBLAS symbols named ``scipy_cblas_?gemm64_``) where it is loaded, else scipy's
BLAS through numba's own helper. On this project's 2-core machine numpy's
(OpenBLAS 0.3.31) ran our products 5-28 % faster than scipy's (0.3.30), on
one thread and on two. Both are found by name, so the kernels can be cached;
which one a process uses never changes while it runs.

The blocks depend on C's shape only, never on the number of threads: BLAS
computes an element at a block's edge with a different inner kernel than one
inside a block, so a split that followed the threads would give a model that
differs in the last bit from one machine to the next.

Every loaded BLAS is held at one thread for the call and given back its own
count afterwards, so OpenBLAS's own workers, which spin for up to 0.1 s after
a threaded call, are never woken by ours.
"""

import ctypes
import functools
import os
import threading

import llvmlite.binding
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  the BLAS numba's helper calls, loaded now
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

# OpenBLAS's shortest wait before an idle worker sleeps: 2^4 cycles.

# numba's C helper behind np.dot: calls scipy.linalg.cython_blas's ?gemm.
# Declared by name, so the kernels that call it can be cached.
_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp,
    types.voidptr, types.voidptr, types.intp, types.voidptr, types.intp,
    types.voidptr, types.voidptr, types.intp,
))

_KIND = {np.dtype(np.float32): np.int8(ord("s")), np.dtype(np.float64): np.int8(ord("d"))}
_NO_TRANS, _TRANS = np.int8(ord("N")), np.int8(ord("T"))

# A 64-bit-integer CBLAS ?gemm, under names of ours that _ilp64_cblas points
# at a loaded library's functions before any kernel calling them is compiled
# or loaded from the cache.
_CBLAS_SYMBOLS = {"s": "sparse_deep_cblas_sgemm64", "d": "sparse_deep_cblas_dgemm64"}
# Their names in the libraries we know, most preferred first.
_ILP64_CBLAS_NAMES = ("scipy_cblas_{}gemm64_", "cblas_{}gemm64_")


def _cblas_gemm(kind, scalar):
    return types.ExternalFunction(_CBLAS_SYMBOLS[kind], types.void(
        types.intc, types.intc, types.intc, types.int64, types.int64, types.int64,
        scalar, types.voidptr, types.int64, types.voidptr, types.int64,
        scalar, types.voidptr, types.int64,
    ))


_cblas_sgemm = _cblas_gemm("s", types.float32)
_cblas_dgemm = _cblas_gemm("d", types.float64)
_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS = 101, 111, 112  # CBLAS's enum values

# Blocks start on multiples of 16 elements (one 64-byte line of float32).
_ALIGN = 16
# C is cut into a power of two of blocks, at least _BLOCK_WIDTH wide (at least
# 2 blocks from 64 up, at most _MAX_BLOCKS). Blocks are not cut to fit the
# threads, so there must be enough of them for a machine with many cores:
# on a 16-core Xeon, blocks of 128 rather than 512 made Last.fm's default
# network's epoch 0.097 -> 0.075 s (ML-100K's MovieLens network 0.026 ->
# 0.016 s), while on 2 cores the two widths ran within 1 % of each other
# (numpy's OpenBLAS; 64 cost 2-6 %).
_BLOCK_WIDTH = 128
_MAX_BLOCKS = 64
# A product whose C is cut into fewer than _FEW_BLOCKS blocks (the hidden
# delta: batch x hidden units, summed over every item) has its inner
# dimension cut too, into chunks at least _K_CHUNK long, each chunk's
# product summed in chunk order; see :func:`chunk_count`.
_FEW_BLOCKS = 8
_K_CHUNK = 512


@intrinsic
def _element_pointer(typingctx, array, offset):
    """``&array.flat_data[offset]`` as a void pointer (offset in elements)."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.bitcast(builder.gep(data, [args[1]]), cgutils.voidptr_t)

    return types.voidptr(array, types.intp), codegen


def _block_bounds(total, part, parts):
    """[lo, hi) of block ``part`` of ``parts`` over ``total``, cut at multiples of _ALIGN."""
    lo = (total * part // parts) // _ALIGN * _ALIGN if part > 0 else 0
    hi = (total * (part + 1) // parts) // _ALIGN * _ALIGN if part + 1 < parts else total
    return lo, hi


def _block(block, blocks, m, n, lda, ldb, ldc, trans_a, trans_b):
    """Block ``block`` of ``blocks`` of the row-major m x n C: its rows and
    columns, and where it starts in A, B and C (in elements).

    C is cut into blocks of rows when it has more rows than columns (rows of
    C and of op(A)), else into blocks of columns (of C and of op(B)). A block
    left empty by the alignment has no rows or no columns.
    """
    if m > n:
        lo, hi = _block_bounds(m, block, blocks)
        return hi - lo, n, (lo if trans_a else lo * lda), 0, lo * ldc
    lo, hi = _block_bounds(n, block, blocks)
    return m, hi - lo, 0, (lo * ldb if trans_b else lo), lo


@functools.lru_cache(maxsize=1024)
def _tasks(m, n, k, lda, ldb, ldc, trans_a, trans_b, blocks, chunks):
    """The BLAS calls of one product, one row each: ``(rows, cols, depth,
    a_start, b_start, out_start)``, starts in elements.

    Each (block, chunk) of C's :func:`_block` and the inner dimension's
    :func:`_block_bounds` is a call of ``op(A)[rows, lo:hi] @ op(B)[lo:hi,
    cols]``: into C (row stride ``ldc``) for one chunk, else into chunk's
    m x n slice of the partial products (row stride n). Empty calls are left
    out. Worked out here once per shape rather than in the kernel: compiled
    inside its parallel loop, this arithmetic made the kernel take 1.8 s to
    compile instead of 0.4 s, on a user's first fit.
    """
    rows_out = []
    for block in range(blocks):
        for chunk in range(chunks):
            rows, cols, a_start, b_start, c_start = _block(block, blocks, m, n, lda, ldb,
                                                           ldc if chunks == 1 else n,
                                                           trans_a, trans_b)
            lo, hi = _block_bounds(k, chunk, chunks)
            if rows <= 0 or cols <= 0 or hi <= lo:
                continue
            # Columns lo:hi of op(A) and rows lo:hi of op(B).
            a_start += lo * lda if trans_a else lo
            b_start += lo if trans_b else lo * ldb
            out_start = c_start if chunks == 1 else chunk * m * n + c_start
            rows_out.append((rows, cols, hi - lo, a_start, b_start, out_start))
    tasks = np.array(rows_out, dtype=np.int64).reshape(-1, 6)
    tasks.setflags(write=False)
    return tasks


@njit(parallel=True, nogil=True, cache=True)
def _gemm_tasks(a, lda, b, ldb, c, ldc, alpha, beta, trans_a, trans_b, kind, tasks):
    """C (row stride ldc) = alpha op(A) op(B) + beta C, one BLAS call per
    row of :func:`_tasks` (one chunk), through numba's helper for scipy's
    BLAS. ``nogil``: the helper takes the GIL the first time it looks BLAS
    up, possibly from a worker thread.
    """
    # Fortran computes C^T = op(B)^T op(A)^T: B comes first, the flags swap.
    flag_b = _TRANS if trans_b else _NO_TRANS
    flag_a = _TRANS if trans_a else _NO_TRANS
    for task in prange(tasks.shape[0]):
        scalars = np.empty(2, c.dtype)  # BLAS takes alpha and beta by address
        scalars[0] = alpha
        scalars[1] = beta
        _xxgemm(kind, flag_b, flag_a, tasks[task, 1], tasks[task, 0], tasks[task, 2],
                _element_pointer(scalars, 0), _element_pointer(b, tasks[task, 4]), ldb,
                _element_pointer(a, tasks[task, 3]), lda, _element_pointer(scalars, 1),
                _element_pointer(c, tasks[task, 5]), ldc)


@njit(parallel=True, nogil=True, cache=True)
def _cblas_gemm_tasks(a, lda, b, ldb, out, ldo, alpha, beta, trans_a, trans_b, tasks):
    """:func:`_gemm_tasks` through the 64-bit CBLAS of :func:`_ilp64_cblas`
    (row-major, so no operands swap), into ``out`` (row stride ``ldo``): C,
    or for a cut inner dimension the partial products, which
    :func:`_sum_chunks` then adds into C.
    """
    flag_a = _CBLAS_TRANS if trans_a else _CBLAS_NO_TRANS
    flag_b = _CBLAS_TRANS if trans_b else _CBLAS_NO_TRANS
    for task in prange(tasks.shape[0]):
        _cblas_call(flag_a, flag_b, tasks[task, 0], tasks[task, 1], tasks[task, 2], alpha, a,
                    tasks[task, 3], lda, b, tasks[task, 4], ldb, beta, out, tasks[task, 5], ldo)


@njit(parallel=True, nogil=True, cache=True)
def _sum_chunks(partial, beta, c):
    """C = beta C + the chunks' products ``partial`` summed in chunk order."""
    chunks, m, n = partial.shape
    zero = c.dtype.type(0)
    for i in prange(m):
        for j in range(n):
            total = partial[0, i, j]
            for chunk in range(1, chunks):
                total += partial[chunk, i, j]
            c[i, j] = total if beta == zero else beta * c[i, j] + total


def _cblas_call(flag_a, flag_b, m, n, k, alpha, a, a_start, lda, b, b_start, ldb, beta, c,
                c_start, ldc):
    """One row-major CBLAS ?gemm on offsets into a, b and c (in kernels only)."""
    raise NotImplementedError("called from numba kernels only")


@overload(_cblas_call)
def _cblas_call_for_dtype(flag_a, flag_b, m, n, k, alpha, a, a_start, lda, b, b_start, ldb,
                          beta, c, c_start, ldc):
    # sgemm or dgemm, chosen as the kernel is typed: only that one is compiled.
    function = _cblas_sgemm if alpha == types.float32 else _cblas_dgemm

    def call(flag_a, flag_b, m, n, k, alpha, a, a_start, lda, b, b_start, ldb, beta, c,
             c_start, ldc):
        function(_ROW_MAJOR, flag_a, flag_b, m, n, k, alpha, _element_pointer(a, a_start), lda,
                 _element_pointer(b, b_start), ldb, beta, _element_pointer(c, c_start), ldc)

    return call


@functools.cache
def _ilp64_cblas():
    """Path of the loaded BLAS whose 64-bit CBLAS the GEMMs call, or None.

    Looks through the BLAS libraries threadpoolctl finds loaded (numpy's
    bundled OpenBLAS among them) for both ?gemm functions under a name of
    _ILP64_CBLAS_NAMES, and registers their addresses under _CBLAS_SYMBOLS.
    None where there is none (numpy built against another BLAS): scipy's is
    used then. ``SPARSE_DEEP_BLAS=scipy`` asks for scipy's.
    """
    if os.environ.get("SPARSE_DEEP_BLAS", "").lower() == "scipy":
        return None
    for path in _loaded_blas_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern in _ILP64_CBLAS_NAMES:
            functions = {kind: getattr(library, pattern.format(kind), None) for kind in "sd"}
            if all(functions.values()):
                for kind, function in functions.items():
                    address = ctypes.cast(function, ctypes.c_void_p).value
                    llvmlite.binding.add_symbol(_CBLAS_SYMBOLS[kind], address)
                return path
    return None


def blas_library():
    """Path of the BLAS library our GEMMs call (scipy's when it is reached
    through numba's helper, which does not say where it lives: then "scipy")."""
    return _ilp64_cblas() or "scipy"


def block_count(m, n):
    """Blocks :func:`gemm` cuts an m x n product into (from the shape alone)."""
    total = max(m, n)
    if total < 64:
        return 1
    blocks = 2
    while blocks < _MAX_BLOCKS and total // (2 * blocks) >= _BLOCK_WIDTH:
        blocks *= 2
    return blocks


def chunk_count(m, n, k):
    """Chunks :func:`gemm` cuts the inner dimension k of an m x n product into
    (from the shapes alone; 1: not cut).

    Only where C gives fewer than _FEW_BLOCKS blocks: the hidden delta of a
    wide output layer (128 x 256, summed over 4,489 items on Last.fm) had 2
    blocks, so 2 threads, whatever the machine. Chunks cost nothing in
    packing, unlike narrower blocks of C (each block packs the whole shared
    operand again), only the final sum. On 2 cores, 8 chunks of Last.fm's
    product ran as fast as none; on ML-100K (1,682 items: 2 chunks) within
    the noise of a few per cent.
    """
    if block_count(m, n) >= _FEW_BLOCKS:
        return 1
    chunks = 1
    while chunks < _MAX_BLOCKS and k // (2 * chunks) >= _K_CHUNK:
        chunks *= 2
    return chunks


def _row_stride(x):
    """Elements between rows of a 2-D array whose rows are contiguous, else None."""
    item = x.dtype.itemsize
    if x.shape[1] > 1 and x.strides[1] != item:
        return None
    if x.shape[0] <= 1:  # any stride is legal for a single row; BLAS wants >= columns
        return max(x.shape[1], 1)
    if x.strides[0] % item or x.strides[0] < x.shape[1] * item:
        return None
    return x.strides[0] // item


def gemm(a, b, c, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    """``c = alpha * op(a) @ op(b) + beta * c`` in place; returns ``c``.

    ``op(x)`` is ``x.T`` when the matching ``trans_*`` flag is set. All three
    arrays share one dtype (float32 or float64); ``c``'s rows may be a slice
    of a wider buffer. Runs on numba's threads, as :func:`block_count`
    blocks (times :func:`chunk_count` chunks of the inner dimension, through
    numpy's OpenBLAS), each a single-threaded BLAS call (BLAS's own threads
    are held at one for the call): the result is the same for any number of
    threads.
    """
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return c
    if k == 0:  # BLAS rejects a leading dimension of 0; the product is empty
        if beta == 0.0:
            c[...] = 0
        else:
            c *= beta
        return c
    a, lda = _blas_operand(a)
    b, ldb = _blas_operand(b)
    out, ldc = _blas_operand(c)  # a copy only if c's rows are not contiguous
    dtype = out.dtype.type
    alpha, beta = dtype(alpha), dtype(beta)
    trans_a, trans_b = bool(trans_a), bool(trans_b)
    with _single_threaded_blas():
        if _ilp64_cblas():
            chunks = chunk_count(m, n, k)
            tasks = _tasks(m, n, k, lda, ldb, ldc, trans_a, trans_b, block_count(m, n), chunks)
            if chunks == 1:
                _cblas_gemm_tasks(a, lda, b, ldb, out, ldc, alpha, beta, trans_a, trans_b, tasks)
            else:
                partial = _partial_products(chunks, m, n, out.dtype)
                # 2-D, so that it has C's type and the kernel compiles once.
                _cblas_gemm_tasks(a, lda, b, ldb, partial.reshape(chunks * m, n), n, alpha,
                                  dtype(0), trans_a, trans_b, tasks)
                _sum_chunks(partial, beta, out)
        else:
            tasks = _tasks(m, n, k, lda, ldb, ldc, trans_a, trans_b, block_count(m, n), 1)
            _gemm_tasks(a, lda, b, ldb, out, ldc, alpha, beta, trans_a, trans_b,
                        _KIND[out.dtype], tasks)
    if out is not c:
        c[...] = out
    return c


_scratch = threading.local()


def _partial_products(chunks, m, n, dtype):
    """A (chunks, m, n) buffer for the chunks' products, kept per thread and
    grown, never shrunk, so that steps after the first allocate nothing."""
    size = chunks * m * n
    buffer = getattr(_scratch, dtype.name, None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, dtype)
        setattr(_scratch, dtype.name, buffer)
    return buffer[:size].reshape(chunks, m, n)


def _blas_operand(x):
    """``x`` (or a contiguous copy, where BLAS cannot read it) and its row stride."""
    stride = _row_stride(x)
    if stride is None:
        x = np.ascontiguousarray(x)
        stride = _row_stride(x)
    return x, stride


@functools.cache
def _blas_libraries():
    """threadpoolctl's controllers of every BLAS loaded (scipy's among them)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # scikit-learn depends on it; without it BLAS threads are left alone
        return ()
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


class _single_threaded_blas:
    """Hold every loaded BLAS at one thread, restoring each count on exit."""

    def __enter__(self):
        self._restore = []
        for library in _blas_libraries():
            threads = library.get_num_threads()
            if threads != 1:
                library.set_num_threads(1)
                self._restore.append((library, threads))

    def __exit__(self, *exc):
        for library, threads in self._restore:
            library.set_num_threads(threads)
        return False


def _loaded_blas_paths():
    return [info["filepath"] for info in _blas_info() if info.get("user_api") == "blas"]


def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # scikit-learn depends on it; be quiet if it is missing
        return []
    return threadpool_info()
