"""The collectives model parallelism needs, over mpi4py or one process.

:class:`SerialComm` is the stand-in for a single process: every collective is
the identity, so nothing needs MPI when there is one rank. :class:`MPIComm`
wraps an mpi4py communicator. Both count the seconds spent in collectives
(``seconds``) so benchmarks can report communication apart from compute.

Sums over ranks are computed as an all-gather followed by a sum in rank order
on every rank: the result is then the same bits on every rank and from run to
run, whatever reduction algorithm the MPI library picks.

No rank is left running when another fails, exits or stalls (see "When a rank
fails, exits or stalls" in docs/distributed.md):

* every collective of :class:`MPIComm` is non-blocking underneath and waits at
  most ``timeout`` seconds (:data:`DEFAULT_TIMEOUT`, the environment variable
  ``SPARSE_DEEP_MPI_TIMEOUT``, or :func:`set_timeout`) for the other ranks;
* a rank that fails alone (:func:`abort_on_error`, or an exception no one
  catches) writes its error and rank to stderr, then ends every rank: MPI
  Abort, and its own process in case Abort returns;
* a rank whose Python process exits tells the others; one that waits for it in
  a collective it never joined ends the job at once.
"""

import atexit
import builtins
import math
import os
import pickle
import stat
import struct
import sys
import time
import traceback
from contextlib import contextmanager

import numpy as np

# Environment variables that launchers set for each rank: MPICH/Hydra and
# Intel MPI (PMI_SIZE), Open MPI, PMIx, and Slurm's srun.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")

#: Seconds a collective waits for the other ranks before it ends the job.
DEFAULT_TIMEOUT = 300.0
#: The environment variable that overrides :data:`DEFAULT_TIMEOUT` (seconds).
TIMEOUT_VARIABLE = "SPARSE_DEEP_MPI_TIMEOUT"

# Waiting for a collective: test it in a tight loop for _SPIN_SECONDS (the
# usual case: the others are there), then sleep between tests, doubling the
# pause from _FIRST_PAUSE up to _MAX_PAUSE.
_SPIN_SECONDS = 2e-4
_FIRST_PAUSE = 1e-5
_MAX_PAUSE = 1e-3
# The tag of the message a rank sends the others when its process exits (on a
# communicator of sparse_deep's own).
_EXIT_TAG = 1
# How long a failing rank waits, at most, for the launcher to read what it
# wrote before it aborts (Hydra drops what is still in the pipe).
_DRAIN_SECONDS = 2.0

# Set by set_timeout: overrides the environment and the default.
_timeout_override = None


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


def check_timeout(value, name="timeout"):
    """``value`` as seconds (a float), or a ValueError naming ``name``."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a positive, finite number of seconds; got {value!r}")
    return seconds


def default_timeout():
    """The timeout a new :class:`MPIComm` gets: :func:`set_timeout`'s, else
    ``SPARSE_DEEP_MPI_TIMEOUT``'s, else :data:`DEFAULT_TIMEOUT`."""
    if _timeout_override is not None:
        return _timeout_override
    value = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not value:
        return DEFAULT_TIMEOUT
    return check_timeout(value, f"the environment variable {TIMEOUT_VARIABLE}")


def set_timeout(seconds):
    """Seconds any collective waits for the other ranks before ending the job.

    Applies to the communicator of all ranks (:func:`world`) now and to one
    created later; call it on every rank. ``None`` goes back to
    ``SPARSE_DEEP_MPI_TIMEOUT``, or :data:`DEFAULT_TIMEOUT` if that is unset.
    """
    global _timeout_override
    _timeout_override = None if seconds is None else check_timeout(seconds)
    if _WORLD is not None:
        _WORLD.timeout = default_timeout()


