"""Network specifications: DSSTNE's JSON network language as dataclasses.

``parse_network`` reads the JSON language (``LoadNeuralNetworkJSON`` in
DSSTNE's ``NNNetwork.cpp``) into a :class:`NetworkSpec`; ``NetworkSpec.to_dict``
writes it back in DSSTNE's spelling. All value checks live in the dataclasses'
``__post_init__``, so a spec built in Python is held to the same rules as one
read from JSON, and ``parse_network(spec.to_dict()) == spec`` always holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import numbers
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from .registry import (
    ACTIVATIONS,
    ERROR_FUNCTIONS,
    LAYER_KINDS,
    LAYER_TYPES,
    NETWORK_KINDS,
    SAMPLERS,
    SCORINGS,
    WEIGHT_INITS,
)

__all__ = [
    "AUTO",
    "NN_VERSION",
    "MIN_VERSION",
    "WeightInit",
    "SparsenessPenalty",
    "ScaledMarginalCrossEntropy",
    "DeltaBoost",
    "Sampling",
    "CosineContrastive",
    "LayerSpec",
    "NetworkSpec",
    "parse_network",
    "load_network",
    "save_network",
]

AUTO = "auto"
NN_VERSION = 0.9  # DSSTNE's NN_VERSION; the default "Version"
MIN_VERSION = 0.7  # DSSTNE rejects older definitions

# DSSTNE's NNNetworkDescriptor defaults for the activation parameters.
DEFAULT_RELU_SLOPE = 1.0
DEFAULT_ELU_ALPHA = 1.0
DEFAULT_SELU_LAMBDA = 1.050701


# --------------------------------------------------------------------------
# Value checks shared by the dataclasses. `what` names the value the way a
# user wrote it (JSON key and where it is), so messages point at the input.
# --------------------------------------------------------------------------

def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a JSON object"
    if isinstance(value, (list, tuple)):
        return "a JSON array"
    if value is None:
        return "null"
    return repr(value)


def _number(value: Any, what: str) -> float:
    # bool is an int subclass, but `true` is never a sensible number here.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a number, got {_describe(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _bounded(value: Any, what: str, low: float, high: float | None = None,
             high_open: bool = False) -> float:
    number = _number(value, what)
    if high is None:
        if number < low:
            raise ValueError(f"{what} must be >= {low:g}, got {number:g}")
        return number
    if number < low or number > high or (high_open and number == high):
        interval = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{what} must be in {interval}, got {number:g}")
    return number


def _optional_number(value: Any, what: str) -> float | None:
    return None if value is None else _number(value, what)


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {_describe(value)}")
    return value


def _string(value: Any, what: str, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {_describe(value)}")
    if not allow_empty and not value:
        raise ValueError(f"{what} must not be empty")
    return value


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {_describe(value)}")
    return int(value)


# The most units a layer may have: the kernels index units (the columns of
# sparse data, the rows of item-major weights) with 32-bit integers.
MAX_UNITS = 2**31 - 1


def _units(value: int, what: str) -> int:
    """``value`` (a positive int) if a layer can have that many units."""
    if value > MAX_UNITS:
        raise ValueError(f"{what} is {value:,} units; sparse_deep indexes a layer's units with "
                         f"32-bit integers, so a layer has at most {MAX_UNITS:,}")
    return value


def _lookup(registry, value: Any, what: str) -> str:
    """Canonical name from `registry`, with `what` in front of its message."""
    try:
        return registry.canonical(value)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


def _set(obj: Any, name: str, value: Any) -> None:
    # The dataclasses are frozen; __post_init__ stores normalised values.
    object.__setattr__(obj, name, value)


# --------------------------------------------------------------------------
# Small value objects
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class WeightInit:
    """Weight initialisation of the connections into a layer.

    Parameters
    ----------
    scheme : str
        A name from ``WEIGHT_INITS`` (default ``"Xavier"``).
    scale : float
        Multiplier applied to the scheme's random values (default 1).
    bias : float
        Initial value of every bias (default 0).
    """

    scheme: str = "Xavier"
    scale: float = 1.0
    bias: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "scheme", _lookup(WEIGHT_INITS, self.scheme, "WeightInit 'Scheme'"))
        _set(self, "scale", _number(self.scale, "WeightInit 'Scale'"))
        _set(self, "bias", _number(self.bias, "WeightInit 'Bias'"))


@dataclass(frozen=True)
class SparsenessPenalty:
    """KL sparseness penalty on hidden activations; on when ``beta > 0``.

    Parameters
    ----------
    p : float
        Target mean activation, in [0, 1].
    beta : float
        Penalty weight, >= 0.
    """

    p: float = 0.0
    beta: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "p", _bounded(self.p, "SparsenessPenalty 'p'", 0.0, 1.0))
        _set(self, "beta", _bounded(self.beta, "SparsenessPenalty 'beta'", 0.0))

    @property
    def enabled(self) -> bool:
        """True when the penalty has an effect (DSSTNE's rule: beta > 0)."""
        return self.beta > 0.0


@dataclass(frozen=True)
class ScaledMarginalCrossEntropy:
    """Parameters of the (Data)ScaledMarginalCrossEntropy error functions.

    Targets are in [0, 1] and scales >= 0, the ranges DSSTNE's
    ``NNNetwork::SetSMCE`` enforces.
    """

    one_target: float = 0.9
    zero_target: float = 0.1
    one_scale: float = 1.0
    zero_scale: float = 1.0

    def __post_init__(self) -> None:
        what = "ScaledMarginalCrossEntropy"
        _set(self, "one_target", _bounded(self.one_target, f"{what} 'oneTarget'", 0.0, 1.0))
        _set(self, "zero_target", _bounded(self.zero_target, f"{what} 'zeroTarget'", 0.0, 1.0))
        _set(self, "one_scale", _bounded(self.one_scale, f"{what} 'oneScale'", 0.0))
        _set(self, "zero_scale", _bounded(self.zero_scale, f"{what} 'zeroScale'", 0.0))


@dataclass(frozen=True)
class DeltaBoost:
    """Multipliers of output deltas where the target is one / zero (>= 0)."""

    one: float = 1.0
    zero: float = 1.0

    def __post_init__(self) -> None:
        _set(self, "one", _bounded(self.one, "DeltaBoost 'one'", 0.0))
        _set(self, "zero", _bounded(self.zero, "DeltaBoost 'zero'", 0.0))


@dataclass(frozen=True)
class Sampling:
    """How a sampled Output layer picks the items a training step scores
    (a sparse_deep extension; docs/network.md, "Sampled output layers").

    A step scores each row's target items and ``negatives`` items drawn for
    the whole batch, with replacement, from the sampler's distribution.

    Parameters
    ----------
    negatives : int
        Items drawn per step, shared by the batch's rows (>= 1; at most the
        layer's N, checked when the size is known).
    sampler : str
        ``"Uniform"`` (every item alike) or ``"Popularity"`` (item ``i`` with
        probability proportional to ``(count_i + 1) ** exponent``, ``count_i``
        the rows whose targets hold it).
    exponent : float
        The popularity sampler's exponent, in [0, 1].
    """

    negatives: int = 1000
    sampler: str = "Popularity"
    exponent: float = 0.75

    def __post_init__(self) -> None:
        _set(self, "negatives", _positive_int(self.negatives, "Sampling 'Negatives'"))
        _set(self, "sampler", _lookup(SAMPLERS, self.sampler, "Sampling 'Sampler'"))
        _set(self, "exponent", _bounded(self.exponent, "Sampling 'Exponent'", 0.0, 1.0))


@dataclass(frozen=True)
class CosineContrastive:
    """Parameters of the CosineContrastive error function (SimpleX's loss):
    ``(1 - cos(positive)) + NegativeWeight * mean(max(0, cos(negative) - Margin))``.

    Parameters
    ----------
    margin : float
        Cosine above which a negative is penalised, in [-1, 1).
    negative_weight : float
        Weight of the negatives' mean term, > 0.
    """

    margin: float = 0.4
    negative_weight: float = 1.0

    def __post_init__(self) -> None:
        _set(self, "margin",
             _bounded(self.margin, "CosineContrastive 'Margin'", -1.0, 1.0, high_open=True))
        weight = _number(self.negative_weight, "CosineContrastive 'NegativeWeight'")
        if weight <= 0:
            raise ValueError(f"CosineContrastive 'NegativeWeight' must be > 0, got {weight:g}")
        _set(self, "negative_weight", weight)


# JSON key -> attribute of each small object; drives both parsing and emitting.
_OBJECT_KEYS: dict[type, dict[str, str]] = {
    WeightInit: {"Scheme": "scheme", "Scale": "scale", "Bias": "bias"},
    SparsenessPenalty: {"p": "p", "beta": "beta"},
    ScaledMarginalCrossEntropy: {
        "oneTarget": "one_target",
        "zeroTarget": "zero_target",
        "oneScale": "one_scale",
        "zeroScale": "zero_scale",
    },
    DeltaBoost: {"one": "one", "zero": "zero"},
    Sampling: {"Negatives": "negatives", "Sampler": "sampler", "Exponent": "exponent"},
    CosineContrastive: {"Margin": "margin", "NegativeWeight": "negative_weight"},
}


def _object_to_json(obj: Any) -> dict[str, Any]:
    return {key: getattr(obj, attr) for key, attr in _OBJECT_KEYS[type(obj)].items()}


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------

_WEIGHTED_KINDS = ("Hidden", "Output")

# Which layer kinds DSSTNE accepts each key on (elsewhere it aborts with
# "Unknown neural network layer field"): attribute -> (JSON key, kinds).
_KIND_ONLY = {
    "activation": ("Activation", _WEIGHTED_KINDS),
    "sources": ("Source", _WEIGHTED_KINDS),
    "skips": ("Skip", _WEIGHTED_KINDS),
    "weight_init": ("WeightInit", _WEIGHTED_KINDS),
    "weight_norm": ("WeightNorm", _WEIGHTED_KINDS),
    "relu_slope": ("RELUSlope", _WEIGHTED_KINDS),
    "elu_alpha": ("ELUAlpha", _WEIGHTED_KINDS),
    "selu_lambda": ("SELULambda", _WEIGHTED_KINDS),
    "sparseness_penalty": ("SparsenessPenalty", ("Hidden",)),
    "dataset": ("DataSet", ("Input", "Output")),
    "sampling": ("Sampling", ("Output",)),
    "scoring": ("Scoring", ("Output",)),
    "temperature": ("Temperature", ("Output",)),
}


def _layer_names(value: Any, what: str) -> tuple[str, ...]:
    """A Source/Skip value: one layer name or a list of them."""
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)):
        raise ValueError(f"{what} must be a layer name or a list of layer names, "
                         f"got {_describe(value)}")
    for name in names:
        _string(name, f"{what} entry", allow_empty=False)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{what} lists {', '.join(map(repr, duplicates))} more than once")
    return tuple(names)


