"""A network's parameters and the plan the engine follows to run it.

:class:`Model` turns a resolved :class:`~sparse_deep.network.NetworkSpec` into
numbers: one weight matrix per (source layer -> layer) connection, shaped
``(n_source, n_layer)`` so that the input layer's matrix has one row per input
feature (the rows a sparse batch gathers), and one bias vector per non-input
layer. It holds host (numpy) arrays; backends copy them as they need.
"""

from dataclasses import dataclass, field

import numpy as np

from ..network import NetworkSpec
from ..core.activations import get_activation
from ..core.errors import get_error_function
from .layers import check_layer_type

# Standard SELU constant (Klambauer et al., 2017). DSSTNE reused ELUAlpha (1.0)
# here, which loses the self-normalising property; we keep the paper's value.
SELU_ALPHA = 1.6732632423543772


@dataclass
class LayerPlan:
    """What the engine needs to know about one layer, with names resolved to indices."""

    index: int
    name: str
    kind: str
    n: int
    act: int = -1
    slope: float = 1.0
    alpha: float = 1.0
    lam: float = 1.0
    p_dropout: float = 0.0
    weight_norm: float = 0.0
    sources: list = field(default_factory=list)  # [(source layer index, weight index)]
    skips: list = field(default_factory=list)  # [layer index]
    penalty: tuple = None  # (p, beta) of the sparseness penalty, or None
    sampling: object = None  # the Output layer's Sampling, when it is trained sampled
    cosine: bool = False  # Output layer: cosine scores (no bias)
    temperature: float = 1.0  # Output layer: scores are divided by it
    type: str = "FullyConnected"  # the layer's Type, which picks its class (engine/layers.py)

    @property
    def is_input(self):
        return self.kind == "Input"

    @property
    def is_output(self):
        return self.kind == "Output"

    @property
    def is_sampled(self):
        return self.sampling is not None


def is_item_major(layers, source, target):
    """Whether the weight ``source -> target`` is stored one row per *target*
    unit, shape ``(n_target, n_source)``: the weight into a sampled Output
    layer, whose steps read and update only the rows of the items they
    score (as the input layer's rows of the features present). Every other
    weight is ``(n_source, n_target)``, DSSTNE's layout."""
    return layers[target].is_sampled


def link_shape(layers, source, target):
    """Full shape of the weight ``source -> target`` (see :func:`is_item_major`)."""
    n_source, n_target = layers[source].n, layers[target].n
    return (n_target, n_source) if is_item_major(layers, source, target) else (n_source, n_target)


def _activation_params(layer, spec):
    slope = spec.relu_slope if layer.relu_slope is None else layer.relu_slope
    elu_alpha = spec.elu_alpha if layer.elu_alpha is None else layer.elu_alpha
    lam = spec.selu_lambda if layer.selu_lambda is None else layer.selu_lambda
    alpha = SELU_ALPHA if layer.activation == "SELU" else elu_alpha
    return float(slope), float(alpha), float(lam)


def _layer_penalty(layer, spec):
    """DSSTNE's rule: a Sparse hidden layer is penalised when beta > 0; the
    layer's own p/beta win over the network's when given (> 0)."""
    if layer.kind != "Hidden" or not layer.sparse:
        return None
    net, own = spec.sparseness_penalty, layer.sparseness_penalty
    p = own.p if own is not None and own.p > 0 else net.p
    beta = own.beta if own is not None and own.beta > 0 else net.beta
    return (float(p), float(beta)) if beta > 0 else None


