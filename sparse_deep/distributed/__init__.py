"""Model parallelism over MPI ranks, DSSTNE style (see docs/distributed.md).

:mod:`.partition` holds the pure block arithmetic (who owns which features and
output units); :mod:`.comm` the collectives, over mpi4py or one process, each
waiting at most a timeout for the other ranks (:func:`set_timeout`, or the
environment variable ``SPARSE_DEEP_MPI_TIMEOUT``; 300 s by default).
"""

from .comm import (DEFAULT_TIMEOUT, TIMEOUT_VARIABLE, MPIComm, RankFailed, SerialComm,
                   launched_size, raise_together, set_timeout, world)
from .partition import block_range, block_ranges, block_owner, shard_weights

__all__ = [
    "DEFAULT_TIMEOUT",
    "MPIComm",
    "RankFailed",
    "SerialComm",
    "TIMEOUT_VARIABLE",
    "block_owner",
    "block_range",
    "block_ranges",
    "launched_size",
    "raise_together",
    "set_timeout",
    "shard_weights",
    "world",
]
