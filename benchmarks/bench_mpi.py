"""Model parallelism on this machine: one process against R MPI ranks (CPU).

Trains the default network (256 tanh units, SoftMax output, Adam, batch 128)
on synthetic power-law data (2,000 users, 100,000 items by default) for one
warm-up epoch and one timed epoch, once per rank count, each under
``mpiexec -n R`` in fresh processes. With C cores, R ranks get C // R numba
threads each, so every run uses the whole machine. Reported per rank count:

- seconds per epoch, and the ratio against one process;
- seconds per step spent in collectives (all-gathers and sums), apart from compute;
- bytes of weights each rank holds, and its peak resident memory.

Results are printed and written to ``benchmarks/results/mpi.json``.

Usage
    python benchmarks/bench_mpi.py [--ranks 1 2] [--items 100000] [--users 2000]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write_json  # noqa: E402

HIDDEN, BATCH = 256, 128


def worker(n_users, n_items, out):
    """One rank: fit a warm-up epoch, then time one epoch; rank 0 writes the JSON."""
    from bench_scale_sweep import power_law_interactions

    from sparse_deep import SparseAutoencoderRecommender
    from sparse_deep.distributed import world

    comm = world()
    X = power_law_interactions(n_users, n_items)
    model = SparseAutoencoderRecommender(hidden_layer_sizes=(HIDDEN,), batch_size=BATCH,
                                         epochs=1, warm_start=True, random_state=0).fit(X)
    comm_before, started = comm.seconds, time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - started
    steps = -(-n_users // BATCH)
    report = {
        "rank": comm.rank,
        "epoch_s": seconds,
        "comm_s_per_step": (comm.seconds - comm_before) / steps,
        "weight_bytes": int(sum(w.nbytes for w in model.model_.weights)),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "loss": model.loss_curve_[-1],
    }
    reports = comm.allgather_objects(report)
    if comm.rank == 0:
        Path(out).write_text(json.dumps(reports))


def launch(ranks, n_users, n_items):
    threads = max(1, (os.cpu_count() or 1) // ranks)
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    mpiexec = Path(sys.executable).parent / "mpiexec"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ranks.json"
        subprocess.run([str(mpiexec), "-n", str(ranks), sys.executable, __file__, "--worker",
                        str(n_users), str(n_items), str(out)], check=True, env=env)
        return json.loads(out.read_text()), threads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/mpi.json"))
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(int(args.worker[0]), int(args.worker[1]), args.worker[2])
        return
    rows = []
    print(f"{'ranks':>5s} {'threads/rank':>12s} {'epoch s':>8s} {'vs 1':>6s} "
          f"{'comm ms/step':>12s} {'weights MiB/rank':>16s} {'peak RSS MiB/rank':>17s}")
    for ranks in args.ranks:
        reports, threads = launch(ranks, args.users, args.items)
        epoch = max(r["epoch_s"] for r in reports)
        row = {"ranks": ranks, "threads_per_rank": threads, "epoch_s": epoch,
               "comm_ms_per_step": 1e3 * max(r["comm_s_per_step"] for r in reports),
               "weight_mib_per_rank": max(r["weight_bytes"] for r in reports) / 2**20,
               "peak_rss_mib_per_rank": max(r["peak_rss_bytes"] for r in reports) / 2**20,
               "final_loss": reports[0]["loss"], "per_rank": reports}
        row["speedup_vs_1"] = rows[0]["epoch_s"] / epoch if rows else 1.0
        rows.append(row)
        print(f"{ranks:5d} {threads:12d} {epoch:8.2f} {row['speedup_vs_1']:6.2f} "
              f"{row['comm_ms_per_step']:12.2f} {row['weight_mib_per_rank']:16.1f} "
              f"{row['peak_rss_mib_per_rank']:17.1f}", flush=True)
    out = Path(args.output)
    result = {"users": args.users, "items": args.items, "hidden": HIDDEN, "batch": BATCH,
              "cpu_count": os.cpu_count(), "results": rows}
    write_json(out, result)


if __name__ == "__main__":
    main()
