"""CUDA kernels on CSR batches: denoising, the sparse-input forward product,
the input layer's transpose and its row-sparse weight gradient.

As on the CPU, nothing here costs time or memory in proportion to the number
of input features, except the ``slot`` scratch of the transpose (one int32 per
feature, allocated once per fit). Floating-point sums never use atomics: each
output is summed by one thread in a fixed order, so results repeat exactly.
Integer atomics (counts, bucket cursors) are used where only the count
matters, and the one place their order could leak into the result (the order
of rows within a feature's bucket) is put back in row order before use.
"""

import numpy as np
from numba import cuda, float64, int32, uint64

from . import launch
from ._device import row_of, uniform
from .scan import exclusive_scan

# slot[f] holds FIRST - (first position of f) while the transpose runs; -1 is
# below every such value, so an atomic max finds the first appearance.
FIRST = np.int32(2**31 - 1)


# -- batches from a data set held on the GPU --------------------------------------
@cuda.jit
def _gather_rows(src_indptr, src_indices, src_data, plan, n_rows, out_indptr, out_indices,
                 out_data):
    """Copy the entries of the batch's rows into the batch (one block per row).
    ``plan`` holds the rows, then the batch's row offsets (n_rows + 1)."""
    for r in range(cuda.blockIdx.x, n_rows, cuda.gridDim.x):
        start = src_indptr[plan[r]]
        out = plan[n_rows + r]
        if cuda.threadIdx.x == 0:
            out_indptr[r + 1] = plan[n_rows + r + 1]
            if r == 0:
                out_indptr[0] = 0
        for j in range(cuda.threadIdx.x, plan[n_rows + r + 1] - out, cuda.blockDim.x):
            out_indices[out + j] = src_indices[start + j]
            out_data[out + j] = src_data[start + j]


def gather_rows(src_indptr, src_indices, src_data, plan, n_rows, out_indptr, out_indices,
                out_data, stream):
    """The batch of ``n_rows`` rows of a device CSR data set, into the batch
    buffers; ``plan`` (on the device) is the rows followed by the batch's row
    offsets, so that one upload carries both."""
    if n_rows:
        _gather_rows[launch.blocks_for(n_rows, 1), launch.THREADS, stream](
            src_indptr, src_indices, src_data, plan, n_rows, out_indptr, out_indices, out_data)


# -- denoising ---------------------------------------------------------------------
@cuda.jit
def _denoise_count(indptr, indices, row_ids, n_rows, n_features, offset, key, p, kept):
    for r in range(cuda.grid(1), n_rows, cuda.gridsize(1)):
        base = uint64(row_ids[r]) * uint64(n_features) + uint64(offset)
        count = 0
        for q in range(indptr[r], indptr[r + 1]):
            if uniform(key, base + uint64(indices[q])) >= p:
                count += 1
        kept[r] = count


@cuda.jit
def _denoise_compact(indptr, indices, data, row_ids, n_rows, n_features, offset, key, p, scale,
                     new_indptr, tmp_indices, tmp_data):
    for r in range(cuda.grid(1), n_rows, cuda.gridsize(1)):
        base = uint64(row_ids[r]) * uint64(n_features) + uint64(offset)
        write = new_indptr[r]
        for q in range(indptr[r], indptr[r + 1]):
            if uniform(key, base + uint64(indices[q])) >= p:
                tmp_indices[write] = indices[q]
                tmp_data[write] = float64(data[q]) * scale
                write += 1


@cuda.jit
def _denoise_commit(new_indptr, n_rows, tmp_indices, tmp_data, n_items, indptr, indices, data):
    nnz = new_indptr[n_rows]
    for i in range(cuda.grid(1), n_items, cuda.gridsize(1)):
        if i < nnz:
            indices[i] = tmp_indices[i]
            data[i] = tmp_data[i]
        if i <= n_rows:
            indptr[i] = new_indptr[i]


