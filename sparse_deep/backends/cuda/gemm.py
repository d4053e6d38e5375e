"""Dense products on the GPU: a tiled, register-blocked GEMM in numba.cuda.

On a GPU the backend hands its products to cuBLAS (:mod:`.blas`); this
kernel computes them in numba's simulator, on a GPU where cuBLAS does not
load, and for the few layouts cuBLAS cannot take as they are.

``c = alpha * op(a) @ op(b) + beta * c`` with ``op(x) = x`` or ``x.T``. A block
of GEMM_THREADS x GEMM_THREADS threads owns a square tile of C of side
GEMM_THREADS * GEMM_WORK; it walks the shared dimension in steps of
GEMM_TILE_K, staging op(a)'s and op(b)'s tiles in shared memory, and each
thread accumulates GEMM_WORK x GEMM_WORK outputs in registers. Every output is
summed over k in increasing order, so results repeat exactly; they may differ
from a BLAS in the last bits (different summation order, fused multiply-adds).

When C has few tiles and K is long (``delta @ W.T`` through a wide output
layer: a 128 x 256 C over K = 100,000 items is 8 tiles; at least
GEMM_SPLIT_MIN_K), K is split into
chunks computed by separate blocks into a scratch array, and a second kernel
adds the chunks in order: still one fixed order per shape, so still the same
result on every run.
"""

import numba
from numba import cuda

from . import launch, prepared

_KERNELS = {}


def _make_gemm(dtype, threads, work, tile_k, trans_a, trans_b, split):
    """The kernel for one configuration. With ``split``, block z of the grid
    computes ``op(a)[:, K_z] @ op(b)[K_z, :]`` for the z-th chunk of K (of
    ``k_chunk`` columns) into ``partial[z]``; otherwise it writes
    ``alpha * op(a) @ op(b) + beta * c`` into c."""
    side = threads * work
    nb_dtype = numba.from_dtype(dtype)

    @prepared.jit
    def gemm(a, b, c, alpha, beta, zero, k_chunk, partial):
        m, n = c.shape
        k_total = a.shape[0] if trans_a else a.shape[1]
        k_begin = 0
        k_end = k_total
        if split:
            k_begin = cuda.blockIdx.z * k_chunk
            k_end = k_begin + k_chunk
            if k_end > k_total:
                k_end = k_total
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
        for k0 in range(k_begin, k_end, tile_k):
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
                if gi < m and gk < k_end:
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
                if gj < n and gk < k_end:
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
                    if split:
                        partial[cuda.blockIdx.z, i, j] = acc[u, v]
                    elif beta == zero:  # as BLAS: C is not read, so garbage (NaN) is harmless
                        c[i, j] = alpha * acc[u, v]
                    else:
                        c[i, j] = alpha * acc[u, v] + beta * c[i, j]

    return gemm


@prepared.jit
def _add_chunks(partial, n_chunks, c, alpha, beta, zero):
    """``c = alpha * sum_z partial[z] + beta * c``, chunks added in order."""
    n = c.shape[1]
    for idx in range(cuda.grid(1), c.shape[0] * n, cuda.gridsize(1)):
        i = idx // n
        j = idx - i * n
        acc = zero
        for z in range(n_chunks):
            acc += partial[z, i, j]
        if beta == zero:
            c[i, j] = alpha * acc
        else:
            c[i, j] = alpha * acc + beta * c[i, j]


def split_k(m, n, k):
    """``(chunks, k_chunk)``: how many pieces K is cut into, and their width
    (a multiple of GEMM_TILE_K), for a C of m x n."""
    side = launch.GEMM_THREADS * launch.GEMM_WORK
    tiles = -(-m // side) * -(-n // side)
    k_tiles = -(-k // launch.GEMM_TILE_K)
    if tiles >= launch.GEMM_MIN_BLOCKS or k < launch.GEMM_SPLIT_MIN_K or k_tiles < 2:
        return 1, k
    wanted = min(-(-launch.GEMM_MIN_BLOCKS // tiles), k_tiles)
    k_chunk = -(-k_tiles // wanted) * launch.GEMM_TILE_K
    return -(-k // k_chunk), k_chunk


def scratch_elements():
    """Most scratch entries a split product can use: fewer than GEMM_MIN_BLOCKS
    tiles of C, times at most twice that many chunks in all."""
    side = launch.GEMM_THREADS * launch.GEMM_WORK
    return 2 * launch.GEMM_MIN_BLOCKS * side * side


def _kernel(dtype, trans_a, trans_b, split):
    threads, work, tile_k = launch.GEMM_THREADS, launch.GEMM_WORK, launch.GEMM_TILE_K
    key = (dtype, threads, work, tile_k, bool(trans_a), bool(trans_b), split)
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = _make_gemm(dtype, threads, work, tile_k, bool(trans_a),
                                            bool(trans_b), split)
    return kernel


_NO_PARTIAL = {}


def _no_partial(dtype):
    """A one-entry placeholder for ``partial`` when K is not split (a view of
    C would cost a GPU tens of µs to make on every product)."""
    placeholder = _NO_PARTIAL.get(dtype)
    if placeholder is None:
        placeholder = _NO_PARTIAL[dtype] = cuda.device_array((1, 1, 1), dtype)
    return placeholder


def gemm(a, b, c, stream, scratch, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    """``c = alpha * op(a) @ op(b) + beta * c`` in place on device arrays.

    ``scratch(name, size, dtype)`` provides the partial products of a split K.
    """
    m, n = c.shape
    if m == 0 or n == 0:
        return c
    k = a.shape[0] if trans_a else a.shape[1]
    threads = launch.GEMM_THREADS
    side = threads * launch.GEMM_WORK
    chunks, k_chunk = split_k(m, n, k)
    t = c.dtype.type
    grid = (-(-n // side), -(-m // side), chunks)
    if chunks == 1:
        _kernel(c.dtype, trans_a, trans_b, False)[grid, (threads, threads), stream](
            a, b, c, t(alpha), t(beta), t(0), k, _no_partial(c.dtype))
        return c
    partial = scratch("gemm_partial", chunks * m * n, c.dtype).reshape(chunks, m, n)
    _kernel(c.dtype, trans_a, trans_b, True)[grid, (threads, threads), stream](
        a, b, c, t(alpha), t(beta), t(0), k_chunk, partial)
    blocks, threads = launch.elementwise(m * n)
    _add_chunks[blocks, threads, stream](partial, chunks, c, t(alpha), t(beta), t(0))
    return c
