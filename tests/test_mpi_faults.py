"""No rank left running: one rank of an MPI job fails, exits or stalls (issue 16).

Each case launches tests/mpi/faulty_fit.py under mpiexec: every rank fits the
same small recommender, and rank 1 raises, calls ``sys.exit(0)``, calls
``os._exit(3)`` or sleeps at its 4th training step (of 18). Every case must
end the whole job, with a non-zero exit status, the failing rank's message
(where its process can still write one), and no rank running the line after
``fit``. See "When a rank fails, exits or stalls" in docs/distributed.md.
"""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparse_deep.distributed import comm as comm_module

SCRIPT = Path(__file__).parent / "mpi" / "faulty_fit.py"
# SPARSE_DEEP_MPI_TIMEOUT of the jobs whose end depends on it (a rank stalls).
SHORT = 3
# SPARSE_DEEP_MPI_TIMEOUT of the jobs that must end without waiting for it:
# longer than any of them may take.
LONG = 200
# Starting the ranks and the fit until the fault can take longer than a clean
# run on a loaded machine; a job that ends later than this beyond a clean run
# (and the timeout, if it applies) fails.
MARGIN = 30
# The safety net: no job may keep this test waiting longer.
SAFETY = 180


def mpiexec():
    """The mpiexec of the MPI installed with the package (mpich from PyPI)."""
    here = Path(sys.executable).parent / "mpiexec"
    assert here.exists(), f"no mpiexec next to {sys.executable}; install the package (mpich)"
    return str(here)


class Job:
    def __init__(self, returncode, stdout, stderr, seconds):
        self.returncode, self.stdout, self.stderr, self.seconds = (returncode, stdout, stderr,
                                                                   seconds)
        self.output = stdout + stderr