def _layer_size(value: Any, what: str, kind: str) -> int | str:
    if isinstance(value, str) and value.strip().lower() == AUTO:
        if kind == "Hidden":
            raise ValueError(f"{what} is \"auto\", which is only allowed on Input and "
                             "Output layers (their size comes from the data); give "
                             "a Hidden layer a positive integer")
        return AUTO
    if isinstance(value, (list, tuple)):
        raise ValueError(f"{what} is an array (multi-dimensional layer), which is not "
                         "supported by sparse_deep yet; give a positive integer")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{what} must be a positive integer or \"auto\", "
                         f"got {_describe(value)}")
    return _units(int(value), what)


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a network.

    Parameters
    ----------
    name : str
        Unique layer name.
    kind : str
        ``"Input"``, ``"Hidden"`` or ``"Output"``.
    n : int or "auto"
        Number of units; ``"auto"`` (Input/Output only) takes it from the data.
    type : str
        ``"FullyConnected"``, or a type registered with
        :func:`sparse_deep.engine.layers.register_layer_type`.
    dataset : str or None
        Name of the data set feeding an Input layer or targeting an Output layer.
    sparse : bool
        On an Input layer, that its data is sparse; on a Hidden layer, that
        the network's sparseness penalty applies to it.
    activation : str or None
        Canonical activation name; defaults to ``"Sigmoid"`` on Hidden and
        Output layers and must be None on the Input layer.
    p_dropout : float
        Dropout probability, in [0, 1).
    weight_init : WeightInit
        Initialisation of the weights into this layer.
    weight_norm : float
        Maximum L2 norm of each unit's incoming weights; 0 means no limit.
    sources : tuple of str
        Layers feeding this one. Empty means the previous layer, filled in
        by :class:`NetworkSpec`.
    skips : tuple of str
        Layers whose units are added to this layer's (same size required).
    sparseness_penalty : SparsenessPenalty or None
        Per-layer override of the network's penalty (Hidden layers only).
    relu_slope, elu_alpha, selu_lambda : float or None
        Per-layer overrides of the network's activation parameters.
    sampling : Sampling or None
        Output layers only (sparse_deep extension): train on the scores of
        each row's targets and of sampled negatives instead of every unit.
    scoring : str
        Output layers only (sparse_deep extension): ``"Dot"`` (default, the
        weighted sum plus bias) or ``"Cosine"`` (the cosine of the incoming
        activations and the unit's weights; no bias). Cosine needs Sampling.
    temperature : float
        Output layers only (sparse_deep extension): the scores are divided by
        it (> 0, default 1) in training and at inference.
    """

    name: str
    kind: str
    n: int | str
    type: str = "FullyConnected"
    dataset: str | None = None
    sparse: bool = False
    activation: str | None = None
    p_dropout: float = 0.0
    weight_init: WeightInit = field(default_factory=WeightInit)
    weight_norm: float = 0.0
    sources: tuple[str, ...] = ()
    skips: tuple[str, ...] = ()
    sparseness_penalty: SparsenessPenalty | None = None
    relu_slope: float | None = None
    elu_alpha: float | None = None
    selu_lambda: float | None = None
    sampling: Sampling | None = None
    scoring: str = "Dot"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        where = f"layer {_string(self.name, 'a layer name', allow_empty=False)!r}"
        kind = _lookup(LAYER_KINDS, self.kind, f"{where}: 'Kind'")
        _set(self, "kind", kind)
        _set(self, "type", _lookup(LAYER_TYPES, self.type, f"{where}: 'Type'"))
        _set(self, "n", _layer_size(self.n, f"{where}: 'N'", kind))
        if self.dataset is not None:
            _string(self.dataset, f"{where}: 'DataSet'", allow_empty=False)
        _bool(self.sparse, f"{where}: 'Sparse'")
        _set(self, "activation", self._checked_activation(where))
        _set(self, "p_dropout",
             _bounded(self.p_dropout, f"{where}: 'pDropout'", 0.0, 1.0, high_open=True))
        self._check_instance("weight_init", WeightInit, where)
        _set(self, "weight_norm", _bounded(self.weight_norm, f"{where}: 'WeightNorm'", 0.0))
        _set(self, "sources", _layer_names(self.sources, f"{where}: 'Source'"))
        _set(self, "skips", _layer_names(self.skips, f"{where}: 'Skip'"))
        if self.sparseness_penalty is not None:
            self._check_instance("sparseness_penalty", SparsenessPenalty, where)
        for attr, key in (("relu_slope", "RELUSlope"), ("elu_alpha", "ELUAlpha"),
                          ("selu_lambda", "SELULambda")):
            _set(self, attr, _optional_number(getattr(self, attr), f"{where}: '{key}'"))
        self._check_sampled_fields(where)
        self._check_kind_only_fields(where)

    def _check_sampled_fields(self, where: str) -> None:
        if self.sampling is not None:
            self._check_instance("sampling", Sampling, where)
        _set(self, "scoring", _lookup(SCORINGS, self.scoring, f"{where}: 'Scoring'"))
        temperature = _number(self.temperature, f"{where}: 'Temperature'")
        if temperature <= 0:
            raise ValueError(f"{where}: 'Temperature' must be > 0, got {temperature:g}")
        _set(self, "temperature", temperature)
        if (self.sampling is not None and isinstance(self.n, int)
                and self.sampling.negatives > self.n):
            raise ValueError(f"{where}: Sampling 'Negatives' is {self.sampling.negatives} but "
                             f"the layer has N={self.n}; it must be between 1 and {self.n}")
        if self.scoring == "Cosine" and self.sampling is None:
            raise ValueError(f"{where}: 'Scoring' \"Cosine\" is implemented for sampled Output "
                             "layers only; add a 'Sampling' object or use \"Dot\"")

    def _checked_activation(self, where: str) -> str | None:
        if self.activation is None:
            return None if self.kind == "Input" else "Sigmoid"
        activation = _lookup(ACTIVATIONS, self.activation, f"{where}: 'Activation'")
        # SoftMax's derivative is not elementwise; the backward pass only
        # handles it where it meets the error function, at the output.
        if activation == "SoftMax" and self.kind != "Output":
            raise ValueError(f"{where}: the SoftMax activation is only allowed on the "
                             f"Output layer, not on {self.kind} layers")
        return activation

    def _check_instance(self, attr: str, cls: type, where: str) -> None:
        value = getattr(self, attr)
        if not isinstance(value, cls):
            raise ValueError(f"{where}: {attr} must be a {cls.__name__}, got {_describe(value)}")

    def _check_kind_only_fields(self, where: str) -> None:
        for attr, (key, kinds) in _KIND_ONLY.items():
            if self.kind in kinds or getattr(self, attr) == _layer_default(attr):
                continue
            raise ValueError(f"{where}: {key!r} is not allowed on {self.kind} layers; "
                             f"it is accepted on {' and '.join(kinds)} layers only")


def _layer_default(attr: str) -> Any:
    spec_field = LayerSpec.__dataclass_fields__[attr]
    if spec_field.default_factory is not dataclasses.MISSING:
        return spec_field.default_factory()
    return spec_field.default


# --------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------

# Settings that only matter to DSSTNE's pooling layers, which sparse_deep
# lacks; they are validated and kept so that definitions round-trip.
_LRN_DEFAULTS = {"k": 2.0, "n": 5, "alpha": 0.0001, "beta": 0.75}
_MAXOUT_DEFAULTS = {"k": 2}
_EXTRA_KEYS = ("LocalResponseNormalization", "MaxOut", "WeightsData")


def _checked_extras(extras: Any) -> dict[str, Any]:
    if not isinstance(extras, Mapping):
        raise ValueError(f"extras must be a dict, got {_describe(extras)}")
    checked: dict[str, Any] = {}
    for key, value in extras.items():
        if key == "LocalResponseNormalization":
            checked[key] = _checked_settings(value, _LRN_DEFAULTS, key)
        elif key == "MaxOut":
            checked[key] = _checked_settings(value, _MAXOUT_DEFAULTS, key)
        elif key == "WeightsData":
            checked[key] = _string(value, "'WeightsData'")
        else:
            raise ValueError(f"unknown extras key {key!r}; expected one of: "
                             f"{', '.join(_EXTRA_KEYS)}")
    return checked


def _checked_settings(value: Any, defaults: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Fill `defaults` from `value`; int defaults mark positive-integer settings."""
    if not isinstance(value, Mapping) or not set(value) <= set(defaults):
        raise ValueError(f"{what!r} must be an object with keys among "
                         f"{', '.join(defaults)}, got {_describe(value)}")
    settings = {}
    for key, default in defaults.items():
        given = value.get(key, default)
        check = _positive_int if isinstance(default, int) else _number
        settings[key] = check(given, f"{what} {key!r}")
    return settings


@dataclass(frozen=True)
class NetworkSpec:
    """A whole network definition, validated on construction.

    Parameters
    ----------
    layers : sequence of LayerSpec
        The layers in file order: exactly one Input and one Output layer.
        Layers without ``sources`` get the previous layer as their source.
    version : float
        Language version, >= 0.7 (default 0.9, DSSTNE's NN_VERSION).
    name : str
        Network name.
    kind : str
        ``"FeedForward"`` (default) or ``"AutoEncoder"``.
    error_function : str
        A name from ``ERROR_FUNCTIONS`` (default ``"CrossEntropy"``).
    sparseness_penalty : SparsenessPenalty
        Penalty for Hidden layers marked sparse (off by default).
    denoising_p : float
        Probability of dropping each non-zero of a sparse input, in [0, 1).
    delta_boost : DeltaBoost
        Output delta multipliers.
    smce : ScaledMarginalCrossEntropy
        Parameters of the scaled marginal cross entropy error functions.
    shuffle_indices : bool
        Shuffle the examples every epoch (default True).
    relu_slope, elu_alpha, selu_lambda : float
        Network-wide activation parameters (defaults 1.0, 1.0, 1.050701).
    decay : float
        Learning-rate decay: alpha / (1 + decay * batches), >= 0.
    contrastive : CosineContrastive
        Parameters of the CosineContrastive error function (sparse_deep
        extension).
    extras : dict
        Pooling-only settings (LocalResponseNormalization, MaxOut,
        WeightsData) kept for round-tripping; they have no effect.
    """

    layers: tuple[LayerSpec, ...]
    version: float = NN_VERSION
    name: str = ""
    kind: str = "FeedForward"
    error_function: str = "CrossEntropy"
    sparseness_penalty: SparsenessPenalty = field(default_factory=SparsenessPenalty)
    denoising_p: float = 0.0
    delta_boost: DeltaBoost = field(default_factory=DeltaBoost)
    smce: ScaledMarginalCrossEntropy = field(default_factory=ScaledMarginalCrossEntropy)
    shuffle_indices: bool = True
    relu_slope: float = DEFAULT_RELU_SLOPE
    elu_alpha: float = DEFAULT_ELU_ALPHA
    selu_lambda: float = DEFAULT_SELU_LAMBDA
    decay: float = 0.0
    contrastive: CosineContrastive = field(default_factory=CosineContrastive)
    # A dict is unhashable, so it takes no part in hash() (it still does in ==).
    extras: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        version = _number(self.version, "'Version'")
        if version < MIN_VERSION:
            raise ValueError(f"'Version' must be at least {MIN_VERSION}, got {version:g}")
        _set(self, "version", version)
        _string(self.name, "the network 'Name'")
        _set(self, "kind", _lookup(NETWORK_KINDS, self.kind, "'Kind'"))
        _set(self, "error_function",
             _lookup(ERROR_FUNCTIONS, self.error_function, "'ErrorFunction'"))
        for attr, cls in (("sparseness_penalty", SparsenessPenalty), ("delta_boost", DeltaBoost),
                          ("smce", ScaledMarginalCrossEntropy),
                          ("contrastive", CosineContrastive)):
            if not isinstance(getattr(self, attr), cls):
                raise ValueError(f"{attr} must be a {cls.__name__}, "
                                 f"got {_describe(getattr(self, attr))}")
        _set(self, "denoising_p",
             _bounded(self.denoising_p, "Denoising 'p'", 0.0, 1.0, high_open=True))
        _bool(self.shuffle_indices, "'ShuffleIndices'")
        _set(self, "relu_slope", _number(self.relu_slope, "'RELUSlope'"))
        _set(self, "elu_alpha", _number(self.elu_alpha, "'ELUAlpha'"))
        _set(self, "selu_lambda", _number(self.selu_lambda, "'SELULambda'"))
        _set(self, "decay", _bounded(self.decay, "'Decay'", 0.0))
        _set(self, "extras", _checked_extras(self.extras))
        _set(self, "layers", _checked_layers(self.layers))
        _check_data_layers(self.layers)
        _check_connections(self.layers)
        _check_error_function(self.error_function, self.output_layer)

    # -- access -------------------------------------------------------------

    @property
    def input_layer(self) -> LayerSpec:
        """The Input layer."""
        return next(layer for layer in self.layers if layer.kind == "Input")

    @property
    def output_layer(self) -> LayerSpec:
        """The Output layer."""
        return next(layer for layer in self.layers if layer.kind == "Output")

    @property
    def hidden_layers(self) -> tuple[LayerSpec, ...]:
        """The Hidden layers, in file order."""
        return tuple(layer for layer in self.layers if layer.kind == "Hidden")

    def layer(self, name: str) -> LayerSpec:
        """Return the layer called `name`.

        Raises
        ------
        ValueError
            If there is no such layer; the message lists the layer names.
        """
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers: "
                         f"{', '.join(layer.name for layer in self.layers)}")

    @property
    def is_resolved(self) -> bool:
        """True when no layer size is still ``"auto"``."""
        return all(layer.n != AUTO for layer in self.layers)

    def resolve(self, n_input: int, n_output: int) -> NetworkSpec:
        """Return a copy with the data-dependent layer sizes filled in.

        Parameters
        ----------
        n_input : int
            Number of columns (features) of the input data.
        n_output : int
            Number of columns of the output (target) data.

        Returns
        -------
        NetworkSpec
            A new spec whose Input and Output layers have these sizes where
            they said ``"auto"``.

        Raises
        ------
        ValueError
            If a size is not a positive integer, or a layer's explicit N
            disagrees with the data.
        """
        sizes = {
            "Input": (_units(_positive_int(n_input, "n_input"), "the input data's width"),
                      "input"),
            "Output": (_units(_positive_int(n_output, "n_output"), "the output data's width"),
                       "output"),
        }
        layers = tuple(_resolved(layer, *sizes[layer.kind]) if layer.kind in sizes else layer
                       for layer in self.layers)
        return dataclasses.replace(self, layers=layers)

    # -- emitting -----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return the definition as a JSON-ready dict in DSSTNE's spelling.

        Returns
        -------
        dict
            ``parse_network(spec.to_dict()) == spec`` for every spec.
        """
        out: dict[str, Any] = {
            "Version": self.version,
            "Name": self.name,
            "Kind": self.kind,
            "ErrorFunction": self.error_function,
            "ShuffleIndices": self.shuffle_indices,
            "SparsenessPenalty": _object_to_json(self.sparseness_penalty),
            "Denoising": {"p": self.denoising_p},
            "ScaledMarginalCrossEntropy": _object_to_json(self.smce),
            "DeltaBoost": _object_to_json(self.delta_boost),
            "RELUSlope": self.relu_slope,
            "ELUAlpha": self.elu_alpha,
            "SELULambda": self.selu_lambda,
            "Decay": self.decay,
        }
        if self.contrastive != CosineContrastive():
            out["CosineContrastive"] = _object_to_json(self.contrastive)
        out.update({key: (dict(value) if isinstance(value, Mapping) else value)
                    for key, value in self.extras.items()})
        out["Layers"] = [_layer_to_json(layer) for layer in self.layers]
        return out

    def to_json(self, indent: int | None = 2) -> str:
        """Return :meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)


