"""One training step of a sampled output layer, in backend operations.

A sampled output layer (``"Sampling"`` in the network language) scores only
each row's target items and ``M`` negatives drawn for the step and shared by
the batch (:mod:`.sampling`), so a step costs ``O((targets + M) x d)``
whatever the catalogue's size. Its weight is item-major, one row of ``d``
weights per item, so a step reads and updates only the rows it touched.

:class:`SampledOutput` owns the buffers of that part of the step; the
:class:`~.runner.Runner` calls it where a full output layer would run its
GEMM, fused output pass and backward GEMMs. docs/engine.md states the maths.
"""

import numpy as np

from ..backends.base import ParameterStep
from ..core.codes import BPR, COSINE_CONTRASTIVE, SAMPLED_SOFTMAX


def sampled_buffer_shapes(n_rows, width, n_items, max_target_nnz, n_negatives, cosine,
                          dtype):
    """``name -> (shape, dtype)`` of every buffer :class:`SampledOutput`
    allocates: its allocation and the runner's memory estimate both read it.

    ``width`` is the incoming layer's size, ``n_items`` the items this
    process holds, ``n_negatives`` the negatives drawn per step (at most that
    many fall in this process's items).
    """
    t, m = max(int(max_target_nnz), 1), int(n_negatives)
    touched = t + m
    shapes = {
        "neg_ids": ((m,), np.int64),
        "corrections": ((m,), np.float64),
        "w_neg": ((m, width), dtype),
        "z_neg": ((n_rows, m), dtype),
        "d_neg": ((n_rows, m), dtype),
        "d_w_neg": ((m, width), dtype),
        "z_pos": ((t,), dtype),
        "d_pos": ((t,), dtype),
        "rows": ((touched,), np.int64),
        "neg_slot": ((m,), np.int64),
        "g_indptr": ((t + 1,), np.int64),
        "g_entries": ((t,), np.int64),
        "grad": ((touched, width), dtype),
        "bias_grad": ((touched,), dtype),
        "stats": ((n_rows, 2), np.float64),
        "anchors": ((n_rows,), np.float64),
        "row_scale": ((n_rows,), np.float64),
        "pulls": ((n_rows,), np.float64),
        "dh": ((n_rows, width), dtype),
    }
    if cosine:
        shapes.update({
            "h_unit": ((n_rows, width), dtype),
            "h_norms": ((n_rows,), dtype),
            "w_neg_norms": ((m,), dtype),
        })
    return shapes