class SerialComm:
    """One process: every collective returns its input."""

    rank = 0
    size = 1
    timeout = None  # nothing to wait for

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
    """An mpi4py communicator with deterministic sums, timing and a timeout.

    Creating one is collective over ``comm`` (it duplicates it for the exit
    messages). ``timeout`` (seconds; default :func:`default_timeout`) bounds
    how long each collective waits for the other ranks: past it, this rank
    writes why to stderr and aborts every rank. ``collectives`` counts the
    collectives this rank has entered.
    """

    def __init__(self, comm, timeout=None):
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = default_timeout() if timeout is None else timeout
        self.seconds = 0.0
        self.collectives = 0
        self._gather_buffers = {}
        self._aborting = False
        self._deadline = math.inf
        # rank -> the number of collectives it had entered when its process exited
        self.exited = {}
        self._listening = {}
        self._start()
        self._control, request = comm.Idup()
        self._wait(request)
        # One receive posted per other rank, for the message it sends on exit.
        self._exit_counts = np.zeros(self.size, dtype=np.int64)
        self._listening = {
            r: self._control.Irecv(self._exit_counts[r:r + 1], source=r, tag=_EXIT_TAG)
            for r in range(self.size) if r != self.rank
        }

    @property
    def timeout(self):
        """Seconds a collective waits for the other ranks before ending the job."""
        return self._timeout

    @timeout.setter
    def timeout(self, seconds):
        self._timeout = check_timeout(seconds)

    def _buffer(self, shape, dtype):
        key = (tuple(shape), np.dtype(dtype).str)
        buf = self._gather_buffers.get(key)
        if buf is None:
            buf = self._gather_buffers[key] = np.empty((self.size, *shape), dtype=dtype)
        return buf

    # -- waiting, with a deadline ------------------------------------------------
    def _start(self):
        """Enter a collective: count it and set its deadline."""
        self.collectives += 1
        started = time.perf_counter()
        self._deadline = started + self.timeout
        return started

    def _wait(self, request):
        """Wait for ``request`` until the collective's deadline, then end the job."""
        try:
            if request.Test():
                return
            spin_until = time.perf_counter() + _SPIN_SECONDS
            pause = _FIRST_PAUSE
            while not request.Test():
                now = time.perf_counter()
                if now < spin_until:
                    continue
                if now >= self._deadline:
                    self.fail(f"a collective waited {self.timeout:g} s for the other ranks "
                              "(a rank failed, exited or stalled); aborting every rank")
                self._check_exits()
                time.sleep(pause)
                pause = min(2 * pause, _MAX_PAUSE)
        except self._mpi.Exception as error:
            self.fail(f"a collective failed in MPI ({error}); aborting every rank")

    def _receive_exits(self):
        """Note the ranks whose exit message has come."""
        for r, request in list(self._listening.items()):
            if request.Test():
                self.exited[r] = int(self._exit_counts[r])
                del self._listening[r]

    def _check_exits(self):
        """End the job if a rank exited before joining the collective this rank waits in."""
        self._receive_exits()
        for r, entered in sorted(self.exited.items()):
            if entered < self.collectives:
                self.fail(f"rank {r} exited (its Python process ended after {entered} "
                          f"collectives) while this rank waits for it in collective "
                          f"{self.collectives}; aborting every rank")

    # -- collectives ---------------------------------------------------------------
    def allgather(self, array):
        """``(size, *array.shape)``: every rank's array, in rank order."""
        array = np.ascontiguousarray(array)
        out = self._buffer(array.shape, array.dtype)
        started = self._start()
        self._wait(self.comm.Iallgather(array, out))
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
        """Every rank's ``value`` (any picklable object), in rank order."""
        started = self._start()
        data = np.frombuffer(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
        sizes = np.empty(self.size, dtype=np.int64)
        self._wait(self.comm.Iallgather(np.array([data.size], dtype=np.int64), sizes))
        offsets = np.zeros(self.size, dtype=np.int64)
        np.cumsum(sizes[:-1], out=offsets[1:])
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        self._wait(self.comm.Iallgatherv(data, [out, sizes, offsets, self._mpi.BYTE]))
        values = [pickle.loads(out[o:o + n]) for o, n in zip(offsets, sizes)]
        self.seconds += time.perf_counter() - started
        return values

    def bcast(self, value, root=0):
        """``root``'s ``value`` (any picklable object), on every rank."""
        started = self._start()
        if self.rank == root:
            data = np.frombuffer(bytearray(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)),
                                 np.uint8)
            size = np.array([data.size], dtype=np.int64)
        else:
            size = np.zeros(1, dtype=np.int64)
        self._wait(self.comm.Ibcast(size, root=root))
        if self.rank != root:
            data = np.empty(int(size[0]), dtype=np.uint8)
        self._wait(self.comm.Ibcast(data, root=root))
        out = pickle.loads(data)
        self.seconds += time.perf_counter() - started
        return out

    def barrier(self):
        self._start()
        self._wait(self.comm.Ibarrier())

    # -- ending ---------------------------------------------------------------------
    def fail(self, message, code=1):
        """Write ``sparse_deep: rank R of N: message`` to stderr, then end every rank."""
        write_stderr(f"sparse_deep: rank {self.rank} of {self.size}: {message}\n")
        self.abort(code)

    def abort(self, code=1):
        """End every rank now: MPI Abort, then this process (never returns).

        What this rank wrote is flushed and left to the launcher to read first.
        """
        self._aborting = True
        _flush_python_streams()
        _let_launcher_read_output()
        try:
            self.comm.Abort(code)
        finally:  # MPICH's Abort can return before the launcher ends the job
            os._exit(code)

    def announce_exit(self):
        """This rank's process is ending: tell the others, and wait (at most
        ``timeout``) until every rank has said so too.

        A rank that waits for this one in a collective it never joined then
        ends the job (see :meth:`_check_exits`); one that never ends in time
        makes this rank end it.
        """
        MPI = self._mpi
        note = np.array([self.collectives], dtype=np.int64)
        sends = [self._control.Isend(note, dest=r, tag=_EXIT_TAG)
                 for r in range(self.size) if r != self.rank]
        deadline = time.perf_counter() + self.timeout
        pause = _FIRST_PAUSE
        try:
            while True:
                self._receive_exits()
                if not self._listening and MPI.Request.Testall(sends):
                    return
                if time.perf_counter() >= deadline:
                    waiting = ", ".join(str(r) for r in sorted(self._listening)) or "none"
                    self.fail(f"this rank's script ended, but rank(s) {waiting} did not end "
                              f"within {self.timeout:g} s (failed, stalled, or still working "
                              "alone); aborting every rank")
                time.sleep(pause)
                pause = min(2 * pause, _MAX_PAUSE)
        except MPI.Exception as error:
            self.fail(f"telling the other ranks that this one ends failed in MPI ({error}); "
                      "aborting every rank")