def denoise(indptr, indices, data, row_ids, n_features, key, p, scratch, stream,
            feature_offset=0):
    """Drop each non-zero with probability ``p``, scale survivors by 1/(1-p),
    and compact the rows in place (the CPU kernel's contract and masks; a
    model-parallel slice keys its draws by ``feature_offset`` + column).

    Rows are counted, their new offsets scanned, survivors written to scratch
    and copied back: compacting in place in parallel would let a row overwrite
    entries its neighbour has not read yet.
    """
    n_rows = indptr.shape[0] - 1
    capacity = indices.shape[0]
    kept = scratch("denoise_kept", n_rows, np.int64)
    new_indptr = scratch("denoise_indptr", n_rows + 1, np.int64)
    tmp_indices = scratch("denoise_indices", capacity, indices.dtype)
    tmp_data = scratch("denoise_data", capacity, data.dtype)
    key = np.uint64(key)
    grid = launch.elementwise(n_rows)
    offset = np.uint64(feature_offset)
    _denoise_count[grid[0], grid[1], stream](indptr, indices, row_ids, n_rows, n_features,
                                             offset, key, float(p), kept)
    exclusive_scan(kept, n_rows, new_indptr, stream)
    _denoise_compact[grid[0], grid[1], stream](
        indptr, indices, data, row_ids, n_rows, n_features, offset, key, float(p),
        1.0 / (1.0 - p),
        new_indptr, tmp_indices, tmp_data)
    n_items = max(capacity, n_rows + 1)
    blocks, threads = launch.elementwise(n_items)
    _denoise_commit[blocks, threads, stream](new_indptr, n_rows, tmp_indices, tmp_data, n_items,
                                             indptr, indices, data)


# -- forward -----------------------------------------------------------------------
@cuda.jit
def _sparse_matmul_add(indptr, indices, data, weights, out):
    n_out = out.shape[1]
    for idx in range(cuda.grid(1), out.shape[0] * n_out, cuda.gridsize(1)):
        i = idx // n_out
        h = idx - i * n_out
        acc = out[i, h]
        for p in range(indptr[i], indptr[i + 1]):
            acc += data[p] * weights[indices[p], h]
        out[i, h] = acc


def sparse_matmul_add(indptr, indices, data, weights, out, stream):
    """``out += X @ W`` for a CSR batch X: one thread per output, gathering the
    weight rows of the row's features in storage order (coalesced along h)."""
    blocks, threads = launch.elementwise(out.shape[0] * out.shape[1])
    _sparse_matmul_add[blocks, threads, stream](indptr, indices, data, weights, out)


# -- transpose ---------------------------------------------------------------------
@cuda.jit
def _first_appearance(indptr, n_rows, indices, slot, counts, cursor):
    nnz = indptr[n_rows]
    for p in range(cuda.grid(1), indices.shape[0], cuda.gridsize(1)):
        counts[p] = 0
        cursor[p] = 0
        if p < nnz:
            cuda.atomic.max(slot, indices[p], int32(FIRST - p))


@cuda.jit
def _flag_first(indptr, n_rows, indices, slot, flags):
    nnz = indptr[n_rows]
    for p in range(cuda.grid(1), indices.shape[0], cuda.gridsize(1)):
        flag = 0
        if p < nnz and FIRST - slot[indices[p]] == p:
            flag = 1
        flags[p] = flag


@cuda.jit
def _assign_slots(indptr, n_rows, indices, flags, first_rank, slot, features):
    nnz = indptr[n_rows]
    for p in range(cuda.grid(1), nnz, cuda.gridsize(1)):
        if flags[p]:
            s = first_rank[p]
            features[s] = indices[p]
            slot[indices[p]] = s


@cuda.jit
def _count_per_feature(indptr, n_rows, indices, slot, counts):
    nnz = indptr[n_rows]
    for p in range(cuda.grid(1), nnz, cuda.gridsize(1)):
        cuda.atomic.add(counts, slot[indices[p]], 1)


@cuda.jit
def _bucket_by_feature(indptr, n_rows, indices, slot, t_indptr, cursor, order):
    nnz = indptr[n_rows]
    for p in range(cuda.grid(1), nnz, cuda.gridsize(1)):
        s = slot[indices[p]]
        order[t_indptr[s] + cuda.atomic.add(cursor, s, 1)] = p


@cuda.jit
def _sort_buckets(indptr, n_rows, data, indices, slot, t_indptr, order, t_rows, t_data):
    nnz = indptr[n_rows]
    for q in range(cuda.grid(1), nnz, cuda.gridsize(1)):
        p = order[q]
        s = slot[indices[p]]
        lo = t_indptr[s]
        rank = 0
        for other in range(lo, t_indptr[s + 1]):
            if order[other] < p:
                rank += 1
        t_rows[lo + rank] = row_of(indptr, n_rows, p)
        t_data[lo + rank] = data[p]


