"""Registries of the names used in DSSTNE's JSON network language.

The activations and error functions are defined, and new ones registered, in
:mod:`sparse_deep.core.activations` and :mod:`sparse_deep.core.errors`; this
module lists them with the others.
Each registry maps a canonical name (the spelling ``to_dict`` emits) to an
optional frozen record of facts the engine needs, accepts aliases, and knows
which names DSSTNE defines but sparse_deep does not implement, so that users
get "not supported yet" instead of "unknown" for those.
"""

from __future__ import annotations

from ..core.activations import ACTIVATIONS, ActivationInfo
from ..core.errors import ERROR_FUNCTIONS, ErrorFunctionInfo
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
