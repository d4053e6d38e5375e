"""The seam between the engine and the kernels.

The engine (:mod:`sparse_deep.engine`) describes a training step in terms of the
operations below; a backend supplies them for one kind of device. Arrays passed
in are that backend's arrays (numpy for the CPU, device arrays for CUDA). Names
and arguments are shared, so a backend can be swapped without touching the
engine, and each backend's kernels are tested against the same slow reference.

The engine never touches a backend's arrays with numpy itself: copies, fills
and the sums it needs on the host are operations here too. Data sets stay
where the backend wants them (:meth:`Backend.batch_source`); only batches are
loaded into its buffers.
"""

import math
from typing import Any, NamedTuple

import numpy as np

from ..core.codes import SAMPLED_SOFTMAX


class ParameterStep(NamedTuple):
    """One parameter's optimizer step: rows ``rows[:n_rows]`` of ``param``
    take the gradients ``grad[:n_rows]`` (see :meth:`Backend.update_rows`).

    Given ``all_rows`` (``arange(len(param))`` on the backend) and
    ``scratch`` (the backend's :meth:`Backend.all_rows_scratch` for
    ``param``), every row steps, those not in ``rows[:n_rows]`` with a zero
    gradient (see :meth:`Backend.update_all_rows`)."""

    param: Any
    grad: Any
    rows: Any
    n_rows: int
    state1: Any
    state2: Any
    hyper: Any
    all_rows: Any = None
    scratch: Any = None