def _resolved(layer: LayerSpec, size: int, data: str) -> LayerSpec:
    if layer.sampling is not None and layer.sampling.negatives > size:
        raise ValueError(f"the {layer.kind} layer {layer.name!r} samples "
                         f"{layer.sampling.negatives} negatives per step but the {data} data "
                         f"has {size} columns; 'Negatives' must be between 1 and {size}")
    if layer.n == AUTO:
        return dataclasses.replace(layer, n=size)
    if layer.n != size:
        raise ValueError(f"the {layer.kind} layer {layer.name!r} declares N={layer.n} but "
                         f"the {data} data has {size} columns; set N to {size} or \"auto\"")
    return layer


def _checked_layers(layers: Any) -> tuple[LayerSpec, ...]:
    """Check element types and names, and apply DSSTNE's default Source."""
    if not isinstance(layers, (list, tuple)):
        raise ValueError(f"layers must be a list of LayerSpec, got {_describe(layers)}")
    if not layers:
        raise ValueError("a network needs at least one layer ('Layers' is empty)")
    checked: list[LayerSpec] = []
    seen: dict[str, int] = {}
    for index, layer in enumerate(layers):
        if not isinstance(layer, LayerSpec):
            raise ValueError(f"layers[{index}] must be a LayerSpec, got {_describe(layer)}; "
                             "use parse_network() for JSON")
        if layer.name in seen:
            raise ValueError(f"duplicate layer name {layer.name!r} (layers {seen[layer.name]} "
                             f"and {index}); layer names must be unique")
        seen[layer.name] = index
        if layer.kind != "Input" and not layer.sources:
            layer = _with_default_source(layer, index, checked)
        checked.append(layer)
    return tuple(checked)