class SampledOutput:
    """The sampled output layer's part of a training step.

    Parameters
    ----------
    runner : Runner
        The runner whose model, backend, parameters and hidden buffers this
        step works with; its ``width`` says how many items this process holds
        and ``model.output_range`` which.
    max_target_nnz : int
        Most target entries a batch holds.
    """

    def __init__(self, runner, max_target_nnz):
        model, bk = runner.model, runner.backend
        layer = model.output  # one Source, no Skip: checked by engine.model.build_plan
        self.runner = runner
        self.layer = layer
        self.source, self.weight_index = layer.sources[0]
        self.error = model.act_error[1]
        self.cosine = layer.cosine
        self.inv_tau = 1.0 / layer.temperature
        self.n_negatives = layer.sampling.negatives
        self.item_start, self.item_stop = model.output_range
        spec = model.spec
        self.margin = spec.contrastive.margin
        if self.error == COSINE_CONTRASTIVE:
            self.neg_scale = spec.contrastive.negative_weight / self.n_negatives
        else:
            self.neg_scale = 1.0 / self.n_negatives
        width = model.layers[self.source].n
        shapes = sampled_buffer_shapes(runner.batch_size, width, runner.width(layer),
                                       max_target_nnz, self.n_negatives, self.cosine,
                                       model.dtype)
        self.buffers = {name: bk.zeros(shape, dt) for name, (shape, dt) in shapes.items()}
        # Scratch of touched_rows, which every backend runs on the host.
        self.slot = np.full(max(runner.width(layer), 1), -1, dtype=np.int32)
        self.sampler = None
        self.n_local = self.n_touched = self.n_pos = 0

    def prepare(self, sampler):
        """Set this fit's :class:`~.sampling.NegativeSampler` (it knows the item
        counts of the fit's targets)."""
        self.sampler = sampler

    # -- the step -------------------------------------------------------------
    def _draw(self, step, b):
        """This process's share of the step's negatives, on the backend, and
        the weight rows the step touches (listed on the host)."""
        runner, bk, buf = self.runner, self.runner.backend, self.buffers
        ids, corrections = self.sampler.draw(runner.seed, step)
        lo, hi = np.searchsorted(ids, [self.item_start, self.item_stop])
        self.n_local = int(hi - lo)
        local_ids = ids[lo:hi] - self.item_start
        bk.upload(buf["neg_ids"], local_ids)
        bk.upload(buf["corrections"], corrections[lo:hi])
        targets = runner._batch_view(bk.host_mirror(runner.targets), b)
        self.n_touched, self.n_pos = bk.touched_rows(
            targets, local_ids, self.slot, buf["rows"], buf["neg_slot"], buf["g_indptr"],
            buf["g_entries"])

    def error_and_gradients(self, b, step, targets, row_error, row_weights=None):
        """Scores, losses and score gradients of the batch's first ``b`` rows
        against ``targets`` (a CSR batch view); each row's error (this
        process's share) goes into ``row_error``. ``row_weights`` (host) weight
        the rows' gradients.
        """
        self._draw(step, b)
        self._scores(b, targets)
        self._losses(b, targets, row_error, row_weights)

    def _scores(self, b, targets):
        """The negatives' scores: one GEMM against their gathered rows (with
        cosine scoring, of unit vectors). The targets' come with the losses."""
        runner, bk, buf = self.runner, self.runner.backend, self.buffers
        m = self.n_local
        h = bk.head(runner.out[self.source], b)
        weights = runner.weights[self.weight_index]
        neg_ids, w_neg = bk.head(buf["neg_ids"], m), bk.head(buf["w_neg"], m)
        if self.cosine:
            h_unit = bk.head(buf["h_unit"], b)
            bk.unit_operands(h, h_unit, bk.head(buf["h_norms"], b), weights, neg_ids, w_neg,
                             bk.head(buf["w_neg_norms"], m))
            h = h_unit
        else:
            bk.gather_rows_dense(weights, neg_ids, w_neg)
        z_neg = bk.head(buf["z_neg"], b, m)
        bk.gemm(h, w_neg, z_neg, trans_b=True)
        if not self.cosine:
            bk.add_row_bias(z_neg, runner.biases[self.layer.index], neg_ids)

    def _losses(self, b, targets, row_error, row_weights):
        """The targets' scores, each row's error and the gradients of the
        scores (``d_pos``, ``d_neg``)."""
        runner, bk, buf = self.runner, self.runner.backend, self.buffers
        m = self.n_local
        h = bk.head(buf["h_unit"], b) if self.cosine else bk.head(runner.out[self.source], b)
        weights, bias = runner.weights[self.weight_index], runner.biases[self.layer.index]
        z_pos, z_neg, d_neg = buf["z_pos"], bk.head(buf["z_neg"], b, m), bk.head(buf["d_neg"], b, m)
        corrections, anchors = bk.head(buf["corrections"], m), bk.head(buf["anchors"], b)
        stats, pulls = bk.head(buf["stats"], b), bk.head(buf["pulls"], b)
        scale = np.full(b, 1.0 / b) if row_weights is None else np.asarray(row_weights) / b
        row_scale = bk.head(buf["row_scale"], b)
        bk.upload(row_scale, scale)
        if not runner.sharded and self.error != BPR:  # one pass over the rows
            bk.sampled_rows(self.error, h, targets, weights, bias, self.cosine, z_pos, z_neg,
                            corrections, self.inv_tau, self.margin, self.neg_scale, row_scale,
                            stats, anchors, buf["d_pos"], d_neg, row_error, pulls)
            return
        bk.positive_scores(h, targets, weights, bias, self.cosine, z_pos)
        if self.error == BPR:
            bk.bpr_pass(z_pos, targets, z_neg, self.inv_tau, self.neg_scale, row_scale,
                        buf["d_pos"], d_neg, row_error)
            return
        if self.error == SAMPLED_SOFTMAX:  # the ranks' shares combine on the host
            bk.negative_logsumexp(z_neg, corrections, self.inv_tau, stats)
            bk.upload(anchors, runner.combine_logsumexp(bk.to_host(stats)))
        bk.positive_pass(self.error, z_pos, targets, anchors, self.inv_tau, row_scale,
                         buf["d_pos"], row_error, pulls)
        # every rank's targets pull on every negative
        bk.upload(pulls, runner.sum_rows_over_ranks(bk.to_host(pulls)))
        bk.negative_pass(self.error, z_neg, corrections, anchors, pulls, self.inv_tau,
                         self.margin, self.neg_scale, row_scale, d_neg, row_error)

    def backward(self, b, targets, accumulate):
        """Gradients of the touched weight rows (and biases), and the delta
        of the incoming layer (added to it when ``accumulate``)."""
        runner, bk, buf = self.runner, self.runner.backend, self.buffers
        m = self.n_local
        weights = runner.weights[self.weight_index]
        h = bk.head(buf["h_unit"], b) if self.cosine else bk.head(runner.out[self.source], b)
        h_norms = bk.head(buf["h_norms"], b) if self.cosine else None
        d_neg, w_neg, d_pos = bk.head(buf["d_neg"], b, m), bk.head(buf["w_neg"], m), buf["d_pos"]
        # dE/dh (of h/|h| with cosine scores), summed over the processes' items
        dh = bk.head(buf["dh"], b)
        bk.gemm(d_neg, w_neg, dh)
        target = bk.head(runner.delta[self.source], b)
        if runner.sharded:
            bk.add_positive_deltas(d_pos, targets, weights, self.cosine, dh)
            bk.into_hidden(runner.sum_over_ranks(dh), self.cosine, h, h_norms, target,
                           accumulate)
        else:
            bk.positive_deltas_into_hidden(d_pos, targets, weights, self.cosine, dh, h, h_norms,
                                           target, accumulate)
        # the rows of the weight (and bias) that the step touched (see _draw)
        d_w_neg = bk.head(buf["d_w_neg"], m)
        bk.gemm(d_neg, h, d_w_neg, trans_a=True)
        grad, neg_slot = buf["grad"][:self.n_touched], bk.head(buf["neg_slot"], m)
        if self.cosine:
            bk.compact_unit_gradient(d_pos, targets, buf["g_indptr"], buf["g_entries"],
                                     self.n_pos, h, d_w_neg, bk.head(buf["neg_ids"], m), neg_slot,
                                     weights, buf["rows"][:self.n_touched], grad)
            return
        bk.compact_gradient(d_pos, targets, buf["g_indptr"], buf["g_entries"], self.n_pos, h,
                            d_w_neg, neg_slot, grad)
        bk.compact_bias_gradient(d_pos, buf["g_indptr"], buf["g_entries"], self.n_pos, d_neg,
                                 neg_slot, buf["bias_grad"][:self.n_touched])

    def steps(self, state, bias_state, weight_hyper, bias_hyper):
        """The optimizer steps of the touched rows of the weight (and bias)."""
        runner, buf = self.runner, self.buffers
        n, rows = self.n_touched, buf["rows"]
        weights = runner.weights[self.weight_index]
        steps = [ParameterStep(weights, buf["grad"], rows, n, state[0], state[1], weight_hyper)]
        if not self.cosine:  # cosine scores have no bias
            bk = runner.backend
            column = (-1, 1)
            bias, s1, s2 = runner.biases[self.layer.index], *bias_state
            steps.append(ParameterStep(bk.reshaped(bias, column),
                                       bk.reshaped(buf["bias_grad"], column), rows, n,
                                       bk.reshaped(s1, column), bk.reshaped(s2, column),
                                       bias_hyper))
        return steps

