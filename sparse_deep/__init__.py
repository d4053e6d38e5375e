"""sparse_deep: deep learning on large sparse data, in the spirit of Amazon DSSTNE.

scikit-learn estimators whose networks are written in DSSTNE's JSON network
language and trained by numba kernels.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The public names and the submodule each comes from (None: the name is the
# submodule itself). They are imported on first use (PEP 562) rather than
# here, so that `import sparse_deep.cli`, which the `sparse-deep` command
# does first, imports neither scikit-learn nor numba nor the engine: its
# --help answers at once.
_EXPORTS = {
    "NetworkSpec": "network",
    "SparseAutoencoderRecommender": "estimators",
    "SparseMLPClassifier": "estimators",
    "SparseMLPRegressor": "estimators",
    "io": None,
    "load_model": "io",
    "load_network": "network",
    "metrics": None,
    "parse_network": "network",
    "save_model": "io",
    "save_network": "network",
}

__all__ = [
    "NetworkSpec",
    "SparseAutoencoderRecommender",
    "SparseMLPClassifier",
    "SparseMLPRegressor",
    "io",
    "load_model",
    "load_network",
    "metrics",
    "parse_network",
    "save_model",
    "save_network",
]

if TYPE_CHECKING:  # what type checkers and documentation tools read instead
    from . import io, metrics
    from .estimators import (
        SparseAutoencoderRecommender,
        SparseMLPClassifier,
        SparseMLPRegressor,
    )
    from .io import load_model, save_model
    from .network import NetworkSpec, load_network, parse_network, save_network


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    submodule = _EXPORTS[name]
    if submodule is None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(f".{submodule}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