def launch(ranks, fault, timeout, rank=1):
    """Run faulty_fit.py on ``ranks`` ranks with SPARSE_DEEP_MPI_TIMEOUT=``timeout``.

    The job runs in a session of its own, so that the safety net can end all
    of it (mpiexec, its proxy and the ranks) if it hangs.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               SPARSE_DEEP_MPI_TIMEOUT=str(timeout))
    started = time.monotonic()
    process = subprocess.Popen(
        [mpiexec(), "-n", str(ranks), sys.executable, str(SCRIPT), fault, str(rank)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=SAFETY)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"the job ({fault} on rank {rank} of {ranks}) still ran after {SAFETY} s:\n"
                    f"{stdout[-2000:]}\n{stderr[-3000:]}")
    return Job(process.returncode, stdout, stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def clean_seconds():
    """A clean job on 2 ranks (which also compiles the kernels for the others):
    every rank runs to the end, and the job exits 0. Returns its duration."""
    job = launch(2, "none", LONG)
    assert job.returncode == 0, job.stderr[-3000:]
    for r in range(2):
        assert f"AFTER RECOMMEND rank {r}" in job.stdout
    assert "sparse_deep: rank" not in job.stderr
    return job.seconds


def assert_ended_every_rank(job, ranks, marker="AFTER FIT"):
    """The job failed, every rank had started fitting, and none ran past ``marker``."""
    assert job.returncode != 0, job.output[-3000:]
    for r in range(ranks):
        assert f"FIT STARTED rank {r}" in job.stdout, job.output[-3000:]
    assert marker not in job.output, job.output[-3000:]


@pytest.mark.parametrize("ranks", [2, 3])
def test_a_rank_that_raises_mid_fit_ends_every_rank_with_its_message(clean_seconds, ranks):
    job = launch(ranks, "raise", LONG)
    assert_ended_every_rank(job, ranks)
    assert job.seconds < clean_seconds + MARGIN  # at once, not after the timeout
    assert (f"sparse_deep: rank 1 of {ranks} failed with RuntimeError: injected fault at "
            "training step 4 during a collective step; aborting every rank") in job.stderr
    assert "Traceback" in job.stderr


@pytest.mark.parametrize("ranks", [2, 3])
def test_a_rank_that_calls_sys_exit_mid_fit_ends_every_rank(clean_seconds, ranks):
    job = launch(ranks, "exit", LONG)
    assert_ended_every_rank(job, ranks)
    assert job.seconds < clean_seconds + MARGIN
    assert f"sparse_deep: rank 1 of {ranks} called sys.exit(0) during a collective step" \
        in job.stderr


@pytest.mark.parametrize("ranks", [2, 3])
def test_a_rank_that_calls_os_exit_mid_fit_ends_every_rank(clean_seconds, ranks):
    """os._exit runs no Python code: mpiexec ends the job when the rank's process
    ends, and reports that rank's status (3) or that of a rank it killed (9,
    SIGKILL), whichever it sees first. Nothing can print a message."""
    job = launch(ranks, "os_exit", LONG)
    assert_ended_every_rank(job, ranks)
    assert job.returncode in (3, 9), job.output[-3000:]
    assert job.seconds < clean_seconds + MARGIN


@pytest.mark.parametrize("ranks", [2, 3])
def test_a_rank_that_stalls_mid_fit_ends_the_job_after_the_timeout(clean_seconds, ranks):
    job = launch(ranks, "stall", SHORT)
    assert_ended_every_rank(job, ranks)
    assert job.seconds < clean_seconds + SHORT + MARGIN
    waiting = "|".join(str(r) for r in range(ranks) if r != 1)
    message = (f"of {ranks}: a collective waited {SHORT} s for the other ranks (a rank failed, "
               "exited or stalled); aborting every rank")
    assert any(f"sparse_deep: rank {r} {message}" in job.stderr for r in waiting.split("|")), \
        job.stderr[-3000:]


def test_a_rank_that_exits_between_collectives_ends_the_others_at_once(clean_seconds):
    """Rank 1 of 3 leaves after fit (sys.exit(0)); the others, in the collective
    inference that follows, learn it exited and end the job without waiting
    for the timeout."""
    job = launch(3, "exit_after_fit", LONG)
    assert_ended_every_rank(job, 3, marker="AFTER RECOMMEND")
    assert job.seconds < clean_seconds + MARGIN
    assert "rank 1 exited (its Python process ended after" in job.stderr, job.stderr[-3000:]


# -- the timeout's setting, without MPI ----------------------------------------------------


@pytest.mark.parametrize("value", ["2.5", 7, 0.01, " 30 "])
def test_check_timeout_accepts_positive_finite_seconds(value):
    assert comm_module.check_timeout(value) == float(value)


@pytest.mark.parametrize("value", [0, -1, "inf", "nan", "soon", "", None, True, math.inf])
def test_check_timeout_refuses_anything_else(value):
    with pytest.raises(ValueError, match="positive, finite number of seconds"):
        comm_module.check_timeout(value)


def test_timeout_comes_from_set_timeout_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.setattr(comm_module, "_timeout_override", None)
    monkeypatch.setattr(comm_module, "_WORLD", None)
    monkeypatch.delenv("SPARSE_DEEP_MPI_TIMEOUT", raising=False)
    assert comm_module.default_timeout() == comm_module.DEFAULT_TIMEOUT == 300
    monkeypatch.setenv("SPARSE_DEEP_MPI_TIMEOUT", "12")
    assert comm_module.default_timeout() == 12
    comm_module.set_timeout(4)
    assert comm_module.default_timeout() == 4
    comm_module.set_timeout(None)
    assert comm_module.default_timeout() == 12


def test_a_bad_timeout_in_the_environment_is_refused_before_mpi_starts(monkeypatch):
    monkeypatch.setattr(comm_module, "_timeout_override", None)
    monkeypatch.setattr(comm_module, "_WORLD", None)
    monkeypatch.setenv("PMI_SIZE", "2")  # as if launched on 2 ranks
    monkeypatch.setenv("SPARSE_DEEP_MPI_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="environment variable SPARSE_DEEP_MPI_TIMEOUT must be "
                                         "a positive, finite number of seconds; got 'soon'"):
        comm_module.world()
    assert comm_module._WORLD is None


def test_abort_on_error_writes_the_rank_and_error_then_aborts(capfd):
    class StandIn:
        rank, size = 1, 2

        def __init__(self):
            self.aborted = []

        def abort(self, code=1):
            self.aborted.append(code)  # a real MPIComm never returns from abort

    comm = StandIn()
    with pytest.raises(RuntimeError):
        with comm_module.abort_on_error(comm):
            raise RuntimeError("boom")
    with pytest.raises(SystemExit):
        with comm_module.abort_on_error(comm):
            sys.exit(0)
    with pytest.raises(FloatingPointError):  # raised by every rank together: no abort
        with comm_module.abort_on_error(comm, shared=(FloatingPointError,)):
            raise FloatingPointError("diverged")
    assert comm.aborted == [1, 1]
    err = capfd.readouterr().err
    assert ("sparse_deep: rank 1 of 2 failed with RuntimeError: boom during a collective step; "
            "aborting every rank") in err
    assert "sparse_deep: rank 1 of 2 called sys.exit(0) during a collective step" in err