def _with_default_source(layer: LayerSpec, index: int,
                         earlier: list[LayerSpec]) -> LayerSpec:
    if not earlier:
        raise ValueError(f"layer {layer.name!r} (index {index}) is a {layer.kind} layer with "
                         "no 'Source' and no earlier layer to take input from; put the "
                         "Input layer first")
    return dataclasses.replace(layer, sources=(earlier[-1].name,))


def _check_data_layers(layers: tuple[LayerSpec, ...]) -> None:
    for kind in ("Input", "Output"):
        found = [layer.name for layer in layers if layer.kind == kind]
        if len(found) != 1:
            listed = f": {', '.join(map(repr, found))}" if found else ""
            raise ValueError(
                f"found {len(found)} {kind} layers{listed}; a network needs exactly one "
                f"Input and one Output layer (sparse_deep's engine supports one input "
                f"and one output data set)")


def _check_connections(layers: tuple[LayerSpec, ...]) -> None:
    """Every Source/Skip names an earlier, non-Output layer (so no cycles)."""
    index_of = {layer.name: index for index, layer in enumerate(layers)}
    for index, layer in enumerate(layers):
        earlier = layers[:index]
        for key, names in (("Source", layer.sources), ("Skip", layer.skips)):
            for name in names:
                _check_reference(layer, index, key, name, index_of, earlier)
        for name in layer.skips:
            _check_skip_size(layer, layers[index_of[name]])