def build_plan(spec):
    """Layer plans and weight links ``[(source, target)]`` of a resolved spec."""
    index = {layer.name: i for i, layer in enumerate(spec.layers)}
    plans, links = [], []
    for i, layer in enumerate(spec.layers):
        plan = LayerPlan(index=i, name=layer.name, kind=layer.kind, n=int(layer.n),
                         type=layer.type)
        if layer.kind != "Input":
            plan.act = get_activation(layer.activation).code
            plan.slope, plan.alpha, plan.lam = _activation_params(layer, spec)
            plan.p_dropout = float(layer.p_dropout) if layer.kind == "Hidden" else 0.0
            plan.weight_norm = float(layer.weight_norm)
            plan.penalty = _layer_penalty(layer, spec)
            if layer.kind == "Output":
                plan.sampling = layer.sampling
                plan.cosine = layer.scoring == "Cosine"
                plan.temperature = float(layer.temperature)
            for source in layer.sources:
                plan.sources.append((index[source], len(links)))
                links.append((index[source], i))
            for skip in layer.skips:
                j = index[skip]
                if spec.layers[j].n != layer.n:
                    raise ValueError(
                        f"layer {layer.name!r} skips from {skip!r}, but their sizes differ "
                        f"({layer.n} vs {spec.layers[j].n}); a Skip adds units one to one"
                    )
                plan.skips.append(j)
        plans.append(plan)
    _check_every_hidden_layer_is_used(plans)
    _check_sampled_output(plans)
    for plan in plans:
        check_layer_type(plan)
    return plans, links


def _check_sampled_output(plans):
    """A sampled Output layer scores items from one Hidden layer's activations."""
    out = next(p for p in plans if p.is_output)
    if not out.is_sampled:
        return
    where = f"the sampled Output layer {out.name!r}"
    if len(out.sources) != 1 or out.skips:
        raise ValueError(f"{where} must have exactly one Source and no Skip (its scores are "
                         "one layer's activations against each item's weights)")
    source = plans[out.sources[0][0]]
    if source.kind != "Hidden":
        raise ValueError(f"{where} takes its Source {source.name!r}, an {source.kind} layer; "
                         "its Source must be a Hidden layer")
    if out.weight_norm > 0:
        raise ValueError(f"{where} has a WeightNorm, which sparse_deep does not apply to "
                         "sampled layers (their weights are updated a few rows at a time); "
                         "remove it")


def _check_every_hidden_layer_is_used(plans):
    used = {s for p in plans for s, _ in p.sources} | {s for p in plans for s in p.skips}
    for p in plans:
        if p.kind == "Hidden" and p.index not in used:
            raise ValueError(
                f"hidden layer {p.name!r} feeds no other layer; every hidden layer must be "
                "the Source or Skip of a later layer"
            )


# Largest number of weights drawn at once during initialisation.
_INIT_CHUNK = 1 << 20


def _init_weights(scheme, scale, shape, rng, fans=None):
    """Draw weights of ``shape`` for a matrix whose (fan-in, fan-out) is ``fans``
    (default: ``shape``); docs/engine.md defines each scheme."""
    n_in, n_out = shape if fans is None else fans
    if scheme == "Xavier":
        limit = scale * np.sqrt(6.0 / (n_in + n_out))
        return rng.uniform(-limit, limit, shape)
    if scheme == "CaffeXavier":
        limit = scale * np.sqrt(3.0 / n_out)
        return rng.uniform(-limit, limit, shape)
    if scheme == "Gaussian":
        return rng.normal(0.0, scale, shape)
    if scheme == "Uniform":
        return rng.uniform(-scale, scale, shape)
    if scheme == "UnitBall":
        return scale * (1.0 - rng.random(shape))  # (0, scale], as DSSTNE
    if scheme == "SELU":
        return rng.normal(0.0, 1.0 / np.sqrt(n_in), shape)
    if scheme == "Constant":
        return np.full(shape, scale)
    raise ValueError(f"unknown weight initialisation scheme {scheme!r}")


