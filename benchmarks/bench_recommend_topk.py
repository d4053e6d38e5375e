"""Top-k selection for all users: sparse_deep's kernel against numpy.argpartition.

Both select the 20 best unseen items per user from the *same* score matrix
(the trained recommender's scores for every user), with each user's training
items excluded; numpy's version masks them with -inf, argpartitions, then
sorts the k survivors (what a user would write). The time of the scores
themselves is excluded from both. Results must agree (ties aside) and are
checked. The median of several repeats is printed with the ratio
numpy / sparse_deep (> 1: we are faster) and written to
``benchmarks/results/recommend_topk.json``.

Data: Last.fm and ML-100K scores from a fitted default model, and a synthetic
2,000 x 100,000 score matrix (random scores, ~25 excluded items per row).

Usage
    python benchmarks/bench_recommend_topk.py [--data-dir DIR] [--repeats 5]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import write_json  # noqa: E402

from sparse_deep import SparseAutoencoderRecommender  # noqa: E402
from sparse_deep.backends import get_backend  # noqa: E402
from sparse_deep.datasets import load_lastfm, load_movielens_100k  # noqa: E402

K = 20


def numpy_topk(scores, seen, k):
    """What a numpy user writes: mask seen items, argpartition, sort the k best."""
    masked = scores.copy()
    masked[seen.nonzero()] = -np.inf
    part = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(masked, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def sparse_deep_topk(scores, seen, k):
    ids = np.empty((scores.shape[0], k), dtype=np.int64)
    values = np.empty((scores.shape[0], k), dtype=scores.dtype)
    get_backend("cpu").topk(scores, k, seen.indptr.astype(np.int64),
                            seen.indices.astype(np.int32), ids, values)
    return ids


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def score_matrices(data_dir):
    for name, loader in (("lastfm", load_lastfm), ("ml100k", load_movielens_100k)):
        train, _ = loader(data_dir)
        model = SparseAutoencoderRecommender(random_state=0, epochs=5).fit(train)
        yield name, model.predict_proba(train), train
    rng = np.random.default_rng(0)
    n_users, n_items = 2000, 100_000
    seen = sp.random(n_users, n_items, density=25 / n_items, format="csr", random_state=0,
                     dtype=np.float32)
    yield "synthetic-100k", rng.random((n_users, n_items), dtype=np.float32), seen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default="benchmarks/results/recommend_topk.json")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'scores':16s} {'shape':>16s} {'ours ms':>9s} {'numpy ms':>9s} {'ratio':>6s}")
    for name, scores, seen in score_matrices(args.data_dir):
        seen = sp.csr_matrix(seen)
        seen.sort_indices()
        ours = sparse_deep_topk(scores, seen, K)  # also compiles the kernel
        theirs = numpy_topk(scores, seen, K)
        same = np.take_along_axis(scores, ours, 1) == np.take_along_axis(scores, theirs, 1)
        if not same.all():
            sys.exit(f"{name}: the two top-{K} lists disagree")
        t_ours = median_seconds(lambda: sparse_deep_topk(scores, seen, K), args.repeats)
        t_numpy = median_seconds(lambda: numpy_topk(scores, seen, K), args.repeats)
        row = {"scores": name, "shape": list(scores.shape), "k": K,
               "sparse_deep_s": t_ours, "numpy_argpartition_s": t_numpy,
               "speedup": t_numpy / t_ours}
        rows.append(row)
        print(f"{name:16s} {str(scores.shape):>16s} {t_ours * 1e3:9.1f} {t_numpy * 1e3:9.1f} "
              f"{row['speedup']:6.2f}", flush=True)
    out = Path(args.output)
    write_json(out, {"cpus": os.cpu_count(), "results": rows})


if __name__ == "__main__":
    main()
