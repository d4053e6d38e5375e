"""Run under mpiexec by tests/test_mpi_faults.py: one rank fails in the middle of a job.

Usage: faulty_fit.py FAULT RANK [--step N] [--epochs E]

Every rank fits the same small recommender (90 rows, batches of 16: 6 steps an
epoch), then runs collective inference (``recommend``). FAULT is what rank
RANK does:

* at its training step N (counted from 1; ShardedRunner.train_step is patched
  on that rank only): ``raise`` (a RuntimeError), ``exit`` (``sys.exit(0)``),
  ``os_exit`` (``os._exit(3)``) or ``stall`` (sleeps for an hour);
* ``exit_after_fit``: ``sys.exit(0)`` after the fit, while the other ranks go
  on to the collective inference without it;
* ``none``: nothing.

Every rank prints ``FIT STARTED rank R`` before the fit, ``AFTER FIT rank R``
after it, and ``AFTER RECOMMEND rank R`` after the inference: the tests check
that no rank reaches the line after the failing call.
"""

import argparse
import os
import sys
import time

from fit_recommender import synthetic

from sparse_deep import SparseAutoencoderRecommender
from sparse_deep.distributed import world
from sparse_deep.distributed.runner import ShardedRunner

MESSAGE = "injected fault at training step"
IN_TRAINING = ("raise", "exit", "os_exit", "stall")


def inject(fault, step):
    """Make this rank's ShardedRunner.train_step do ``fault`` at its ``step``-th call."""
    original = ShardedRunner.train_step
    calls = [0]

    def train_step(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == step:
            if fault == "raise":
                raise RuntimeError(f"{MESSAGE} {step}")
            if fault == "exit":
                sys.exit(0)
            if fault == "os_exit":
                os._exit(3)
            if fault == "stall":
                time.sleep(3600)
        return original(self, *args, **kwargs)

    ShardedRunner.train_step = train_step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("fault", choices=[*IN_TRAINING, "exit_after_fit", "none"])
    parser.add_argument("rank", type=int)
    parser.add_argument("--step", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    comm = world()
    faulty = comm.rank == args.rank
    if faulty and args.fault in IN_TRAINING:
        inject(args.fault, args.step)
    X = synthetic()
    print(f"FIT STARTED rank {comm.rank}", flush=True)
    model = SparseAutoencoderRecommender(hidden_layer_sizes=(8,), epochs=args.epochs,
                                         batch_size=16, random_state=0).fit(X)
    print(f"AFTER FIT rank {comm.rank}", flush=True)
    if faulty and args.fault == "exit_after_fit":
        sys.exit(0)
    model.recommend(X[:5], k=3)
    print(f"AFTER RECOMMEND rank {comm.rank}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
