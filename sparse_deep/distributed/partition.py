"""Which rank owns what: the block arithmetic of model parallelism.

Pure functions of sizes and ranks, so they are tested without MPI. The split is
DSSTNE's (``NNLayer``: ``minX = N * id / np``): contiguous blocks whose sizes
differ by at most one.

Which weights are split is the layers' rule (``Layer.splits_units`` in
``engine/layers.py``): the units of the sparse **input** layer (its features)
and of the **output** layer (its items) are split over ranks, as DSSTNE does
for recommendation networks (dsstne.md section 5), and each weight into or
out of such a layer is split along the axis that indexes its units:

* the weight fed by the input layer by rows (input features): each rank
  gathers only its own features' rows, and one sum over ranks of a
  ``batch x units`` block completes the product;
* the weight into the output layer by columns (output units), with the output
  bias: each rank computes its slice of outputs, error and deltas, and one
  sum over ranks of a ``batch x units`` block completes the delta that flows
  back. A sampled output layer stores that weight one row per output unit,
  so it is split by rows, into the same blocks of output units.

Every other weight (hidden to hidden) is small and replicated.
"""

from dataclasses import dataclass

ROWS = "rows"
COLUMNS = "columns"
REPLICATED = "replicated"


def block_range(n, size, rank):
    """``(start, stop)`` of the block of ``range(n)`` that ``rank`` of ``size`` owns."""
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, {size}) and size >= 1; got rank {rank}, size {size}")
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    return n * rank // size, n * (rank + 1) // size


def block_ranges(n, size):
    """Every rank's ``(start, stop)``, in rank order; they tile ``range(n)``."""
    return [block_range(n, size, r) for r in range(size)]


def block_owner(index, n, size):
    """The rank whose block holds ``index`` (0 <= index < n)."""
    if not 0 <= index < n:
        raise ValueError(f"index must be in [0, {n}); got {index}")
    rank = min(size - 1, (index * size) // max(n, 1))
    # The floor formula can put the owner one off; step to the block that holds it.
    while index < block_range(n, size, rank)[0]:
        rank -= 1
    while index >= block_range(n, size, rank)[1]:
        rank += 1
    return rank


@dataclass(frozen=True)
class WeightShard:
    """How one weight matrix is split: ``mode`` and, for this rank, the slice of
    rows or columns it holds (``start:stop`` along that axis)."""

    mode: str
    start: int
    stop: int

    def local_shape(self, shape):
        if self.mode == ROWS:
            return (self.stop - self.start, shape[1])
        if self.mode == COLUMNS:
            return (shape[0], self.stop - self.start)
        return tuple(shape)

    def take(self, array):
        """This rank's part of a full-size ``array`` (a view)."""
        if self.mode == ROWS:
            return array[self.start:self.stop]
        if self.mode == COLUMNS:
            return array[:, self.start:self.stop]
        return array


def link_modes(links, split_layers, item_major=None):
    """Split mode of each weight ``(source, target)``: rows, columns or replicated.

    A weight is split along the axis that indexes the units of its end in
    ``split_layers`` (the layers whose units are split over ranks): rows for
    the source, columns for the target, the other way round for a weight
    ``item_major`` marks as stored one row per target unit (the weight into
    a sampled output layer). A weight with neither end there is replicated.
    Raises ValueError for one with both: it would need splitting both ways.
    """
    item_major = [False] * len(links) if item_major is None else item_major
    modes = []
    for (source, target), by_target in zip(links, item_major):
        if source in split_layers and target in split_layers:
            raise ValueError(
                f"the weight from layer {source} into layer {target} can't be sharded: the "
                "units of both are split over ranks (as with the Input layer straight into the "
                "Output layer), so it would be split by rows and by columns at once; add a "
                "hidden layer or train on one process"
            )
        if source in split_layers:
            modes.append(COLUMNS if by_target else ROWS)
        elif target in split_layers:
            modes.append(ROWS if by_target else COLUMNS)
        else:
            modes.append(REPLICATED)
    return modes


def shard_weights(links, shapes, split_layers, size, rank, item_major=None):
    """A :class:`WeightShard` per weight for ``rank`` of ``size`` (modes from
    :func:`link_modes`)."""
    shards = []
    for mode, shape in zip(link_modes(links, split_layers, item_major), shapes):
        if mode == ROWS:
            shards.append(WeightShard(ROWS, *block_range(shape[0], size, rank)))
        elif mode == COLUMNS:
            shards.append(WeightShard(COLUMNS, *block_range(shape[1], size, rank)))
        else:
            shards.append(WeightShard(REPLICATED, 0, shape[0]))
    return shards


def largest_share(shapes, modes, bytes_per_value, size):
    """Bytes of the given matrices that the most loaded of ``size`` ranks holds.

    ``bytes_per_value`` counts every copy a value has on a rank (the weight and
    its optimizer state, e.g. 12 for float32 Adam).
    """
    total = 0
    for shape, mode in zip(shapes, modes):
        rows, cols = shape
        if mode == ROWS:
            rows = -(-rows // size)  # the largest floor block is at most ceil(n / size)
        elif mode == COLUMNS:
            cols = -(-cols // size)
        total += rows * cols * bytes_per_value
    return total


def fewest_ranks(shapes, modes, bytes_per_value, limit, most=4096):
    """Smallest rank count whose largest share is at most ``limit`` bytes, or None."""
    for size in range(1, most + 1):
        if largest_share(shapes, modes, bytes_per_value, size) <= limit:
            return size
    return None
