"""The CPU backend: numpy arrays, numba kernels and BLAS."""

import numpy as np

from ...engine.runner import CSRBlock
from ..base import Backend
from . import dense, optim, sparse, topk
from .blas import gemm


class CPUBackend(Backend):
    """Kernels compiled with ``numba.njit(parallel=True)``; dense products in BLAS."""

    name = "cpu"

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def to_device(self, array):
        return array

    def to_host(self, array):
        return array

    def upload(self, dst, values):
        dst[: len(values)] = values

    def copy(self, dst, src):
        dst[...] = src

    def zero(self, x):
        x[...] = 0

    def sum(self, x):
        return float(np.sum(x))

    def scratch_bytes(self, n_rows, max_input_nnz, max_target_nnz, itemsize):
        return 0

    def check_memory(self, needed):
        """Host memory is the operating system's to manage: nothing is checked."""
        return sum(needed.values())

    def batch_source(self, matrix):
        """The CSR arrays themselves (no copy when they are int64/int32 already)."""
        return CSRBlock.from_scipy(matrix, self)

    def gather_rows(self, source, rows, batch):
        return sparse.gather_rows(
            source.indptr, source.indices, source.data, rows,
            batch.indptr, batch.indices, batch.data,
        )

    def denoise(self, batch, row_ids, n_features, key, p, feature_offset=0):
        return sparse.denoise(batch.indptr, batch.indices, batch.data, row_ids, n_features, key,
                              p, feature_offset)

    def transpose_batch(self, batch, transposed):
        return sparse.transpose_batch(
            batch.indptr, batch.indices, batch.data, transposed.slot, transposed.features,
            transposed.indptr, transposed.rows, transposed.data,
        )

    def fill_rows(self, out, bias):
        dense.fill_rows(out, bias)

    def sparse_matmul_add(self, batch, weights, out):
        sparse.sparse_matmul_add(batch.indptr, batch.indices, batch.data, weights, out)

    def gemm(self, a, b, c, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
        gemm(a, b, c, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b)

    def add(self, out, other):
        out += other

    def activate(self, z, act, slope, alpha, lam):
        dense.activate_rows(z, act, slope, alpha, lam)

    def dropout(self, a, out, key, row_ids, p):
        dense.dropout_forward(a, out, key, row_ids, p)

    def output_pass(self, z, targets, act, err, hyper, inv_batch, delta, row_error,
                    row_stats=None):
        dense.output_pass(
            z, targets.indptr, targets.indices, targets.data, act, err, hyper, inv_batch,
            delta, row_error, row_stats,
        )

    def softmax_partials(self, z, targets, row_stats):
        dense.softmax_partials(z, targets.indptr, targets.data, row_stats)

    def softmax_apply(self, z, row_stats):
        dense.softmax_apply(z, row_stats)

    def softmax_jacobian(self, delta, a, h_sum, inv_batch):
        dense.softmax_jacobian(delta, a, h_sum, inv_batch)

    def sparseness_penalty(self, a, p, beta, inv_batch, grad_out):
        return dense.sparseness_penalty(a, p, beta, inv_batch, grad_out)

    def hidden_delta(self, delta, a, act, slope, alpha, lam, key, row_ids, p, penalty):
        dense.hidden_delta(delta, a, act, slope, alpha, lam, key, row_ids, p, penalty)

    def column_sums(self, x, out):
        dense.column_sums(x, out)

    def scale_rows(self, x, weights):
        dense.scale_rows(x, weights)

    def sparse_weight_gradient(self, transposed, n_present, delta, grad):
        sparse.sparse_weight_gradient(
            transposed.indptr, transposed.rows, transposed.data, n_present, delta, grad
        )

    def update_rows(self, param, grad, rows, n_rows, state1, state2, code, hyper):
        optim.update_rows(param, grad, rows, n_rows, state1, state2, code, hyper)

    def all_rows_scratch(self, shape, dtype):
        # Not a full-size gradient: each row's place among the row gradients.
        return np.full(shape[0], -1, dtype=np.int64)

    def all_rows_scratch_bytes(self, shape, itemsize):
        return int(shape[0]) * 8

    def update_all_rows(self, param, row_grads, rows, n_rows, all_rows, scratch, state1, state2,
                        code, hyper):
        optim.update_all_rows(param, row_grads, rows[:n_rows], all_rows, scratch, state1, state2,
                              code, hyper)

    def cap_column_norms(self, weights, max_norm):
        optim.cap_column_norms(weights, max_norm)

    def scatter_rows(self, dst, rows, src):
        sparse.scatter_rows(dst, rows, src)

    def zero_rows(self, dst, rows):
        sparse.zero_rows(dst, rows)

    def topk(self, scores, k, exclude_indptr, exclude_indices, out_ids, out_scores):
        topk.topk_rows(scores, k, exclude_indptr, exclude_indices, out_ids, out_scores)