class Backend:
    """Interface of a compute backend. See :class:`~sparse_deep.backends.cpu.CPUBackend`."""

    name = "abstract"

    # Memory ------------------------------------------------------------------
    def zeros(self, shape, dtype):
        raise NotImplementedError

    def empty(self, shape, dtype):
        raise NotImplementedError

    def to_device(self, array):
        raise NotImplementedError

    def to_host(self, array):
        raise NotImplementedError

    def upload(self, dst, values):
        """``dst[:len(values)] = values`` from a host array (asynchronous where it can be)."""
        raise NotImplementedError

    def head(self, x, rows, columns=None):
        """``x[:rows]``, or ``x[:rows, :columns]``: a view of a buffer's first
        rows (and columns), as a step uses its buffers for a batch of
        ``rows``. A backend whose views cost time to make may keep them."""
        return x[:rows] if columns is None else x[:rows, :columns]

    def reshaped(self, x, shape):
        """``x.reshape(shape)`` of a contiguous buffer, as :meth:`head` a view
        a backend may keep."""
        return x.reshape(shape)

    def copy(self, dst, src):
        """``dst[...] = src`` for two arrays of this backend of one shape."""
        raise NotImplementedError

    def zero(self, x):
        """``x[...] = 0``."""
        raise NotImplementedError

    def fill(self, x, value):
        """``x[...] = value``."""
        raise NotImplementedError

    def scale(self, x, factor):
        """``x *= factor``."""
        raise NotImplementedError

    def scratch_bytes(self, n_rows, max_input_nnz, max_target_nnz, itemsize):
        """Memory the backend adds to a Runner's buffers (its scratch)."""
        raise NotImplementedError

    def check_memory(self, needed):
        """Raise MemoryError if buffers of ``needed`` (name -> bytes) cannot fit."""
        raise NotImplementedError

    # Batches -----------------------------------------------------------------
    def batch_source(self, matrix):
        """A scipy CSR matrix in the form :meth:`load_batch` reads batches from
        (host arrays on the CPU and on a GPU, which prepares batches there)."""
        raise NotImplementedError

    def gather_rows(self, source, rows, batch):
        """Load rows ``rows`` of a :meth:`batch_source` into the batch buffers."""
        raise NotImplementedError

    def denoise(self, batch, row_ids, n_features, key, p, feature_offset=0):
        """Drop and rescale the batch's non-zeros in place; the draw of an entry
        is keyed by (row id, ``feature_offset`` + its column) in ``n_features``.
        Returns the new nnz. (On the host: a GPU's :meth:`load_batch` runs the
        CPU's.)"""
        raise NotImplementedError

    def transpose_batch(self, batch, transposed):
        """Group the batch by feature into ``transposed``; returns the number of
        features present."""
        raise NotImplementedError

    def load_batch(self, rows, row_ids, inputs, input_batch, targets=None, target_batch=None,
                   denoising=None, transposed=None):
        """Everything a step reads of its batch: ``row_ids[:b] = rows``, rows
        ``rows`` of the ``inputs`` and ``targets`` sources gathered into the
        batch blocks, the inputs denoised (``denoising``: the arguments of
        :meth:`denoise` after ``row_ids``) and, for training, transposed into
        ``transposed``. Returns the number of features present (0 when not
        transposed).

        Composed of the operations above; a backend whose device is not the
        host prepares the batch there and copies it in one go.
        """
        b = rows.shape[0]
        self.upload(row_ids, rows)
        self.gather_rows(inputs, rows, input_batch)
        view = type(input_batch)(input_batch.indptr[: b + 1], input_batch.indices,
                                 input_batch.data)
        if denoising is not None:
            self.denoise(view, row_ids[:b], *denoising)
        if targets is not None:
            self.gather_rows(targets, rows, target_batch)
        return 0 if transposed is None else self.transpose_batch(view, transposed)

    def host_mirror(self, batch):
        """The host arrays holding what :meth:`load_batch` last loaded into
        ``batch``: the block itself on a backend whose arrays are the host's."""
        return batch

    # Forward -----------------------------------------------------------------
    def fill_rows(self, out, bias):
        raise NotImplementedError

    def sparse_matmul_add(self, batch, weights, out):
        raise NotImplementedError

    def sparse_affine(self, batch, weights, bias, out):
        """``out = bias + batch @ weights``: :meth:`fill_rows` then
        :meth:`sparse_matmul_add`, unless a backend fuses them."""
        self.fill_rows(out, bias)
        self.sparse_matmul_add(batch, weights, out)

    def activated_sparse_affine(self, batch, weights, bias, out, act, slope, alpha, lam):
        """``out = act(bias + batch @ weights)``: :meth:`sparse_affine` then
        :meth:`activate`, unless a backend fuses them."""
        self.sparse_affine(batch, weights, bias, out)
        self.activate(out, act, slope, alpha, lam)

    def gemm(self, a, b, c, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
        raise NotImplementedError

    def add(self, out, other):
        raise NotImplementedError

    def activate(self, z, act, slope, alpha, lam):
        raise NotImplementedError

    def dropout(self, a, out, key, row_ids, p):
        raise NotImplementedError

    def output_pass(self, z, targets, act, err, hyper, inv_batch, delta, row_error,
                    row_stats=None):
        """Fused activation + error + delta. With ``row_stats`` (host float64,
        rows x 4) a SoftMax output is one rank's slice of the row: see
        ``backends/cpu/dense.py:_make_output_pass``."""
        raise NotImplementedError

    def softmax_partials(self, z, targets, row_stats):
        """This slice's (max, exp sum, target sum) of each row into ``row_stats``."""
        raise NotImplementedError

    def softmax_apply(self, z, row_stats):
        """``z = exp(z - row_stats[:, 0:1]) / row_stats[:, 1:2]`` (sharded SoftMax)."""
        raise NotImplementedError

    def softmax_jacobian(self, delta, a, h_sum, inv_batch):
        """``delta = (delta - a * h_sum[:, None]) * inv_batch`` (sharded SoftMax)."""
        raise NotImplementedError

    # Backward ----------------------------------------------------------------
    def sparseness_penalty(self, a, p, beta, inv_batch, grad_out, loss_out):
        """The KL sparseness penalty of activations ``a``: each unit's gradient
        into ``grad_out``, the loss ``beta * sum_j KL(p || rho_j)`` into
        ``loss_out[0]`` (float64; on a GPU it stays there until read)."""
        raise NotImplementedError

    def hidden_delta(self, delta, a, act, slope, alpha, lam, key, row_ids, p, penalty):
        raise NotImplementedError

    def column_sums(self, x, out):
        raise NotImplementedError

    def all_finite(self, arrays):
        """Whether every element of ``arrays`` (this backend's) is a finite
        number. A float64 sum per array is NaN or infinite exactly when an
        element is (float32 values cannot add up to float64's overflow), and
        needs no temporary of the array's size."""
        return all(np.isfinite(np.add.reduce(np.ravel(self.to_host(a)), dtype=np.float64))
                   for a in arrays)

    def scale_rows(self, x, weights):
        """``x[r, :] *= weights[r]`` for r < len(weights) (per-example weights,
        a host array or this backend's; a GPU uploads a host one without waiting)."""
        raise NotImplementedError

    def sparse_weight_gradient(self, transposed, n_present, delta, grad):
        raise NotImplementedError

    def input_gradients(self, transposed, n_present, delta, grad, bias_grad, scratch=None):
        """The input weight's gradient (:meth:`sparse_weight_gradient`) and
        the bias gradient of the layer it feeds (:meth:`column_sums` of its
        ``delta``), which a backend may compute in one pass. ``scratch`` is
        the weight's :meth:`all_rows_scratch` when every row of it steps,
        which a backend may prepare for the update in the same pass."""
        self.column_sums(delta, bias_grad)
        self.sparse_weight_gradient(transposed, n_present, delta, grad)

    # Update ------------------------------------------------------------------
    def update_rows(self, param, grad, rows, n_rows, state1, state2, code, hyper):
        raise NotImplementedError

    def update_params(self, steps, code):
        """Every :class:`ParameterStep` of ``steps`` (distinct parameters),
        with the optimizer ``code``: :meth:`update_rows` or
        :meth:`update_all_rows` each, unless a backend launches them together."""
        for s in steps:
            if s.all_rows is None:
                self.update_rows(s.param, s.grad, s.rows, s.n_rows, s.state1, s.state2, code,
                                 s.hyper)
            else:
                self.update_all_rows(s.param, s.grad, s.rows, s.n_rows, s.all_rows, s.scratch,
                                     s.state1, s.state2, code, s.hyper)

    def all_rows_scratch(self, shape, dtype):
        """Scratch that :meth:`update_all_rows` needs for a parameter of
        ``shape``: here a full-size gradient, zero between steps."""
        return self.zeros(shape, dtype)

    def all_rows_scratch_bytes(self, shape, itemsize):
        return math.prod(shape) * itemsize

    def update_all_rows(self, param, row_grads, rows, n_rows, all_rows, scratch, state1, state2,
                        code, hyper):
        """One optimizer step for every row of ``param``: rows ``rows[:n_rows]``
        with the gradients ``row_grads[:n_rows]``, every other row with a zero
        gradient (the dense update of an input layer whose batch touched a
        few of its rows). ``all_rows`` is ``arange(len(param))`` on the device.

        Here: scatter the rows into the zero full-size ``scratch``, update
        every row, zero the rows again. A backend may do it without the
        full-size gradient, with the same arithmetic.
        """
        present = rows[:n_rows]
        self.scatter_rows(scratch, present, row_grads)
        self.update_rows(param, scratch, all_rows, param.shape[0], state1, state2, code, hyper)
        self.zero_rows(scratch, present)

    def cap_column_norms(self, weights, max_norm):
        raise NotImplementedError

    def scatter_rows(self, dst, rows, src):
        """``dst[rows[r]] = src[r]`` for r < len(rows)."""
        raise NotImplementedError

    def zero_rows(self, dst, rows):
        raise NotImplementedError

    # Sampled output layer (engine/sampled.py) --------------------------------
    def touched_rows(self, targets, neg_ids, slot, rows, neg_slot, g_indptr, g_entries):
        """The weight rows a sampled step touches (target items first, then
        the negatives), grouped target entries; returns ``(n_rows, n_pos)``
        on the host. ``targets`` (a :meth:`host_mirror`), ``neg_ids`` and the
        scratch ``slot`` are host arrays: the counts are known without asking
        the device. See ``backends/cpu/sampled.py:touched_rows``."""
        raise NotImplementedError

    def gather_rows_dense(self, source, ids, out):
        """``out[j] = source[ids[j]]``."""
        raise NotImplementedError

    def normalize_rows(self, x, out, norms):
        """``out[r] = x[r] / |x[r]|``, ``norms[r] = |x[r]|`` (``out`` may be ``x``)."""
        raise NotImplementedError

    def gather_unit_rows(self, source, ids, out, norms):
        """``out[j] = source[ids[j]] / |source[ids[j]]|``, ``norms[j]`` that norm:
        :meth:`gather_rows_dense` then :meth:`normalize_rows`, unless a backend
        fuses them."""
        self.gather_rows_dense(source, ids, out)
        self.normalize_rows(out, out, norms)

    def row_norms(self, x, out):
        raise NotImplementedError

    def reciprocal_scaled(self, x, factor):
        """``x = 1 / (x * factor)``."""
        raise NotImplementedError

    def positive_scores(self, h, targets, weights, bias, cosine, out):
        raise NotImplementedError

    def add_row_bias(self, z, bias, ids):
        """``z[r, j] += bias[ids[j]]``."""
        raise NotImplementedError

    def scale_columns(self, z, scales):
        raise NotImplementedError

    def negative_logsumexp(self, z_neg, corrections, inv_tau, stats, anchors=None):
        """Each row's ``(max, sum exp(x - max))`` of ``x_j = z_j / tau -
        corrections[j]`` into ``stats``; given ``anchors``, also each row's
        log-sum-exp ``max + log(sum)`` (-inf for an empty sum) there."""
        raise NotImplementedError

    def positive_pass(self, err, z_pos, targets, anchors, inv_tau, row_scale, d_pos, row_error,
                      pulls):
        raise NotImplementedError

    def negative_pass(self, err, z_neg, corrections, anchors, pulls, inv_tau, margin, neg_scale,
                      row_scale, d_neg, row_error):
        raise NotImplementedError

    def bpr_pass(self, z_pos, targets, z_neg, inv_tau, neg_scale, row_scale, d_pos, d_neg,
                 row_error):
        raise NotImplementedError

    def add_positive_deltas(self, d_pos, targets, weights, cosine, dh):
        raise NotImplementedError

    def compact_gradient(self, d_pos, targets, g_indptr, g_entries, n_pos, h, d_negatives,
                         neg_slot, grad):
        raise NotImplementedError

    def compact_bias_gradient(self, d_pos, g_indptr, g_entries, n_pos, d_neg, neg_slot, grad):
        raise NotImplementedError

    def project_out_radial(self, grad, vectors, ids):
        """``grad[u]`` (dE/d(x/|x|) for ``x = vectors[ids[u]]``) becomes dE/dx."""
        raise NotImplementedError

    def project_hidden(self, dh_unit, h_unit, norms, dh, accumulate):
        raise NotImplementedError

    # The sampled step's fused operations: what a backend that pays for each
    # launch (a GPU) runs as one kernel; compositions of the operations above
    # otherwise, which give the same numbers.
    def unit_operands(self, h, h_unit, h_norms, source, ids, out, norms):
        """Cosine scoring's operands: ``h``'s rows as unit vectors (:meth:`normalize_rows`)
        and the rows ``ids`` of ``source`` (:meth:`gather_unit_rows`)."""
        self.gather_unit_rows(source, ids, out, norms)
        self.normalize_rows(h, h_unit, h_norms)

    def sampled_rows(self, err, h, targets, weights, bias, cosine, z_pos, z_neg, corrections,
                     inv_tau, margin, neg_scale, row_scale, stats, anchors, d_pos, d_neg,
                     row_error, pulls):
        """One process's whole sampled loss, row by row: the targets' scores
        (:meth:`positive_scores`), the negatives' log-sum-exp anchors
        (sampled softmax), the positive and the negative pass."""
        self.positive_scores(h, targets, weights, bias, cosine, z_pos)
        if err == SAMPLED_SOFTMAX:
            self.negative_logsumexp(z_neg, corrections, inv_tau, stats, anchors)
        self.positive_pass(err, z_pos, targets, anchors, inv_tau, row_scale, d_pos, row_error,
                           pulls)
        self.negative_pass(err, z_neg, corrections, anchors, pulls, inv_tau, margin, neg_scale,
                           row_scale, d_neg, row_error)

    def into_hidden(self, dh, cosine, h_unit, h_norms, target, accumulate):
        """``target (+)= dE/dh`` from ``dh`` (dE/d(h/|h|) with cosine scores,
        :meth:`project_hidden`)."""
        if cosine:
            self.project_hidden(dh, h_unit, h_norms, target, accumulate)
        elif accumulate:
            self.add(target, dh)
        else:
            self.copy(target, dh)

    def positive_deltas_into_hidden(self, d_pos, targets, weights, cosine, dh, h_unit, h_norms,
                                    target, accumulate):
        """:meth:`add_positive_deltas` to ``dh``, then :meth:`into_hidden`."""
        self.add_positive_deltas(d_pos, targets, weights, cosine, dh)
        self.into_hidden(dh, cosine, h_unit, h_norms, target, accumulate)

    def compact_unit_gradient(self, d_pos, targets, g_indptr, g_entries, n_pos, h, d_negatives,
                              neg_ids, neg_slot, weights, rows, grad):
        """Cosine scoring's gradient of the touched rows ``rows`` of
        ``weights``: :meth:`compact_gradient` then :meth:`project_out_radial`
        (``neg_ids``, sorted, are the negatives' rows)."""
        self.compact_gradient(d_pos, targets, g_indptr, g_entries, n_pos, h, d_negatives,
                              neg_slot, grad)
        self.project_out_radial(grad, weights, rows)

    # Inference ---------------------------------------------------------------
    def topk(self, scores, k, exclude_indptr, exclude_indices, out_ids, out_scores):
        raise NotImplementedError