def _check_reference(layer: LayerSpec, index: int, key: str, name: str,
                     index_of: Mapping[str, int], earlier: tuple[LayerSpec, ...]) -> None:
    where = f"layer {layer.name!r} (index {index}): {key} {name!r}"
    candidates = ", ".join(other.name for other in earlier if other.kind != "Output")
    if name not in index_of:
        raise ValueError(f"{where} is not a layer of this network; "
                         f"earlier layers: {candidates or '(none)'}")
    if index_of[name] >= index:
        raise ValueError(f"{where} is not defined before this layer (it is layer "
                         f"{index_of[name]}); a layer can only connect to earlier layers "
                         f"({candidates or 'none here'})")
    if earlier[index_of[name]].kind == "Output":
        raise ValueError(f"{where} is the Output layer, which cannot feed other layers")


def _check_skip_size(layer: LayerSpec, skipped: LayerSpec) -> None:
    # Sizes still "auto" are checked again after resolve(), which rebuilds the spec.
    if AUTO not in (layer.n, skipped.n) and layer.n != skipped.n:
        raise ValueError(f"layer {layer.name!r}: Skip {skipped.name!r} has N={skipped.n} but "
                         f"this layer has N={layer.n}; skipped units are added, so the "
                         "sizes must match")


def _check_error_function(error_function: str, output: LayerSpec) -> None:
    info = ERROR_FUNCTIONS.info(error_function)
    if info.sampled or output.sampling is not None:
        _check_sampled_error_function(error_function, info, output)
        return
    if info.needs_unit_interval and ACTIVATIONS.info(output.activation).output_range != (0.0, 1.0):
        allowed = [name for name in ACTIVATIONS.names
                   if ACTIVATIONS.info(name).output_range == (0.0, 1.0)
                   and (info.allows_softmax or name != "SoftMax")]
        raise ValueError(f"ErrorFunction {error_function!r} needs outputs in (0, 1), but the "
                         f"Output layer {output.name!r} has activation {output.activation!r}; "
                         f"use {' or '.join(allowed)}")
    if not info.allows_softmax and output.activation == "SoftMax":
        raise ValueError(f"ErrorFunction {error_function!r} cannot be used with a SoftMax "
                         f"Output layer ({output.name!r}), as in DSSTNE; use Sigmoid")