def write_stderr(text):
    """Write ``text`` to this process's stderr at once, in one piece, past
    Python's buffers (after flushing them, so it comes after what was printed)."""
    _flush_python_streams()
    data = text.encode("utf-8", "backslashreplace")
    while data:
        try:
            data = data[os.write(2, data):]
        except InterruptedError:
            continue
        except OSError:
            return


def _flush_python_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or odd stream must not stop the abort
            pass


def _unread_bytes(fd):
    """Bytes written to ``fd`` that its reader has not read yet, if it is a pipe or
    socket (0 otherwise, or if that can't be told)."""
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return 0
        import fcntl
        import termios

        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except Exception:  # noqa: BLE001 - not Linux, or not a pipe: don't wait
        return 0


def _let_launcher_read_output(limit=_DRAIN_SECONDS):
    """Wait, at most ``limit`` s, until the launcher has read this rank's stdout
    and stderr pipes: when the job aborts, mpiexec drops what is left in them."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and (_unread_bytes(1) or _unread_bytes(2)):
        time.sleep(0.002)


_WORLD = None


def world():
    """The communicator of all ranks: MPI's COMM_WORLD when launched with more
    than one rank, else :class:`SerialComm`."""
    global _WORLD
    if _WORLD is None:
        if launched_size() > 1:
            timeout = default_timeout()  # a bad SPARSE_DEEP_MPI_TIMEOUT: refused before MPI starts
            from mpi4py import MPI

            _WORLD = MPIComm(MPI.COMM_WORLD, timeout)
            _install_abort_on_uncaught_exception(_WORLD)
            atexit.register(_announce_exit, _WORLD)
        else:
            _WORLD = SerialComm()
    return _WORLD


def _announce_exit(comm):
    """At exit (before mpi4py finalizes MPI): tell the other ranks this one ended."""
    if comm._aborting or comm._mpi.Is_finalized():
        return
    comm.announce_exit()


def _failure_report(comm, error, where, tb=None):
    """The traceback of ``error`` and one line naming the rank and the error."""
    tb = error.__traceback__ if tb is None else tb
    trace = "".join(traceback.format_exception(type(error), error, tb))
    if isinstance(error, SystemExit):
        what = f"called sys.exit({error.code!r})"
    else:
        what = f"failed with {type(error).__name__}: {error}"
    rank, size = getattr(comm, "rank", "?"), getattr(comm, "size", "?")
    return f"{trace}sparse_deep: rank {rank} of {size} {what} {where}; aborting every rank\n"


def _install_abort_on_uncaught_exception(comm):
    """An exception no one catches on one rank ends every rank.

    Without this the other ranks would wait in their next collective until it
    times out.
    """
    previous = sys.excepthook

    def hook(kind, value, tb):
        # An error every rank raised together (see raise_together) ends each
        # rank on its own; aborting would kill the others before they print.
        if getattr(value, _RAISED_ON_EVERY_RANK, False):
            previous(kind, value, tb)
            return
        write_stderr(_failure_report(comm, value, "(an exception no one caught)", tb))
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
    """Inside collectives, a rank that fails alone ends the job: the other
    ranks are waiting in a collective it will never join.

    Any exception, ``sys.exit`` and ``KeyboardInterrupt`` included, is written
    to stderr with this rank's number, then every rank is aborted: no code
    after the block runs on any rank. Exceptions of the ``shared`` types are
    raised by every rank at the same point (they depend on reduced values only)
    and propagate normally.
    """
    try:
        yield
    except GeneratorExit:
        raise
    except BaseException as error:
        if comm.size == 1 or isinstance(error, shared):
            raise
        write_stderr(_failure_report(comm, error, "during a collective step"))
        comm.abort(1)
        raise  # only reached if abort returned (a stand-in communicator)
