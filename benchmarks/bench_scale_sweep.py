"""How epoch time and peak memory grow with the number of items, for the full
output layer and the sampled one.

Synthetic data with a power-law item popularity (Zipf exponent 1.1) for 10K,
100K and 1M items, and at 100K items also 4x the users (to show that memory
does not grow with users, while time grows with the number of steps). Each
(size, output) runs in a fresh process, which trains a network of 256 tanh
units (Adam, batch 128) for one warm-up epoch and one timed epoch, with one of
three outputs:

- ``full``: a SoftMax over every item, the multinomial cross-entropy (the
  recommender's ``loss="cross_entropy"``): every step computes and updates the
  whole batch x items block and the whole output weight;
- ``sampled``: the sampled softmax over each row's items and the step's
  negatives (the recommender's default ``loss``), every input row updated;
- ``sampled-lazy``: the same with ``sparse_input_update=True``: a step updates
  the rows of the items it touched, in both layers.

It reports:

- the epoch time (and, for ``full``, the output GEMMs' arithmetic rate);
- the peak resident memory of the process, next to the sum it should be near:
  data + weights + Adam state + gradients + the output's batch buffers (the
  process's memory before fitting, mostly numba and numpy, is also shown).

Results are printed and written to ``benchmarks/results/scale_sweep.json``.

Usage
    python benchmarks/bench_scale_sweep.py [--sizes 10000 100000 1000000]
        [--outputs full sampled sampled-lazy]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import write_json  # noqa: E402

HIDDEN, BATCH = 256, 128

# Recommender parameters of each output (beside the shared network above).
OUTPUTS = {
    "full": dict(loss="cross_entropy", sparse_input_update=False),
    "sampled": dict(loss="sampled_softmax", sparse_input_update=False),
    "sampled-lazy": dict(loss="sampled_softmax", sparse_input_update=True),
}


def power_law_interactions(n_users, n_items, per_user=25, exponent=1.1, seed=0):
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** exponent
    lengths = np.maximum(1, rng.poisson(per_user, n_users))
    items = rng.choice(n_items, size=lengths.sum(), p=weights / weights.sum())
    rows = np.repeat(np.arange(n_users), lengths)
    X = sp.csr_matrix((np.ones(items.size, np.float32), (rows, items)), shape=(n_users, n_items))
    X.data[:] = 1.0
    return X


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def measure(n_users, n_items, output):
    """Run in a child process: fit, time, and account for the memory."""
    from sparse_deep import SparseAutoencoderRecommender
    from sparse_deep.estimators._base import RESTORE_COPY_BYTES
    from sparse_deep.estimators.recommender import AUTO_NEGATIVES

    X = power_law_interactions(n_users, n_items)
    before = peak_rss_bytes()
    est = SparseAutoencoderRecommender(hidden_layer_sizes=(HIDDEN,), activation="tanh",
                                       batch_size=BATCH, epochs=1, warm_start=True,
                                       random_state=0, **OUTPUTS[output])
    est.fit(X)  # warm-up (compiles kernels)
    start = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - start
    steps = -(-n_users // BATCH)
    f32 = 4
    data = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    weights = 2 * n_items * HIDDEN * f32
    accounted = {
        "data (CSR, plus normalised copy)": 2 * data,
        "weights": weights,
        "adam state": 2 * weights,
    }
    row = {"n_users": n_users, "n_items": n_items, "output": output, "nnz": int(X.nnz),
           "epoch_s": seconds}
    if output == "full":
        flops = steps * 3 * 2 * BATCH * HIDDEN * n_items  # output layer: fwd + 2 backward GEMMs
        row["output_gemm_gflops"] = flops / seconds / 1e9
        accounted["output weight gradient"] = n_items * HIDDEN * f32
        accounted["batch x items blocks (activation, delta)"] = 2 * BATCH * n_items * f32
    else:
        touched = BATCH * int(np.diff(X.indptr).max()) + AUTO_NEGATIVES
        accounted["touched output rows (gradient), negatives' blocks"] = (
            touched * HIDDEN * f32 + 2 * BATCH * AUTO_NEGATIVES * f32)
    if not OUTPUTS[output]["sparse_input_update"]:
        accounted["dense input update (a slot per row)"] = n_items * 8
    if 3 * weights <= RESTORE_COPY_BYTES:  # a warm_start fit copies what it trains in place
        accounted["weights and Adam state copied, to restore on failure"] = 3 * weights
    row.update({"peak_rss_bytes": peak_rss_bytes(), "rss_before_fit_bytes": before,
                "accounted_bytes": accounted,
                "accounted_total_bytes": sum(accounted.values())})
    return row


def run_child(n_users, n_items, output):
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n_users), str(n_items), output],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def gib(n):
    return f"{n / 2**30:6.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--outputs", nargs="+", choices=sorted(OUTPUTS), default=list(OUTPUTS))
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--output", default="benchmarks/results/scale_sweep.json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(int(args.child[0]), int(args.child[1]), args.child[2])))
        return
    cases = [(args.users, n) for n in args.sizes]
    if 100_000 in args.sizes:
        cases.append((4 * args.users, 100_000))
    print(f"{'users':>7s} {'items':>9s} {'output':>13s} {'nnz':>9s} {'epoch s':>8s} "
          f"{'vs full':>8s} {'peak GiB':>9s} {'before':>7s} {'accounted':>9s}")
    rows = []
    for n_users, n_items in cases:
        full = None
        for output in args.outputs:
            r = run_child(n_users, n_items, output)
            full = r["epoch_s"] if output == "full" else full
            r["speedup_vs_full"] = None if full is None else full / r["epoch_s"]
            rows.append(r)
            ratio = "" if full is None else f"{r['speedup_vs_full']:7.1f}x"
            print(f"{n_users:7d} {n_items:9d} {output:>13s} {r['nnz']:9d} {r['epoch_s']:8.2f} "
                  f"{ratio:>8s} {gib(r['peak_rss_bytes']):>9s} "
                  f"{gib(r['rss_before_fit_bytes']):>7s} {gib(r['accounted_total_bytes']):>9s}",
                  flush=True)
    out = Path(args.output)
    write_json(out, {"cpus": os.cpu_count(), "hidden": HIDDEN, "batch_size": BATCH,
                     "outputs": OUTPUTS, "results": rows})


if __name__ == "__main__":
    main()
