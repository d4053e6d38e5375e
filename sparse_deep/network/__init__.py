"""DSSTNE's JSON network definition language: specs, parsing and registries.

See ``docs/network.md`` for the language reference.
"""

from .registry import (
    ACTIVATIONS,
    ERROR_FUNCTIONS,
    LAYER_KINDS,
    LAYER_TYPES,
    NETWORK_KINDS,
    WEIGHT_INITS,
    ActivationInfo,
    ErrorFunctionInfo,
    Registry,
    activation_info,
    error_function_info,
)
from .spec import (
    AUTO,
    MIN_VERSION,
    NN_VERSION,
    DeltaBoost,
    LayerSpec,
    NetworkSpec,
    ScaledMarginalCrossEntropy,
    SparsenessPenalty,
    WeightInit,
    load_network,
    parse_network,
    save_network,
)

__all__ = [
    "ACTIVATIONS",
    "ERROR_FUNCTIONS",
    "LAYER_KINDS",
    "LAYER_TYPES",
    "NETWORK_KINDS",
    "WEIGHT_INITS",
    "ActivationInfo",
    "ErrorFunctionInfo",
    "Registry",
    "activation_info",
    "error_function_info",
    "AUTO",
    "MIN_VERSION",
    "NN_VERSION",
    "DeltaBoost",
    "LayerSpec",
    "NetworkSpec",
    "ScaledMarginalCrossEntropy",
    "SparsenessPenalty",
    "WeightInit",
    "load_network",
    "parse_network",
    "save_network",
]