_SAMPLED_ERRORS = ", ".join(name for name in ERROR_FUNCTIONS.names
                            if ERROR_FUNCTIONS.info(name).sampled)


def _check_sampled_error_function(error_function: str, info: Any, output: LayerSpec) -> None:
    """A sampled loss needs a sampled Output layer, and a sampled layer a sampled loss."""
    where = f"the Output layer {output.name!r}"
    if not info.sampled:
        raise ValueError(f"{where} has 'Sampling', which only sampled error functions can "
                         f"train ({_SAMPLED_ERRORS}); ErrorFunction {error_function!r} needs "
                         "every output unit: remove 'Sampling' or change the ErrorFunction")
    if output.sampling is None:
        raise ValueError(f"ErrorFunction {error_function!r} trains a sampled Output layer; "
                         f"give {where} a 'Sampling' object (e.g. {{\"Negatives\": 1000}})")
    if output.activation not in info.output_activations:
        raise ValueError(f"ErrorFunction {error_function!r} trains the scores of {where}, "
                         f"whose activation {output.activation!r} it cannot serve at "
                         f"inference; use {' or '.join(info.output_activations)}")
    if error_function == "CosineContrastive":
        if output.scoring != "Cosine":
            raise ValueError(f"ErrorFunction 'CosineContrastive' compares cosines with its "
                             f"margin; give {where} \"Scoring\": \"Cosine\"")
        if output.temperature != 1.0:
            raise ValueError(f"ErrorFunction 'CosineContrastive' works on the cosines "
                             f"themselves; {where} has 'Temperature' {output.temperature:g}, "
                             "which it would ignore: remove it")


def _layer_to_json(layer: LayerSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Name": layer.name,
        "Kind": layer.kind,
        "Type": layer.type,
        "N": layer.n,
        "Sparse": layer.sparse,
        "pDropout": layer.p_dropout,
    }
    if layer.dataset is not None:
        out["DataSet"] = layer.dataset
    if layer.kind != "Input":
        out["Activation"] = layer.activation
        out["Source"] = list(layer.sources)
        out["WeightInit"] = _object_to_json(layer.weight_init)
        out["WeightNorm"] = layer.weight_norm
    if layer.skips:
        out["Skip"] = list(layer.skips)
    if layer.sparseness_penalty is not None:
        out["SparsenessPenalty"] = _object_to_json(layer.sparseness_penalty)
    for attr, key in (("relu_slope", "RELUSlope"), ("elu_alpha", "ELUAlpha"),
                      ("selu_lambda", "SELULambda")):
        if getattr(layer, attr) is not None:
            out[key] = getattr(layer, attr)
    # sparse_deep's extensions appear only when used, so DSSTNE's own
    # definitions come back exactly as DSSTNE writes them.
    if layer.sampling is not None:
        out["Sampling"] = _object_to_json(layer.sampling)
    if layer.scoring != "Dot":
        out["Scoring"] = layer.scoring
    if layer.temperature != 1.0:
        out["Temperature"] = layer.temperature
    return out


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

