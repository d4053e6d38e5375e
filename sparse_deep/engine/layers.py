"""What each kind of layer does in a training step, one class per kind.

A :class:`~sparse_deep.engine.runner.Runner` walks its list of layers in order
for the forward pass and in reverse for the backward pass; each layer does
its own part, and, as a *source* of a connection, computes the product into
the layer it feeds and that connection's weight gradient (a sparse input
layer by gathering rows, a dense one by GEMM). The runner's buffers, backend
and model-parallel hooks (``_add_input_product``, ``_activate``,
``_backpropagate``, which :class:`~sparse_deep.distributed.runner.ShardedRunner`
overrides) are what a layer works with; each layer allocates its own
activation and delta buffers there (:meth:`Layer.allocate`), and says whether
model parallelism splits its units (:attr:`Layer.splits_units`). A new kind
of layer is one class and one registration: :func:`register_layer_type`
makes it a ``"Type"`` of the network language, which :func:`make_layer`
then carries out with it.
"""

import numpy as np

from ..backends.base import ParameterStep
from ..core.codes import LINEAR
from ..network.registry import LAYER_TYPES


class Layer:
    """A layer of a Runner's network: its plan (``engine.model.LayerPlan``),
    whose attributes it reads through."""

    #: Whether model parallelism gives each rank a block of this layer's
    #: units: every weight into or out of it is then split along the axis
    #: that indexes them (``distributed.partition.link_modes``), and its bias
    #: with them. The other layers' weights are replicated. Only an Input or
    #: an Output layer can say so: the model keeps the ranges of those two
    #: (``Model.input_range``, ``Model.output_range``).
    splits_units = False

    def __init__(self, plan):
        self.plan = plan

    def __getattr__(self, name):
        return getattr(self.plan, name)

    def allocate(self, runner, inference):
        """Allocate this layer's buffers in ``runner`` (its ``batch_size`` rows):
        the runner's memory estimate counts what this allocates (see
        ``engine.runner.runner_bytes``)."""

    def forward(self, runner, b, batch, step, training, stop_at_output):
        """Compute this layer's activations for the first ``b`` batch rows."""

    def backward(self, runner, b, step, training, written):
        """Turn the delta flowing into this layer into its parameters'
        gradients and the deltas of its sources (a sparseness penalty's loss
        goes into ``runner.penalty_out(index)``). ``written`` holds the layers
        whose delta buffer was written in this pass."""

    # -- as the source of a connection ------------------------------------------
    # Whether, as a layer's first source, this layer also starts the layer's
    # sum from its bias (product_into's ``bias``) and computes its bias
    # gradient (connection_gradient's ``bias_grad``), and, as its only one,
    # applies its activation (product_into's ``activated``): one launch
    # fewer each.
    fuses_bias = False

    def product_into(self, runner, b, batch, weights, z):
        """``z += (this layer's output) @ weights``."""
        bk = runner.backend
        bk.gemm(bk.head(runner.out[self.index], b), weights, z, beta=1.0)

    def connection_gradient(self, runner, b, batch, delta, w, into, written):
        """The gradient of weight ``w`` (from this layer into ``into``, whose
        delta is ``delta``), and the delta that flows back into this layer."""
        bk = runner.backend
        bk.gemm(bk.head(runner.out[self.index], b), delta, runner.weight_grads[w], trans_a=True)
        runner._backpropagate(delta, runner.weights[w], bk.head(runner.delta[self.index], b),
                              accumulate=self.index in written, into_hidden_from=into.plan)
        written.add(self.index)

    def connection_steps(self, runner, w, s1, s2, code, hyper):
        """The optimizer steps of weight ``w`` (from this layer): every row.
        Returns the :class:`~sparse_deep.backends.base.ParameterStep` list the
        runner applies with the other parameters'."""
        weights, n = runner.weights[w], runner.weights[w].shape[0]
        return [ParameterStep(weights, runner.weight_grads[w], runner._rows(n), n, s1, s2,
                              hyper)]