class Model:
    """Weights and biases of a resolved network, plus its execution plan.

    Parameters
    ----------
    spec : NetworkSpec
        A resolved network (no ``"auto"`` sizes left).
    dtype : numpy dtype
        float32 (training) or float64 (gradient checks).

    shards : list of WeightShard, optional
        One per weight (see :mod:`sparse_deep.distributed.partition`): this
        process then holds only its block of each split weight, and of the
        output bias. None (default) holds the whole model.
    """

    def __init__(self, spec, dtype=np.float32, shards=None):
        if not isinstance(spec, NetworkSpec) or not spec.is_resolved:
            raise ValueError("Model needs a resolved NetworkSpec (call spec.resolve first)")
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self.layers, self.links = build_plan(spec)
        self.input = next(p for p in self.layers if p.is_input)
        self.output = next(p for p in self.layers if p.is_output)
        self.act_error = (self.output.act, get_error_function(spec.error_function).code)
        self.full_shapes = [link_shape(self.layers, s, t) for s, t in self.links]
        self.item_major = [is_item_major(self.layers, s, t) for s, t in self.links]
        self.shards = shards
        self.input_range, self.output_range = (0, self.input.n), (0, self.output.n)
        if shards is not None:
            self.input_range = self._shard_range(self.input.index, source=True)
            self.output_range = self._shard_range(self.output.index, source=False)
        self.weights = [
            np.zeros(shape if shards is None else shards[i].local_shape(shape), self.dtype)
            for i, shape in enumerate(self.full_shapes)
        ]
        self.biases = {p.index: np.zeros(p.n, self.dtype) for p in self.layers if not p.is_input}
        start, stop = self.output_range
        self.biases[self.output.index] = np.zeros(stop - start, self.dtype)

    def _shard_range(self, layer, source):
        """The block of ``layer``'s units this shard holds: those of the first
        split weight it feeds (``source``) or is fed by; all when none is split."""
        for shard, (s, t) in zip(self.shards, self.links):
            if (s if source else t) == layer and shard.mode != "replicated":
                return shard.start, shard.stop
        return 0, self.layers[layer].n

    def initialize(self, seed):
        """Draw every weight and bias from ``seed`` (host-side, float64 then cast,
        so float32 and float64 models start from the same values).

        A sharded model draws every block of every weight, in the same order,
        and keeps its own: its values are those of the whole model's.
        """
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x1417]))
        for i, (w, (s, t)) in enumerate(zip(self.weights, self.links)):
            init = self.spec.layers[t].weight_init
            shape = self.full_shapes[i]
            fans = (self.layers[s].n, self.layers[t].n)
            # Draw in row chunks: one float64 temporary of a 1M x 256 matrix
            # would be 2 GB. PCG64 draws in order, so the values are the same.
            rows = max(1, _INIT_CHUNK // shape[1])
            for start in range(0, shape[0], rows):
                stop = min(start + rows, shape[0])
                block = _init_weights(init.scheme, float(init.scale), (stop - start, shape[1]),
                                      rng, fans=fans)
                self._keep_block(i, start, stop, block)
        for t, b in self.biases.items():
            b[...] = self.spec.layers[t].weight_init.bias
        return self

    def _keep_block(self, i, start, stop, block):
        """Store rows ``start:stop`` of weight ``i`` (full width), or this shard's part."""
        w, shard = self.weights[i], None if self.shards is None else self.shards[i]
        if shard is None or shard.mode == "replicated":
            w[start:stop] = block
        elif shard.mode == "columns":
            w[start:stop] = block[:, shard.start:shard.stop]
        else:
            lo, hi = max(start, shard.start), min(stop, shard.stop)
            if lo < hi:
                w[lo - shard.start:hi - shard.start] = block[lo - start:hi - start]

    def parameters(self):
        """``[(name, array, row_sparse)]`` in a fixed order; ``row_sparse`` marks
        weights fed by the sparse input layer, whose gradient covers only the
        rows of features present in a batch."""
        out = []
        for w, (s, t) in zip(self.weights, self.links):
            name = f"{self.layers[s].name}->{self.layers[t].name}"
            out.append((name, w, self.layers[s].is_input))
        for t, b in self.biases.items():
            out.append((f"{self.layers[t].name}.bias", b, False))
        return out

    def astype(self, dtype):
        """A copy of this model with parameters cast to ``dtype``."""
        other = Model(self.spec, dtype, self.shards)
        for dst, src in zip(other.weights, self.weights):
            dst[...] = src
        for t in other.biases:
            other.biases[t][...] = self.biases[t]
        return other
