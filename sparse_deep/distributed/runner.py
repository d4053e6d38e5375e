"""A training step split over ranks: :class:`ShardedRunner`.

Each rank runs the same step on the same batch, holding its block of input
features (rows of the input layer's weights) and of output units (columns of
the output layer's weights, and the output bias); hidden layers are replicated.
Three places need the other ranks (dsstne.md section 5):

* the input product: each rank's features give a partial pre-activation of the
  first hidden layer; their sum over ranks is the whole product;
* the output layer: a SoftMax needs each row's max, exponential sum and target
  sum over every slice (and, for the delta, the sum of ``h``); elementwise
  outputs need nothing;
* the delta flowing back from the output layer: each rank's slice gives a
  partial ``delta @ W.T``; their sum is the hidden layer's delta.

Every message is ``batch x hidden`` or ``batch x 3`` numbers, whatever the item
count. Sums are in rank order (see :mod:`.comm`), so every rank holds the same
bits in its replicated layers and the run repeats exactly.
"""

import numpy as np

from ..core.codes import SOFTMAX
from ..engine.runner import Runner


def combine_softmax_partials(parts):
    """Whole-row (max, exp sum, target sum, 0) from the slices' ``(R, rows, 3)`` shares.

    In float64, in rank order. A slice with no outputs reports max = -inf and
    contributes nothing.
    """
    maxima = parts[:, :, 0]
    m = maxima.max(axis=0)
    finite = np.isfinite(maxima)
    scale = np.where(finite, np.exp(np.where(finite, maxima - m, 0.0)), 0.0)
    out = np.zeros((parts.shape[1], 4), dtype=np.float64)
    out[:, 0] = m
    out[:, 1] = (parts[:, :, 1] * scale).sum(axis=0)
    out[:, 2] = parts[:, :, 2].sum(axis=0)
    return out


