"""sparse_deep: deep learning on large sparse data, in the spirit of Amazon DSSTNE.

scikit-learn estimators whose networks are written in DSSTNE's JSON network
language and trained by numba kernels.
"""

from . import io, metrics
from .estimators import (
    SparseAutoencoderRecommender,
    SparseMLPClassifier,
    SparseMLPRegressor,
)
from .io import load_model, save_model
from .network import NetworkSpec, load_network, parse_network, save_network

__version__ = "0.1.0"

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
