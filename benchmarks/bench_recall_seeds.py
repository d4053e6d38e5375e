"""Recall@20 after the same training, over several seeds: sparse_deep vs PyTorch.

The epoch benchmark (bench_epoch_vs_pytorch.py) compares recall for one seed;
PyTorch's own result moves by a few thousandths from seed to seed, so this
script trains both models (the same networks and settings as that benchmark,
30 epochs, the estimator's default) with seeds 0 to 9 on the real data sets
and reports each framework's mean and range, the difference of the means with
its 95% confidence interval, and Welch's t-test of "the means are equal".
Nothing is timed. Results go to ``benchmarks/results/recall_seeds.json``.

Usage
    python benchmarks/bench_recall_seeds.py [--data-dir DIR] [--seeds 0 1 2 ...]
"""

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import write_json  # noqa: E402

import bench_epoch_vs_pytorch as epoch_bench  # noqa: E402
from sparse_deep import SparseAutoencoderRecommender  # noqa: E402
from sparse_deep.metrics import recall_at_k  # noqa: E402

EPOCHS = 30


def recall(model, train, test):
    users = np.flatnonzero(test.getnnz(axis=1))
    return float(recall_at_k(test[users], model.recommend(train[users], 20)))


def ours(net, train, test, seed):
    model = SparseAutoencoderRecommender(
        hidden_layer_sizes=(net["hidden"],), batch_size=epoch_bench.BATCH,
        learning_rate=epoch_bench.LEARNING_RATE, epochs=EPOCHS, random_state=seed,
        **net["estimator"]).fit(train)
    return recall(model, train, test)


def theirs(net, train, test, seed):
    model = epoch_bench.TorchAutoencoder(train.shape[1], net, seed=seed)
    for _ in range(EPOCHS):
        model.fit_epoch(train)
    return recall(model, train, test)


def compare(ours_values, theirs_values):
    """Difference of the means (ours - theirs), its 95% interval (Welch), and the p-value."""
    a, b = np.asarray(ours_values), np.asarray(theirs_values)
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.975, dof) * np.sqrt(va + vb))
    p_value = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return {"difference": diff, "ci95": [diff - half, diff + half], "p_value": p_value}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--output", default="benchmarks/results/recall_seeds.json")
    args = parser.parse_args(argv)
    cases = [(d, n) for d in ("lastfm", "ml100k") for n in epoch_bench.NETWORKS]
    data = {d: epoch_bench.load(d, args.data_dir) for d in ("lastfm", "ml100k")}
    results = {case: {} for case in cases}
    # sparse_deep first: torch, once imported, would share OpenMP with numba.
    for d, n in cases:
        train, test = data[d]
        results[d, n]["sparse_deep"] = [ours(epoch_bench.NETWORKS[n], train.astype(np.float32),
                                             test, s) for s in args.seeds]
    import torch

    epoch_bench.torch = torch
    for d, n in cases:
        train, test = data[d]
        results[d, n]["pytorch"] = [theirs(epoch_bench.NETWORKS[n], train.astype(np.float32),
                                           test, s) for s in args.seeds]
    rows = []
    print(f"{'dataset':8s} {'network':10s} {'sparse_deep mean [min, max]':>30s} "
          f"{'pytorch mean [min, max]':>30s} {'difference [95% CI]':>28s} {'p':>6s}")
    for (d, n), r in results.items():
        row = {"dataset": d, "network": n, "seeds": args.seeds, "epochs": EPOCHS}
        cells = []
        for framework in ("sparse_deep", "pytorch"):
            values = r[framework]
            row[framework] = values
            row[f"{framework}_mean"] = statistics.mean(values)
            cells.append(f"{statistics.mean(values):.4f} [{min(values):.4f}, {max(values):.4f}]")
        row.update(compare(r["sparse_deep"], r["pytorch"]))
        rows.append(row)
        lo, hi = row["ci95"]
        gap = f"{row['difference']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        print(f"{d:8s} {n:10s} {cells[0]:>30s} {cells[1]:>30s} {gap:>28s} "
              f"{row['p_value']:6.3f}", flush=True)
    out = Path(args.output)
    write_json(out, {"results": rows})


if __name__ == "__main__":
    main()
