"""Where a model lives: on this process alone, or sharded over MPI ranks.

:class:`Placement` is what the estimators ask, so that their training loop is
the same for one process and for many: it makes the (possibly sharded) model,
cuts each rank's columns out of the data, builds the right runner, agrees on
the seed, and checks the per-rank memory limit before anything is allocated.
"""

import numbers
import re

import numpy as np

from .._validation import physical_memory
from ..engine.layers import split_layers
from ..engine.model import Model, build_plan, is_item_major, link_shape
from ..core.optimizers import get_optimizer
from ..engine.runner import Runner
from .comm import SerialComm, world
from .partition import REPLICATED, fewest_ranks, largest_share, link_modes, shard_weights
from .runner import ShardedRunner

_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20,
          "MIB": 2**20, "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40,
          "TIB": 2**40}


def parse_bytes(value, name="weight_memory_limit"):
    """Bytes from an int/float or a string such as ``"512MB"`` or ``"2 GiB"``
    (binary units: 1 MB = 2**20 bytes). None stays None."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if np.isfinite(value) and value > 0:
            return int(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
        if match and match.group(2).upper() in _UNITS and float(match.group(1)) > 0:
            return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    raise ValueError(
        f"{name} must be a positive number of bytes or a string such as '512MB' or '2GiB'; "
        f"got {value!r}"
    )


def communicator(distributed):
    """The communicator an estimator's ``distributed`` parameter asks for."""
    if distributed in ("auto", True):
        return world()
    if distributed in ("off", False, None):
        return SerialComm()
    raise ValueError(f"distributed must be 'auto' or 'off'; got {distributed!r}")


class _Layout:
    """Links and full weight shapes of a network, without allocating it."""

    def __init__(self, spec):
        layers, self.links = build_plan(spec)
        self.full_shapes = [link_shape(layers, s, t) for s, t in self.links]
        self.item_major = [is_item_major(layers, s, t) for s, t in self.links]
        self.split_layers = split_layers(layers)

    def modes(self):
        """How each weight splits over ranks (see :func:`link_modes`)."""
        return link_modes(self.links, self.split_layers, self.item_major)


def _gib(n):
    return f"{n / 2**30:.3g} GiB"


class Placement:
    """How one fit places its model on ``comm``'s ranks (one rank: unsharded)."""

    def __init__(self, comm):
        self.comm = comm

    @property
    def sharded(self):
        return self.comm.size > 1

    def agree_on_seed(self, seed):
        """Rank 0's seed, so a ``random_state=None`` fit is one model, not R."""
        return int(self.comm.bcast(int(seed)))

    def new_model(self, spec, dtype=np.float32):
        """An uninitialised model holding this rank's shard (all of it on one rank)."""
        if not self.sharded:
            return Model(spec, dtype)
        plan = _Layout(spec)
        shards = shard_weights(plan.links, plan.full_shapes, plan.split_layers, self.comm.size,
                               self.comm.rank, plan.item_major)
        return Model(spec, dtype, shards)

    def check_memory(self, spec, optimizer, limit, dtype=np.float32):
        """Refuse, before allocating, a model whose per-rank share exceeds ``limit``.

        The share counts each weight, its gradient and its optimizer state (the
        dominant terms); biases and batch buffers are small beside them.
        Without a ``limit`` the machine's physical memory is the limit: a model
        that cannot fit is refused here, not by the allocator part-way.
        """
        named_limit = limit is not None
        if limit is None:
            limit = physical_memory()
        plan = _Layout(spec)
        modes = plan.modes() if self.sharded else [REPLICATED] * len(plan.links)
        per_value = np.dtype(dtype).itemsize * (2 + get_optimizer(optimizer).n_states)
        need = largest_share(plan.full_shapes, modes, per_value, self.comm.size)
        if need <= limit:
            return
        ranks = fewest_ranks(plan.full_shapes, plan.modes(), per_value, limit)
        advice = (f"run it under `mpiexec -n {ranks}` (or more) to shard it"
                  if ranks else "even sharded, its replicated hidden layers exceed the limit")
        bound = (f"weight_memory_limit={_gib(limit)}" if named_limit
                 else f"this machine's memory ({_gib(limit)})")
        raise MemoryError(
            f"the model needs {_gib(need)} per rank for weights, gradients and {optimizer} state "
            f"on {self.comm.size} rank(s), above {bound}; {advice}"
        )

    def local_columns(self, matrix, start, stop):
        """This rank's columns of a CSR matrix, re-based to start at 0."""
        if not self.sharded:
            return matrix
        return matrix[:, start:stop].tocsr()

    def runner(self, model, backend, batch_size, max_input_nnz, max_target_nnz=0, seed=0,
               inference=False, sparse_input_update=False, optimizer=None):
        """A :class:`Runner`, or a :class:`ShardedRunner` for a sharded model."""
        options = dict(seed=seed, inference=inference, sparse_input_update=sparse_input_update,
                       optimizer=optimizer)
        if model.shards is None:
            return Runner(model, backend, batch_size, max_input_nnz, max_target_nnz, **options)
        return ShardedRunner(model, backend, self.comm, batch_size, max_input_nnz,
                             max_target_nnz, **options)