class InputLayer(Layer):
    """The sparse input: no computation of its own; as a source, it gathers
    the weight rows of each batch row's features. Its features are split
    over ranks (DSSTNE's): each rank gathers the rows of its own."""

    splits_units = True

    fuses_bias = True

    def product_into(self, runner, b, batch, weights, z, bias=None, activated=None):
        """``z += batch @ weights``; given ``bias``, ``z = bias + ...``, and
        given ``activated`` (the fed layer's plan) too, its activation of that."""
        runner._add_input_product(batch, weights, z, bias, activated)

    def connection_gradient(self, runner, b, batch, delta, w, into, written, bias_grad=None):
        """The input weight's gradient; given ``bias_grad``, ``into``'s bias
        gradient too."""
        bk = runner.backend
        if bias_grad is None:
            bk.sparse_weight_gradient(runner.transposed, runner.n_present, delta,
                                      runner.weight_grads[w])
        else:
            bk.input_gradients(runner.transposed, runner.n_present, delta,
                               runner.weight_grads[w], bias_grad, runner.all_rows_scratch.get(w))

    def connection_steps(self, runner, w, s1, s2, code, hyper):
        """Every row steps, those of features absent from the batch with a zero
        gradient; with ``sparse_input_update`` only the present rows step."""
        weights, grad = runner.weights[w], runner.weight_grads[w]
        step = ParameterStep(weights, grad, runner.transposed.features, runner.n_present, s1,
                             s2, hyper)
        if w in runner.all_rows_scratch:
            step = step._replace(all_rows=runner._rows(weights.shape[0]),
                                 scratch=runner.all_rows_scratch[w])
        return [step]


class DenseLayer(Layer):
    """A hidden layer, or an output layer over every unit: bias, the products
    of its sources, its skips, the activation and (hidden) dropout. An
    output layer's units are split over ranks (DSSTNE's): each rank computes
    its block of outputs."""

    @property
    def splits_units(self):
        return self.plan.is_output

    def allocate(self, runner, inference):
        """Its activations before dropout (``pre``) and after (``out``, the
        same buffer without dropout or outside training), and in training its
        delta and its sparseness penalty's gradient."""
        bk, n, dt = runner.backend, runner.batch_size, runner.model.dtype
        width = runner.width(self.plan)
        runner.pre[self.index] = runner.out[self.index] = bk.zeros((n, width), dt)
        if inference:
            return
        if self.p_dropout > 0:
            runner.out[self.index] = bk.zeros((n, width), dt)
        runner.delta[self.index] = bk.zeros((n, width), dt)
        if self.penalty is not None:
            runner.penalty_grad[self.index] = bk.zeros(self.n, dt)

    def forward(self, runner, b, batch, step, training, stop_at_output):
        bk = runner.backend
        z = bk.head(runner.pre[self.index], b)
        bias = runner.biases[self.index]
        (first, w0), *rest = self.sources
        first = runner.layers[first]
        stops = self.is_output and stop_at_output  # the fused output pass activates it
        activated = (self.plan if first.fuses_bias and not rest and not self.skips
                     and self.act != LINEAR and not stops else None)
        if first.fuses_bias:
            first.product_into(runner, b, batch, runner.weights[w0], z, bias, activated)
        else:
            bk.fill_rows(z, bias)
            rest = self.sources
        for source, w in rest:
            runner.layers[source].product_into(runner, b, batch, runner.weights[w], z)
        for skip in self.skips:
            bk.add(z, bk.head(runner.out[skip], b))
        if stops:
            return
        if activated is None:
            runner._activate(self.plan, z)
        if self.p_dropout > 0:
            if training:
                key = runner._dropout_key(step, self.plan)
                bk.dropout(z, bk.head(runner.out[self.index], b), key,
                           bk.head(runner.row_ids, b), self.p_dropout)
            else:
                bk.copy(bk.head(runner.out[self.index], b), z)

    def backward(self, runner, b, step, training, written):
        bk = runner.backend
        delta = bk.head(runner.delta[self.index], b)
        if self.index not in written:
            bk.zero(delta)
        if not self.is_output:
            self.hidden_delta(runner, b, step, training, delta)
        batch = runner._batch_view(runner.inputs, b)
        bias_grad = runner.bias_grads[self.index]
        (first, w0), *rest = self.sources
        if runner.layers[first].fuses_bias:
            runner.layers[first].connection_gradient(runner, b, batch, delta, w0, self, written,
                                                     bias_grad)
        else:
            bk.column_sums(delta, bias_grad)
            rest = self.sources
        for source, w in rest:
            runner.layers[source].connection_gradient(runner, b, batch, delta, w, self,
                                                      written)
        for skip in self.skips:
            target = bk.head(runner.delta[skip], b)
            if skip in written:
                bk.add(target, delta)
            else:
                bk.copy(target, delta)
                written.add(skip)

    def hidden_delta(self, runner, b, step, training, delta):
        """A hidden layer's ``delta`` (its first ``b`` rows), dL/d(output), made
        dL/dz in place through dropout, the sparseness penalty and the
        activation; the penalty's loss goes into ``runner.penalty_out``."""
        bk = runner.backend
        penalty = bk.head(runner._no_penalty, self.n)
        if self.penalty is not None:
            penalty = runner.penalty_grad[self.index]
            bk.sparseness_penalty(bk.head(runner.pre[self.index], b), self.penalty[0],
                                  self.penalty[1],
                                  1.0 / b, penalty, runner.penalty_out(self.index))
        p_dropout = self.p_dropout if training else 0.0
        if self.act == LINEAR and p_dropout == 0.0 and self.penalty is None:
            return  # dL/dz is dL/d(output): no pass (nor a kernel to compile)
        key = runner._dropout_key(step, self.plan) if training else np.uint64(0)
        bk.hidden_delta(delta, bk.head(runner.pre[self.index], b), self.act, self.slope,
                        self.alpha, self.lam, key, bk.head(runner.row_ids, b), p_dropout, penalty)


