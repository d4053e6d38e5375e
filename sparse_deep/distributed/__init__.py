"""Model parallelism over MPI ranks, DSSTNE style (see docs/distributed.md).

:mod:`.partition` holds the pure block arithmetic (who owns which features and
output units); :mod:`.comm` the collectives, over mpi4py or one process.
"""

from .comm import MPIComm, RankFailed, SerialComm, launched_size, raise_together, world
from .partition import block_range, block_ranges, block_owner, shard_weights

__all__ = [
    "MPIComm",
    "RankFailed",
    "SerialComm",
    "block_owner",
    "block_range",
    "block_ranges",
    "launched_size",
    "raise_together",
    "shard_weights",
    "world",
]
