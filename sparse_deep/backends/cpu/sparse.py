"""Kernels on CSR batches: gathering a minibatch, denoising, the sparse-input
forward product and the input layer's row-sparse weight gradient.

The input layer's weight matrix has one row per input feature. A batch only
ever touches the rows of the features present in it, so nothing here costs
time or memory in proportion to the total number of features.
"""

import numpy as np
from numba import njit, prange

from ._scalar import uniform


@njit(cache=True)
def gather_rows(indptr, indices, data, rows, out_indptr, out_indices, out_data):
    """Copy the CSR rows ``rows`` into preallocated batch buffers; returns nnz.
    On one thread (a copy of the batch; see the package's note)."""
    n_rows = rows.shape[0]
    out_indptr[0] = 0
    for r in range(n_rows):  # where each row goes (a prefix sum)
        out_indptr[r + 1] = out_indptr[r] + indptr[rows[r] + 1] - indptr[rows[r]]
    for r in range(n_rows):
        src, dst = indptr[rows[r]], out_indptr[r]
        for q in range(out_indptr[r + 1] - dst):
            out_indices[dst + q] = indices[src + q]
            out_data[dst + q] = data[src + q]
    return out_indptr[n_rows]


@njit(parallel=True, cache=True)
def denoise(indptr, indices, data, row_ids, n_features, key, p, feature_offset=0):
    """Drop each non-zero with probability ``p`` and scale survivors by 1/(1-p).

    Works in place and compacts the rows, so dropped entries vanish from the
    batch (and from the sparse gradient). The counter of an entry is (global
    example id, feature id), the feature id being ``feature_offset`` + its
    column in a model-parallel slice: independent of batch composition and
    sharding. Returns the new number of non-zeros.

    The draws run in parallel, each row compacting its survivors to the
    front of its own span; the spans then move together in one serial copy.
    """
    scale = 1.0 / (1.0 - p)
    n_rows = indptr.shape[0] - 1
    starts = indptr[:n_rows].copy()
    kept = np.empty(n_rows, np.int64)
    for r in prange(n_rows):
        base = np.uint64(row_ids[r]) * np.uint64(n_features) + np.uint64(feature_offset)
        write = starts[r]
        for q in range(starts[r], indptr[r + 1]):
            if uniform(key, base + np.uint64(indices[q])) >= p:
                indices[write] = indices[q]
                data[write] = data[q] * scale
                write += 1
        kept[r] = write - starts[r]
    write = 0
    for r in range(n_rows):  # spans only move left, so in row order nothing is overwritten early
        for q in range(kept[r]):
            indices[write + q] = indices[starts[r] + q]
            data[write + q] = data[starts[r] + q]
        write += kept[r]
        indptr[r + 1] = write
    return write


@njit(parallel=True, cache=True)
def sparse_matmul_add(indptr, indices, data, weights, out):
    """``out += X @ W`` for a CSR batch X: gather W's rows of present features."""
    n_out = weights.shape[1]
    for i in prange(indptr.shape[0] - 1):
        row = out[i]
        for p in range(indptr[i], indptr[i + 1]):
            w = weights[indices[p]]
            v = data[p]
            for h in range(n_out):
                row[h] += v * w[h]


@njit(cache=True)
def transpose_batch(indptr, indices, data, slot, features, t_indptr, t_rows, t_data):
    """Group a CSR batch by feature: which rows hold each present feature.

    ``slot`` is a scratch array of length n_features filled with -1; it is left
    that way on return. Features are listed in order of first appearance,
    which is deterministic. Returns the number of distinct features present.
    """
    n_rows = indptr.shape[0] - 1
    nnz = indptr[n_rows]
    n_present = 0
    for p in range(nnz):
        f = indices[p]
        if slot[f] < 0:
            slot[f] = n_present
            features[n_present] = f
            t_indptr[n_present + 1] = 0
            n_present += 1
        t_indptr[slot[f] + 1] += 1
    t_indptr[0] = 0
    for s in range(n_present):
        t_indptr[s + 1] += t_indptr[s]
    # Fill each feature's list in row order, so later sums run in a fixed order.
    fill = t_indptr[:n_present].copy()
    for i in range(n_rows):
        for p in range(indptr[i], indptr[i + 1]):
            s = slot[indices[p]]
            t_rows[fill[s]] = i
            t_data[fill[s]] = data[p]
            fill[s] += 1
    for s in range(n_present):
        slot[features[s]] = -1
    return n_present


@njit(parallel=True, cache=True)
def sparse_weight_gradient(t_indptr, t_rows, t_data, n_present, delta, grad):
    """Rows of dL/dW for the present features: ``grad[s] = sum_i x_if * delta[i]``.

    Each feature's row is summed by one thread in row order, so the result is
    the same on every run: no atomics, no order that depends on scheduling.
    """
    n_out = delta.shape[1]
    for s in prange(n_present):
        g = grad[s]
        for h in range(n_out):
            g[h] = 0.0
        for q in range(t_indptr[s], t_indptr[s + 1]):
            v = t_data[q]
            d = delta[t_rows[q]]
            for h in range(n_out):
                g[h] += v * d[h]


@njit(parallel=True, cache=True)
def scatter_rows(dst, rows, src):
    """``dst[rows[r]] = src[r]``: a compact row gradient into a full-size one."""
    for r in prange(rows.shape[0]):
        dst[rows[r]] = src[r]


@njit(parallel=True, cache=True)
def zero_rows(dst, rows):
    for r in prange(rows.shape[0]):
        dst[rows[r]] = 0.0