class _Keys:
    """The keys accepted in one kind of JSON object, matched case-insensitively."""

    def __init__(self, names: tuple[str, ...], aliases: Mapping[str, str] | None = None,
                 unsupported: tuple[str, ...] = ()) -> None:
        aliases = dict(aliases or {})
        self._lookup = {name.lower(): name for name in (*names, *unsupported)}
        self._lookup.update({alias.lower(): name for alias, name in aliases.items()})
        alias_text = ", ".join(f"{alias} for {name}" for alias, name in aliases.items())
        self.listing = ", ".join(names) + (f" (aliases: {alias_text})" if alias_text else "")

    def normalise(self, raw: Any, where: str) -> dict[str, Any]:
        """Return `raw` keyed by canonical key names; reject unknown keys."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where} must be a JSON object, got {_describe(raw)}")
        out: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, value in raw.items():
            canonical = self._lookup.get(key.lower()) if isinstance(key, str) else None
            if canonical is None:
                raise ValueError(f"unknown key {key!r} in {where}{self._hint(key)}; "
                                 f"accepted keys: {self.listing}")
            if canonical in out:
                raise ValueError(f"key {canonical!r} is given twice in {where} "
                                 f"(as {spelled[canonical]!r} and {key!r})")
            out[canonical] = value
            spelled[canonical] = key
        return out

    def _hint(self, key: Any) -> str:
        if not isinstance(key, str):
            return ""
        close = difflib.get_close_matches(key.lower(), list(self._lookup), n=1)
        return f" (did you mean {self._lookup[close[0]]!r}?)" if close else ""


_TOP_KEYS = _Keys(
    ("Version", "Name", "Kind", "Layers", "ErrorFunction", "SparsenessPenalty", "Denoising",
     "ScaledMarginalCrossEntropy", "ShuffleIndices", "DeltaBoost", "RELUSlope", "ELUAlpha",
     "SELULambda", "Decay", "LocalResponseNormalization", "MaxOut", "WeightsData",
     "CosineContrastive"),
    aliases={"Slope": "RELUSlope", "LRN": "LocalResponseNormalization",
             "DataScaledMarginalCrossEntropy": "ScaledMarginalCrossEntropy"},
)

# Top-level keys holding a plain value -> NetworkSpec attribute.
_TOP_SCALARS = {
    "Version": "version", "Name": "name", "Kind": "kind", "ErrorFunction": "error_function",
    "ShuffleIndices": "shuffle_indices", "RELUSlope": "relu_slope", "ELUAlpha": "elu_alpha",
    "SELULambda": "selu_lambda", "Decay": "decay",
}
# Top-level keys holding an object -> (class, NetworkSpec attribute).
_TOP_OBJECTS = {
    "SparsenessPenalty": (SparsenessPenalty, "sparseness_penalty"),
    "ScaledMarginalCrossEntropy": (ScaledMarginalCrossEntropy, "smce"),
    "DeltaBoost": (DeltaBoost, "delta_boost"),
    "CosineContrastive": (CosineContrastive, "contrastive"),
}

# DSSTNE layer keys for features sparse_deep does not implement.
_UNSUPPORTED_LAYER_KEYS = ("Kernel", "KernelStride", "Function", "BatchNormalization",
                           "SharedWeights", "DeltaNorm")

_LAYER_KEYS = _Keys(
    ("Name", "Kind", "Type", "N", "DataSet", "Sparse", "Activation", "pDropout", "WeightInit",
     "WeightNorm", "Source", "Skip", "SparsenessPenalty", "RELUSlope", "ELUAlpha",
     "SELULambda", "Sampling", "Scoring", "Temperature"),
    aliases={"Slope": "RELUSlope"},
    unsupported=_UNSUPPORTED_LAYER_KEYS,
)

# Layer keys holding a plain value -> LayerSpec attribute.
_LAYER_SCALARS = {
    "N": "n", "Type": "type", "DataSet": "dataset", "Sparse": "sparse",
    "Activation": "activation", "pDropout": "p_dropout", "WeightNorm": "weight_norm",
    "Source": "sources", "Skip": "skips", "RELUSlope": "relu_slope", "ELUAlpha": "elu_alpha",
    "SELULambda": "selu_lambda", "Scoring": "scoring", "Temperature": "temperature",
}

_TOP_WHERE = "the top level of the network definition"


def _parse_object(cls: type, raw: Any, key: str, where: str, prefix: str = "") -> Any:
    """Build a small value object from its JSON object (keys case-insensitive).

    `prefix` goes in front of the object's own value errors, which do not
    know which layer they belong to.
    """
    attrs = _OBJECT_KEYS[cls]
    given = _Keys(tuple(attrs)).normalise(raw, f"{key!r} in {where}")
    try:
        return cls(**{attrs[name]: value for name, value in given.items()})
    except ValueError as error:
        if not prefix:
            raise
        raise ValueError(f"{prefix}: {error}") from None


def _parse_settings(raw: Any, names: tuple[str, ...], key: str) -> dict[str, Any]:
    return _Keys(names).normalise(raw, f"{key!r} in {_TOP_WHERE}")


def _from_json(raw: Any) -> NetworkSpec:
    top = _TOP_KEYS.normalise(raw, _TOP_WHERE)
    if "Layers" not in top:
        raise ValueError(f"the network definition has no 'Layers' key; keys given: "
                         f"{', '.join(top) or '(none)'}")
    kwargs: dict[str, Any] = {attr: top[key] for key, attr in _TOP_SCALARS.items() if key in top}
    for key, (cls, attr) in _TOP_OBJECTS.items():
        if key in top:
            kwargs[attr] = _parse_object(cls, top[key], key, _TOP_WHERE)
    if "Denoising" in top:
        kwargs["denoising_p"] = _parse_settings(top["Denoising"], ("p",), "Denoising").get("p", 0.0)
    extras: dict[str, Any] = {}
    if "LocalResponseNormalization" in top:
        extras["LocalResponseNormalization"] = _parse_settings(
            top["LocalResponseNormalization"], tuple(_LRN_DEFAULTS), "LocalResponseNormalization")
    if "MaxOut" in top:
        extras["MaxOut"] = _parse_settings(top["MaxOut"], tuple(_MAXOUT_DEFAULTS), "MaxOut")
    if "WeightsData" in top:
        extras["WeightsData"] = top["WeightsData"]
    kwargs["extras"] = extras
    kwargs["layers"] = _parse_layers(top["Layers"])
    return NetworkSpec(**kwargs)


def _parse_layers(raw: Any) -> list[LayerSpec]:
    if not isinstance(raw, list):
        raise ValueError(f"'Layers' must be an array of layer objects, got {_describe(raw)}")
    if not raw:
        raise ValueError("'Layers' is empty; a network needs an Input and an Output layer")
    return [_parse_layer(layer, index, len(raw)) for index, layer in enumerate(raw)]


def _positional_kind(index: int, count: int) -> str:
    # DSSTNE's rule: first layer Input, last Output, the rest Hidden.
    if index == 0:
        return "Input"
    return "Output" if index == count - 1 else "Hidden"


def _layer_label(raw: Any, index: int, count: int) -> str:
    """Name a layer in messages before its keys have been checked."""
    if not isinstance(raw, Mapping):
        return f"layer {index}"
    given = {key.lower(): value for key, value in raw.items() if isinstance(key, str)}
    name = given.get("name")
    if not isinstance(name, str):
        kind = given.get("kind", _positional_kind(index, count))
        if kind not in LAYER_KINDS:
            return f"layer {index}"
        name = _default_name(LAYER_KINDS.canonical(kind), index)
    return f"layer {name!r} (index {index})"


def _default_name(kind: str, index: int) -> str:
    # DSSTNE names unnamed layers by kind and position: Input0, Hidden1, Output2.
    return f"{kind}{index}"


def _parse_layer(raw: Any, index: int, count: int) -> LayerSpec:
    label = _layer_label(raw, index, count)
    keys = _LAYER_KEYS.normalise(raw, label)
    _reject_unsupported(keys, label)
    kind = _lookup(LAYER_KINDS, keys.get("Kind", _positional_kind(index, count)),
                   f"{label}: 'Kind'")
    if "N" not in keys:
        raise ValueError(f"{label} has no 'N'; give its number of units "
                         "(a positive integer, or \"auto\" on Input and Output layers)")
    kwargs: dict[str, Any] = {attr: keys[key] for key, attr in _LAYER_SCALARS.items()
                              if key in keys}
    kwargs["name"] = keys.get("Name", _default_name(kind, index))
    kwargs["kind"] = kind
    for key, cls, attr in (("WeightInit", WeightInit, "weight_init"),
                           ("SparsenessPenalty", SparsenessPenalty, "sparseness_penalty"),
                           ("Sampling", Sampling, "sampling")):
        if key in keys:
            kwargs[attr] = _parse_object(cls, keys[key], key, label, prefix=label)
    return LayerSpec(**kwargs)


def _reject_unsupported(keys: Mapping[str, Any], label: str) -> None:
    for key in _UNSUPPORTED_LAYER_KEYS:
        if key not in keys:
            continue
        value = keys[key]
        # Their "off" values are harmless, so definitions that spell them out still load.
        if key == "BatchNormalization" and _bool(value, f"{label}: {key!r}") is False:
            continue
        if key == "DeltaNorm" and _number(value, f"{label}: {key!r}") == 0.0:
            continue
        raise ValueError(f"{label}: {key!r} is a DSSTNE layer key that is not supported "
                         "by sparse_deep yet")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would silently keep the last of two equal keys.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in the same JSON object")
        out[key] = value
    return out


def _decode(text: str, source: str) -> Any:
    """Decode JSON; `source` completes "invalid JSON ..." in the message."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON {source}: {error.msg} at line {error.lineno}, "
                         f"column {error.colno}") from None


