"""sparse_deep: deep learning on large sparse data, in the spirit of Amazon DSSTNE.

scikit-learn estimators whose networks are written in DSSTNE's JSON network
language and trained by numba kernels.
"""

import os

# numba's OpenMP workers busy-wait after each parallel kernel by default, which
# steals the cores that the next BLAS call needs (measured: a 0.04 ms kernel took
# 4 ms when interleaved with GEMMs). Passive waiting removes the contention. It
# must be set before the first parallel kernel starts OpenMP; a value the user
# has already set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# ... but a worker that must be woken for each of a step's dozen parallel
# regions costs 15-25 us a wake-up, and far more after the process has idled.
# The GEMMs run on numba's threads too (backends/cpu/blas.py), so no other
# pool wants the cores between regions: let the workers spin for about
# 0.3 ms (10,000 turns of libgomp's wait loop) before they sleep.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from . import io, metrics  # noqa: E402
from .estimators import (  # noqa: E402
    SparseAutoencoderRecommender,
    SparseMLPClassifier,
    SparseMLPRegressor,
)
from .backends.cpu.blas import sleep_idle_openblas_threads  # noqa: E402
from .io import load_model, save_model  # noqa: E402
from .network import NetworkSpec, load_network, parse_network, save_network  # noqa: E402

# OpenBLAS's idle workers spin likewise, for 0.1 s after a threaded call. Our
# GEMMs no longer use them, but BLAS work of the user's between our kernels
# would; see sleep_idle_openblas_threads. Done at import, before any BLAS work.
sleep_idle_openblas_threads()

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
