"""Dense products on the GPU: a tiled, register-blocked GEMM in numba.cuda.

``c = alpha * op(a) @ op(b) + beta * c`` with ``op(x) = x`` or ``x.T``. A block
of GEMM_THREADS x GEMM_THREADS threads owns a square tile of C of side
GEMM_THREADS * GEMM_WORK; it walks the shared dimension in steps of
GEMM_TILE_K, staging op(a)'s and op(b)'s tiles in shared memory, and each
thread accumulates GEMM_WORK x GEMM_WORK outputs in registers. Every output is
summed over k in increasing order, so results repeat exactly; they may differ
from a BLAS in the last bits (different summation order, fused multiply-adds).
"""

import numba
from numba import cuda

from . import launch

_KERNELS = {}


def _make_gemm(dtype, threads, work, tile_k, trans_a, trans_b):
    side = threads * work
    nb_dtype = numba.from_dtype(dtype)

    @cuda.jit
    def gemm(a, b, c, alpha, beta, zero):
        m, n = c.shape
        k_total = a.shape[0] if trans_a else a.shape[1]
        sa = cuda.shared.array((tile_k, side), nb_dtype)
        sb = cuda.shared.array((tile_k, side), nb_dtype)
        acc = cuda.local.array((work, work), nb_dtype)
        ra = cuda.local.array(work, nb_dtype)
        rb = cuda.local.array(work, nb_dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * threads + tx
        n_threads = threads * threads
        row0 = cuda.blockIdx.y * side
        col0 = cuda.blockIdx.x * side
        for u in range(work):
            for v in range(work):
                acc[u, v] = zero
        for k0 in range(0, k_total, tile_k):
            # Loads walk memory contiguously: along k for a row-major a, along
            # the rows of op(a) when a is stored transposed (likewise for b).
            for flat in range(tid, side * tile_k, n_threads):
                if trans_a:
                    kk = flat // side
                    ii = flat - kk * side
                else:
                    ii = flat // tile_k
                    kk = flat - ii * tile_k
                gi = row0 + ii
                gk = k0 + kk
                value = zero
                if gi < m and gk < k_total:
                    value = a[gk, gi] if trans_a else a[gi, gk]
                sa[kk, ii] = value
            for flat in range(tid, side * tile_k, n_threads):
                if trans_b:
                    jj = flat // tile_k
                    kk = flat - jj * tile_k
                else:
                    kk = flat // side
                    jj = flat - kk * side
                gj = col0 + jj
                gk = k0 + kk
                value = zero
                if gj < n and gk < k_total:
                    value = b[gj, gk] if trans_b else b[gk, gj]
                sb[kk, jj] = value
            cuda.syncthreads()
            for kk in range(tile_k):
                for u in range(work):
                    ra[u] = sa[kk, ty + u * threads]
                for v in range(work):
                    rb[v] = sb[kk, tx + v * threads]
                for u in range(work):
                    for v in range(work):
                        acc[u, v] += ra[u] * rb[v]
            cuda.syncthreads()
        for u in range(work):
            i = row0 + ty + u * threads
            for v in range(work):
                j = col0 + tx + v * threads
                if i < m and j < n:
                    if beta == zero:  # as BLAS: C is not read, so garbage (NaN) in it is harmless
                        c[i, j] = alpha * acc[u, v]
                    else:
                        c[i, j] = alpha * acc[u, v] + beta * c[i, j]

    return gemm


def gemm(a, b, c, stream, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    """``c = alpha * op(a) @ op(b) + beta * c`` in place on device arrays."""
    m, n = c.shape
    if m == 0 or n == 0:
        return c
    threads, work, tile_k = launch.GEMM_THREADS, launch.GEMM_WORK, launch.GEMM_TILE_K
    key = (c.dtype, threads, work, tile_k, bool(trans_a), bool(trans_b))
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = _make_gemm(c.dtype, threads, work, tile_k, bool(trans_a),
                                            bool(trans_b))
    side = threads * work
    grid = (-(-n // side), -(-m // side))
    t = c.dtype.type
    kernel[grid, (threads, threads), stream](a, b, c, t(alpha), t(beta), t(0))
    return c