class ShardedRunner(Runner):
    """A :class:`~sparse_deep.engine.runner.Runner` over one rank's shard of a model.

    Parameters are :class:`Runner`'s, plus ``comm`` (see :mod:`.comm`). The
    model must be sharded (``Model(spec, dtype, shards)``), and the data sets
    given to :meth:`load_batch` must hold this rank's input-feature and
    output-unit columns only.
    """

    def __init__(self, model, backend, comm, batch_size, max_input_nnz, max_target_nnz=0,
                 seed=0, inference=False, sparse_input_update=False, optimizer=None):
        if model.shards is None:
            raise ValueError("ShardedRunner needs a sharded Model (Model(..., shards=...))")
        _check_shardable(model)
        self.comm = comm
        self.feature_offset = model.input_range[0]
        super().__init__(model, backend, batch_size, max_input_nnz, max_target_nnz, seed=seed,
                         inference=inference, sparse_input_update=sparse_input_update,
                         optimizer=optimizer)
        n = self.batch_size
        self._partials = np.zeros((n, 3), dtype=np.float64)
        self._no_targets = backend.to_device(np.zeros(n + 1, dtype=np.int64))
        self._scratch = {}

    def width(self, layer):
        if layer.is_input:
            start, stop = self.model.input_range
        elif layer.is_output:
            start, stop = self.model.output_range
        else:
            return layer.n
        return stop - start

    def _partial_buffer(self, width, b):
        """A zeroed ``b x width`` block for one rank's partial product."""
        bk = self.backend
        if width not in self._scratch:
            self._scratch[width] = (bk.zeros((self.batch_size, width), self.model.dtype),
                                    bk.zeros(width, self.model.dtype))
        block, zero_row = self._scratch[width]
        bk.fill_rows(bk.head(block, b), zero_row)
        return bk.head(block, b)

    def _sum_over_ranks(self, block):
        """The sum over ranks of a device block, back on the device."""
        return self.backend.to_device(self.comm.sum(self.backend.to_host(block)))

    # -- forward --------------------------------------------------------------
    def _add_input_product(self, batch, weights, z, bias=None, activated=None):
        if bias is not None:
            self.backend.fill_rows(z, bias)
        partial = self._partial_buffer(z.shape[1], z.shape[0])
        self.backend.sparse_matmul_add(batch, weights, partial)
        self.backend.add(z, self._sum_over_ranks(partial))
        if activated is not None:  # once every rank's features are in the sum
            self._activate(activated, z)

    def _softmax_stats(self, z, targets):
        """Each row's (max, exp sum, target sum) over every rank's slice."""
        partials = self.backend.head(self._partials, z.shape[0])
        self.backend.softmax_partials(z, targets, partials)
        return combine_softmax_partials(self.comm.allgather(partials))

    def _activate(self, layer, z):
        if layer.is_output and layer.act == SOFTMAX:
            no_targets = type(self.targets)(self.backend.head(self._no_targets, z.shape[0] + 1),
                                            self.targets.indices, self.targets.data)
            self.backend.softmax_apply(z, self._softmax_stats(z, no_targets))
        else:
            super()._activate(layer, z)

    def output_error(self, b, weights=None, step=0, row_error=None):
        if self.sampled is not None:
            super().output_error(b, weights, step, row_error)
            return
        bk = self.backend
        if row_error is None:
            row_error = bk.head(self.row_error, b)
        out = self.model.output
        act, err = self.model.act_error
        targets = self._batch_view(self.targets, b)
        z, delta = bk.head(self.pre[out.index], b), bk.head(self.delta[out.index], b)
        if act == SOFTMAX:
            stats = self._softmax_stats(z, targets)
            bk.output_pass(z, targets, act, err, self.output_hyper, 1.0 / b, delta, row_error,
                           stats)
            h_sum = self.comm.sum(np.ascontiguousarray(stats[:, 3]))
            bk.softmax_jacobian(delta, z, bk.to_device(h_sum), 1.0 / b)
        else:
            bk.output_pass(z, targets, act, err, self.output_hyper, 1.0 / b, delta, row_error)
        if weights is not None:
            bk.scale_rows(delta, weights)

    # -- what the sampled output layer sums over ranks -------------------------
    sharded = True

    def sum_over_ranks(self, block):
        return self._sum_over_ranks(block)

    def sum_rows_over_ranks(self, values):
        return self.comm.sum(np.ascontiguousarray(values))

    def combine_logsumexp(self, stats):
        """Each row's log-sum-exp over every rank's negatives, from the ranks'
        ``(max, sum exp(x - max))`` (a rank with none reports ``(-inf, 0)``)."""
        parts = self.comm.allgather(np.ascontiguousarray(stats))
        maxima = parts[:, :, 0]
        top = maxima.max(axis=0)
        finite = np.isfinite(maxima)
        scale = np.where(finite, np.exp(np.where(finite, maxima - top, 0.0)), 0.0)
        with np.errstate(divide="ignore"):
            return top + np.log((parts[:, :, 1] * scale).sum(axis=0))

    # -- backward -------------------------------------------------------------
    def _backpropagate(self, delta, weights, target, accumulate, into_hidden_from):
        if not into_hidden_from.is_output:
            super()._backpropagate(delta, weights, target, accumulate, into_hidden_from)
            return
        bk = self.backend
        partial = self._partial_buffer(target.shape[1], target.shape[0])
        bk.gemm(delta, weights, partial, trans_b=True)
        total = self._sum_over_ranks(partial)
        if accumulate:
            bk.add(target, total)
        else:
            bk.fill_rows(target, self._scratch[target.shape[1]][1])
            bk.add(target, total)


def _check_shardable(model):
    """Refuse what the split can't compute: column norms of row-split weights,
    and Skips into the split output layer."""
    for shard, (source, target) in zip(model.shards, model.links):
        if shard.mode == "rows" and model.layers[target].weight_norm > 0:
            raise ValueError(
                f"layer {model.layers[target].name!r} has a WeightNorm, which needs whole "
                "columns of the input layer's weights; model parallelism splits them by rows. "
                "Remove WeightNorm from that layer or train on one process"
            )
    if model.spec.error_function == "BPR":
        raise ValueError(
            "ErrorFunction 'BPR' compares every target of a row with every negative, which "
            "model parallelism puts on different ranks; use SampledSoftmax or "
            "CosineContrastive, or train on one process"
        )
    if model.output.skips:
        raise ValueError(
            f"the output layer {model.output.name!r} has Skips; model parallelism splits the "
            "output units over ranks and can't add a whole layer to them. Remove the Skip or "
            "train on one process"
        )