@cuda.jit
def _reset_slots(features, first_rank, capacity, slot):
    n_present = first_rank[capacity]
    for s in range(cuda.grid(1), n_present, cuda.gridsize(1)):
        slot[features[s]] = -1


def transpose_batch(indptr, indices, data, slot, features, t_indptr, t_rows, t_data, scratch,
                    stream):
    """Group a CSR batch by feature, exactly as the CPU kernel does.

    Features are numbered in order of first appearance (an atomic max on
    ``slot`` finds each feature's first position; a scan over "is first"
    flags numbers them), their rows counted and bucketed, and each bucket put
    in storage order, which is row order: the same layout the CPU's serial
    loop produces. ``slot`` (n_features, all -1) is left all -1 again.
    Returns the number of distinct features present (one small device-to-host
    copy: the caller sizes the gradient and the update by it).
    """
    n_rows = indptr.shape[0] - 1
    capacity = indices.shape[0]
    counts = scratch("transpose_counts", capacity, np.int32)
    cursor = scratch("transpose_cursor", capacity, np.int32)
    flags = scratch("transpose_flags", capacity, np.int32)
    first_rank = scratch("transpose_rank", capacity + 1, np.int64)
    order = scratch("transpose_order", capacity, np.int64)
    blocks, threads = launch.elementwise(capacity)
    _first_appearance[blocks, threads, stream](indptr, n_rows, indices, slot, counts, cursor)
    _flag_first[blocks, threads, stream](indptr, n_rows, indices, slot, flags)
    exclusive_scan(flags, capacity, first_rank, stream)
    _assign_slots[blocks, threads, stream](indptr, n_rows, indices, flags, first_rank, slot,
                                           features)
    _count_per_feature[blocks, threads, stream](indptr, n_rows, indices, slot, counts)
    exclusive_scan(counts, capacity, t_indptr, stream)
    _bucket_by_feature[blocks, threads, stream](indptr, n_rows, indices, slot, t_indptr, cursor,
                                                order)
    _sort_buckets[blocks, threads, stream](indptr, n_rows, data, indices, slot, t_indptr, order,
                                           t_rows, t_data)
    _reset_slots[blocks, threads, stream](features, first_rank, capacity, slot)
    n_present = first_rank[capacity:capacity + 1].copy_to_host(stream=stream)
    stream.synchronize()
    return int(n_present[0])


# -- gradient and scatter ----------------------------------------------------------
@cuda.jit
def _sparse_weight_gradient(t_indptr, t_rows, t_data, n_present, delta, zero, grad):
    n_out = delta.shape[1]
    for idx in range(cuda.grid(1), n_present * n_out, cuda.gridsize(1)):
        s = idx // n_out
        h = idx - s * n_out
        acc = zero
        for q in range(t_indptr[s], t_indptr[s + 1]):
            acc += t_data[q] * delta[t_rows[q], h]
        grad[s, h] = acc


def sparse_weight_gradient(t_indptr, t_rows, t_data, n_present, delta, grad, stream):
    """``grad[s] = sum over the bucket of s of x * delta[row]``, one thread per
    (feature, unit), summing in row order: no float atomics, same on every run."""
    if n_present == 0:
        return
    blocks, threads = launch.elementwise(n_present * delta.shape[1])
    _sparse_weight_gradient[blocks, threads, stream](t_indptr, t_rows, t_data, int(n_present),
                                                     delta, grad.dtype.type(0), grad)


@cuda.jit
def _scatter_rows(dst, rows, src):
    n = dst.shape[1]
    for idx in range(cuda.grid(1), rows.shape[0] * n, cuda.gridsize(1)):
        r = idx // n
        j = idx - r * n
        dst[rows[r], j] = src[r, j]


@cuda.jit
def _zero_rows(dst, rows):
    n = dst.shape[1]
    for idx in range(cuda.grid(1), rows.shape[0] * n, cuda.gridsize(1)):
        r = idx // n
        dst[rows[r], idx - r * n] = 0


def scatter_rows(dst, rows, src, stream):
    """``dst[rows[r]] = src[r]`` for r < len(rows)."""
    if rows.shape[0]:
        blocks, threads = launch.elementwise(rows.shape[0] * dst.shape[1])
        _scatter_rows[blocks, threads, stream](dst, rows, src)


def zero_rows(dst, rows, stream):
    if rows.shape[0]:
        blocks, threads = launch.elementwise(rows.shape[0] * dst.shape[1])
        _zero_rows[blocks, threads, stream](dst, rows)
