"""The CPU backend: numpy arrays, numba kernels and BLAS."""

import numpy as np

from ...core.blocks import CSRBlock
from ..base import Backend
from . import dense, optim, sampled, sparse, topk
from .blas import gemm
from .compile_notice import announce_first_compile
from .threads import start_thread_pool


class CPUBackend(Backend):
    """Kernels compiled with ``numba.njit(parallel=True)``; dense products in BLAS."""

    name = "cpu"

    def __init__(self):
        start_thread_pool()
        announce_first_compile()

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

    def fill(self, x, value):
        x[...] = value

    def scale(self, x, factor):
        x *= x.dtype.type(factor)

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

    def sparseness_penalty(self, a, p, beta, inv_batch, grad_out, loss_out):
        loss_out[0] = dense.sparseness_penalty(a, p, beta, inv_batch, grad_out)

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

    def touched_rows(self, targets, neg_ids, slot, rows, neg_slot, g_indptr, g_entries):
        n_rows, n_pos = sampled.touched_rows(targets.indptr, targets.indices, neg_ids, slot, rows,
                                             neg_slot, g_indptr, g_entries)
        return int(n_rows), int(n_pos)

    def gather_rows_dense(self, source, ids, out):
        sampled.gather_rows_dense(source, ids, out)

    def normalize_rows(self, x, out, norms):
        sampled.normalize_rows(x, out, norms)

    def gather_unit_rows(self, source, ids, out, norms):
        sampled.gather_unit_rows(source, ids, out, norms)

    def row_norms(self, x, out):
        sampled.row_norms(x, out)

    def reciprocal_scaled(self, x, factor):
        x[...] = 1.0 / (x * x.dtype.type(factor))

    def positive_scores(self, h, targets, weights, bias, cosine, out):
        sampled.positive_scores(h, targets.indptr, targets.indices, weights, bias, bool(cosine),
                                out)

    def add_row_bias(self, z, bias, ids):
        sampled.add_row_bias(z, bias, ids)

    def scale_columns(self, z, scales):
        sampled.scale_columns(z, scales)

    def negative_logsumexp(self, z_neg, corrections, inv_tau, stats, anchors=None):
        sampled.negative_logsumexp(z_neg, corrections, float(inv_tau), stats)
        if anchors is not None:
            with np.errstate(divide="ignore"):
                np.add(stats[:, 0], np.log(stats[:, 1]), out=anchors)

    def positive_pass(self, err, z_pos, targets, anchors, inv_tau, row_scale, d_pos, row_error,
                      pulls):
        sampled.positive_pass(err, z_pos, targets.indptr, targets.data, anchors, float(inv_tau),
                              row_scale, d_pos, row_error, pulls)

    def negative_pass(self, err, z_neg, corrections, anchors, pulls, inv_tau, margin, neg_scale,
                      row_scale, d_neg, row_error):
        sampled.negative_pass(err, z_neg, corrections, anchors, pulls, float(inv_tau),
                              float(margin), float(neg_scale), row_scale, d_neg, row_error)

    def bpr_pass(self, z_pos, targets, z_neg, inv_tau, neg_scale, row_scale, d_pos, d_neg,
                 row_error):
        sampled.bpr_pass(z_pos, targets.indptr, targets.data, z_neg, float(inv_tau),
                         float(neg_scale), row_scale, d_pos, d_neg, row_error)

    def add_positive_deltas(self, d_pos, targets, weights, cosine, dh):
        sampled.add_positive_deltas(d_pos, targets.indptr, targets.indices, weights,
                                    bool(cosine), dh)

    def compact_gradient(self, d_pos, targets, g_indptr, g_entries, n_pos, h, d_negatives,
                         neg_slot, grad):
        sampled.compact_gradient(d_pos, targets.indptr, g_indptr, g_entries, n_pos, h,
                                 d_negatives, neg_slot, grad)

    def project_out_radial(self, grad, vectors, ids):
        sampled.project_out_radial(grad, vectors, ids, sampled.NORM_FLOOR)

    def compact_bias_gradient(self, d_pos, g_indptr, g_entries, n_pos, d_neg, neg_slot, grad):
        sampled.compact_bias_gradient(d_pos, g_indptr, g_entries, n_pos, d_neg, neg_slot, grad)

    def project_hidden(self, dh_unit, h_unit, norms, dh, accumulate):
        sampled.project_hidden(dh_unit, h_unit, norms, dh, bool(accumulate))

    def topk(self, scores, k, exclude_indptr, exclude_indices, out_ids, out_scores):
        topk.topk_rows(scores, k, exclude_indptr, exclude_indices, out_ids, out_scores)