class SampledOutputLayer(Layer):
    """An output layer trained on sampled items (engine/sampled.py): in
    training its pass scores only the targets and the sampled negatives; in
    inference it scores every item. Its items are split over ranks."""

    splits_units = True

    def allocate(self, runner, inference):
        """Every item's scores, in inference only: a training step's sampled
        pass (engine/sampled.py) keeps its own buffers."""
        if inference:
            runner.pre[self.index] = runner.out[self.index] = runner.backend.zeros(
                (runner.batch_size, runner.width(self.plan)), runner.model.dtype)

    def forward(self, runner, b, batch, step, training, stop_at_output):
        if runner.sampled is not None:
            return  # a training runner's sampled pass scores what it needs
        runner._sampled_scores(self.plan, b)
        if not stop_at_output:
            runner._activate(self.plan, runner.backend.head(runner.pre[self.index], b))

    def backward(self, runner, b, step, training, written):
        (source, _), = self.sources
        runner.sampled.backward(b, runner._batch_view(runner.targets, b),
                                accumulate=source in written)
        written.add(source)


def register_layer_type(name, layer_class, aliases=()):
    """Make ``name`` a layer ``"Type"`` of the network language, carried out by
    ``layer_class``: one registration, in sparse_deep or in a user's code.

    Parameters
    ----------
    name : str
        The Type's name in network definitions (matched without case, as
        every name of the language).
    layer_class : type
        A :class:`DenseLayer` subclass: it overrides what differs (its
        :meth:`~Layer.allocate`, ``forward`` or ``backward``) and works through
        the backend's operations, so it runs on every backend. Its ``kinds``
        attribute names the layer kinds it serves (``("Hidden",)`` unless it
        says otherwise), and its ``check(plan)`` may refuse a plan (raise
        ValueError) before anything is allocated.
    aliases : tuple of str
        Other names for it.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, DenseLayer)):
        raise TypeError(f"layer_class must be a subclass of DenseLayer; got {layer_class!r}")
    if hasattr(layer_class, "update_connection"):
        raise TypeError(f"{layer_class.__name__} defines update_connection, which the engine "
                        "no longer calls: return its ParameterSteps from connection_steps")
    LAYER_TYPES.add(name, layer_class, aliases)
    return layer_class


def _layer_class(plan):
    """The class of a Hidden or full Output layer: its Type's record in
    ``LAYER_TYPES`` (``FullyConnected``, DSSTNE's, is :class:`DenseLayer`)."""
    return LAYER_TYPES.info(plan.type) or DenseLayer


def check_layer_type(plan):
    """Refuse, with a message, a layer whose Type does not serve its kind."""
    if plan.type == "FullyConnected":
        return
    layer_class = _layer_class(plan)
    kinds = getattr(layer_class, "kinds", ("Hidden",))
    if plan.kind not in kinds or plan.is_sampled:
        raise ValueError(f"layer {plan.name!r} is a {plan.kind} layer of Type {plan.type!r}, "
                         f"which serves {' and '.join(kinds)} layers (not sampled ones)")
    if layer_class(plan).splits_units and not plan.is_output:
        raise ValueError(f"layer {plan.name!r} of Type {plan.type!r} says its units split "
                         "over ranks, which only the Input and Output layers' can (the model "
                         "keeps their ranges)")
    if hasattr(layer_class, "check"):
        layer_class.check(plan)


def make_layer(plan):
    """The :class:`Layer` that carries out ``plan``."""
    if plan.is_input:
        return InputLayer(plan)
    if plan.is_sampled:
        return SampledOutputLayer(plan)
    return _layer_class(plan)(plan)


def split_layers(plans):
    """Indices of the layers among ``plans`` whose units model parallelism
    splits over ranks (:attr:`Layer.splits_units`)."""
    return frozenset(plan.index for plan in plans if make_layer(plan).splits_units)
