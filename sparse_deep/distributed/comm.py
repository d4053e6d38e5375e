"""The collectives model parallelism needs, over mpi4py or one process.

:class:`SerialComm` is the stand-in for a single process: every collective is
the identity, so nothing needs MPI when there is one rank. :class:`MPIComm`
wraps an mpi4py communicator. Both count the seconds spent in collectives
(``seconds``) so benchmarks can report communication apart from compute.

Sums over ranks are computed as an all-gather followed by a sum in rank order
on every rank: the result is then the same bits on every rank and from run to
run, whatever reduction algorithm the MPI library picks.
"""

import builtins
import os
import sys
import time
import traceback
from contextlib import contextmanager

import numpy as np

# Environment variables that launchers set for each rank: MPICH/Hydra and
# Intel MPI (PMI_SIZE), Open MPI, PMIx, and Slurm's srun.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def launched_size():
    """Number of ranks the launcher started, from the environment (1 if none).

    Read before importing mpi4py, so a plain ``python script.py`` never
    initialises MPI.
    """
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 1


class SerialComm:
    """One process: every collective returns its input."""

    rank = 0
    size = 1

    def __init__(self):
        self.seconds = 0.0

    def sum(self, array):
        return array

    def allgather(self, array):
        return np.asarray(array)[None]

    def allgather_objects(self, value):
        return [value]

    def bcast(self, value, root=0):
        return value

    def barrier(self):
        pass

    def abort(self, code=1):
        raise SystemExit(code)


class MPIComm:
    """An mpi4py communicator with deterministic sums and timing."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.seconds = 0.0
        self._gather_buffers = {}

    def _buffer(self, shape, dtype):
        key = (tuple(shape), np.dtype(dtype).str)
        buf = self._gather_buffers.get(key)
        if buf is None:
            buf = self._gather_buffers[key] = np.empty((self.size, *shape), dtype=dtype)
        return buf

    def allgather(self, array):
        """``(size, *array.shape)``: every rank's array, in rank order."""
        array = np.ascontiguousarray(array)
        out = self._buffer(array.shape, array.dtype)
        started = time.perf_counter()
        self.comm.Allgather(array, out)
        self.seconds += time.perf_counter() - started
        return out

    def sum(self, array):
        """The sum over ranks of ``array``, added in rank order (same bits everywhere)."""
        parts = self.allgather(array)
        total = parts[0].copy()
        for r in range(1, self.size):
            total += parts[r]
        return total

    def allgather_objects(self, value):
        started = time.perf_counter()
        out = self.comm.allgather(value)
        self.seconds += time.perf_counter() - started
        return out

    def bcast(self, value, root=0):
        started = time.perf_counter()
        out = self.comm.bcast(value, root=root)
        self.seconds += time.perf_counter() - started
        return out

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code=1):
        self.comm.Abort(code)


_WORLD = None


def world():
    """The communicator of all ranks: MPI's COMM_WORLD when launched with more
    than one rank, else :class:`SerialComm`."""
    global _WORLD
    if _WORLD is None:
        if launched_size() > 1:
            from mpi4py import MPI

            _WORLD = MPIComm(MPI.COMM_WORLD)
            _install_abort_on_uncaught_exception(_WORLD)
        else:
            _WORLD = SerialComm()
    return _WORLD


def _install_abort_on_uncaught_exception(comm):
    """An exception no one catches on one rank ends every rank.

    Without this the other ranks would wait forever in their next collective.
    """
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stderr.flush()
        # An error every rank raised together (see raise_together) ends each
        # rank on its own; aborting would kill the others before they print.
        if not getattr(value, _RAISED_ON_EVERY_RANK, False):
            comm.abort(1)

    sys.excepthook = hook


# Marks an exception that raise_together raised on every rank at once.
_RAISED_ON_EVERY_RANK = "_sparse_deep_raised_on_every_rank"


def _mark_raised_on_every_rank(error):
    try:
        setattr(error, _RAISED_ON_EVERY_RANK, True)
    except AttributeError:  # an exception type with __slots__: it will abort instead
        pass
    return error


class RankFailed(RuntimeError):
    """Raised on the other ranks when one rank failed with an error that is
    not one of Python's built-in exceptions."""


def raise_together(comm, error):
    """A checkpoint every rank reaches: if any rank failed, all raise.

    ``error`` is this rank's exception or None. The rank that failed re-raises
    its own exception. Every other rank raises the same built-in exception type
    (ValueError, MemoryError, ...) with the message prefixed by the failing
    rank, or :class:`RankFailed` for other types. With one rank this just
    re-raises.
    """
    if comm.size == 1:
        if error is not None:
            raise error
        return
    reports = comm.allgather_objects(
        None if error is None else (type(error).__name__, str(error))
    )
    if error is not None:
        raise _mark_raised_on_every_rank(error)
    for rank, report in enumerate(reports):
        if report is not None:
            name, message = report
            kind = getattr(builtins, name, None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind, message = RankFailed, f"{name}: {message}"
            raise _mark_raised_on_every_rank(kind(f"on rank {rank} of {comm.size}: {message}"))


@contextmanager
def ranks_agree(comm):
    """Run a block on every rank; if it fails on any, raise on all.

    For validation and allocation, before the ranks' work is in lockstep: each
    rank reaches the checkpoint at the end of the block whatever happened.
    """
    error = None
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every failure must reach the other ranks
        error = exc
    raise_together(comm, error)


@contextmanager
def abort_on_error(comm, shared=()):
    """Inside collectives, a rank that fails alone ends the job (MPI Abort):
    the other ranks are waiting in a collective it will never join.

    Exceptions of the ``shared`` types are raised by every rank at the same
    point (they depend on reduced values only) and propagate normally.
    """
    try:
        yield
    except Exception as error:
        if comm.size == 1 or isinstance(error, shared):
            raise
        traceback.print_exc()
        sys.stderr.write(f"sparse_deep: rank {comm.rank} of {comm.size} failed during a "
                         "collective step; aborting every rank\n")
        sys.stderr.flush()
        comm.abort(1)