def parse_network(obj: Any) -> NetworkSpec:
    """Read a network definition in DSSTNE's JSON language.

    Parameters
    ----------
    obj : dict, str, os.PathLike or NetworkSpec
        An already-decoded JSON object; JSON text (a string whose first
        non-blank character is ``{``); a path to a JSON file; or a
        NetworkSpec, returned unchanged. Keys are matched case-insensitively
        and names (activations, error functions, ...) through the registries.

    Returns
    -------
    NetworkSpec
        The validated definition.

    Raises
    ------
    ValueError
        If the JSON is malformed or the definition is invalid; the message
        names the offending key or layer and says what is expected.
    FileNotFoundError
        If `obj` is a path to a file that does not exist.
    TypeError
        If `obj` is none of the above.
    """
    if isinstance(obj, NetworkSpec):
        return obj
    if isinstance(obj, Mapping):
        return _from_json(obj)
    if isinstance(obj, str) and obj.lstrip().startswith("{"):
        return _from_json(_decode(obj, "text"))
    if isinstance(obj, (str, os.PathLike)):
        return load_network(obj)
    raise TypeError(f"parse_network expects a dict, JSON text, a path or a NetworkSpec, "
                    f"got {type(obj).__name__}")


def load_network(path: str | os.PathLike) -> NetworkSpec:
    """Read a network definition from a JSON file.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file.

    Returns
    -------
    NetworkSpec
        The validated definition.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not valid JSON or not a valid definition; the message
        starts with the path.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError as error:
        raise FileNotFoundError(error.errno, "network definition file not found", path) from None
    try:
        return _from_json(_decode(text, f"in {path}"))
    except ValueError as error:
        message = str(error)
        raise ValueError(message if path in message else f"{path}: {message}") from None


def save_network(spec: Any, path: str | os.PathLike) -> None:
    """Write a network definition as JSON, atomically.

    The JSON goes to a temporary file in the target's directory, which then
    replaces the target in one step, so a failure never leaves a truncated
    file behind.

    Parameters
    ----------
    spec : NetworkSpec, or anything :func:`parse_network` accepts
        The definition to write.
    path : str or os.PathLike
        Destination file; replaced if it exists.
    """
    data = parse_network(spec).to_dict()
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{base}.{uuid.uuid4().hex}.tmp")
    try:
        # Mode "x" creates a fresh file with the usual umask permissions.
        with open(temporary, "x", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
