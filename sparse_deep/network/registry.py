"""Registries of the names used in DSSTNE's JSON network language.

The activations are defined, and new ones registered, in
:mod:`sparse_deep.core.activations`; this module lists them with the others.
Each registry maps a canonical name (the spelling ``to_dict`` emits) to an
optional frozen record of facts the engine needs, accepts aliases, and knows
which names DSSTNE defines but sparse_deep does not implement, so that users
get "not supported yet" instead of "unknown" for those.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.activations import ACTIVATIONS, ActivationInfo
from ..core.registry import Registry

__all__ = [
    "ActivationInfo",
    "ErrorFunctionInfo",
    "Registry",
    "ACTIVATIONS",
    "ERROR_FUNCTIONS",
    "WEIGHT_INITS",
    "LAYER_KINDS",
    "LAYER_TYPES",
    "NETWORK_KINDS",
    "SAMPLERS",
    "SCORINGS",
    "activation_info",
    "error_function_info",
]

@dataclass(frozen=True)
class ErrorFunctionInfo:
    """Facts about an error (loss) function.

    Attributes
    ----------
    needs_unit_interval : bool
        True when the output activation must produce values in (0, 1),
        i.e. be Sigmoid or SoftMax.
    allows_softmax : bool
        False when DSSTNE rejects the error function with a SoftMax output.
    sampled : bool
        True for sparse_deep's losses over a sampled Output layer (the
        scores of each row's target items and of sampled negative items);
        they need the layer's ``Sampling`` key, and the others forbid it.
    output_activations : tuple of str
        For a sampled loss, the Output activations it accepts: the loss
        trains the layer's scores, and the activation applies to them only
        at inference (so only those that keep its meaning are allowed).
    """

    needs_unit_interval: bool = False
    allows_softmax: bool = True
    sampled: bool = False
    output_activations: tuple[str, ...] = ()


_UNIT_INTERVAL = (0.0, 1.0)

_CROSS_ENTROPY_FAMILY = ErrorFunctionInfo(needs_unit_interval=True)

ERROR_FUNCTIONS = Registry(
    "error function",
    {
        "L1": ErrorFunctionInfo(),
        "L2": ErrorFunctionInfo(),
        "CrossEntropy": _CROSS_ENTROPY_FAMILY,
        "ScaledMarginalCrossEntropy": _CROSS_ENTROPY_FAMILY,
        # DSSTNE has no multinomial (SoftMax) variant of this one and aborts.
        "DataScaledMarginalCrossEntropy": ErrorFunctionInfo(
            needs_unit_interval=True, allows_softmax=False
        ),
        "Hinge": ErrorFunctionInfo(),
        "L2Hinge": ErrorFunctionInfo(),
        # sparse_deep extensions (docs/network.md, "Sampled output layers").
        "SampledSoftmax": ErrorFunctionInfo(sampled=True,
                                            output_activations=("SoftMax", "Linear")),
        "CosineContrastive": ErrorFunctionInfo(sampled=True, output_activations=("Linear",)),
        "BPR": ErrorFunctionInfo(sampled=True, output_activations=("Sigmoid", "Linear")),
    },
    aliases={"CCL": "CosineContrastive",
             "BayesianPersonalizedRanking": "BPR"},
)

# How the negatives of a sampled Output layer are drawn.
SAMPLERS = Registry("negative sampler", dict.fromkeys(("Uniform", "Popularity")))

# How a sampled Output layer scores a (row, item) pair.
SCORINGS = Registry("scoring", dict.fromkeys(("Dot", "Cosine")))

WEIGHT_INITS = Registry(
    "weight initialization scheme",
    dict.fromkeys(("Xavier", "CaffeXavier", "Gaussian", "Uniform", "UnitBall", "Constant", "SELU")),
)

LAYER_KINDS = Registry(
    "layer kind", dict.fromkeys(("Input", "Hidden", "Output")), unsupported=("Target",)
)

LAYER_TYPES = Registry(
    "layer type", {"FullyConnected": None}, unsupported=("Convolutional", "Pooling")
)

NETWORK_KINDS = Registry("network kind", dict.fromkeys(("FeedForward", "AutoEncoder")))


def activation_info(name: str) -> ActivationInfo:
    """Return the :class:`ActivationInfo` of an activation (any accepted spelling)."""
    return ACTIVATIONS.info(name)


def error_function_info(name: str) -> ErrorFunctionInfo:
    """Return the :class:`ErrorFunctionInfo` of an error function (any accepted spelling)."""
    return ERROR_FUNCTIONS.info(name)
